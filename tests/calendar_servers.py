"""Real calendar servers for the tests: Radicale (CalDAV) as a subprocess, an ICS feed server,
a server that never answers and a TLS server with an untrusted certificate, all on loopback.

Radicale runs once per test session (per xdist worker); every test gets its own user
(`RadicaleServer.new_account`), so calendars of one test never show up in another's listing. A
test that stops the server (`stop()` / `start()`) should use `private_radicale`, a server of
its own, so other tests of the worker are not affected.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import httpx
import pytest
from icalendar import Calendar, Event
from lxml import etree


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# First matching section wins. "admin" may do anything (it creates the read-only calendars);
# a user has their principal and calendars, except those named "readonly-*", which they can
# only read.
RIGHTS = """\
[admin]
user: admin
collection: .*
permissions: RrWw

[root]
user: .+
collection:
permissions: R

[principal]
user: .+
collection: {user}
permissions: RW

[readonly]
user: .+
collection: {user}/readonly-[^/]*
permissions: r

[calendars]
user: .+
collection: {user}/[^/]+
permissions: rw
"""


@dataclass
class RadicaleAccount:
    server: RadicaleServer
    username: str
    password: str

    @property
    def url(self) -> str:
        """The URL a user would type: the server's root (discovery finds the rest)."""
        return self.server.url

    @property
    def principal_url(self) -> str:
        return f"{self.server.url}{self.username}/"

    def _request(self, method: str, url: str, body: str, content_type: str) -> httpx.Response:
        """One request of the user's calendar app: plain CalDAV over HTTP (tests only)."""
        response = httpx.request(
            method,
            url,
            content=body.encode(),
            headers={"Content-Type": f"{content_type}; charset=utf-8"},
            auth=(self.username, self.password),
            timeout=30,
        )
        assert response.status_code in (200, 201, 204), (method, url, response.text)
        return response

    def log_in(self) -> None:
        """Radicale creates a user's home at their first login: a PROPFIND of the root, as a
        calendar app's first request."""
        body = (
            '<?xml version="1.0"?><D:propfind xmlns:D="DAV:">'
            "<D:prop><D:current-user-principal/></D:prop></D:propfind>"
        )
        response = httpx.request(
            "PROPFIND", self.server.url, content=body.encode(), headers={"Depth": "0"},
            auth=(self.username, self.password), timeout=30,
        )  # fmt: skip
        assert response.status_code == 207, response.text

    def make_calendar(self, name: str, *, slug: str | None = None, owner: str | None = None) -> str:
        """Create a calendar in this user's home (as ``owner``'s client if given: "admin" makes
        read-only ones) and return its URL: MKCALENDAR with the display name (RFC 4791 5.3.1)."""
        slug = slug or f"{name.lower().replace(' ', '-')}-{secrets.token_hex(3)}"
        url = f"{self.principal_url}{slug}/"
        as_user = self if owner is None else self.server.account(owner)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
            f"<D:displayname>{escape(name)}</D:displayname>"
            '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
            "</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
        )
        as_user._request("MKCALENDAR", url, body, "application/xml")
        return url

    def make_read_only_calendar(self, name: str) -> str:
        slug = f"readonly-{secrets.token_hex(3)}"
        return self.make_calendar(name, slug=slug, owner="admin")

    def events(self, calendar_url: str) -> list[Event]:
        """Every VEVENT the calendar holds, as a CalDAV client reads them: a calendar-query
        REPORT for the calendar data of every object (RFC 4791 7.8)."""
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:prop><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/>'
            "</C:comp-filter></C:filter></C:calendar-query>"
        )
        response = httpx.request(
            "REPORT", calendar_url, content=body.encode(),
            headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
            auth=(self.username, self.password), timeout=30,
        )  # fmt: skip
        assert response.status_code == 207, response.text
        tree = etree.fromstring(response.content)
        found: list[Event] = []
        for data in tree.iter("{urn:ietf:params:xml:ns:caldav}calendar-data"):
            calendar = Calendar.from_ical(data.text or "")
            found.extend(c for c in calendar.walk("VEVENT") if isinstance(c, Event))
        return found

    def put_event(self, calendar_url: str, ics_text: str, *, as_admin: bool = False) -> str:
        """Save one calendar object (PUT ``<calendar>/<uid>.ics``, as calendar apps do) and
        return its URL."""
        account = self.server.account("admin") if as_admin else self
        match = re.search(r"^UID:(.+?)\r?$", ics_text, flags=re.MULTILINE)
        name = quote(match.group(1).strip(), safe="") if match else secrets.token_hex(8)
        url = f"{calendar_url}{name}.ics"
        account._request("PUT", url, ics_text, "text/calendar")
        return url


