"""Custom ``payloadTemplate`` bodies, rendered the way Cal.com renders them.

Cal.com compiles the template with Handlebars.js and renders it over the payload's fields plus
``triggerEvent`` and ``createdAt``. Then:

- the content type comes from the *template*: JSON when it parses as JSON (to a truthy value),
  else ``application/x-www-form-urlencoded`` (the user wrote ``a=b&c=d``);
- Handlebars HTML-escapes every ``{{value}}`` (``& < > " ' ` =``); Cal.com turns only
  ``&quot;`` back into ``"``, the other entities stay;
- a JSON body is parsed and written again compactly; when the *rendered* text is not valid JSON
  (a value with a quote broke it, say) the body is the string ``false`` (Cal.com's quirk, kept:
  receivers written against Cal.com see the same);
- unknown names render as empty strings; objects render as ``[object Object]`` and arrays as
  their items joined by commas, as Handlebars.js prints them (Cal.com today; a 2023 version
  pre-serialised a few objects to JSON instead).

Engine: ``dotpromptz-handlebars`` (Google's pure-Python Handlebars, checked against Handlebars.js
4.7.9), so escaping, ``{{#each}}``, ``{{#if}}`` and missing names behave as in Cal.com. Mustache
libraries do not fit: chevron escapes only ``& < > "`` and has no helpers, pystache cannot index
arrays. The one gap: that engine refuses a numeric path segment (``{{attendees.0.name}}``, which
Handlebars.js reads as ``attendees.[0].name`` and Cal.com documents), so such segments are
rewritten to the bracket form before compiling.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from dotpromptz_handlebars import Handlebars

from bookable.webhooks.payloads import js_json

JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# A mustache tag, and inside it a dotted path (a name, then .segments or .[segments]).
_TAG = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_PATH = re.compile(r"(?<![\w$@.\]\[-])[A-Za-z_$@][\w$-]*(?:\.(?:\[[^\]]*\]|[\w$-]+))+")
_NUMERIC_SEGMENT = re.compile(r"\.(\d+)(?=\.|$)")

_ENGINE = Handlebars()


class TemplateError(ValueError):
    """The payloadTemplate does not compile or render."""


def _reject_constant(name: str) -> Any:
    # JSON.parse knows no NaN or Infinity; Python's json would accept them.
    raise ValueError(f"{name} is not JSON")


def json_parse(text: str) -> tuple[bool, Any]:
    """``JSON.parse``: (True, value), or (False, None) when ``text`` is not JSON."""
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def _js_truthy(value: Any) -> bool:
    return value is not None and value is not False and value != 0 and value != ""


def content_type_for(template: str | None) -> str:
    """Cal.com: JSON without a template or when the template parses as (truthy) JSON."""
    if not template:
        return JSON_CONTENT_TYPE
    ok, value = json_parse(template)
    return JSON_CONTENT_TYPE if ok and _js_truthy(value) else FORM_CONTENT_TYPE


def _bracket_numbers(tag: re.Match[str]) -> str:
    return _PATH.sub(lambda path: _NUMERIC_SEGMENT.sub(r".[\1]", path.group(0)), tag.group(0))


def indexed_paths(template: str) -> str:
    """``{{attendees.0.name}}`` -> ``{{attendees.[0].name}}`` (same meaning in Handlebars.js)."""
    return _TAG.sub(_bracket_numbers, template)


@lru_cache(maxsize=512)
def _compiled(template: str) -> Callable[..., str]:
    try:
        return _ENGINE.compile(indexed_paths(template))
    except (ValueError, RecursionError) as error:
        raise TemplateError(f"payloadTemplate does not compile: {error}") from None


def render_template(template: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """The body and content type Cal.com would send for ``template`` over ``data``."""
    content_type = content_type_for(template)
    try:
        rendered = _compiled(template)(dict(data))
    except TemplateError:
        raise
    except (ValueError, RecursionError, TypeError) as error:
        raise TemplateError(f"payloadTemplate does not render: {error}") from None
    rendered = rendered.replace("&quot;", '"')
    if content_type == FORM_CONTENT_TYPE:
        return rendered, content_type
    ok, value = json_parse(rendered)
    return (js_json(value) if ok else "false"), content_type
