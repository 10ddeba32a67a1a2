"""What the CLI checks before it starts (database, port, Redis), explained in one line each.

Every message names the URL with its password masked and says what to do. A failure these
functions do not recognise is left alone (the caller re-raises it): an unknown error keeps its
traceback rather than a made-up explanation.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# PostgreSQL's SQLSTATE codes for the failures a newcomer meets first.
MISSING_DATABASE = "3D000"
LOGIN_REFUSED = {"28000", "28P01"}  # no such role / not allowed by pg_hba.conf; wrong password

REDIS_TIMEOUT = 5.0  # seconds to connect and answer PING at start


def masked_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) as ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unreadable URL>"
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = parts.query
    if any(name.lower() == "password" for name, _ in pairs):
        masked = [(n, "***" if n.lower() == "password" else v) for n, v in pairs]
        query = urlencode(masked, safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _causes(error: BaseException) -> list[BaseException]:
    """The error and everything it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    database = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
    ):
        return None
    return Path(database).expanduser().absolute()


def check_sqlite_path(url: str) -> str | None:
    """Why SQLite could not create or write the file of ``url``, or None if it can.

    Looked at before connecting: a failed aiosqlite connect leaves a thread that prints a
    traceback of its own once the event loop is gone."""
    path = _sqlite_file(url)
    if path is None:
        return None
    folder = path.parent
    # The database, its -wal and -shm files are created beside each other, so the folder must
    # be writable even when the file exists.
    if not folder.exists():
        return (
            f"cannot open the SQLite database {path}: folder {folder} does not exist; "
            f"create the folder (mkdir -p {folder}) or change BOOKABLE_DATABASE_URL"
        )
    if not folder.is_dir():
        return (
            f"cannot open the SQLite database {path}: {folder} is not a folder; "
            "change BOOKABLE_DATABASE_URL"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"cannot open the SQLite database {path}: folder {folder} is not writable; "
            "make it writable for this user or change BOOKABLE_DATABASE_URL"
        )
    if path.exists() and (path.is_dir() or not os.access(path, os.R_OK | os.W_OK)):
        kind = "a folder" if path.is_dir() else "not writable"
        return (
            f"cannot open the SQLite database {path}: it is {kind}; "
            "change its permissions or BOOKABLE_DATABASE_URL"
        )
    return None


def _server(url: str) -> tuple[str, int]:
    parsed = make_url(url)
    return parsed.host or "localhost", parsed.port or 5432


def explain_database_error(url: str, error: BaseException) -> str | None:
    """One line saying what went wrong with the database at ``url`` and how to fix it, or None
    when ``error`` is not a failure to reach or open the database."""
    shown = masked_url(url)
    for cause in _causes(error):
        if isinstance(cause, ArgumentError):
            # Not echoed: a string that does not parse may hold a password anywhere.
            return (
                "BOOKABLE_DATABASE_URL is not a database URL; "
                "use sqlite:///path/file.db or postgresql://user:password@host:5432/db"
            )
        if isinstance(cause, ValueError) and "database URL" in str(cause):
            return (
                f"BOOKABLE_DATABASE_URL is not usable ({shown}): {cause}; "
                "use sqlite:///path/file.db or postgresql://user:password@host:5432/db"
            )
        state = getattr(cause, "sqlstate", None)
        if state == MISSING_DATABASE:
            parsed = make_url(url)
            host, port = _server(url)
            user = f" -U {parsed.username}" if parsed.username else ""
            return (
                f'database "{parsed.database}" does not exist on {shown}; '
                f"create it with: createdb -h {host} -p {port}{user} {parsed.database}"
            )
        if state in LOGIN_REFUSED:
            reason = str(cause).splitlines()[0] if str(cause) else "login refused"
            return (
                f"PostgreSQL refused the login at {shown}: {reason}; "
                "check the user and password in BOOKABLE_DATABASE_URL"
            )
        if isinstance(cause, socket.gaierror):
            host, _port = _server(url)
            return (
                f'cannot connect to the database at {shown}: unknown host "{host}"; '
                "check the host name in BOOKABLE_DATABASE_URL"
            )
        if isinstance(cause, ConnectionRefusedError | TimeoutError) or (
            isinstance(cause, OSError)
            and cause.errno in {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED}
        ):
            host, port = _server(url)
            what = "connection refused" if isinstance(cause, ConnectionRefusedError) else cause
            what = "timed out" if isinstance(cause, TimeoutError) else what
            return (
                f"cannot connect to the database at {shown}: {what}; "
                f"is PostgreSQL running on {host}:{port}?"
            )
        if isinstance(cause, sqlite3.DatabaseError):
            path = _sqlite_file(url)
            found = check_sqlite_path(url)
            if found is not None:
                return found
            if "not a database" in str(cause):
                return (
                    f"{path} is not a SQLite database; point BOOKABLE_DATABASE_URL at another file"
                )
            if isinstance(cause, sqlite3.OperationalError) and (
                "unable to open" in str(cause) or "readonly" in str(cause)
            ):
                return (
                    f"cannot write the SQLite database {path}: {cause}; "
                    "check the permissions of the file and its folder"
                )
    return None


