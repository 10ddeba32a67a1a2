"""Subscriber URL safety (`bookable.webhooks.urls`): the create-time check and the check right
before each delivery, which resolves the host (real resolver, no stand-ins)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from bookable.webhooks.urls import (
    PRIVATE_REFUSED,
    address_problem,
    delivery_target_problem,
    subscriber_url_problem,
)

FINE_ANYWHERE = [
    "https://hooks.example.com/cal",
    "http://hooks.example.com:8080/a?b=c#d",
    "HTTPS://Hooks.Example.COM./x",
    "https://bücher.example/",  # IDN: resolved as its punycode
    "http://8.8.8.8/",
    "http://[2001:4860:4860::8888]/",
]
PRIVATE = [
    "http://localhost:5678/webhook",
    "http://LOCALHOST/",
    "http://api.localhost/",
    "http://127.0.0.1/",
    "http://127.1/",  # inet_aton: 127.0.0.1
    "http://0.0.0.0/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.178.20:1880/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://[::1]/",
    "http://[fd12:3456::1]/",
    "http://[::ffff:10.0.0.1]/",
    # Loopback and private IPv4 in the other spellings the resolver or the network accepts.
    "http://[::7f00:1]/",  # IPv4-compatible ::127.0.0.1
    "http://[::127.0.0.1]/",
    "http://[::10.0.0.1]/",
    "http://[::ffff:0:7f00:1]/",  # SIIT (IPv4-translated)
    "http://[64:ff9b::7f00:1]/",  # NAT64: the translator connects to 127.0.0.1
    "http://[64:ff9b:1::a00:1]/",  # local-use NAT64, 10.0.0.1
    "http://[2002:7f00:1::]/",  # 6to4
    "http://[2002:c0a8:1::1]/",  # 6to4 of 192.168.0.1
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://017700000001/",  # ... octal
    "http://0x7f000001/",  # ... hexadecimal
    "http://0x7f.1/",
    "http://127.0.0.1./",  # trailing dot
    "http://0x0a.0.0.1/",
    "http://localhost./",
]
ALWAYS_REFUSED = [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata addresses are not allowed"),
    ("http://169.254.170.2/v2/credentials", "cloud metadata addresses are not allowed"),
    ("http://100.100.100.200/latest/meta-data", "cloud metadata addresses are not allowed"),
    ("http://[fd00:ec2::254]/", "cloud metadata addresses are not allowed"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata addresses"),
    ("http://Metadata.Google.Internal./", "cloud metadata addresses"),
    ("http://metadata/computeMetadata/v1/", "cloud metadata addresses"),
    ("http://instance-data/latest/", "cloud metadata addresses"),
    # The same address in the forms the C resolver also reads as numbers.
    ("http://2852039166/", "cloud metadata addresses"),
    ("http://0xa9fea9fe/", "cloud metadata addresses"),
    ("http://0251.0376.0251.0376/", "is not a valid URL"),  # httpx refuses octal dotted forms
    ("http://169.254.43518/", "cloud metadata addresses"),
    # ... and wrapped in IPv6.
    ("http://[::ffff:169.254.169.254]/", "cloud metadata addresses"),
    ("http://[64:ff9b::a9fe:a9fe]/", "cloud metadata addresses"),
    ("http://[2002:a9fe:a9fe::1]/", "cloud metadata addresses"),
    ("http://[::a9fe:a9fe]/", "cloud metadata addresses"),  # IPv4-compatible
    ("http://[::169.254.169.254]/", "cloud metadata addresses"),
    ("http://[::ffff:0:a9fe:a9fe]/", "cloud metadata addresses"),  # SIIT
    ("http://[64:ff9b:1::a9fe:a9fe]/", "cloud metadata addresses"),  # local-use NAT64
    # Teredo: client 169.254.169.254 (stored inverted), server 65.54.227.120.
    ("http://[2001:0:4136:e378:8000:63bf:5601:5601]/", "cloud metadata addresses"),
    ("http://[::a9fe:101]/", "link-local addresses are not allowed (169.254.1.1)"),
    ("http://[::ffff:169.254.1.1]/", "link-local addresses are not allowed (169.254.1.1)"),
    ("http://0xa9.0xfe.0xa9.0xfe/", "cloud metadata addresses"),
    ("http://0xA9FEA9FE/", "cloud metadata addresses"),
    ("http://169.254.169.254./", "cloud metadata addresses"),
    ("http://169.254.169.254../", "cloud metadata addresses"),
    ("http://[::e000:fb]/", "multicast addresses are not allowed (224.0.0.251)"),
    ("http://169.254.1.1/", "link-local addresses are not allowed"),
    ("http://[fe80::1]/", "link-local addresses are not allowed"),
    ("http://[fe80::1%25eth0]:8080/", "link-local addresses are not allowed"),
    ("http://224.0.0.251/", "multicast addresses are not allowed"),
    ("ftp://files.example.com/", "only http and https URLs are allowed"),
    ("file:///etc/passwd", "only http and https URLs are allowed"),
    ("javascript:alert(1)", "only http and https URLs are allowed"),
    ("data:text/plain,hi", "only http and https URLs are allowed"),
    ("gopher://x.example/", "only http and https URLs are allowed"),
    ("//hooks.example.com/x", "only http and https URLs are allowed"),
    ("https://user:pass@hooks.example.com/", "credentials in the URL are not allowed"),
    ("https://token@hooks.example.com/", "credentials in the URL are not allowed"),
    ("https:///path", "a host is required"),
    ("http://:80/", "a host is required"),
    ("http://hooks.example.com:70000/", "port 70000 is out of range"),
    ("http://exa%41mple.com/", "is not a valid host name"),
    ("http://hooks.example.com\\@169.254.169.254/", "must be a URL without spaces"),
    ("http://hooks.example.com /x", "must be a URL without spaces"),
    ("http://hooks.example.com/\nHost: x", "must be a URL without spaces"),
    ("", "must be a URL without spaces"),
    ("not a url", "must be a URL without spaces"),
]


@pytest.mark.parametrize("url", FINE_ANYWHERE)
def test_public_urls_are_fine(url: str) -> None:
    assert subscriber_url_problem(url, allow_private=True) is None
    assert subscriber_url_problem(url, allow_private=False) is None


@pytest.mark.parametrize("url", PRIVATE)
def test_private_targets_follow_the_setting(url: str) -> None:
    assert subscriber_url_problem(url, allow_private=True) is None
    problem = subscriber_url_problem(url, allow_private=False)
    assert problem is not None and problem.startswith(PRIVATE_REFUSED)


@pytest.mark.parametrize(("url", "reason"), ALWAYS_REFUSED)
def test_always_refused(url: str, reason: str) -> None:
    for allow_private in (True, False):
        problem = subscriber_url_problem(url, allow_private=allow_private)
        assert problem is not None and problem.startswith(reason), problem


def test_names_are_not_resolved_at_create_time() -> None:
    # `.invalid` never resolves (RFC 6761): accepted now, refused at delivery time.
    assert subscriber_url_problem("https://nowhere.invalid/", allow_private=False) is None


@pytest.mark.parametrize(
    ("address", "allow_private", "refused"),
    [
        ("93.184.216.34", False, False),
        ("10.0.0.1", True, False),
        ("10.0.0.1", False, True),
        ("169.254.169.254", True, True),
        ("fe80::abcd", True, True),
        ("::", False, True),
        ("2606:4700::1111", False, False),
        # IPv4 addresses wrapped in IPv6 are judged as the IPv4 address.
        ("::a9fe:a9fe", True, True),
        ("::7f00:1", True, False),
        ("::7f00:1", False, True),
        ("::808:808", False, False),  # ::8.8.8.8, public
        ("::ffff:8.8.8.8", False, False),
        ("64:ff9b::808:808", False, False),
        ("2002:808:808::1", False, False),
        ("::1", True, False),
        ("::1", False, True),
    ],
)
def test_address_rules(address: str, allow_private: bool, refused: bool) -> None:
    problem = address_problem(ipaddress.ip_address(address), allow_private=allow_private)
    assert (problem is not None) is refused


# --- right before a delivery -----------------------------------------------------------------


async def test_delivery_check_applies_the_create_time_rules() -> None:
    for url, reason in ALWAYS_REFUSED:
        problem = await delivery_target_problem(url, allow_private=True)
        assert problem is not None and problem.startswith(reason), (url, problem)
    assert await delivery_target_problem("http://10.0.0.1/", allow_private=True) is None
    assert await delivery_target_problem("http://[2001:db8::1]/", allow_private=True) is None
    problem = await delivery_target_problem("http://10.0.0.1/", allow_private=False)
    assert problem is not None and problem.startswith(PRIVATE_REFUSED)


async def test_delivery_check_refuses_a_name_that_does_not_resolve() -> None:
    problem = await delivery_target_problem("https://nowhere.invalid/", allow_private=True)
    assert problem is not None and problem.startswith("could not resolve nowhere.invalid")


def _resolves_only_to_non_public(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return bool(addresses) and not any(a.is_global or a.is_link_local for a in addresses)


async def test_delivery_check_judges_the_addresses_a_name_resolves_to() -> None:
    # This machine's own name resolves (through /etc/hosts) to a loopback or private address:
    # harmless as a name when created, refused at delivery when private targets are off.
    host = socket.gethostname().lower()
    if host in {"localhost", "metadata"} or not _resolves_only_to_non_public(host):
        pytest.skip(f"host name {host!r} does not resolve to non-public addresses only here")
    url = f"http://{host}:8080/hook"
    assert subscriber_url_problem(url, allow_private=False) is None
    assert await delivery_target_problem(url, allow_private=True) is None
    problem = await delivery_target_problem(url, allow_private=False)
    assert problem is not None
    assert problem.startswith(f"{host} resolves to a refused address: {PRIVATE_REFUSED}")


async def test_delivery_check_gives_up_on_a_slow_resolver() -> None:
    # A zero budget cannot be met by any lookup that is not already answered.
    problem = await delivery_target_problem(
        "https://slow-resolver.invalid/", allow_private=True, resolve_timeout=0
    )
    assert problem == "could not resolve slow-resolver.invalid: timed out"
