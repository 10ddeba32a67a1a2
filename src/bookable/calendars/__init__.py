"""Calendar accounts (credentials), their calendars, and the busy times they add to availability."""
