"""Keep secrets out of logs, and clients from writing log lines.

Every log record, from any logger (ours, uvicorn's, SQLAlchemy's, httpx's...), is cleaned when
it is created (``logging.setLogRecordFactory``), so no handler or formatter configured later can
print it raw: the message, its arguments, the traceback (``exc_info``, rendered here once) and
``stack_info``. Cleaning means:

- API keys (``<prefix><32 hex>``, and the bare 32-hex secret, which is a valid key too), the
  ``apiKey`` query parameter, ``Bearer`` credentials, ``Authorization`` header values and
  ``secret``, ``password``, ``token`` and ``encryptedKey`` fields (webhook secrets, calendar
  logins, OAuth tokens) become ``[redacted]``;
- control characters a client can put in a path or a value (ESC, NUL, CR, LF...) are written as
  ``\\xNN`` inside message arguments, so a request cannot forge a log line or colour the
  terminal. Newlines stay in the message template and the traceback, where the code put them.

SQL parameters never reach exception text in the first place (``hide_parameters`` in core.db).
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from typing import Any
from urllib.parse import unquote_plus

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# Every query parameter, raw: its name may be percent-encoded (apiKe%79 is apiKey to the server).
_QUERY_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;\s#\"']*)=(?P<value>[^&;\s#\"']*)")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',)]+")
_AUTHORIZATION = re.compile(
    r"(?i)(authorization['\"]?\s*[:=,]\s*(?:b?['\"])?)(?!bearer\s)(?:(?:basic|token|digest)\s+)?"
    r"[^\s'\",)}]+"
)
# Fields whose value is a secret: webhook secrets, calendar passwords, OAuth tokens, the
# credential-sync key blob.
_SECRET_NAME = r"(?:(?:webhook_?)?secret|password|passwd|(?:access_|refresh_)?token|encrypted_?key)"
_SECRET_FIELD_QUOTED = re.compile(
    rf"(?i)({_SECRET_NAME}['\"]?\s*[:=]\s*b?)(['\"])(?:\\.|(?!\2).)*\2"
)
_SECRET_FIELD = re.compile(
    rf"(?i)({_SECRET_NAME}['\"]?\s*[:=]\s*)(?!b?['\"]|none\b|null\b)[^\s,&)}}]+"
)
# redact() tests for the words _SECRET_NAME needs ("secret", "passw", "token", "encrypted")
# before running its patterns.
# The secret alone is a key too; in a URL it may follow a percent-escape (cal%5F<secret>).
_BARE_SECRET = re.compile(
    r"(?:(?<![0-9A-Za-z])|(?<=%[0-9A-Fa-f]{2}))[0-9a-fA-F]{32}(?![0-9A-Za-z])"
)
_SECRET_PARAMS = frozenset({"apikey"})
# Cheap test first (every log record, e.g. each access line, passes here): a run of 32 hex
# digits, which every key holds.
_HEX_RUN = re.compile(r"[0-9a-fA-F]{32}")
# C0 controls and DEL; TAB is harmless. Templates and tracebacks keep their newlines.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _key_pattern(prefixes: set[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True) if p)
    return re.compile(rf"(?:{alternatives})[0-9a-fA-F]{{32}}")


_keys = _key_pattern({"cal_", "cal_live_"})


def _redact_param(match: re.Match[str]) -> str:
    if unquote_plus(match["name"]).strip().lower() in _SECRET_PARAMS:
        return f"{match['sep']}{match['name']}=[redacted]"
    return match[0]


def redact(text: str) -> str:
    """``text`` without API keys, Authorization credentials or secret fields."""
    if "=" in text:
        text = _QUERY_PARAM.sub(_redact_param, text)
    lowered = text.lower()
    if "earer" in lowered:
        text = _BEARER.sub(r"\1[redacted]", text)
    if "authorization" in lowered:
        text = _AUTHORIZATION.sub(r"\1[redacted]", text)
    if "secret" in lowered or "passw" in lowered or "token" in lowered or "encrypted" in lowered:
        text = _SECRET_FIELD_QUOTED.sub(r"\1\2[redacted]\2", text)
        text = _SECRET_FIELD.sub(r"\1[redacted]", text)
    if _HEX_RUN.search(text) is None:
        return text  # neither a prefixed key nor a bare secret can be in it
    text = _keys.sub("[redacted key]", text)
    return _BARE_SECRET.sub("[redacted key]", text)


def _escape(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def clean_field(text: str) -> str:
    """A value put into a log line: redacted, every control character escaped."""
    return _escape(_CONTROL, redact(text))


def clean_block(text: str) -> str:
    """A template, traceback or stack: redacted, control characters but newlines escaped."""
    return _escape(_CONTROL_BUT_NEWLINE, redact(text))


@functools.lru_cache(maxsize=1024)
def _clean_template(text: str) -> str:
    # A message with arguments is one of a handful of constant templates (uvicorn's access line:
    # '%s - "%s %s HTTP/%s" %d'): cleaned once each. Messages without arguments (f-strings,
    # which may hold anything) are not kept. A pure function of the text while the key prefixes
    # stay (install_redaction clears it when they change).
    return clean_block(text)


def _clean_arg(value: Any) -> Any:
    if isinstance(value, str):
        return clean_field(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    # Anything else (an exception, a URL, a dict of headers) is logged through its text.
    return clean_field(value if isinstance(value, str) else str(value))


def clean_record(record: logging.LogRecord) -> logging.LogRecord:
    msg = record.msg if isinstance(record.msg, str) else str(record.msg)
    record.msg = _clean_template(msg) if record.args else clean_block(msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_clean_arg(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _clean_arg(v) for k, v in record.args.items()}
    if record.exc_info and record.exc_info[0] is not None:
        rendered = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = clean_block(rendered)
        # No handler renders the raw traceback again: formatters print exc_text.
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = clean_block(record.exc_text)
    if record.stack_info:
        record.stack_info = clean_block(record.stack_info)
    return record


class RedactKeys(logging.Filter):
    """The same cleaning as a filter, for handlers set up outside this process's factory."""

    def filter(self, record: logging.LogRecord) -> bool:
        clean_record(record)
        return True


