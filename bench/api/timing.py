"""The request-timing loop both API benchmarks use (``run.py``: NBIA, ``dicomweb.py``: DICOMweb).

One client at a time over keep-alive: each request is timed from send to the whole body read,
until the requests run out or a time budget is spent. ``summary`` gives the figures both
report (count, rate, p50/p99, mean) from the latencies.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Timing", "percentile", "summary", "time_requests"]

Request = tuple[str, dict[str, str]]


@dataclass
class Timing:
    latencies: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    elapsed: float = 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_requests(
    client: httpx.Client,
    requests: Iterable[Request],
    *,
    seconds: float | None = None,
    check: Callable[[httpx.Response, Request], None] | None = None,
) -> Timing:
    """Send ``requests`` one after another (stopping once ``seconds`` have passed); each must succeed."""
    timing = Timing()
    started = time.perf_counter()
    for request in requests:
        if seconds is not None and time.perf_counter() - started >= seconds:
            break
        path, params = request
        t = time.perf_counter()
        answer = client.get(path, params=params)
        timing.latencies.append(time.perf_counter() - t)
        answer.raise_for_status()
        if check is not None:
            check(answer, request)
        timing.sizes.append(len(answer.content))
    timing.elapsed = time.perf_counter() - started
    return timing


def summary(timing: Timing, **extra: Any) -> dict[str, Any]:
    latencies = timing.latencies
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / timing.elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        **extra,
    }
