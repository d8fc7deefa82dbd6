"""storage.transfers: a bounded pool for a task's uploads and copies, timed per object and per byte."""

from __future__ import annotations

import threading
import time

import pytest

from imaging_ingest.storage.transfers import Transfers, TransferStats


def test_at_most_in_flight_transfers_wait_or_run_and_all_are_counted() -> None:
    running = peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1

    pending_seen = []
    with Transfers(workers=3, in_flight=4) as pool:
        for _ in range(40):
            pool.submit(work, 1000)
            pending_seen.append(pool._slots._value)  # noqa: SLF001 - the bound itself is what is tested
    assert 1 < peak <= 3  # overlapped, never more threads than workers
    assert min(pending_seen) >= 0
    assert pool.stats.objects == 40 and pool.stats.bytes == 40_000
    summary = pool.stats.summary()
    assert summary["objects"] == 40 and summary["ms_per_object"] >= 10
    assert summary["mb_per_s"] is not None and summary["s_per_gb"] is not None
    assert summary["seconds"] < 40 * 0.01  # overlapped: less wall time than one after another


def test_the_first_failure_is_raised_when_the_block_ends_and_stops_submissions() -> None:
    def fail() -> None:
        raise OSError("upload refused")

    done = []
    with pytest.raises(OSError, match="upload refused"), Transfers(workers=2) as pool:
        pool.submit(fail)
        time.sleep(0.05)
        pool.submit(lambda: done.append(1))  # fails fast: the earlier failure is raised here
    assert done == []


def test_uncounted_work_is_not_a_transfer_and_stats_merge() -> None:
    with Transfers(workers=2) as pool:
        pool.submit(lambda: None, 5, counted=False)
        pool.submit(lambda: None, 7)
    assert (pool.stats.objects, pool.stats.bytes) == (1, 7)
    merged = pool.stats.merged(TransferStats(objects=2, bytes=3))
    assert (merged.objects, merged.bytes) == (3, 10)
    assert TransferStats().summary()["ms_per_object"] is None


def test_submit_outside_the_block_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="outside"):
        Transfers().submit(lambda: None)
