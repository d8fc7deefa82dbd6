"""Load benchmark: one generated submission through the collection DAG and through the CLI, same files.

For each size, one corpus of CT files is generated once; then, ``LOAD_RUNS`` times (3),
alternately: ``imaging-ingest deidentify`` on it (a fresh output folder and catalog) and
the ingest DAG (``dag.test()``, in a fresh process, with a fresh catalog, Airflow home and
S3 server, moto in a process of its own so that the archive's storage is not counted in
the pipeline's memory). Reported per size: the medians and spread of the DAG's and the
CLI's wall time, GB/h of each, DAG wall time / CLI wall time (the goal: within 2x), the
DAG's peak RSS and RSS per task, what stage_raw and publish measured per object and
per byte, and the CPU seconds the DAG's process tree and the S3 server used while it ran:
on this machine's cores, those set a floor under the DAG's wall time that no overlapping of
its S3 work can go below (``cpu_seconds``). The DAG does more than the CLI on the same files (S3 uploads of the originals
and the outputs, server-side copies into the public tier, the catalog, a version with its
bag and index, gates and reports), so the ratio is what the orchestration and the archive
cost on top of the de-identification.

Environment:
    LOAD_SIZES     comma-separated sizes (default "2000"; 20000 adds about 45 minutes on a
                   2-core machine: see ``not_run`` in the result file)
    LOAD_RUNS      runs of each (default 3)
    LOAD_ROWS      image rows = columns (default 512: ~0.53 MB per 16-bit CT file)
    LOAD_WORKERS   de-identification processes, the DAG's per batch and the CLI's (default 2)
    LOAD_OUT       result file (default bench/results/load.json)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ONE = Path(__file__).with_name("one_run.py")
sys.path.insert(0, str(REPO / "bench"))

from report import header, load_average, run_sampled, spread  # noqa: E402

SECRET = "6f32572d0b6889cb6c12969e6db6221f542cf1e9959792e2f13596448df4e107"  # benchmark-only key (public)
#: measured before (bench/results/load.json of 2026-11-25, one DAG run): why 20,000 is not in the default
NOT_RUN_20000 = (
    "20,000 files (10.5 GB) were not run for this file: one DAG run of them took 575 s on this "
    "machine (2026-11-25), so 3 DAG runs and 3 CLI runs take about 45 minutes, more than the "
    "10 minutes this benchmark may take on the shared 2-core machine; run LOAD_SIZES=2000,20000 "
    "make bench-load on a machine of its own"
)


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


def _env(**extra: str) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": f"{REPO / 'include'}:{REPO / 'dags'}"} | extra


def _last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])


def generate(corpus: Path, size: int, rows: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ONE), "generate"],
        env=_env(
            LOAD_WORK=str(corpus.parent), LOAD_CORPUS=str(corpus), LOAD_SIZE=str(size), LOAD_ROWS=str(rows)
        ),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"generate failed: {done.stderr[-4000:]}")
    return _last_json(done.stdout)


def run_dag(corpus: Path, size: int, workers: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"imaging-load-dag-{size}-"))
    moto, endpoint = start_moto(work)
    try:
        env = _env(
            LOAD_WORK=str(work),
            LOAD_CORPUS=str(corpus),
            LOAD_SIZE=str(size),
            LOAD_WORKERS=str(workers),
            LOAD_ENDPOINT=endpoint,
            LOAD_MOTO_PID=str(moto.pid),
        )
        done = subprocess.run([sys.executable, str(ONE), "dag"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"DAG run failed: {done.stdout[-2000:]} {done.stderr[-6000:]}")
        return _last_json(done.stdout)
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(work, ignore_errors=True)


def run_cli(corpus: Path, workers: int) -> dict[str, Any]:
    """``imaging-ingest deidentify`` end to end on the same files, its process tree's peak RSS sampled."""
    work = Path(tempfile.mkdtemp(prefix="imaging-load-cli-"))
    try:
        secret = work / "secret.txt"
        secret.write_text(SECRET, encoding="utf-8")
        cmd = [
            sys.executable,
            "-c",
            "import sys; from imaging_ingest.cli import main; sys.exit(main())",
            "deidentify",
            str(corpus / "load-submission"),
            str(work / "dst"),
            "--secret-file",
            str(secret),
            "--workers",
            str(workers),
            "--json",
            "--catalog",
            f"sqlite:///{work / 'catalog.sqlite'}",
        ]
        got = run_sampled(cmd, _env(IMAGING_INGEST_HOME=str(work / "home")))
        if got["returncode"] != 0:
            raise RuntimeError(f"imaging-ingest deidentify failed: {got['stderr'][-3000:]}")
        summary = json.loads(got["stdout"])
        return {
            "seconds": round(got["seconds"], 1),
            "published": summary.get("published"),
            "quarantined": summary.get("quarantined"),
            "peak_rss_mb": got["peak_rss_mb"],
            "peak_rss_main_mb": got["peak_rss_main_mb"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _gb_per_h(nbytes: int, seconds: float) -> float:
    return nbytes / 1e9 / seconds * 3600


def _task_peak(dag: list[dict[str, Any]], task: str) -> dict[str, Any] | str:
    """A task's peak RSS over the runs, or why there is none: a task shorter than the sampling interval."""
    peaks = [r["rss_by_task"][task]["peak_rss_mb"] for r in dag if task in r["rss_by_task"]]
    sampled = [p for p in peaks if p is not None]
    if len(sampled) < len(dag):
        return (
            f"sampled in {len(sampled)} of {len(dag)} runs only: "
            "the task is shorter than the 0.5 s RSS sampling interval"
        )
    return spread(sampled)


def _cpu(dag: list[dict[str, Any]]) -> dict[str, Any] | None:
    """CPU seconds while the DAG ran, and the wall-time floors they set on this machine's cores.

    ``s3_server_floor_seconds``: the S3 server's CPU seconds over the cores, the least wall time
    the DAG can take with that server on the same machine if the server could use every core
    (moto is one Python process and uses about one, so its CPU seconds themselves are the
    tighter bound); ``floor_seconds``: the same of the DAG's and the server's CPU seconds together.
    """
    runs = [r["cpu_seconds"] for r in dag if (r.get("cpu_seconds") or {}).get("s3_server") is not None]
    if len(runs) < len(dag) or not runs:
        return None
    return {
        "cpus": runs[0]["cpus"],
        "dag": spread([c["dag"] for c in runs]),
        "s3_server": spread([c["s3_server"] for c in runs]),
        "s3_server_floor_seconds": spread([c["s3_server"] / c["cpus"] for c in runs]),
        "floor_seconds": spread([(c["dag"] + c["s3_server"]) / c["cpus"] for c in runs]),
        "s3_server_by_task": {
            task: spread([c["s3_server_by_task"][task] for c in runs])
            for task in runs[0].get("s3_server_by_task", {})
            if all(task in c.get("s3_server_by_task", {}) for c in runs)
        },
    }


def summarise(size: int, nbytes: int, dag: list[dict[str, Any]], cli: list[dict[str, Any]]) -> dict[str, Any]:
    dag_s = [r["seconds"] for r in dag]
    cli_s = [r["seconds"] for r in cli]
    ratios = [d / c for d, c in zip(dag_s, cli_s, strict=True)]
    tasks = sorted(
        {t for r in dag for t in r["rss_by_task"]},
        key=lambda t: min(list(r["rss_by_task"]).index(t) for r in dag if t in r["rss_by_task"]),
    )

    def s3(stage: str, part: str, field: str) -> dict[str, Any] | None:
        values = [
            r["s3_timings"][stage][part][field]
            for r in dag
            if (r.get("s3_timings") or {}).get(stage) and r["s3_timings"][stage][part].get(field) is not None
        ]
        return spread(values, 2) if values else None

    return {
        "files": size,
        "bytes": nbytes,
        "mean_file_bytes": nbytes // size,
        "dag_seconds": spread(dag_s),
        "cli_seconds": spread(cli_s),
        "dag_over_cli": spread(ratios, 2),
        "dag_gb_per_h": spread([_gb_per_h(nbytes, s) for s in dag_s], 1),
        "cli_gb_per_h": spread([_gb_per_h(nbytes, s) for s in cli_s], 1),
        "dag_files_per_s": spread([size / s for s in dag_s], 1),
        "cli_files_per_s": spread([size / s for s in cli_s], 1),
        "dag_peak_rss_mb": spread([r["peak_rss_mb"] for r in dag]),
        "cli_peak_rss_mb": spread([r["peak_rss_mb"] for r in cli]),
        "peak_rss_mb_by_task": {t: _task_peak(dag, t) for t in tasks},
        "task_seconds": {
            t: spread([r["rss_by_task"][t]["seconds"] for r in dag if t in r["rss_by_task"]]) for t in tasks
        },
        "cpu_seconds": _cpu(dag),
        "s3": {
            "stage_raw_upload_mb_per_s": s3("stage_raw", "upload", "mb_per_s"),
            "stage_raw_upload_ms_per_object": s3("stage_raw", "upload", "ms_per_object"),
            "stage_raw_read_mb_per_s": s3("stage_raw", "read", "mb_per_s"),
            "deidentify_upload_mb_per_s": s3("deidentify", "upload", "mb_per_s"),
            "deidentify_upload_ms_per_object": s3("deidentify", "upload", "ms_per_object"),
            "publish_copy_objects_per_s": s3("publish", "copy", "objects_per_s"),
            "publish_copy_ms_per_object": s3("publish", "copy", "ms_per_object"),
        },
        "same_outcome": all(r["published"] == dag[0]["published"] for r in [*dag, *cli]),
        "published": {"dag": [r["published"] for r in dag], "cli": [r["published"] for r in cli]},
        "runs": {"dag": [{k: v for k, v in r.items() if k != "rss_samples_mb"} for r in dag], "cli": cli},
    }


def main() -> int:
    sizes = sorted({int(s) for s in os.environ.get("LOAD_SIZES", "2000").split(",") if s.strip()})
    runs = int(os.environ.get("LOAD_RUNS", "3"))
    rows = int(os.environ.get("LOAD_ROWS", "512"))
    workers = int(os.environ.get("LOAD_WORKERS", "2"))
    out = Path(os.environ.get("LOAD_OUT", REPO / "bench" / "results" / "load.json"))
    report = header(
        "load",
        "one generated submission (CT, one template, new UIDs per file) through the ingest DAG (dag.test(), "
        "one process, SQLite catalog, moto S3 server in a process of its own on loopback) and through "
        "imaging-ingest deidentify (same files, same worker count), alternately, runs times",
        rows=rows,
        columns=rows,
        deid_workers=workers,
        cli_workers=workers,
        batch_size=200,
        runs=runs,
        sizes=sizes,
    )
    report["sizes"] = []
    if 20000 not in sizes:
        report["not_run"] = {"20000": NOT_RUN_20000}
    for size in sizes:
        corpus_root = Path(tempfile.mkdtemp(prefix=f"imaging-load-corpus-{size}-"))
        corpus = corpus_root / "drop"
        try:
            made = generate(corpus, size, rows)
            print(
                f"load: {size} files of {rows}x{rows} ({made['bytes'] / 1e9:.2f} GB), {runs} runs", flush=True
            )
            dag, cli = [], []
            for number in range(runs):
                cli.append(run_cli(corpus, workers))
                print(f"  cli run {number + 1}: {cli[-1]['seconds']} s", flush=True)
                dag.append(run_dag(corpus, size, workers))
                print(f"  dag run {number + 1}: {dag[-1]['seconds']} s", flush=True)
            report["sizes"].append(summarise(size, made["bytes"], dag, cli))
            report["load_average_at_end"] = load_average()
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(
                json.dumps(report, indent=2) + "\n"
            )  # after every size: an interrupted run keeps it
        finally:
            shutil.rmtree(corpus_root, ignore_errors=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
