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
