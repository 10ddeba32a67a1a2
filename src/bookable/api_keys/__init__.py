"""API keys: `/api-keys` and `/api-keys/{id}`."""
