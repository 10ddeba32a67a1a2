"""The `bookable` command: serve, migrate, create admins and keys, seed demo data."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from bookable import __version__
from bookable.dispatch_process import DispatcherPlace, dispatcher_place, usable_cpus
from bookable.settings import Settings, get_settings

app = typer.Typer(
    help="Bookable: a self-hosted scheduling server compatible with Cal.com API v1.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
admin_app = typer.Typer(help="System-wide admin users.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
encryption_app = typer.Typer(help="The key that encrypts credentials.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(keys_app, name="keys")
app.add_typer(encryption_app, name="encryption")

# Human output goes to stderr so that a key printed on stdout is easy for scripts to take.
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
# uvicorn's app factory for `serve` (bookable.serving: the app, then its start-up heap frozen).
SERVED_APP = "bookable.serving:create_served_app"


def _run(make: Callable[[Settings], Awaitable[T]]) -> T:
    return asyncio.run(make(get_settings()))


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code=1)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"bookable {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Bookable: a self-hosted scheduling server compatible with Cal.com API v1."""


@contextmanager
def _database(url: str) -> Iterator[None]:
    """A database that cannot be reached or opened ends the command with one line naming the
    URL (password masked) and the fix, and exit code 1; any other error keeps its traceback."""
    from bookable.core.startup_checks import explain_database_error

    try:
        yield
    except Exception as error:
        message = explain_database_error(url, error)
        if message is None:
            raise
        raise _fail(message) from None


def _migrate(url: str, log: logging.Logger | None = None) -> int:
    """Apply pending migrations, one line per migration applied (none on a warm start; through
    ``log`` when given, for JSON logs); returns how many were applied."""
    from bookable.core.startup_checks import check_sqlite_path

    with _database(url):
        problem = check_sqlite_path(url)
        if problem is not None:
            raise _fail(problem)
        # Imported here, after the cheap checks: it loads every model.
        from bookable.migrations.runner import upgrade

        applied = upgrade(url)
    for migration in applied:
        if log is not None:
            log.info("%s", migration)
        else:
            err.print(str(migration), markup=False, highlight=False)
    return len(applied)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations, printing each one."""
    if _migrate(get_settings().database_url):
        err.print("[green]database is up to date[/green]")
    else:
        err.print("database is already up to date")


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="Email of the new admin.")],
    username: Annotated[str, typer.Option(help="Username of the new admin.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    time_zone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC",
) -> None:
    """Create a system-wide admin (role ADMIN); prints a new API key as the last line."""
    settings = get_settings()
    _migrate(settings.database_url)
    from bookable.operations import OperationError, create_user_with_key

    try:
        with _database(settings.database_url):
            _user, key = _run(
                lambda s: create_user_with_key(
                    s, email=email, username=username, name=name, time_zone=time_zone, admin=True
                )
            )
    except OperationError as error:
        raise _fail(str(error)) from None
    err.print(f"[green]admin {username} created[/green]; API key (shown once):")
    typer.echo(key)


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option(help="Email or username of the key's owner.")],
    note: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="Days until the key expires (default: never).")
    ] = None,
) -> None:
    """Create an API key for a user; prints it as the last line."""
    settings = get_settings()
    _migrate(settings.database_url)
    from bookable.operations import OperationError, create_key_for

    expires_in = timedelta(days=expires_in_days) if expires_in_days else None
    try:
        with _database(settings.database_url):
            key = _run(lambda s: create_key_for(s, user, note=note, expires_in=expires_in))
    except OperationError as error:
        raise _fail(str(error)) from None
    err.print("API key (shown once):")
    typer.echo(key)


@encryption_app.command("rotate")
def encryption_rotate() -> None:
    """Re-encrypt every stored credential with the first BOOKABLE_ENCRYPTION_KEY; then the
    older keys can be removed from the setting."""
    settings = get_settings()
    _migrate(settings.database_url)
    from bookable.operations import OperationError, rotate_credential_keys

    try:
        with _database(settings.database_url):
            count = _run(rotate_credential_keys)
    except OperationError as error:
        raise _fail(str(error)) from None
    err.print(f"[green]{count} credential(s) re-encrypted with the first key[/green]")


@app.command("demo")
def demo() -> None:
    """Seed the demo user (once) and print a new API key for it as the last line."""
    settings = get_settings()
    _migrate(settings.database_url)
    from bookable.operations import seed_demo

    with _database(settings.database_url):
        key = _run(seed_demo)
    typer.echo(key)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 3002,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    demo: Annotated[bool, typer.Option("--demo", help="Seed demo data and print a key.")] = False,
) -> None:
    """Apply pending migrations, then serve the API under /v1."""
    from bookable.core.db import is_sqlite
    from bookable.core.startup_checks import check_port, check_redis

    settings = get_settings()
    # Before anything changes (migrations, demo data): a busy port or an unreachable Redis
    # would only surface after them, or as an error on every request.
    problem = check_port(host, port) or (
        check_redis(settings.redis_url) if settings.redis_url else None
    )
    if problem is not None:
        raise _fail(problem)
    place = dispatcher_place(
        settings.webhook_dispatcher,
        cpus=usable_cpus(),
        sqlite=is_sqlite(settings.database_url),
    )
    # Before anything imports prometheus_client: it picks its multi-process mode at import,
    # and the workers (and the dispatcher process) inherit the variable.
    own_metrics_dir = _metrics_dir(workers + (place == "process"), settings.metrics == "on")
    try:
        _serve(settings, host, port, workers, demo, place)
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


def _metrics_dir(processes: int, metrics: bool) -> str | None:
    """With metrics, several processes and no PROMETHEUS_MULTIPROC_DIR given: a fresh, empty
    directory of our own, returned to be removed when serve ends. A directory given is used as
    it is (the operator empties it between runs; a `bookable worker` may share it)."""
    if _given_metrics_dir() or not metrics or processes == 1:
        return None
    directory = tempfile.mkdtemp(prefix="bookable-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def _given_metrics_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, made if missing: the library writes into it, never makes it."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
    return given or None


def _serve(
    settings: Settings, host: str, port: int, workers: int, demo: bool, place: DispatcherPlace
) -> None:
    import logging.config

    from bookable.core.logging import install_redaction, json_log_config

    json_logs = settings.log_format == "json"
    if json_logs:
        # From the start: the notes below and the migrations' lines are JSON lines too.
        install_redaction(settings.api_key_prefix)
        logging.config.dictConfig(json_log_config(settings.log_level))
    log = logging.getLogger("bookable.serve")

    def note(text: str) -> None:
        if json_logs:
            log.warning("%s", text)
        else:
            err.print(f"[yellow]note:[/yellow] {text}")

    _migrate(settings.database_url, log if json_logs else None)
    import uvicorn

    from bookable.core.db import is_sqlite

    if demo:
        from bookable.operations import seed_demo

        with _database(settings.database_url):
            key = _run(seed_demo)
        base = f"http://{'127.0.0.1' if host in {'0.0.0.0', '::'} else host}:{port}"
        if json_logs:
            log.info("demo user ready; its API key (new on every start) is on stdout")
            typer.echo(key)
        else:
            err.print("[bold]Demo user ready.[/bold] API key (new on every start):")
            typer.echo(key)
            err.print(f'Try: curl "{base}/v1/me?apiKey={key}"', soft_wrap=True)
            err.print(f"Docs: {base}/v1/docs")
    if workers > 1 and not settings.redis_url:
        # Without Redis, processes cannot tell each other that a key was revoked, so none of
        # them may remember verified keys; rate limits are then counted per process.
        os.environ["BOOKABLE_AUTH_CACHE_SECONDS"] = "0"
        note(
            "several workers without BOOKABLE_REDIS_URL: the key cache is off and each process "
            "counts its own rate limit."
        )
    if workers > 1 and is_sqlite(settings.database_url):
        note("several workers share one SQLite file; writes queue.")
    options = {
        "factory": True,
        "host": host,
        "port": port,
        "log_level": settings.log_level,
        "proxy_headers": True,
        "server_header": False,
        # Requests in flight at SIGTERM get this long, then are cancelled.
        "timeout_graceful_shutdown": settings.shutdown_timeout,
    }
    if json_logs:
        # Every line through our formatter, and our access line instead of uvicorn's.
        options |= {"log_config": json_log_config(settings.log_level), "access_log": False}
    with _dispatcher_process(place):
        if workers > 1:
            # uvicorn's supervisor passes SIGTERM on to each worker process, which stops the
            # same way but without BOOKABLE_SHUTDOWN_DELAY (the signal never reaches our
            # server class).
            uvicorn.run(SERVED_APP, workers=workers, **options)  # type: ignore[arg-type]
            return
        from bookable.serving import serve as serve_gracefully

        serve_gracefully(
            uvicorn.Config(SERVED_APP, **options),  # type: ignore[arg-type]
            shutdown_delay=settings.shutdown_delay,
        )


@contextmanager
def _dispatcher_process(place: DispatcherPlace) -> Iterator[None]:
    """With ``place`` "process": the outbox dispatchers in a child process for as long as the
    block runs, the app's own off (bookable.dispatch_process)."""
    if place != "process":
        yield
        return
    from bookable.dispatch_process import DispatcherProcess, set_current

    # Read by the app of every server process (uvicorn builds it later, or spawns workers);
    # this process's settings, cached, are read again.
    os.environ["BOOKABLE_WEBHOOK_DISPATCHER"] = "off"
    get_settings.cache_clear()
    child = DispatcherProcess(
        [sys.executable, "-m", "bookable.cli", "worker", "--serve-child"],
        stdout=sys.stderr.fileno(),  # serve's stdout carries the demo key alone
    )
    child.start()
    set_current(child)
    try:
        yield
    finally:
        set_current(None)
        child.stop()


