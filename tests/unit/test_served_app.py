"""`bookable serve`'s app factory freezes the start-up heap out of the garbage collector's sight
(a full collection over it stopped the server for ~230 ms). In a child process: freezing is for
the life of a process, and this one runs other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import gc, json
from bookable.serving import create_served_app
before = gc.get_freeze_count()
app = create_served_app()
print(json.dumps({"before": before, "after": gc.get_freeze_count(), "title": app.title}))
"""


def test_the_served_app_is_built_then_frozen(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BOOKABLE_DATABASE_URL": f"sqlite:///{tmp_path / 'bookable.db'}",
        "BOOKABLE_ENCRYPTION_KEY_FILE": str(tmp_path / "bookable.key"),
        "BOOKABLE_REDIS_URL": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["title"] == "Bookable"
    assert seen["before"] == 0
    # The modules and the app: well over 100,000 objects on any version we run.
    assert seen["after"] > 100_000, seen
