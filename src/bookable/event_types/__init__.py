"""event-types."""
