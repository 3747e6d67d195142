"""Run benchmark code in a fresh interpreter and measure it: wall time and the child's peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass


@dataclass
class ChildRun:
    """What a child run printed and what it cost."""

    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float
    cpu_s: float = 0.0


def run_child(code: str, what: str = "mine stage") -> ChildRun:
    """Run `python -c code` (see run_command)."""
    return run_command([sys.executable, "-c", code], what)


def run_command(command: list[str], what: str) -> ChildRun:
    """Run a command; output goes to temp files (no pipe can fill up), rusage via wait4."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if status != 0:
        raise SystemExit(f"{what} failed:\n{stderr[-3000:]}")
    return ChildRun(stdout, stderr, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)
