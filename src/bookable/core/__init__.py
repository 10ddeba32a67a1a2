"""Cross-cutting pieces: database, auth, errors, rate limits, the wire base model."""
