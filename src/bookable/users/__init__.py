"""Users: `/users`, `/users/{userId}` and `/me`."""
