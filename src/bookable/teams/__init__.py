"""/v1/teams."""