@app.command("worker")
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Deliveries in flight at once (default: the setting)."),
    ] = None,
    serve_child: Annotated[
        bool,
        # `bookable serve`'s own dispatcher process (bookable.dispatch_process): stdin is its
        # pipe, the migrations are serve's. Not for people to run.
        typer.Option("--serve-child", hidden=True),
    ] = False,
) -> None:
    """Deliver webhooks from the outbox until stopped (SIGTERM/SIGINT). Run several against
    PostgreSQL to share the work; set BOOKABLE_WEBHOOK_DISPATCHER=off on `serve` to leave
    delivery to workers alone."""
    if serve_child:
        from bookable.dispatch_process import die_with_parent

        die_with_parent()
    import logging.config

    from bookable.core.logging import install_redaction, json_log_config

    settings = get_settings()
    _given_metrics_dir()  # shared with serve on the same host: see README, Metrics
    if concurrency is not None:
        settings = settings.model_copy(update={"webhook_concurrency": concurrency})
    install_redaction(settings.api_key_prefix)
    json_logs = settings.log_format == "json"
    if json_logs:
        logging.config.dictConfig(json_log_config("info"))
    if not serve_child:
        logger = logging.getLogger("bookable.worker") if json_logs else None
        _migrate(settings.database_url, logger)
    if not json_logs:
        # After migrating: Alembic's own INFO lines would make every warm start noisy.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from bookable.workers import run_worker

    asyncio.run(run_worker(settings, wake_fd=sys.stdin.fileno() if serve_child else None))


if __name__ == "__main__":
    app()
