"""Which subscriber URLs a webhook may point at (server-side request forgery protection).

Two checks share one set of address rules:

- `subscriber_url_problem`, when a webhook is created or edited: the URL's form, and the host
  when it is an IP literal (in any form the system resolver would read as one, such as
  ``2852039166``) or a well-known cloud metadata name. Other names are not resolved: the
  server may have no DNS at that moment, and what a name points at can change anyway.
- `delivery_target_problem`, right before each delivery: the same, plus every address the name
  resolves to now (a name that pointed at a public address when the hook was created may point
  at the metadata service later: DNS rebinding).

The rules: link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata endpoints are
always refused; other non-public addresses (loopback, private networks, carrier-grade NAT, ...)
only when ``allow_private`` is False. Self-hosted automations (n8n, Node-RED) usually live on
the private network, hence the setting's default of allowing them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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

# IPv6 forms that carry an IPv4 address a connection really goes to.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

PRIVATE_REFUSED = (
    "private, loopback and other non-public addresses are not allowed on this server "
    "(BOOKABLE_WEBHOOK_ALLOW_PRIVATE_TARGETS is off)"
)


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a connection to ``address`` is refused, or None."""
    address = _embedded_ipv4(address)
    if address in METADATA_ADDRESSES:
        return f"cloud metadata addresses are not allowed ({address})"
    if address.is_link_local:
        return f"link-local addresses are not allowed ({address})"
    if address.is_multicast:
        return f"multicast addresses are not allowed ({address})"
    if not address.is_global and not allow_private:
        return f"{PRIVATE_REFUSED}: {address}"
    return None


def _literal_address(host: str) -> IPAddress | None:
    """The address ``host`` is, if the resolver would read it as a number rather than a name.

    Besides dotted quads, the C resolver reads ``2852039166``, ``0xa9fea9fe`` and ``169.254.43518``
    as IPv4 addresses (inet_aton); those forms are a classic way around naive checks.
    """
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # without an IPv6 zone id
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _split(url: str) -> tuple[httpx.URL, str] | str:
    """The parsed URL and its normalised host name, or why the URL is unusable.

    Parsed by httpx, the client that delivers: a check must read the URL exactly as the
    connection will (parsers that disagree on ``http://a\\@b/`` are a known way around checks).
    """
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        return "must be a URL without spaces, backslashes or control characters"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as error:
        return f"is not a valid URL ({error})"
    if parsed.scheme not in ALLOWED_SCHEMES:
        return "only http and https URLs are allowed"
    if parsed.userinfo:
        return "credentials in the URL are not allowed (use the webhook's secret instead)"
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        return f"port {parsed.port} is out of range"
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        return "a host is required"
    if "%" in host and ":" not in host:  # percent signs belong only in an IPv6 zone id
        return "is not a valid host name"
    return parsed, host


def _host_problem(host: str, *, allow_private: bool) -> str | None:
    """The checks that need no DNS: metadata and local names, and literal addresses."""
    if host in METADATA_HOSTNAMES:
        return f"cloud metadata addresses are not allowed ({host})"
    literal = _literal_address(host)
    if literal is not None:
        return address_problem(literal, allow_private=allow_private)
    if not allow_private and (host in LOCAL_HOSTNAMES or host.endswith(".localhost")):
        return f"{PRIVATE_REFUSED}: {host}"
    return None


def subscriber_url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a webhook's subscriber URL, or None when it can.

    Checked when a webhook is created or edited; no DNS lookup (see the module docstring).
    """
    split = _split(url)
    if isinstance(split, str):
        return split
    _parts, host = split
    return _host_problem(host, allow_private=allow_private)


async def delivery_target_problem(
    url: str, *, allow_private: bool, resolve_timeout: float = 5.0
) -> str | None:
    """Why a delivery to ``url`` must not be made now, or None when it may.

    The checks of `subscriber_url_problem`, then the host name is resolved and every address
    it resolves to must pass the same rules. A name that does not resolve (or not within
    ``resolve_timeout`` seconds) is a problem too: the delivery could not be made, and refusing
    is the safe answer; callers should count it as a failed attempt and retry later as usual.
    """
    split = _split(url)
    if isinstance(split, str):
        return split
    parsed, host = split
    problem = _host_problem(host, allow_private=allow_private)
    if problem is not None or _literal_address(host) is not None:
        return problem
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(resolve_timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as error:
        return f"could not resolve {host}: {str(error) or 'timed out'}"
    for _family, _type, _proto, _name, sockaddr in infos:
        try:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        except ValueError:
            return f"{host} resolved to something that is not an IP address"
        problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            return f"{host} resolves to a refused address: {problem}"
    if not infos:
        return f"could not resolve {host}: no addresses"
    return None
