"""Load benchmark: one large generated submission through the collection DAG (``dag.test()``).

Measures files/s, GB/h and the peak RSS of the process that runs the DAG, at several
submission sizes, to show that memory stays flat as the file count grows. Each size runs
in a fresh process (peak RSS is per process) against an S3 server (moto) in a process of
its own, so the archive's storage is not counted in the pipeline's memory.

Environment:
    LOAD_FILES     largest submission, files (default 20000)
    LOAD_SIZES     comma-separated sizes to run (default "2000,<LOAD_FILES>")
    LOAD_ROWS      image rows = columns (default 512: ~0.53 MB per 16-bit CT file, ~10.5 GB at 20,000)
    LOAD_WORKERS   de-identification processes per batch (default 2)
    LOAD_OUT       result file (default bench/results/load.json)

The result file records what was actually run (sizes, bytes, seconds) and the
extrapolation to the issue's 20,000 files of ~0.5 MB each (about 10 GB).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ONE = Path(__file__).with_name("one_run.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_moto(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = os.environ | {"TMPDIR": str(work)}
    # moto with object bodies on disk, no descriptor held per object (see moto_disk.py)
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("moto_disk.py")), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("moto_server did not start")


def main() -> int:
    largest = int(os.environ.get("LOAD_FILES", "20000"))
    sizes = sorted({int(s) for s in os.environ.get("LOAD_SIZES", f"2000,{largest}").split(",") if s.strip()})
    rows = int(os.environ.get("LOAD_ROWS", "512"))
    workers = int(os.environ.get("LOAD_WORKERS", "2"))
    out = Path(os.environ.get("LOAD_OUT", REPO / "bench" / "results" / "load.json"))
    runs = []
    for size in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"imaging-load-{size}-"))
        moto, endpoint = start_moto(work)
        try:
            env = os.environ | {
                "PYTHONPATH": f"{REPO / 'include'}:{REPO / 'dags'}",
                "LOAD_WORK": str(work),
                "LOAD_SIZE": str(size),
                "LOAD_ROWS": str(rows),
                "LOAD_WORKERS": str(workers),
                "LOAD_ENDPOINT": endpoint,
            }
            print(f"load: {size} files of {rows}x{rows} through the DAG ...", flush=True)
            done = subprocess.run([sys.executable, str(ONE)], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout[-4000:], done.stderr[-8000:], file=sys.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs.append(result)
            print(json.dumps(result)[:400], flush=True)
            write_report(out, runs, rows, workers, sizes)
        finally:
            moto.kill()
            moto.wait()
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}")
    return 0


def write_report(out: Path, runs: list[dict], rows: int, workers: int, planned: list[int]) -> None:
    """Written after every size, so that an interrupted run still leaves what it measured."""
    biggest = max(runs, key=lambda r: r["files"])
    bytes_per_file_target = 512 * 512 * 2 + 2048
    report = {
        **report_header(
            "load", "one generated submission through the ingest DAG (dag.test(), in one process), "
            "SQLite catalog, moto S3 server in a separate process on loopback", rows, workers, sizes_planned=planned
        ),
        "runs": runs,
        "peak_rss_mb_by_files": {str(r["files"]): r["peak_rss_mb"] for r in runs},
        "rss_growth_mb_per_1000_files": _growth(runs),
        "extrapolation": {
            "note": "the issue's target is 20,000 files of a 512x512 16-bit CT (~0.5 MB, ~10 GB); "
            "time is extrapolated from the largest run's files/s, assuming per-file cost dominates "
            "(header work, S3 round trips) and bytes add at the measured MB/s",
            "files": 20000,
            "bytes": 20000 * bytes_per_file_target,
            "seconds_at_measured_files_per_s": round(20000 / biggest["files_per_s"], 1),
            "seconds_at_measured_mb_per_s": round(20000 * bytes_per_file_target / 1e6 / biggest["mb_per_s"], 1),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    print(f"load average now {load}")


def report_header(benchmark: str, what: str, rows: int, workers: int, **settings: object) -> dict:
    """What every load result file starts with: what ran, when, where, with which settings."""
    return {
        "benchmark": benchmark,
        "what": what,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"rows": rows, "columns": rows, "deid_workers": workers, "batch_size": 200, **settings},
    }


def _growth(runs: list[dict]) -> float | None:
    if len(runs) < 2:
        return None
    small, large = min(runs, key=lambda r: r["files"]), max(runs, key=lambda r: r["files"])
    return round((large["peak_rss_mb"] - small["peak_rss_mb"]) / ((large["files"] - small["files"]) / 1000), 2)


if __name__ == "__main__":
    sys.exit(main())
