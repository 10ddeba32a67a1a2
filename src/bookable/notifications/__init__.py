"""Booking emails: rendering (``messages``), sending (``transport``, ``dispatcher``), and which
emails a booking change makes (``outbox``)."""
