"""/v1/memberships and /v1/invites."""
