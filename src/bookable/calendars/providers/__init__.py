"""One module per kind of calendar server, each behind `base.CalendarProvider`."""
