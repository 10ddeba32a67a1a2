"""Counting Python bytecodes by code object and by package, for the benches that map where a
request's or an email's Python work goes (`booking_instructions.py --bytecodes`,
`render_emails.py --mode bytecodes`). A trace function, so only for counting, never timing."""

from __future__ import annotations

import sysconfig
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

STDLIB = sysconfig.get_paths()["stdlib"]
SITE = "site-packages/"


def package_of(filename: str) -> str:
    """The package a code object's file belongs to: bookable, the lean app, a site package,
    asyncio, logging or the rest of the standard library."""
    if "/src/bookable/" in filename:
        return "bookable"
    if filename.endswith("write_floor_app.py"):
        return "lean app"
    if SITE in filename:
        return filename.split(SITE, 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename.startswith(STDLIB):
        top = filename[len(STDLIB) :].lstrip("/").split("/", 1)[0].removesuffix(".py")
        return f"stdlib {top}" if top in {"asyncio", "logging", "json", "email"} else "stdlib"
    if filename.startswith("<frozen"):
        return "stdlib"
    return Path(filename).name


class BytecodeCounter:
    """A trace function counting the bytecodes executed, by code object; `by_package` sums them."""

    def __init__(self) -> None:
        self.by_code: Counter[Any] = Counter()

    def call(self, frame: FrameType, _event: str, _arg: object) -> Any:
        frame.f_trace_opcodes, frame.f_trace_lines = True, False
        return self.step

    def step(self, frame: FrameType, event: str, _arg: object) -> Any:
        if event == "opcode":
            self.by_code[frame.f_code] += 1
        return self.step

    def by_package(self) -> Counter[str]:
        packages: Counter[str] = Counter()
        for code, count in self.by_code.items():
            packages[package_of(code.co_filename)] += count
        return packages
