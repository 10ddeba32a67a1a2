"""API keys never reach the logs, whatever shape they arrive in."""

from __future__ import annotations

import logging

import pytest

from bookable.core.logging import RedactKeys, install_redaction, redact

KEY = "cal_0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "line",
    [
        f'"GET /v1/me?apiKey={KEY} HTTP/1.1" 200',
        f'"GET /v1/me?take=5&apikey={KEY}&page=2 HTTP/1.1"',
        f'"GET /v1/me?apiKe%79={KEY} HTTP/1.1"',
        f"Authorization: Bearer {KEY}",
        f"a key pasted somewhere: {KEY}",
        f"a live key: cal_live_{KEY[4:]}",
    ],
)
def test_redact_hides_the_secret(line):
    assert KEY[4:] not in redact(line)


def test_redact_leaves_other_parameters_alone():
    assert redact("/v1/bookings?take=5&page=2") == "/v1/bookings?take=5&page=2"


def test_the_filter_cleans_messages_with_and_without_arguments():
    records = [
        logging.LogRecord("x", logging.INFO, "f", 1, f"GET /v1/me?apiKey={KEY}", None, None),
        logging.LogRecord("x", logging.INFO, "f", 1, "%s", (f"?apiKey={KEY}",), None),
        logging.LogRecord(
            "x", logging.INFO, "f", 1, "%(path)s", ({"path": f"?apiKey={KEY}"},), None
        ),
    ]
    for record in records:
        RedactKeys().filter(record)
        assert KEY[4:] not in record.getMessage()


def test_a_configured_prefix_is_recognised():
    install_redaction("bk_")
    try:
        assert "bk_" + KEY[4:] not in redact("key bk_" + KEY[4:])
    finally:
        install_redaction("cal_")
