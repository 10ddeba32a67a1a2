"""Keep API keys out of logs: uvicorn's access log prints the raw query string, and a key may
also turn up in a message or an Authorization header someone logs."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

# Every query parameter, raw: its name may be percent-encoded (apiKe%79 is apiKey to the server).
_QUERY_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;\s#\"']*)=(?P<value>[^&;\s#\"']*)")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
_SECRET_PARAMS = frozenset({"apikey"})


def _key_pattern(prefixes: set[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True) if p)
    return re.compile(rf"(?:{alternatives})[0-9a-fA-F]{{32}}")


_keys = _key_pattern({"cal_", "cal_live_"})


def _redact_param(match: re.Match[str]) -> str:
    if unquote_plus(match["name"]).strip().lower() in _SECRET_PARAMS:
        return f"{match['sep']}{match['name']}=[redacted]"
    return match[0]


def redact(text: str) -> str:
    if "=" in text:
        text = _QUERY_PARAM.sub(_redact_param, text)
    if "earer" in text:
        text = _BEARER.sub(r"\1[redacted]", text)
    return _keys.sub("[redacted key]", text)


def _redact_value(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_value(v) for k, v in record.args.items()}
        return True


def install_redaction(api_key_prefix: str = "cal_") -> None:
    global _keys
    _keys = _key_pattern({"cal_", "cal_live_", api_key_prefix})
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn", "bookable", "sqlalchemy", ""):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())
