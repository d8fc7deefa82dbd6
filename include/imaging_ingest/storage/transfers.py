"""Object-store transfers of one task on a bounded thread pool, timed per object and per byte.

S3 latency, not CPU, bounds uploads and server-side copies, so a task overlaps them:
``Transfers`` runs them on ``IO_THREADS`` threads and lets at most ``in_flight`` wait or run
at once (``submit`` blocks when that many are pending), so a submission of a million files
never holds a million futures, and the caller's reading of the next file overlaps the
uploads of the previous ones. Large objects still go multipart inside each transfer
(``ObjectStore.put_file``/``copy``).

The first failure is re-raised when the block ends (and stops further submissions); the
block never ends with a transfer still running. ``stats`` are PHI-free numbers only: object
count, bytes, wall time of the block, and the time each object took (mean, slowest), for
the stage's ``StageResult`` and its log line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

__all__ = ["IO_THREADS", "TransferStats", "Transfers"]

#: Concurrent object-store requests per task: S3 latency, not CPU, bounds copies and uploads.
IO_THREADS = 8


@dataclass
class TransferStats:
    """What a task's transfers did: objects, bytes, wall time and per-object time (PHI-free)."""

    objects: int = 0
    bytes: int = 0
    wall_seconds: float = 0.0
    object_seconds: float = 0.0  # summed over objects (exceeds the wall time when they overlap)
    slowest_seconds: float = 0.0

    def add(self, nbytes: int, seconds: float) -> None:
        self.objects += 1
        self.bytes += nbytes
        self.object_seconds += seconds
        self.slowest_seconds = max(self.slowest_seconds, seconds)

    def merged(self, other: TransferStats) -> TransferStats:
        return TransferStats(
            self.objects + other.objects,
            self.bytes + other.bytes,
            self.wall_seconds + other.wall_seconds,
            self.object_seconds + other.object_seconds,
            max(self.slowest_seconds, other.slowest_seconds),
        )

    def summary(self) -> dict[str, Any]:
        """Per object and per byte: what a stage's ``extra`` and log line report."""
        wall = self.wall_seconds
        return {
            "objects": self.objects,
            "bytes": self.bytes,
            "seconds": round(wall, 3),
            "ms_per_object": round(self.object_seconds / self.objects * 1000, 2) if self.objects else None,
            "slowest_ms": round(self.slowest_seconds * 1000, 1),
            "objects_per_s": round(self.objects / wall, 1) if wall > 0 else None,
            "mb_per_s": round(self.bytes / 1e6 / wall, 1) if wall > 0 else None,
            "s_per_gb": round(wall / (self.bytes / 1e9), 1) if self.bytes else None,
        }

    def describe(self) -> str:
        """One PHI-free log fragment."""
        s = self.summary()
        return (
            f"{s['objects']} object(s), {s['bytes'] / 1e6:.1f} MB in {s['seconds']:.2f} s "
            f"({s['objects_per_s'] or 0} objects/s, {s['mb_per_s'] or 0} MB/s, {s['ms_per_object'] or 0} ms/object)"
        )


class Transfers:
    """A bounded pool for one task's uploads and copies; use as a context manager.

    ``submit(fn, nbytes)`` runs ``fn()`` on a pool thread, timing it as one object of
    ``nbytes``; it blocks while ``in_flight`` transfers are pending. Only completed transfers
    are counted in ``stats``.
    """

    def __init__(self, workers: int = IO_THREADS, in_flight: int | None = None) -> None:
        self.workers = max(1, workers)
        self._slots = threading.BoundedSemaphore(in_flight or 2 * self.workers)
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._started = 0.0
        self.stats = TransferStats()

    def __enter__(self) -> Self:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="transfers")
        self._started = time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=exc is not None)
            self._pool = None
        self.stats.wall_seconds = time.perf_counter() - self._started
        if exc is None and self._error is not None:
            raise self._error

    def _run(self, fn: Callable[[], Any], nbytes: int, counted: bool) -> Any:
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        if counted:
            with self._lock:
                self.stats.add(nbytes, seconds)
        return result

    def _done(self, future: Future[Any]) -> None:
        self._slots.release()
        if not future.cancelled() and (error := future.exception()) is not None:
            with self._lock:
                if self._error is None:
                    self._error = error

    def submit(self, fn: Callable[[], Any], nbytes: int = 0, *, counted: bool = True) -> Future[Any]:
        """Run ``fn()`` on the pool as one object of ``nbytes`` (``counted=False``: a check, not a transfer)."""
        if self._pool is None:
            raise RuntimeError("Transfers.submit outside its with block")
        if self._error is not None:
            raise self._error  # fail fast: nothing more is sent after a failure
        self._slots.acquire()
        try:
            future = self._pool.submit(self._run, fn, nbytes, counted)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._done)
        return future
