"""availabilities."""
