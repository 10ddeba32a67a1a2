"""The deployment files say only what the code can do.

Dockerfile, compose.yaml and the README's "Deploying" section run `bookable ...` commands and set
BOOKABLE_* variables; a renamed command, option or setting must fail here, not in production.
Commands are checked against the Typer app's click tree, variables against `Settings`.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from packaging.specifiers import SpecifierSet

from bookable.cli import app
from bookable.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
README = ROOT / "README.md"

SETTING_NAMES = {f"BOOKABLE_{name.upper()}" for name in Settings.model_fields}
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}`: compose's and the shell's interpolation.
INTERPOLATED = re.compile(r"\$\{?(BOOKABLE_[A-Z0-9_]+)")
VARIABLE = re.compile(r"\bBOOKABLE_[A-Z0-9_]+\b")
# Where shell text runs the CLI: `bookable db upgrade`, `.venv/bin/bookable serve`, and not
# `User=bookable`, `chown bookable:bookable` or `/opt/bookable/` (a word must follow), and in
# `docker exec bookable bookable serve` the second one.
INVOCATION = re.compile(r"(?:^|(?<=[\s\"'\[]))(?:\S*/)?bookable[ \t]+(?=[a-z])(?!bookable\b)")
SHELL_STOP = {"|", "||", "&&", ";", ">", ">>", "2>", "&", "\\", "#"}


# --- what the CLI accepts ---


def cli_problem(argv: list[str]) -> str | None:
    """Why `bookable <argv>` would be refused by the CLI, or None when it is a real command with
    real options (values are not judged: they are placeholders in the docs)."""
    # Typer may bring its own copy of click: tell groups and options by their shape, not class.
    command: Any = typer.main.get_command(app)
    path = ["bookable"]
    words = list(argv)
    while hasattr(command, "commands"):
        if not words or words[0].startswith("-"):
            return f"`{' '.join(path)}` needs a subcommand"
        name = words.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            return f"`{' '.join(path)}` has no command {name!r} (has: {sorted(command.commands)})"
        command, path = sub, [*path, name]
    options: dict[str, Any] = {}
    for param in command.params:
        if param.param_type_name == "option":
            for opt in (*param.opts, *param.secondary_opts):
                options[opt] = param
    while words:
        word = words.pop(0)
        if not word.startswith("-"):
            return f"`{' '.join(path)}` takes no argument {word!r}"
        name, has_value, _ = word.partition("=")
        option = options.get(name)
        if option is None and name != "--help":
            return f"`{' '.join(path)}` has no option {name!r} (has: {sorted(options)})"
        if option is not None and not option.is_flag and not has_value:
            if not words:
                return f"`{' '.join(path)}` option {name} needs a value"
            words.pop(0)
    return None


def shell_invocations(text: str) -> list[list[str]]:
    """The argument lists of every `bookable ...` run in lines of shell text."""
    found = []
    for line in text.splitlines():
        for match in INVOCATION.finditer(line):
            try:
                words = shlex.split(line[match.end() :], comments=True)
            except ValueError:  # an unbalanced quote: read up to it
                words = line[match.end() :].split()
            argv = []
            for word in words:
                if word in SHELL_STOP or word.startswith(("#", ">", "2>")):
                    break
                argv.append(word)
            found.append(argv)
    return found


# --- the Dockerfile ---


@dataclass
class Dockerfile:
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments), continuation lines joined
    comments: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        instructions, comments, pending = [], [], ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line.startswith("#"):
                comments.append(line.lstrip("# "))
                continue
            if not line and not pending:
                continue
            pending = f"{pending} {line}".strip()
            if pending.endswith("\\"):
                pending = pending[:-1]
                continue
            keyword, _, rest = pending.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            pending = ""
        return cls(instructions, comments)

    def all(self, keyword: str) -> list[str]:
        return [rest for name, rest in self.instructions if name == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"the Dockerfile has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values = {}
        for rest in self.all("ENV"):
            for word in shlex.split(rest):
                name, _, value = word.partition("=")
                values[name] = value
        return values

    def args(self) -> dict[str, str]:
        return dict(rest.partition("=")[::2] for rest in self.all("ARG"))


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.read(DOCKERFILE)


def test_dockerfile_serves_on_every_interface_as_a_real_command(dockerfile):
    command = exec_form(dockerfile.last("CMD"))
    assert command[:2] == ["bookable", "serve"]
    assert cli_problem(command[1:]) is None, cli_problem(command[1:])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert not dockerfile.all("ENTRYPOINT"), (
        "an ENTRYPOINT would change `docker run IMAGE bookable`"
    )
    assert dockerfile.last("EXPOSE").split() == ["3002"]


def test_dockerfile_every_bookable_command_is_real(dockerfile):
    runs = [exec_form(dockerfile.last("CMD"))[1:]]
    for rest in dockerfile.all("RUN"):
        runs += shell_invocations(rest)
    runs += shell_invocations("\n".join(dockerfile.comments))
    for argv in runs:
        assert cli_problem(argv) is None, cli_problem(argv)


def test_dockerfile_sets_only_real_settings_and_keeps_data_in_the_volume(dockerfile):
    env = dockerfile.env()
    bookable = {name: value for name, value in env.items() if name.startswith("BOOKABLE_")}
    assert set(bookable) <= SETTING_NAMES, set(bookable) - SETTING_NAMES
    volume = (
        exec_form(dockerfile.last("VOLUME"))
        if "[" in dockerfile.last("VOLUME")
        else (dockerfile.last("VOLUME").split())
    )
    # Everything a single container writes (the SQLite file, the generated key, .eml files).
    written = {
        "BOOKABLE_DATABASE_URL": bookable["BOOKABLE_DATABASE_URL"].removeprefix("sqlite:///"),
        "BOOKABLE_ENCRYPTION_KEY_FILE": bookable["BOOKABLE_ENCRYPTION_KEY_FILE"],
        "BOOKABLE_EMAIL_DIR": bookable["BOOKABLE_EMAIL_DIR"],
    }
    assert bookable["BOOKABLE_DATABASE_URL"].startswith("sqlite:///")
    for name, path in written.items():
        assert any(Path(path).is_relative_to(v) for v in volume), f"{name}={path} not in {volume}"
        # The settings read them as given.
        assert Settings(**{name.removeprefix("BOOKABLE_").lower(): bookable[name]})


def test_dockerfile_runs_as_a_user_and_checks_liveness(dockerfile):
    user = dockerfile.last("USER")
    assert user not in {"root", "0", "0:0"}
    # The user is made in the image, and owns the volume (a fresh named volume copies that).
    assert any("useradd" in rest and user in rest for rest in dockerfile.all("RUN"))
    health = dockerfile.last("HEALTHCHECK")
    assert "CMD" in health
    check = exec_form(health.split("CMD", 1)[1].strip())
    assert "/healthz" in " ".join(check) and ":3002/" in " ".join(check)


def test_dockerfile_python_is_one_the_project_supports(dockerfile):
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    bases = [rest.split()[0] for rest in dockerfile.all("FROM")]
    args = dockerfile.args()
    images = {re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base) for base in bases}
    assert images, "no FROM"
    for image in images:
        match = re.fullmatch(r"python:(\d+\.\d+)[\w.-]*-slim[\w.-]*", image)
        assert match, f"{image} is not a slim Python image"
        assert SpecifierSet(requires).contains(match.group(1)), (image, requires)


def test_dockerignore_keeps_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "*.db", "*.key", "mail", ".env"} <= ignored


# --- compose.yaml ---


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # safe_load resolves the `<<: *anchor` merges the file uses, as compose does.
    return yaml.safe_load(COMPOSE.read_text())


def service_command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {name: str(value) for name, value in env.items()}


def replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def bookable_services(compose: dict[str, Any], *argv: str) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service_command(service)[: len(argv) + 1] == ["bookable", *argv]
    }


def test_compose_every_bookable_command_is_real(compose):
    runs = []
    for name, service in compose["services"].items():
        for key in ("command", "entrypoint"):
            value = service.get(key)
            words = shlex.split(value) if isinstance(value, str) else list(value or [])
            if words[:1] == ["bookable"]:
                runs.append((name, words[1:]))
    assert runs
    # Commands in the file's comments, such as `docker compose run --rm api bookable ...`.
    comments = "\n".join(line for line in COMPOSE.read_text().splitlines() if "#" in line)
    runs += [("comment", argv) for argv in shell_invocations(comments)]
    for where, argv in runs:
        assert cli_problem(argv) is None, f"{where}: {cli_problem(argv)}"


def test_compose_sets_only_real_settings(compose):
    names = set()
    for service in compose["services"].values():
        names |= {name for name in environment(service) if name.startswith("BOOKABLE_")}
    names |= set(INTERPOLATED.findall(COMPOSE.read_text()))
    assert names, "compose.yaml sets no setting"
    assert names <= SETTING_NAMES, names - SETTING_NAMES


def test_compose_has_postgres_with_a_healthcheck_and_redis(compose):
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["image"].startswith("redis:")


def test_compose_migrates_once_before_anything_else_starts(compose):
    migrate = bookable_services(compose, "db", "upgrade")
    assert list(migrate) == ["migrate"], migrate
    service = migrate["migrate"]
    assert replicas(service) == 1
    assert service.get("restart", "no") == "no", "a one-shot job must not be restarted"
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, other in compose["services"].items():
        if name != "migrate" and service_command(other)[:1] == ["bookable"]:
            assert other["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            ), name


def test_compose_runs_two_api_replicas_with_the_dispatcher_off(compose):
    apis = bookable_services(compose, "serve")
    assert "api" in apis, "the README says `docker compose run --rm api ...`"
    assert sum(replicas(service) for service in apis.values()) == 2
    for name, service in apis.items():
        command = service_command(service)
        assert command[command.index("--host") + 1] == "0.0.0.0", name
        env = environment(service)
        assert env["BOOKABLE_WEBHOOK_DISPATCHER"] == "off", name
        assert env["BOOKABLE_REDIS_URL"].startswith("redis://redis:"), name
        assert "ports" not in service, f"{name}: reached through the proxy only"


def test_compose_runs_one_worker(compose):
    workers = bookable_services(compose, "worker")
    assert len(workers) == 1 and replicas(next(iter(workers.values()))) == 1, workers


def test_compose_every_process_shares_database_and_encryption_key(compose):
    envs = {
        name: environment(service)
        for name, service in compose["services"].items()
        if service_command(service)[:1] == ["bookable"]
    }
    for setting in ("BOOKABLE_DATABASE_URL", "BOOKABLE_ENCRYPTION_KEY"):
        values = {name: env.get(setting) for name, env in envs.items()}
        assert None not in values.values(), f"{setting} missing in {values}"
        assert len(set(values.values())) == 1, values
    assert envs["api"]["BOOKABLE_DATABASE_URL"].startswith("postgresql://")


def test_compose_publishes_one_way_in(compose):
    published = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published == {"proxy"}
    caddyfile = compose["configs"]["caddyfile"]["content"]
    assert re.search(r"dynamic a api 3002", caddyfile)


# --- the README ---


def deploying_code() -> str:
    text = README.read_text()
    start = text.index("\n## Deploying")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    blocks = re.findall(r"```[\w-]*\n(.*?)```", section, flags=re.S)
    assert blocks, "the Deploying section has no code"
    return "\n".join(blocks)


def test_readme_deploying_runs_real_commands_and_settings():
    code = deploying_code()
    runs = shell_invocations(code)
    assert any(argv[:1] == ["serve"] for argv in runs) and any(
        argv[:1] == ["worker"] for argv in runs
    )
    for argv in runs:
        assert cli_problem(argv) is None, cli_problem(argv)
    names = set(VARIABLE.findall(code))
    assert names <= SETTING_NAMES, names - SETTING_NAMES


# --- the checker itself ---


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["serve", "--host", "0.0.0.0"], None),
        (["db", "upgrade"], None),
        (["admin", "create", "--email=a@b.c", "--username", "a"], None),
        (["db", "migrate"], "no command 'migrate'"),
        (["serve", "--bind", "0.0.0.0"], "no option '--bind'"),
        (["serve", "--port"], "needs a value"),
        (["db"], "needs a subcommand"),
        (["worker", "extra"], "takes no argument"),
    ],
)
def test_cli_problem_tells_real_commands_from_drift(argv, problem):
    found = cli_problem(argv)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_shell_invocations_find_commands_and_nothing_else():
    text = (
        "ExecStart=/opt/bookable/.venv/bin/bookable serve --port 3002 # the API\n"
        "docker compose run --rm api bookable admin create --email e --username u | tail -n 1\n"
        "User=bookable\nchown bookable:bookable /data\npg_isready -U bookable -d bookable\n"
        "docker exec bookable bookable keys create --user ann\n"
    )
    assert shell_invocations(text) == [
        ["serve", "--port", "3002"],
        ["admin", "create", "--email", "e", "--username", "u"],
        ["keys", "create", "--user", "ann"],
    ]
