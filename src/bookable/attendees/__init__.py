"""attendees."""
