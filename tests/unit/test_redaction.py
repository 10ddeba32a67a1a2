"""API keys never reach the logs, whatever shape they arrive in."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

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


SECRET = KEY.removeprefix("cal_")


@pytest.mark.parametrize(
    "line",
    [
        f"GET /v1/bookings/{SECRET} HTTP/1.1",
        f"GET /v1/bookings/cal%5F{SECRET} HTTP/1.1",
        f'{{"title": "{SECRET}"}}',
        f"{{'authorization': 'Basic {SECRET}'}}",
        f"(b'authorization', b'Token {SECRET}')",
    ],
)
def test_a_bare_secret_is_hidden_too(line):
    assert SECRET not in redact(line)


@pytest.mark.parametrize(
    "line",
    [
        "{'secret': 'whsec two words', 'active': True}",
        '"secret": "whsec two words"',
        "webhook_secret=whsec two words",
        "Authorization: Basic whsec two words",
    ],
)
def test_webhook_secrets_and_authorization_values_are_hidden(line):
    assert "whsec" not in redact(line)


def test_a_request_id_and_a_uuid_are_left_alone():
    line = "request 0123456789abcdef01234567 webhook 0a1b2c3d-0000-1111-2222-333344445555"
    assert redact(line) == line


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of any name, with a plain handler and formatter set up after the redaction."""
    install_redaction("cal_")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"anything.{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_tracebacks_and_stacks_of_any_logger_are_redacted(logged):
    logger, stream = logged
    try:
        raise ValueError(f"[parameters: ('{KEY}', 'secret={SECRET}')]")
    except ValueError:
        logger.exception("failed for %s", KEY)
    logger.warning("where am I", stack_info=True, extra={})
    logger.error(ValueError(f"an exception as the message: {KEY}"))
    output = stream.getvalue()
    assert "Traceback (most recent call last)" in output
    assert "ValueError" in output
    assert SECRET not in output


def test_control_characters_in_fields_cannot_forge_lines(logged):
    logger, stream = logged
    path = "/v1/x\r\nINFO forged line\x1b[31m\x00"
    logger.info("GET %s done", path)
    logger.info("a template keeps\nits own newline")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "INFO GET /v1/x\\x0d\\x0aINFO forged line\\x1b[31m\\x00 done"
    assert lines[1:] == ["INFO a template keeps", "its own newline"]


def test_numbers_stay_numbers_for_their_format(logged):
    logger, stream = logged
    logger.info("%d requests, %.1f%% of %s", 3, 12.5, b"bytes")
    assert stream.getvalue() == "INFO 3 requests, 12.5% of bytes\n"


@pytest.mark.parametrize(
    "line",
    [
        "{'url': 'https://dav.example/', 'username': 'ann', 'password': 'pw two words'}",
        '{"password": "pw two words"}',
        "password=pw-two-words&user=ann",
        '{"access_token": "pw two words", "refresh_token": "pw two words"}',
        "encryptedKey: pw-two-words",
        '{"encryptedKey":"pw two words"}',
    ],
)
def test_calendar_passwords_and_tokens_are_hidden(line):
    cleaned = redact(line)
    assert "pw" not in cleaned.replace("passw", ""), cleaned
    assert "[redacted]" in cleaned


def test_a_password_field_without_a_value_is_left_alone():
    assert redact("password: None") == "password: None"


def test_a_template_is_cleaned_again_when_the_prefixes_change():
    """Templates (messages with arguments) are cleaned once and remembered: a new prefix must
    not be served the old cleaning."""

    def cleaned(template: str) -> str:
        record = logging.LogRecord("x", logging.INFO, "f", 1, template, ("arg",), None)
        RedactKeys().filter(record)
        return record.getMessage()

    template = f"key xyz_{SECRET} %s"
    assert cleaned(template) == "key xyz_[redacted key] arg"  # the bare secret, as before
    install_redaction("xyz_")
    try:
        assert cleaned(template) == "key [redacted key] arg"  # the whole key now
    finally:
        install_redaction("cal_")
    assert cleaned(template) == "key xyz_[redacted key] arg"
