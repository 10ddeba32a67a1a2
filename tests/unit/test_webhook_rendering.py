"""Webhook bodies without a database: Cal.com's template rules, JSON as JavaScript writes it,
UTC offsets, the signature, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime

import pytest

from bookable.webhooks.dispatcher import DispatcherConfig
from bookable.webhooks.payloads import iso_ms, iso_seconds, js_json, utc_offset
from bookable.webhooks.signing import NO_SECRET, delivery_headers, signature, verify
from bookable.webhooks.templates import (
    FORM_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    TemplateError,
    content_type_for,
    indexed_paths,
    render_template,
)

DATA = {
    "triggerEvent": "BOOKING_CREATED",
    "title": "Intro between Alice and Ann",
    "organizer": {"name": "Alice", "email": "alice@example.com"},
    "attendees": [
        {"name": 'Ann "The" <Boss> & Co', "email": "ann@example.com"},
        {"name": "Bob", "email": "bob@example.com"},
    ],
    "metadata": {"videoCallUrl": "https://video.example/r?a=1&b=2"},
    "price": 1.0,
    "requiresConfirmation": None,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (None, JSON_CONTENT_TYPE),
        ("", JSON_CONTENT_TYPE),
        ('{"a": "{{title}}"}', JSON_CONTENT_TYPE),
        ("[]", JSON_CONTENT_TYPE),  # an empty array is truthy in JavaScript
        ("a={{title}}&b=1", FORM_CONTENT_TYPE),
        ('{"a": {{organizer}}}', FORM_CONTENT_TYPE),  # not JSON until rendered: a form
        ("0", FORM_CONTENT_TYPE),  # JSON, but falsy (Cal.com's jsonParse(...) check)
        ("false", FORM_CONTENT_TYPE),
        ("NaN", FORM_CONTENT_TYPE),  # JSON.parse refuses it
    ],
)
def test_the_template_decides_the_content_type(template: str | None, expected: str) -> None:
    assert content_type_for(template) == expected


def test_numeric_path_segments_become_brackets_only_inside_tags() -> None:
    assert indexed_paths("x.0.y {{attendees.0.name}} {{ a.10 }} {{#each attendees.1.list}}") == (
        "x.0.y {{attendees.[0].name}} {{ a.[10] }} {{#each attendees.[1].list}}"
    )
    assert indexed_paths("{{lookup price 1.5}}") == "{{lookup price 1.5}}"


def test_values_are_html_escaped_then_quotes_restored() -> None:
    body, kind = render_template("who={{attendees.0.name}}&url={{metadata.videoCallUrl}}", DATA)
    assert kind == FORM_CONTENT_TYPE
    assert body == (
        'who=Ann "The" &lt;Boss&gt; &amp; Co&url=https://video.example/r?a&#x3D;1&amp;b&#x3D;2'
    )


def test_a_json_template_is_rewritten_compactly() -> None:
    template = '{\n  "who": "{{attendees.1.name}}",\n  "org": "{{organizer.name}}"\n}'
    assert render_template(template, DATA) == (
        '{"who":"Bob","org":"Alice"}',
        JSON_CONTENT_TYPE,
    )


def test_a_value_that_breaks_the_json_makes_the_body_false() -> None:
    # The restored quotes end the string early: Cal.com sends the literal `false` then.
    assert render_template('{"who": "{{attendees.0.name}}"}', DATA) == ("false", JSON_CONTENT_TYPE)


def test_missing_names_objects_arrays_and_scalars_print_as_handlebars_does() -> None:
    body, _ = render_template(
        "a={{nothing}}&b={{organizer}}&c={{attendees}}&d={{price}}&e={{requiresConfirmation}}"
        "&f={{triggerEvent}}&g={{attendees.5.name}}",
        DATA,
    )
    assert body == (
        "a=&b=[object Object]&c=[object Object],[object Object]&d=1&e=&f=BOOKING_CREATED&g="
    )


def test_blocks_work() -> None:
    body, _ = render_template(
        "{{#each attendees}}{{email}};{{/each}}{{#if organizer}}yes{{else}}no{{/if}}", DATA
    )
    assert body == "ann@example.com;bob@example.com;yes"


@pytest.mark.parametrize("template", ["{{#if x}}", "{{", "{{nohelper x}}", "{{/each}}"])
def test_broken_templates_raise_template_error(template: str) -> None:
    with pytest.raises(TemplateError):
        render_template(template, DATA)


def test_js_json_is_compact_utf8_with_javascript_numbers() -> None:
    value = {"b": 1.0, "a": [2.5, 3], "s": 'Zoë \u2028 "q"', "n": None, "t": True}
    assert js_json(value) == '{"b":1,"a":[2.5,3],"s":"Zoë \u2028 \\"q\\"","n":null,"t":true}'


def test_times_and_offsets() -> None:
    instant = datetime(2026, 3, 29, 0, 30, 5, 123456, tzinfo=UTC)
    assert iso_ms(instant) == "2026-03-29T00:30:05.123Z"
    assert iso_seconds(instant) == "2026-03-29T00:30:05Z"
    # Europe/Paris moves to summer time at 01:00 UTC that day.
    assert utc_offset("Europe/Paris", instant) == 60
    assert utc_offset("Europe/Paris", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == 120
    assert utc_offset("Asia/Dubai", instant) == 240
    assert utc_offset("America/St_Johns", instant) == -150
    assert utc_offset("Not/AZone", instant) == 0
    assert utc_offset(None, instant) == 0


def test_signature_is_the_hex_hmac_of_the_exact_bytes() -> None:
    body = '{"triggerEvent":"BOOKING_CREATED","x":"Zoë"}'.encode()
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body) == expected
    assert verify("s3cret", body, expected)
    assert not verify("s3cret", body + b" ", expected)
    assert signature(None, body) == signature("", body) == NO_SECRET
    assert delivery_headers(body, content_type=FORM_CONTENT_TYPE, secret=None, version=None) == {
        "Content-Type": FORM_CONTENT_TYPE,
        "X-Cal-Signature-256": "no-secret-provided",
        "X-Cal-Webhook-Version": "2021-10-20",
    }


def test_retry_waits_follow_the_schedule_with_bounded_jitter() -> None:
    config = DispatcherConfig(retry_delays=(10, 60, 3600), jitter=0.2)
    rng = random.Random(7)
    for made, base in [(1, 10), (2, 60), (3, 3600), (4, 3600), (9, 3600)]:
        wait = config.retry_delay(made, rng)
        assert base * 0.8 <= wait <= base * 1.2
    exact = DispatcherConfig(retry_delays=(5,), jitter=0.0)
    assert exact.retry_delay(3) == 5
