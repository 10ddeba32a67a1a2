"""Fuzz a real `bookable serve` with schemathesis: Bookable's own OpenAPI document with every
check, and Cal.com's v1 document (the contract clients were written against) for server errors.

    python bench/fuzz.py                       # SQLite, 100 examples per operation, both specs
    python bench/fuzz.py --examples 10         # CI's bounded run
    python bench/fuzz.py --database-url postgresql://postgres@127.0.0.1:5432/fuzz

The server runs with rate limiting off (a fuzzer is not a client to slow down) and the webhook
dispatcher off: fuzzed webhooks carry fuzzed URLs, and nothing may be sent anywhere. Its API is
seeded with an admin, an ordinary user and a few objects of each, so generated ids sometimes hit
real rows. Exit status: 0 when schemathesis found nothing on every run, 1 otherwise; the figures
(operations, test cases, failures, seconds) are printed per run, and the server's log is checked
for tracebacks as well.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/http.py would shadow the
# standard library's http package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).resolve().parent))  # last: for _server, after the stdlib

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import httpx  # noqa: E402

from _server import BOOKABLE, serving  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CALCOM_SPEC = ROOT.parent / "shared" / "reference" / "calcom-api-v1.openapi.json"
BIN = Path(sys.executable).parent
SCHEMATHESIS = str(BIN / "schemathesis") if (BIN / "schemathesis").exists() else "schemathesis"
# The own-spec runs' settings: which operations may also answer 400 to schema-valid input (rules
# across fields), and no NUL from the generator. Each exception is explained in the file.
OWN_SPEC_CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"


def server_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKABLE_")}
    env.update(
        BOOKABLE_DATABASE_URL=database_url,
        BOOKABLE_RATE_LIMIT="0",
        BOOKABLE_WEBHOOK_DISPATCHER="off",
        BOOKABLE_WEBHOOK_ALLOW_PRIVATE_TARGETS="false",
        # Generated calendar URLs (POST /credentials ...) must never reach beyond this machine:
        # any other host is refused before it is looked up.
        BOOKABLE_CALENDAR_ALLOWED_HOSTS="127.0.0.1",
        BOOKABLE_CALENDAR_TIMEOUT="2",
        # Credential sync on (its routes answer 401 without the secret header instead of 501).
        BOOKABLE_CREDENTIAL_SYNC_SECRET="fuzz-sync-secret",
        BOOKABLE_CREDENTIAL_SYNC_ENCRYPTION_KEY="f" * 32,
        PYTHONUNBUFFERED="1",
    )
    return env


def cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [BOOKABLE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"bookable {' '.join(args)} failed:\n{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def seed(base: str, admin_key: str, user_key: str) -> None:
    """A few real objects, so that small generated ids sometimes find something."""
    with httpx.Client(base_url=base, timeout=30) as http:
        for key in (admin_key, user_key):
            auth = {"Authorization": f"Bearer {key}"}
            schedule = http.post(
                "/v1/schedules", json={"name": "Fuzz hours", "timeZone": "Europe/London"},
                headers=auth,
            )  # fmt: skip
            schedule.raise_for_status()
            event_type = http.post(
                "/v1/event-types",
                json={"title": "Fuzz call", "slug": f"fuzz-{key[-6:]}", "length": 30},
                headers=auth,
            )
            event_type.raise_for_status()
            event_type_id = event_type.json()["event_type"]["id"]
            hook = {"subscriberUrl": "https://hooks.example.com/fuzz", "eventTriggers": []}
            http.post("/v1/webhooks", json=hook, headers=auth).raise_for_status()
            slots = http.get(
                "/v1/slots",
                params={
                    "eventTypeId": event_type_id,
                    "startTime": "2027-01-04T00:00:00Z",
                    "endTime": "2027-01-09T00:00:00Z",
                },
                headers=auth,
            )
            slots.raise_for_status()
            starts = [s["time"] for day in slots.json()["slots"].values() for s in day]
            for start in starts[:2]:
                http.post(
                    "/v1/bookings",
                    json={
                        "eventTypeId": event_type_id,
                        "start": start,
                        "responses": {"name": "Fuzz Guest", "email": "guest@example.com"},
                        "timeZone": "Europe/London",
                        "language": "en",
                        "metadata": {},
                    },
                    headers=auth,
                ).raise_for_status()


@dataclass
class RunResult:
    name: str
    ok: bool
    seconds: float
    summary: str


def _summary(stdout: str) -> str:
    """The figures from schemathesis' closing summary: test cases, and each failure kind."""
    lines = [line.strip() for line in stdout.splitlines()]
    figures: list[str] = []
    for i, line in enumerate(lines):
        if line == "Test cases:" and i + 1 < len(lines):
            figures.insert(0, lines[i + 1])
        elif line.startswith("❌ ST"):
            figures.append(line.removeprefix("❌ "))
    return "; ".join(figures) or "(no summary)"


