"""Bookings: create (three body forms), read, list, reschedule, confirm, cancel, patch, no-show."""
