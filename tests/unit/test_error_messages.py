"""Rendering an error message never fails, whatever the client sent."""

from __future__ import annotations

import json

from bookable.core.errors import error_response, format_validation_errors


def test_a_message_echoing_a_lone_surrogate_renders_and_encodes() -> None:
    error = {
        "type": "literal_error",
        "loc": ("body", "timeFormat"),
        "input": "\ud800",
        "ctx": {"expected": "12 or 24"},
    }
    message = format_validation_errors([error])
    assert message == (
        "invalid_enum_value in 'timeFormat': Invalid enum value. Expected 12 or 24, "
        "received '\\ud800'"
    )
    response = error_response(400, "custom in 'timeZone': Invalid timezone '\ud800'")
    assert json.loads(response.body) == {
        "message": "custom in 'timeZone': Invalid timezone '\\ud800'"
    }


def test_an_error_that_cannot_be_rendered_still_gives_a_message() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    error = {"type": "value_error", "loc": ("body", "x"), "msg": Unprintable()}
    assert format_validation_errors([error]) == "Invalid input"
