"""booking-references."""
