"""Bookable: a self-hosted scheduling server, wire-compatible with Cal.com's public API v1."""

__version__ = "0.1.0"
