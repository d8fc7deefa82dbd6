"""Pipeline benchmark: the demo collection through the DAG (``dag.test()``) versus the same stages called directly.

Both arms ingest the same generated submission (20 patients by default) into fresh,
separate archives on one loopback S3 server, each in its own Python process so that each
pays its own imports. Writes ``bench/results/pipeline.json``. Goal: the DAG within 1.5x
of the direct run. Both arms run ``--runs`` times (3), alternately, each into a fresh archive;
the result file keeps each run, the medians and the spread (``bench/report.py``).

    .venv/bin/python bench/pipeline/run.py [--patients 20] [--seed 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "dags"))
sys.path.insert(0, str(REPO / "bench"))

from report import header, spread  # noqa: E402

ARM = r"""
import json, os, sys, time
sys.path.insert(0, {dags!r})
started = time.perf_counter()
arm = {arm!r}
from imaging_ingest.config import load_collection_config
from imaging_ingest.config.settings import Settings
from imaging_ingest.storage.objects import ObjectStore
settings = Settings.from_env()
ObjectStore(settings).ensure_buckets()
if arm == "direct":
    from imaging_ingest.pipeline.ingest import Ingest
    config = load_collection_config({config!r})
    summary = Ingest(config, settings).run()
    state = "success" if summary else "nothing"
else:
    from imaging_dags.local import migrate, run_dag
    migrate(__import__("pathlib").Path(os.environ["AIRFLOW_HOME"]))
    migrated = time.perf_counter()
    run = run_dag("ingest__demo", {{}})
    state = str(run.state)
    from imaging_ingest.catalog import Catalog
    from imaging_ingest.pipeline.ingest import Ingest
    config = load_collection_config({config!r})
    submission = Catalog.from_url(settings.catalog_url).submissions("demo")[-1].id
    summary = Ingest(config, settings).summary(submission)
import resource
print(json.dumps({{"state": state, "seconds": time.perf_counter() - started, "summary": summary,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_arm(arm: str, workdir: Path, drop: Path, endpoint: str, secret: Path, number: int = 0) -> dict:
    from imaging_dags.local import airflow_environment

    home = workdir / arm
    collections = workdir / f"collections-{arm}"
    collections.mkdir(parents=True)
    text = (REPO / "dags" / "collections" / "demo.yaml").read_text()
    (collections / "demo.yaml").write_text(text.replace("${IMAGING_INGEST_DROP_ROOT:-/tmp/imaging-ingest/drop}/demo", str(drop)))
    env = os.environ | airflow_environment(home / "airflow") | {
        "IMAGING_INGEST_HOME": str(home),
        "IMAGING_INGEST_S3_ENDPOINT": endpoint,
        "IMAGING_INGEST_BUCKET_PREFIX": f"bench-{arm}-{number}",
        "IMAGING_INGEST_SECRET_FILE": str(secret),
        "IMAGING_INGEST_COLLECTIONS": str(collections),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }
    if arm == "dag":  # the Airflow database is set up before the clock starts: it is not per-run cost
        from imaging_dags.local import migrate

        saved = os.environ.copy()
        os.environ.update(env)
        migrate(home / "airflow")
        os.environ.clear()
        os.environ.update(saved)
    code = ARM.format(dags=str(REPO / "dags"), arm=arm, config=str(collections / "demo.yaml"))
    wall = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - wall
    if out.returncode != 0:
        raise RuntimeError(f"{arm} arm failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = wall
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "pipeline.json"))
    args = parser.parse_args()

    from imaging_dags.local import s3_server
    from imaging_ingest.synth.generate import generate_submission

    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        drop = workdir / "drop"
        summary = generate_submission(drop / "site-bench", patients=args.patients, seed=args.seed)
        (drop / "site-bench" / "READY").write_text("complete\n")
        secret = workdir / "secret.key"
        secret.write_text("6f32572d0b6889cb6c12969e6db6221f542cf1e9959792e2f13596448df4e107")  # benchmark-only key (public)
        files = len(summary.files)
        size = sum((drop / "site-bench" / f).stat().st_size for f in summary.files)
        direct_runs, dag_runs = [], []
        with s3_server() as endpoint:
            for number in range(args.runs):
                direct_runs.append(run_arm("direct", workdir / f"run{number}", drop, endpoint, secret, number))
                dag_runs.append(run_arm("dag", workdir / f"run{number}", drop, endpoint, secret, number))
                print(f"run {number + 1}: direct {direct_runs[-1]['wall_seconds']:.1f} s, "
                      f"dag {dag_runs[-1]['wall_seconds']:.1f} s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def arm(runs: list[dict]) -> dict:
        seconds = [r["wall_seconds"] for r in runs]
        return {
            "seconds": spread(seconds, 2),
            "files_per_s": spread([files / s for s in seconds], 1),
            "peak_rss_mb": spread([r["peak_rss_mb"] for r in runs], 1),
            "published": runs[0]["summary"]["published"],
            "quarantined": runs[0]["summary"]["quarantined"],
            "states": sorted({r["state"] for r in runs}),
        }

    result = header(
        "pipeline",
        "demo collection: Airflow dag.test() vs the same library stages called directly, one process each",
        patients=args.patients, seed=args.seed, runs=args.runs,
    ) | {
        "files": files,
        "bytes": size,
        "direct": arm(direct_runs),
        "dag": arm(dag_runs),
        "ratio_dag_over_direct": spread(
            [d["wall_seconds"] / r["wall_seconds"] for d, r in zip(dag_runs, direct_runs, strict=True)], 3
        ),
        "goal_ratio": 1.5,
    }
    result["goal_met"] = result["ratio_dag_over_direct"]["median"] <= result["goal_ratio"]
    outcomes = {(r["summary"]["published"], r["summary"]["quarantined"]) for r in [*direct_runs, *dag_runs]}
    result["same_outcome"] = len(outcomes) == 1
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
