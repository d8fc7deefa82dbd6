"""What every benchmark result file starts with: what ran, on which commit, where, and how spread.

``header`` records the git commit and whether the work tree had uncommitted changes (a
number measured on a dirty tree is not reproducible from the commit), the machine and its
load; ``spread`` summarises repeated runs (median, min, max, relative spread).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def header(benchmark: str, what: str, **settings: Any) -> dict[str, Any]:
    """The common head of a result file."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "benchmark": benchmark,
        "what": what,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": {"commit": _git("rev-parse", "HEAD") or None, "dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": load,
        },
        "settings": settings,
    }


def spread(values: list[float], digits: int = 1) -> dict[str, Any]:
    """Median, min, max and (max - min) / median of repeated runs."""
    median = statistics.median(values)
    return {
        "runs": len(values),
        "median": round(median, digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "spread": round((max(values) - min(values)) / median, 3) if median else None,
        "values": [round(v, digits) for v in values],
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages now (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_sampled(cmd: list[str], env: dict[str, str], interval: float = 0.05) -> dict[str, Any]:
    """Run a command, timing it and sampling the peak RSS of its process and of its whole tree.

    Returns ``seconds``, ``stdout``, ``stderr``, ``returncode``, ``peak_rss_mb`` (the tree:
    the command and every child it started) and ``peak_rss_main_mb`` (the command alone).
    """
    import time

    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watched = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    out_chunks: list[str] = []
    import threading

    def drain(stream: Any, into: list[str]) -> None:
        into.append(stream.read())

    err_chunks: list[str] = []
    readers = [
        threading.Thread(target=drain, args=(proc.stdout, out_chunks), daemon=True),
        threading.Thread(target=drain, args=(proc.stderr, err_chunks), daemon=True),
    ]
    for reader in readers:
        reader.start()
    while proc.poll() is None:
        try:
            main = watched.memory_info().rss
            tree = main + sum(c.memory_info().rss for c in watched.children(recursive=True))
        except psutil.Error:
            main = tree = 0
        peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
        time.sleep(interval)
    seconds = time.perf_counter() - started
    for reader in readers:
        reader.join()
    return {
        "seconds": seconds,
        "returncode": proc.returncode,
        "stdout": "".join(out_chunks),
        "stderr": "".join(err_chunks),
        "peak_rss_mb": round(peak_tree / 2**20, 1),
        "peak_rss_main_mb": round(peak_main / 2**20, 1),
    }
