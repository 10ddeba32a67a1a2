"""The `bookable` command: serve, migrate, create admins and keys, seed demo data."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from rich.console import Console

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


def _run(make: Callable[[Settings], Awaitable[T]]) -> T:
    return asyncio.run(make(get_settings()))


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations."""
    from bookable.migrations.runner import upgrade

    upgrade(get_settings().database_url)
    err.print("[green]database is up to date[/green]")


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="Email of the new admin.")],
    username: Annotated[str, typer.Option(help="Username of the new admin.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    time_zone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC",
) -> None:
    """Create a system-wide admin (role ADMIN); prints a new API key as the last line."""
    from bookable.migrations.runner import upgrade
    from bookable.operations import OperationError, create_user_with_key

    settings = get_settings()
    upgrade(settings.database_url)
    try:
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
    from bookable.migrations.runner import upgrade
    from bookable.operations import OperationError, create_key_for

    settings = get_settings()
    upgrade(settings.database_url)
    expires_in = timedelta(days=expires_in_days) if expires_in_days else None
    try:
        key = _run(lambda s: create_key_for(s, user, note=note, expires_in=expires_in))
    except OperationError as error:
        raise _fail(str(error)) from None
    err.print("API key (shown once):")
    typer.echo(key)


@encryption_app.command("rotate")
def encryption_rotate() -> None:
    """Re-encrypt every stored credential with the first BOOKABLE_ENCRYPTION_KEY; then the
    older keys can be removed from the setting."""
    from bookable.migrations.runner import upgrade
    from bookable.operations import OperationError, rotate_credential_keys

    settings = get_settings()
    upgrade(settings.database_url)
    try:
        count = _run(rotate_credential_keys)
    except OperationError as error:
        raise _fail(str(error)) from None
    err.print(f"[green]{count} credential(s) re-encrypted with the first key[/green]")


@app.command("demo")
def demo() -> None:
    """Seed the demo user (once) and print a new API key for it as the last line."""
    from bookable.migrations.runner import upgrade
    from bookable.operations import seed_demo

    settings = get_settings()
    upgrade(settings.database_url)
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
    settings = get_settings()
    # Before anything imports prometheus_client: it picks its multi-process mode at import,
    # and the workers inherit the variable.
    own_metrics_dir = _metrics_dir(workers, settings.metrics == "on")
    try:
        _serve(settings, host, port, workers, demo)
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


def _metrics_dir(workers: int, metrics: bool) -> str | None:
    """With metrics, several workers and no PROMETHEUS_MULTIPROC_DIR given: a fresh, empty
    directory of our own, returned to be removed when serve ends. A directory given is used as
    it is (the operator empties it between runs; a `bookable worker` may share it)."""
    if _given_metrics_dir() or not metrics or workers == 1:
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


def _serve(settings: Settings, host: str, port: int, workers: int, demo: bool) -> None:
    import logging
    import logging.config

    import uvicorn

    from bookable.core.db import is_sqlite
    from bookable.core.logging import install_redaction, json_log_config
    from bookable.migrations.runner import upgrade

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

    upgrade(settings.database_url)
    if demo:
        from bookable.operations import seed_demo

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
    uvicorn.run(
        "bookable.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        # JSON: every line through our formatter, and our access line instead of uvicorn's.
        **(
            {"log_config": json_log_config(settings.log_level), "access_log": False}
            if json_logs
            else {}
        ),
        proxy_headers=True,
        server_header=False,
    )


@app.command("worker")
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Deliveries in flight at once (default: the setting)."),
    ] = None,
) -> None:
    """Deliver webhooks from the outbox until stopped (SIGTERM/SIGINT). Run several against
    PostgreSQL to share the work; set BOOKABLE_WEBHOOK_DISPATCHER=off on `serve` to leave
    delivery to workers alone."""
    import logging
    import logging.config

    from bookable.core.logging import install_redaction, json_log_config
    from bookable.migrations.runner import upgrade
    from bookable.workers import run_worker

    settings = get_settings()
    _given_metrics_dir()  # shared with serve on the same host: see README, Metrics
    if concurrency is not None:
        settings = settings.model_copy(update={"webhook_concurrency": concurrency})
    if settings.log_format == "json":
        logging.config.dictConfig(json_log_config("info"))
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    install_redaction(settings.api_key_prefix)
    upgrade(settings.database_url)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    app()