@dataclass
class RadicaleServer:
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def htpasswd(self) -> Path:
        return self.root / "users"

    def write_config(self) -> Path:
        (self.root / "collections").mkdir(parents=True, exist_ok=True)
        (self.root / "rights").write_text(RIGHTS)
        self.htpasswd.touch()
        config = self.root / "config"
        config.write_text(
            f"""\
[server]
hosts = 127.0.0.1:{self.port}

[auth]
type = htpasswd
htpasswd_filename = {self.htpasswd}
htpasswd_encryption = plain
delay = 0

[rights]
type = from_file
file = {self.root / "rights"}

[storage]
filesystem_folder = {self.root / "collections"}

[logging]
level = warning
"""
        )
        return config

    def add_user(self, username: str, password: str) -> None:
        self.passwords[username] = password
        with self.htpasswd.open("a") as users:
            users.write(f"{username}:{password}\n")

    def set_password(self, username: str, password: str) -> None:
        """Change a user's password (Radicale reads the file at every login)."""
        self.passwords[username] = password
        self.htpasswd.write_text("".join(f"{u}:{p}\n" for u, p in self.passwords.items()))

    def account(self, username: str) -> RadicaleAccount:
        return RadicaleAccount(self, username, self.passwords[username])

    def new_account(self) -> RadicaleAccount:
        """A fresh user with a random password (and an empty calendar home)."""
        username = f"user{secrets.token_hex(4)}"
        self.add_user(username, secrets.token_urlsafe(12))
        account = self.account(username)
        account.log_in()
        return account

    def start(self) -> None:
        config = self.write_config()
        if "admin" not in self.passwords:
            self.add_user("admin", secrets.token_urlsafe(12))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Radicale exited with {self.process.returncode}")
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("Radicale did not start within 20 seconds")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextmanager
def running_radicale(root: Path) -> Iterator[RadicaleServer]:
    server = RadicaleServer(root=root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def radicale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    with running_radicale(tmp_path_factory.mktemp("radicale")) as server:
        yield server


@pytest.fixture
def radicale(radicale_server: RadicaleServer) -> RadicaleAccount:
    """A new Radicale user (URL, username, password) on the session's server."""
    if radicale_server.process is None:  # a test stopped it and failed before restarting
        radicale_server.start()
    return radicale_server.new_account()


@pytest.fixture
def private_radicale(tmp_path: Path) -> Iterator[RadicaleServer]:
    """A Radicale of this test's own, which it may stop and start."""
    with running_radicale(tmp_path / "radicale") as server:
        yield server


# --- ICS feeds --------------------------------------------------------------------------------


@dataclass
class IcsServer:
    """Serves ``feeds[path]`` (ICS text) with a strong ETag; If-None-Match → 304."""

    port: int = 0
    feeds: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    send_etag: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_feed(self, path: str, text: str) -> str:
        with self.lock:
            self.feeds[path] = text
        return f"{self.url}{path}"

    def count(self, path: str | None = None, status: int | None = None) -> int:
        with self.lock:
            return sum(
                1
                for p, _, s in self.requests
                if (path is None or p == path) and (status is None or s == status)
            )


def _ics_handler(server: IcsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with server.lock:
                text = server.feeds.get(self.path)
            if text is None:
                status, body, headers = 404, b"not found", {}
            else:
                body = text.encode()
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                headers = {"Content-Type": "text/calendar; charset=utf-8"}
                if server.send_etag:
                    headers["ETag"] = etag
                if server.send_etag and self.headers.get("If-None-Match") == etag:
                    status, body = 304, b""
                else:
                    status = 200
            with server.lock:
                server.requests.append((self.path, dict(self.headers), status))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def serving_ics() -> Iterator[IcsServer]:
    state = IcsServer()
    httpd = _QuietServer(("127.0.0.1", 0), _ics_handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def ics_server() -> Iterator[IcsServer]:
    with serving_ics() as server:
        yield server


# --- misbehaving servers ----------------------------------------------------------------------


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: its URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
                accepted.append(connection)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


@contextmanager
def untrusted_tls_server(authority: Any = None) -> Iterator[str]:
    """An HTTPS server whose certificate comes from a CA nobody trusts (``authority``, a
    `trustme.CA`, when the test wants to trust it after all): its URL."""
    import trustme

    authority = authority or trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)

    class Handler(BaseHTTPRequestHandler):
        def do_PROPFIND(self) -> None:
            self.send_response(207)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PROPFIND

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = _QuietServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def plain_http_server(body: bytes = b"<html>hello</html>", status: int = 200) -> Iterator[str]:
    """A web server that is not CalDAV: every request gets ``status`` and an HTML page."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PROPFIND = do_REPORT = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
