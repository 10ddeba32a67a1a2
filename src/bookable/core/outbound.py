"""Outbound HTTP to addresses users chose (webhooks; calendar integrations: CalDAV, ICS feeds).

Server-side request forgery protection, in two parts that share one set of address rules:

- **Checks without DNS** (`url_problem`): the URL's form, and the host when it is an IP literal
  (in any form the system resolver would read as one, such as ``2852039166`` or an IPv4 address
  wrapped in IPv6) or a well-known cloud metadata name. Used when a URL is saved: the server may
  have no DNS at that moment, and what a name points at can change anyway.
- **Pinned connections** (`guarded_client`): an httpx client whose connections are opened by
  `GuardedNetworkBackend`. For every new connection it resolves the host name once, refuses the
  connection unless *every* address passes the rules, and connects to one of exactly those
  addresses. There is no second lookup between the check and the connection, so a name that
  answers with a public address to the check and with an inside one a moment later (DNS
  rebinding) cannot slip through. The URL keeps its host name: the ``Host`` header, TLS server
  name (SNI) and certificate check are all for the name, as without pinning. Redirects, when a
  caller follows them, open connections through the same backend and are checked alike.

The rules: link-local addresses (169.254.0.0/16, fe80::/10), multicast and cloud metadata
endpoints are always refused; other non-public addresses (loopback, private networks,
carrier-grade NAT, ...) only when ``allow_private`` is False. Self-hosted automations (n8n,
Node-RED) usually live on the private network, hence the webhook setting's default of allowing
them.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses a name stands for (the system resolver by default; see `Resolver`).
Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Instance metadata services (AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack, Alibaba, ...).
# The 169.254.x ones are link-local anyway; they are listed for a clearer message.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.0.23",  # Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "fd00:ec2::254",  # AWS over IPv6
    )
)
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",  # GCP, via the instance's DNS search domain
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
LOCAL_HOSTNAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

# IPv6 ranges whose addresses carry an IPv4 address in their last 32 bits.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291), still routed by some
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215, local-use translators
_UNSPECIFIED_OR_LOOPBACK = frozenset({ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")})

PRIVATE_REFUSED = (
    "private, loopback and other non-public addresses are not allowed on this server "
    "(BOOKABLE_WEBHOOK_ALLOW_PRIVATE_TARGETS is off)"
)


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address may reach: IPv4-mapped (``::ffff:a.b.c.d``),
    IPv4-compatible (``::a.b.c.d``), SIIT, NAT64 (well-known and local-use prefixes: the
    translator connects to the IPv4 address), 6to4 (``2002:AABB:CCDD::``) and Teredo (server
    and client). Empty for IPv4 addresses and plain IPv6 ones."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _IPV4_COMPATIBLE:
        return [] if address in _UNSPECIFIED_OR_LOOPBACK else [low32]
    if address in _IPV4_TRANSLATED or address in _NAT64 or address in _NAT64_LOCAL:
        return [low32]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def _single_address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    if address in METADATA_ADDRESSES:
        return f"cloud metadata addresses are not allowed ({address})"
    if address.is_link_local:
        return f"link-local addresses are not allowed ({address})"
    if address.is_multicast:
        return f"multicast addresses are not allowed ({address})"
    if not address.is_global and not allow_private:
        return f"{PRIVATE_REFUSED}: {address}"
    return None


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a connection to ``address`` is refused, or None. An IPv6 address that carries an
    IPv4 address is judged as that address too (the IPv4 one first, for a clearer message)."""
    for candidate in (*embedded_ipv4(address), address):
        problem = _single_address_problem(candidate, allow_private=allow_private)
        if problem is not None:
            return problem
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` is, if the resolver would read it as a number rather than a name.

    Besides dotted quads, the C resolver reads ``2852039166``, ``0xa9fea9fe``,
    ``0xa9.0xfe.0xa9.0xfe`` and ``169.254.43518`` as IPv4 addresses (inet_aton); those forms are
    a classic way around naive checks.
    """
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # without an IPv6 zone id
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def split_url(url: str) -> tuple[httpx.URL, str] | str:
    """The parsed URL and its normalised host name (lower case, no trailing dot), or why the
    URL is unusable.

    Parsed by httpx, the client that connects: a check must read the URL exactly as the
    connection will (parsers that disagree on ``http://a\\@b/`` are a known way around checks).
    """
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        return "must be a URL without spaces, backslashes or control characters"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as error:
        return f"is not a valid URL ({error})"
    return parsed, _url_host(parsed)


def _url_host(parsed: httpx.URL) -> str:
    return parsed.raw_host.decode("ascii").lower().rstrip(".")


def _parsed_url_problem(parsed: httpx.URL) -> str | None:
    if parsed.scheme not in ALLOWED_SCHEMES:
        return "only http and https URLs are allowed"
    if parsed.userinfo:
        return "credentials in the URL are not allowed (use the webhook's secret instead)"
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        return f"port {parsed.port} is out of range"
    host = _url_host(parsed)
    if not host:
        return "a host is required"
    if "%" in host and ":" not in host:  # percent signs belong only in an IPv6 zone id
        return "is not a valid host name"
    return None


def host_problem(host: str, *, allow_private: bool) -> str | None:
    """The checks of a host that need no DNS: metadata and local names, and literal addresses.
    ``host``: lower case, without a trailing dot or IPv6 brackets."""
    host = host.lower().rstrip(".")
    if host in METADATA_HOSTNAMES:
        return f"cloud metadata addresses are not allowed ({host})"
    literal = literal_address(host)
    if literal is not None:
        return address_problem(literal, allow_private=allow_private)
    if not allow_private and (host in LOCAL_HOSTNAMES or host.endswith(".localhost")):
        return f"{PRIVATE_REFUSED}: {host}"
    return None


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why a request to ``url`` must not be made, judged without DNS, or None."""
    split = split_url(url)
    if isinstance(split, str):
        return split
    parsed, host = split
    return _parsed_url_problem(parsed) or host_problem(host, allow_private=allow_private)


# --- resolving and pinning ------------------------------------------------------------------------


class TargetRefused(httpcore.ConnectError):
    """A connection the rules refuse; ``str()`` says why. Raised before any connection is tried.
    httpx reports it as an `httpx.ConnectError` caused by this (see `refusal`)."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (IPv6 zone ids dropped)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_checked(
    host: str,
    port: int,
    *,
    allow_private: bool,
    resolve_timeout: float | None,
    resolver: Resolver = system_resolver,
) -> list[IPAddress]:
    """The addresses ``host`` stands for, in the resolver's order and without repeats, when every
    one of them passes the rules; `TargetRefused` otherwise (also when the name does not resolve
    within ``resolve_timeout`` seconds: refusing is the safe answer)."""
    host = host.lower().rstrip(".")
    problem = host_problem(host, allow_private=allow_private)
    if problem is not None:
        raise TargetRefused(problem)
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        async with asyncio.timeout(resolve_timeout):
            answers = await resolver(host, port)
    except (OSError, TimeoutError, UnicodeError) as error:
        raise TargetRefused(f"could not resolve {host}: {str(error) or 'timed out'}") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer.split("%", 1)[0])
        except ValueError:
            raise TargetRefused(f"{host} resolved to something that is not an IP address") from None
        problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            raise TargetRefused(f"{host} resolves to a refused address: {problem}")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"could not resolve {host}: no addresses")
    return addresses


async def target_problem(
    url: str, *, allow_private: bool, resolve_timeout: float = 5.0
) -> str | None:
    """Why a request to ``url`` must not be made now (the checks without DNS, then every
    address the name resolves to), or None. For diagnostics: `guarded_client` does the same
    for each connection it opens, and connects to the addresses it checked."""
    problem = url_problem(url, allow_private=allow_private)
    if problem is not None:
        return problem
    parsed, host = split_url(url)  # type: ignore[misc]  # a URL without a problem splits
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        await resolve_checked(
            host, port, allow_private=allow_private, resolve_timeout=resolve_timeout
        )
    except TargetRefused as refused:
        return str(refused)
    return None


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connections, opened only to addresses that pass the rules: the name is
    resolved once per connection and the socket connects to one of the addresses checked."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_checked(
            host,
            port,
            allow_private=self.allow_private,
            resolve_timeout=timeout,
            resolver=self.resolver,
        )
        last_error: Exception | None = None
        for address in addresses:  # in the resolver's order, as a plain connect would
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's CA bundle), built once and shared."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with every request's URL checked and its connections opened by
    `GuardedNetworkBackend`. Never through a proxy: a proxy would connect elsewhere than the
    checks allowed."""

    def __init__(
        self,
        *,
        allow_private: bool,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(),
        resolver: Resolver = system_resolver,
    ) -> None:
        if verify is True:
            # Loading the CA bundle costs tens of milliseconds: once per process, not per client.
            verify = default_ssl_context()
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self.allow_private = allow_private
        self.backend = GuardedNetworkBackend(allow_private=allow_private, resolver=resolver)
        # httpx has no public way to give its pool a network backend; the pool is rebuilt as
        # httpx builds it (no proxy, HTTP/1.1), with ours. httpx is pinned below 1.0.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify
            if isinstance(verify, ssl.SSLContext)
            else httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        problem = _parsed_url_problem(request.url)
        if problem is not None:
            raise httpx.ConnectError(f"refused: {problem}", request=request) from TargetRefused(
                problem
            )
        return await super().handle_async_request(request)


def guarded_client(
    *,
    allow_private: bool,
    timeout: float,
    max_keepalive_connections: int = 20,
    follow_redirects: bool = False,
    verify: ssl.SSLContext | bool = True,
    resolver: Resolver = system_resolver,
) -> httpx.AsyncClient:
    """An httpx client for user-chosen URLs: every connection checked and pinned (see the module
    docstring), no proxies from the environment, no redirects unless asked for."""
    limits = httpx.Limits(
        # No cap on connections: callers bound their requests in flight themselves, and a pool
        # slot lost to a cancelled request must not make later ones wait.
        max_connections=None,
        max_keepalive_connections=max_keepalive_connections,
    )
    return httpx.AsyncClient(
        transport=GuardedTransport(
            allow_private=allow_private, verify=verify, limits=limits, resolver=resolver
        ),
        follow_redirects=follow_redirects,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
    )


def refusal(error: BaseException) -> str | None:
    """Why the rules refused the request that raised ``error``, or None if they did not."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, TargetRefused):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None
