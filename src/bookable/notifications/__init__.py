"""Booking emails: rendering (messages), the outbox, and sending (transport, dispatcher)."""