def run_schemathesis(
    name: str, location: str, args: list[str], report_dir: Path, log: Path, config: Path | None
) -> RunResult:
    report_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w") as out:
        code = subprocess.run(
            [
                SCHEMATHESIS,
                *(["--config-file", str(config)] if config else []),
                "--no-color",
                "run",
                location,
                *args,
                "--report-dir",
                str(report_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its crash cache goes into the run's own folder, never into the checkout.
            cwd=report_dir,
            check=False,
        ).returncode
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    return RunResult(name, code == 0, seconds, _summary(text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--examples", type=int, default=100, help="max examples per operation")
    parser.add_argument("--seed", type=int, default=None, help="schemathesis random seed")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--spec", choices=["own", "calcom", "both"], default="both")
    parser.add_argument("--out", type=Path, help="where logs and reports go (default: temp dir)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="bookable-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    database_url = args.database_url or f"sqlite:///{out / 'fuzz.db'}"
    env = server_env(database_url)
    cli(env, "db", "upgrade")
    stamp = str(int(time.time() * 1000))[-8:]
    admin_key = cli(
        env, "admin", "create", "--email", f"fuzz-admin-{stamp}@example.com",
        "--username", f"fuzz-admin-{stamp}",
    )  # fmt: skip
    user_key = cli(env, "demo")

    server_log = out / "server.log"
    with serving([BOOKABLE, "serve"], env, server_log, label="bookable serve") as server:
        base = server.base_url
        seed(base, admin_key, user_key)

        common = ["--max-examples", str(args.examples), "--workers", args.workers]
        common += ["--generation-database", "none"]
        if args.seed is not None:
            common += ["--seed", str(args.seed)]
        runs: list[RunResult] = []
        if args.spec in ("own", "both"):
            # The coverage phase (schemathesis' deterministic boundary and invalid inputs, most
            # of a run's time) runs once, with the admin's key: with the user's key it would send
            # the same inputs to the same validation code. The user's run keeps the examples,
            # fuzzing and stateful phases on every operation, so every route is still called
            # as an ordinary user (refusals, readable() scoping) with generated data.
            for who, key, phases in (
                ("admin", admin_key, []),
                ("user", user_key, ["--phases", "examples,fuzzing,stateful"]),
            ):
                runs.append(
                    run_schemathesis(
                        f"own spec, all checks, {who} key",
                        f"{base}/v1/openapi.json",
                        [*common, *phases, "--checks", "all", "-H", f"Authorization: Bearer {key}"],
                        out / f"own-{who}",
                        out / f"own-{who}.log",
                        OWN_SPEC_CONFIG,
                    )
                )
        auth = ["-H", f"Authorization: Bearer {admin_key}"]
        if args.spec in ("calcom", "both"):
            if CALCOM_SPEC.exists():
                runs.append(
                    run_schemathesis(
                        "Cal.com spec, server errors",
                        str(CALCOM_SPEC),
                        [*common, "--url", f"{base}/v1", "--checks", "not_a_server_error", *auth],
                        out / "calcom",
                        out / "calcom.log",
                        None,
                    )
                )
            else:
                print(f"skipped: Cal.com's spec is not at {CALCOM_SPEC}")

    tracebacks = server_log.read_text(errors="replace").count("Traceback (most recent call last)")
    engine = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    print(f"\nfuzz on {engine}, {args.examples} examples per operation (logs in {out})")
    for run in runs:
        verdict = "ok" if run.ok else "FAILED"
        print(f"  {verdict:6} {run.name}: {run.seconds:.0f} s; {run.summary}")
    print(f"  server tracebacks: {tracebacks}")
    failed = [run for run in runs if not run.ok]
    for run in failed:
        log = out / (
            "calcom.log" if run.name.startswith("Cal.com") else f"own-{run.name.split()[-2]}.log"
        )
        print(f"\n== {run.name}: the end of {log}")
        print("\n".join(log.read_text(errors="replace").splitlines()[-80:]))
    if not args.out and not failed and not tracebacks:
        shutil.rmtree(out, ignore_errors=True)
    summary = {"engine": engine, "examples": args.examples, "runs": [r.__dict__ for r in runs]}
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2)) if out.exists() else None
    return 0 if not failed and not tracebacks else 1


if __name__ == "__main__":
    raise SystemExit(main())