def check_port(host: str, port: int) -> str | None:
    """Why ``bookable serve`` could not listen on ``host``:``port``, or None if it can.

    Binds the way uvicorn's asyncio server will (every address the host resolves to,
    SO_REUSEADDR, IPv6 sockets v6-only) and releases the sockets at once: SO_REUSEADDR lets a
    port a stopped server left in TIME_WAIT pass, while a listening process still makes the bind
    fail. Another process may take the port in between; uvicorn then reports it itself."""
    try:
        addresses = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror:
        return (
            f'cannot listen on host "{host}": no such address on this machine; '
            "pass --host (e.g. 127.0.0.1 or 0.0.0.0)"
        )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(addresses):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this machine lacks (no IPv6): asyncio skips it as well
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return f"port {port} on {host} is in use; stop the other process or pass --port"
                if error.errno == errno.EACCES:
                    return (
                        f"port {port} on {host} needs more privileges (ports below 1024 do); "
                        "pass --port"
                    )
                if error.errno == errno.EADDRNOTAVAIL:
                    return (
                        f"cannot listen on {host}: no such address on this machine; "
                        "pass --host (e.g. 127.0.0.1 or 0.0.0.0)"
                    )
                return f"cannot listen on port {port} on {host}: {error.strerror}"
    finally:
        for sock in sockets:
            sock.close()
    return None


def check_redis(url: str, timeout: float = REDIS_TIMEOUT) -> str | None:
    """Why the Redis at ``url`` cannot be used (connect and PING), or None if it answers."""
    from redis import Redis
    from redis.exceptions import AuthenticationError, RedisError, ResponseError

    shown = masked_url(url)
    try:
        client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as error:
        return f"BOOKABLE_REDIS_URL is not a Redis URL ({shown}): {error}"
    host = client.connection_pool.connection_kwargs.get("host", "localhost")
    port = client.connection_pool.connection_kwargs.get("port", 6379)
    try:
        client.ping()
    except (AuthenticationError, ResponseError) as error:
        return (
            f"Redis refused {shown}: {error}; "
            "check the password (and database number) in BOOKABLE_REDIS_URL"
        )
    except RedisError as error:
        causes = _causes(error)
        if any(isinstance(cause, socket.gaierror) for cause in causes):
            reason = f'unknown host "{host}"'
        elif any(isinstance(cause, ConnectionRefusedError) for cause in causes):
            reason = "connection refused"
        else:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return (
            f"cannot connect to Redis at {shown} (BOOKABLE_REDIS_URL): {reason}; "
            f"is Redis running on {host}:{port}? (or unset BOOKABLE_REDIS_URL for one process)"
        )
    finally:
        client.close()
    return None
