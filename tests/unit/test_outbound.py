"""The pinned outbound client (`bookable.core.outbound.guarded_client`): every connection goes
to an address its name resolved to and the rules allowed, with the Host header, TLS server name
and certificate check still for the name. Loopback only: refused targets are refused before any
connection is tried (a resolver is a plain function, so a name can be made to answer anything
without a packet leaving the machine)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import trustme

from bookable.core.outbound import (
    PRIVATE_REFUSED,
    guarded_client,
    refusal,
    system_resolver,
)


@dataclass
class Server:
    """A tiny HTTP/1.1 server on 127.0.0.1 that records each connection and request head."""

    port: int = 0
    connections: int = 0
    heads: list[dict[str, str]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


async def _serve_one(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    server.connections += 1
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        writer.close()
        return
    lines = raw.decode("latin-1").split("\r\n")
    head = {"request-line": lines[0]}
    head.update({k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)})
    server.heads.append(head)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await writer.drain()
    writer.close()


@asynccontextmanager
async def serving(tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server()
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: server.server_names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    running = await asyncio.start_server(
        lambda r, w: _serve_one(server, r, w), "127.0.0.1", 0, ssl=tls
    )
    server.port = running.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        running.close()
        await running.wait_closed()


def answering(*rounds: list[str]):
    """A resolver that gives each round's answer in turn (the last one from then on), and
    counts the lookups: a name whose DNS answer changes between lookups."""
    calls: list[str] = []

    async def resolve(host: str, _port: int) -> list[str]:
        calls.append(host)
        return rounds[min(len(calls), len(rounds)) - 1]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def test_a_name_reaches_its_checked_address_with_its_own_host_header() -> None:
    async with serving() as server, guarded_client(allow_private=True, timeout=5) as client:
        reply = await client.post(f"http://localhost:{server.port}/hook?x=1", content=b"{}")
    assert reply.status_code == 200
    (head,) = server.heads
    assert head["request-line"] == "POST /hook?x=1 HTTP/1.1"
    assert head["host"] == f"localhost:{server.port}"


async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    # The first lookup answers 127.0.0.1 (where the server is); any later lookup would answer
    # 127.0.0.2, where nothing listens. One lookup per connection, and it is the one used.
    rebinding = answering(["127.0.0.1"], ["127.0.0.2"])
    client = guarded_client(allow_private=True, timeout=5, resolver=rebinding)
    async with serving() as server, client:
        reply = await client.get(f"http://hooks.example:{server.port}/")
        assert reply.status_code == 200
        assert rebinding.calls == ["hooks.example"]  # type: ignore[attr-defined]
    assert server.heads[0]["host"] == f"hooks.example:{server.port}"


@pytest.mark.parametrize(
    ("answers", "allow_private", "reason"),
    [
        (["169.254.169.254"], True, "hooks.example resolves to a refused address: cloud metadata"),
        (["127.0.0.1", "169.254.169.254"], True, "hooks.example resolves to a refused address"),
        (["::ffff:169.254.169.254"], True, "hooks.example resolves to a refused address: cloud"),
        (["::a9fe:a9fe"], True, "hooks.example resolves to a refused address: cloud"),
        (["127.0.0.1"], False, f"hooks.example resolves to a refused address: {PRIVATE_REFUSED}"),
        (["::7f00:1"], False, f"hooks.example resolves to a refused address: {PRIVATE_REFUSED}"),
        ([], True, "could not resolve hooks.example: no addresses"),
    ],
)
async def test_a_refused_resolution_never_gets_a_connection(
    answers: list[str], allow_private: bool, reason: str
) -> None:
    client = guarded_client(
        allow_private=allow_private, timeout=5, resolver=answering(answers, ["127.0.0.1"])
    )
    async with serving() as server, client:
        with pytest.raises(httpx.ConnectError) as raised:
            await client.post(f"http://hooks.example:{server.port}/", content=b"{}")
    assert (refusal(raised.value) or "").startswith(reason), refusal(raised.value)
    assert server.connections == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata addresses are not allowed"),
        ("http://[::a9fe:a9fe]/", "cloud metadata addresses are not allowed"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "cloud metadata addresses are not allowed"),
        ("http://metadata.google.internal./", "cloud metadata addresses are not allowed"),
        ("http://[fe80::1]/", "link-local addresses are not allowed"),
        ("http://user:pw@hooks.example/", "credentials in the URL are not allowed"),
    ],
)
async def test_literal_and_named_refusals_need_no_lookup(url: str, reason: str) -> None:
    never = answering(["127.0.0.1"])
    async with guarded_client(allow_private=True, timeout=5, resolver=never) as client:
        with pytest.raises(httpx.ConnectError) as raised:
            await client.get(url)
    assert (refusal(raised.value) or "").startswith(reason), refusal(raised.value)
    assert never.calls == []  # type: ignore[attr-defined]


async def test_private_names_follow_the_setting_with_the_real_resolver() -> None:
    async with serving() as server, guarded_client(allow_private=False, timeout=5) as client:
        with pytest.raises(httpx.ConnectError) as raised:
            await client.get(f"http://localhost:{server.port}/")
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{server.port}/")
    assert (refusal(raised.value) or "").startswith(PRIVATE_REFUSED)
    assert server.connections == 0


async def test_a_redirect_that_is_followed_is_checked_too() -> None:
    # Calendar feeds follow redirects: the next hop gets the same rules.
    async def redirecting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    running = await asyncio.start_server(redirecting, "127.0.0.1", 0)
    port = running.sockets[0].getsockname()[1]
    client = guarded_client(allow_private=True, timeout=5, follow_redirects=True)
    try:
        async with client:
            with pytest.raises(httpx.ConnectError) as raised:
                await client.get(f"http://127.0.0.1:{port}/feed.ics")
    finally:
        running.close()
        await running.wait_closed()
    assert (refusal(raised.value) or "").startswith("cloud metadata addresses are not allowed")


# --- HTTPS: pinned to the address, verified for the name ------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def _server_tls(authority: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*names).configure_cert(context)
    return context


def _trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


async def test_https_sends_the_name_as_sni_and_checks_the_certificate_for_it(
    authority: trustme.CA,
) -> None:
    # calendar.example resolves (here) to 127.0.0.1: the TLS handshake goes to that address,
    # with the name as server name, and the certificate is checked against the name.
    to_loopback = answering(["127.0.0.1"])
    client = guarded_client(
        allow_private=True, timeout=5, verify=_trusting(authority), resolver=to_loopback
    )
    async with serving(_server_tls(authority, "calendar.example")) as server, client:
        reply = await client.get(f"https://calendar.example:{server.port}/cal.ics")
        assert reply.status_code == 200 and reply.text == "ok"
        # The same server reached as "localhost": its certificate is not for that name.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://localhost:{server.port}/cal.ics")
    assert server.server_names[0] == "calendar.example"
    assert server.heads[0]["host"] == f"calendar.example:{server.port}"


async def test_the_system_resolver_resolves_localhost_to_loopback() -> None:
    answers = await system_resolver("localhost", 80)
    assert answers and set(answers) <= {"127.0.0.1", "::1"}