class _CleaningFactory:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return clean_record(self.inner(*args, **kwargs))


def install_redaction(api_key_prefix: str = "cal_") -> None:
    """Clean every log record created from now on (idempotent)."""
    global _keys
    _keys = _key_pattern({"cal_", "cal_live_", api_key_prefix})
    _clean_template.cache_clear()
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _CleaningFactory):
        logging.setLogRecordFactory(_CleaningFactory(factory))


# --- JSON log lines (BOOKABLE_LOG_FORMAT=json) ------------------------------------------------

ACCESS_LOGGER = "bookable.access"
# uvicorn's records carry the message again with colour codes, uncleaned.
_NOT_FIELDS = (*RESERVED_ATTRS, "color_message")
_CLEANED_ALREADY = frozenset({"time", "level", "logger", "message", "exc_info", "stack_info"})


class JsonLogFormatter(JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, then the
    record's extra fields (the access line's request id, method, route...). The message and
    traceback are cleaned when the record is made; extra fields are cleaned here."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=_NOT_FIELDS,
            timestamp="time",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        ordered = {"time": log_data.pop("time", None)}
        ordered.update(log_data)
        for name, value in ordered.items():
            if isinstance(value, str) and name not in _CLEANED_ALREADY:
                ordered[name] = clean_field(value)
        return ordered


def json_log_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for JSON lines on stderr (stdout stays for what the
    commands print, such as `serve --demo`'s key), every logger through the root one."""
    level = level.upper()
    passthrough = {"handlers": [], "level": level, "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLogFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["json"], "level": level},
        "loggers": {
            "uvicorn": passthrough,
            "uvicorn.error": passthrough,
            # Our access line replaces uvicorn's (serve passes access_log=False too).
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            # Its INFO lines come on every start; the migrations applied are logged by the CLI.
            "alembic": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }
