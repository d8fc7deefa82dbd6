"""Load benchmark, per task: each stage of one generated submission in a process of its own.

Airflow runs every task instance in a process of its own (LocalExecutor, Celery workers),
so what sizes a worker is the peak RSS of one task, not of ``dag.test()`` running them all
in one process (``run.py``), where freed memory and every import add up. This script
runs the stages in order, each in a fresh Python process that imports what a task imports
(the library, pandas, pyarrow, Great Expectations for the stages with a gate) before the
stage starts, and reports per stage: RSS before the stage, peak RSS, and the difference,
which is what the stage itself needed.

Each size runs ``LOAD_RUNS`` times (3, each on a fresh submission, catalog and S3 server);
per stage the result file keeps the median and spread of the peak, of the stage's own
memory and of its seconds.

Environment:
    LOAD_SIZES     comma-separated sizes (default "2000,20000")
    LOAD_RUNS      runs of each size (default 3)
    LOAD_ROWS      image rows = columns (default 64: the per-file metadata, not the pixels,
                   is what whole-submission stages hold; de-identification streams pixels)
    LOAD_WORKERS   de-identification processes per batch (default 2)
    LOAD_OUT       result file (default bench/results/load-stages.json)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "bench"))

from report import header, spread  # noqa: E402

SECRET = "6f32572d0b6889cb6c12969e6db6221f542cf1e9959792e2f13596448df4e107"  # benchmark-only key (public)
STAGES = ("claim", "stage_raw", "inventory", "plan", "deidentify", "screen", "verify", "register", "publish")
GATED = {"inventory", "screen", "verify", "register", "publish"}


def stage_main(work: Path, stage: str) -> None:
    """Run one stage in this (fresh) process; print its RSS as JSON."""
    import resource

    import pandas  # noqa: F401 - imported by every task before it starts
    import psutil
    import pyarrow  # noqa: F401

    from imaging_ingest.config import load_collection_config
    from imaging_ingest.config.settings import Settings
    from imaging_ingest.pipeline.ingest import Ingest
    from imaging_ingest.storage.tiers import ensure_storage

    ingest = Ingest(load_collection_config(work / "load.yaml"), Settings.from_env())
    ingest.catalog, ingest.store  # noqa: B018 - connections are made before the stage, as in a task
    if stage in GATED:
        import great_expectations  # noqa: F401 - the gate's import is not the stage's per-file cost
    state = work / "state.json"
    saved = json.loads(state.read_text()) if state.exists() else {}
    before = psutil.Process().memory_info().rss
    if stage == "claim":
        ensure_storage(ingest.store)
        ingest.catalog.ensure_collection(ingest.config)
        saved["submission"] = ingest.claim().submission_id
    elif stage == "plan":
        saved["batches"] = ingest.plan(saved["submission"])
    elif stage == "deidentify":
        saved["results"] = [ingest.deidentify(saved["submission"], key).manifest for key in saved["batches"]]
    elif stage == "screen":
        ingest.screen(saved["submission"], saved["results"])
    else:
        getattr(ingest, stage)(saved["submission"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    state.write_text(json.dumps(saved))
    print(json.dumps({"before_mb": round(before / 2**20, 1), "peak_mb": round(peak / 2**20, 1)}))


def one_size(size: int, rows: int, workers: int) -> dict:
    sys.path[:0] = [str(HERE)]
    from run import start_moto

    work = Path(tempfile.mkdtemp(prefix=f"imaging-load-stages-{size}-"))
    moto, endpoint = start_moto(work)
    env = os.environ | {
        "PYTHONPATH": f"{REPO / 'include'}:{REPO / 'dags'}:{HERE}",
        "LOAD_WORK": str(work), "LOAD_CORPUS": str(work / "drop"), "LOAD_SIZE": str(size), "LOAD_ROWS": str(rows), "LOAD_WORKERS": str(workers),
        "LOAD_ENDPOINT": endpoint,
        "IMAGING_INGEST_HOME": str(work / "home"), "IMAGING_INGEST_S3_ENDPOINT": endpoint,
        "IMAGING_INGEST_SECRET": SECRET, "ARROW_DEFAULT_MEMORY_POOL": "system",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        generate = (
            "import one_run, pathlib; "
            f"one_run.generate(pathlib.Path({str(work / 'drop' / 'load-submission')!r}))"
        )
        subprocess.run([sys.executable, "-c", generate], env=env, check=True)
        (work / "drop" / "load-submission" / "READY").write_text("complete\n")
        (work / "load.yaml").write_text(
            f'id: load\ntitle: Load benchmark collection\nlicense: CC-BY-4.0\ntier: public\n'
            f'drop:\n  url: "{(work / "drop").as_uri()}"\nmodalities: [CT]\nbatch_size: 200\nworkers: {workers}\n'
        )
        stages = {}
        for stage in STAGES:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--stage", stage, str(work)], env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(f"stage {stage} failed:\n{done.stderr[-4000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["stage_mb"] = round(result["peak_mb"] - result["before_mb"], 1)
            result["seconds"] = round(time.perf_counter() - started, 1)
            stages[stage] = result
            print(f"  {size} files, {stage}: {result}", flush=True)
        return {"files": size, "stages": stages, "peak_task_rss_mb": max(s["peak_mb"] for s in stages.values())}
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(work, ignore_errors=True)


def summarise(size: int, runs: list[dict]) -> dict:
    """Per stage, the median and spread over the runs of its peak RSS, its own memory and its seconds."""
    return {
        "files": size,
        "stages": {
            stage: {
                field: spread([r["stages"][stage][field] for r in runs])
                for field in ("before_mb", "peak_mb", "stage_mb", "seconds")
            }
            for stage in STAGES
        },
        "peak_task_rss_mb": spread([r["peak_task_rss_mb"] for r in runs]),
        "runs": runs,
    }


def main() -> int:
    sizes = sorted({int(s) for s in os.environ.get("LOAD_SIZES", "2000,20000").split(",") if s.strip()})
    repeats = int(os.environ.get("LOAD_RUNS", "3"))
    rows = int(os.environ.get("LOAD_ROWS", "64"))
    workers = int(os.environ.get("LOAD_WORKERS", "2"))
    out = Path(os.environ.get("LOAD_OUT", REPO / "bench" / "results" / "load-stages.json"))
    report = header(
        "load-stages",
        "each stage of one generated submission in a fresh process, as Airflow runs a task; "
        "stage_mb = peak RSS minus RSS after the task's imports",
        rows=rows, columns=rows, deid_workers=workers, batch_size=200, sizes=sizes, runs=repeats,
    )
    measured = []
    for size in sizes:
        print(f"load stages: {size} files of {rows}x{rows}, each stage in its own process, {repeats} runs", flush=True)
        measured.append(summarise(size, [one_size(size, rows, workers) for _ in range(repeats)]))
    small, large = measured[0], measured[-1]
    report["sizes"] = measured
    report["stage_mb_growth_per_1000_files"] = {
        stage: round(
            (large["stages"][stage]["stage_mb"]["median"] - small["stages"][stage]["stage_mb"]["median"])
            / max(1, (large["files"] - small["files"]) / 1000),
            2,
        )
        for stage in STAGES
    } if len(measured) > 1 else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--stage":
        stage_main(Path(sys.argv[3]), sys.argv[2])
    else:
        sys.exit(main())
