"""``make demo``: generate a submission, run the demo collection's DAG through Airflow, print a summary.

Everything runs on embedded defaults: SQLite for Airflow and the catalog, an S3 server on
loopback (moto) for every tier, a local folder as the drop. The S3 server lives as long as
this process, so each run starts from an empty archive (``.demo/state/``: catalog, Airflow
database, caches) and ingests the same generated submission: the output is the same every
time. The submission (``.demo/drop/``) and the pseudonymisation secret (``.demo/secret.key``,
generated on first use, never committed) are kept between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "dags"))


def prepare(home: Path, patients: int, seed: int) -> None:
    from imaging_ingest.synth.generate import generate_submission

    secret = home / "secret.key"
    if not secret.exists():
        home.mkdir(parents=True, exist_ok=True)
        secret.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
        secret.chmod(0o600)
    submission = home / "drop" / "demo" / f"site-a-{patients}p-seed{seed}"
    if not (submission / "READY").exists():
        generate_submission(submission, patients=patients, seed=seed, extras=True)
        (submission / "READY").write_text("complete\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=str(REPO / ".demo"), help="where demo state lives")
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fresh", action="store_true", help="also regenerate the submission and the secret")
    args = parser.parse_args()

    home = Path(args.home).resolve()
    if args.fresh and home.exists():
        shutil.rmtree(home)
    state = home / "state"
    shutil.rmtree(state, ignore_errors=True)
    from imaging_dags.local import airflow_environment, migrate, run_dag, s3_server

    os.environ.update(airflow_environment(state / "airflow"))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    os.environ["IMAGING_INGEST_HOME"] = str(state)
    os.environ["IMAGING_INGEST_SECRET_FILE"] = str(home / "secret.key")
    os.environ["IMAGING_INGEST_COLLECTIONS"] = str(REPO / "dags" / "collections")
    os.environ["IMAGING_INGEST_DROP_ROOT"] = str(home / "drop")
    started = time.perf_counter()
    prepare(home, args.patients, args.seed)
    migrate(state / "airflow")
    with s3_server() as endpoint:
        os.environ["IMAGING_INGEST_S3_ENDPOINT"] = endpoint
        from imaging_ingest.config import load_collection_config
        from imaging_ingest.config.settings import Settings
        from imaging_ingest.pipeline.ingest import Ingest
        from imaging_ingest.storage.objects import ObjectStore

        settings = Settings.from_env()
        ObjectStore(settings).ensure_buckets()
        config = load_collection_config(
            REPO / "dags" / "collections" / "demo.yaml", environ={"IMAGING_INGEST_DROP_ROOT": str(home / "drop")}
        )
        ingest = Ingest(config, settings)
        ready = ingest.discover()
        submission_id = ready[0]["submission_id"]
        run = run_dag("ingest__demo", {"submission": submission_id})
        elapsed = time.perf_counter() - started
        if run.state != "success" or submission_id is None:
            print(f"demo run ended in state {run.state}", file=sys.stderr)
            return 1
        summary = ingest.summary(submission_id) | {"elapsed_s": round(elapsed, 1), "dag_run_state": str(run.state)}
    print(json.dumps(summary, indent=2))
    print(
        f"\n{summary['files_in']} files in: {summary['published']} published, {summary['quarantined']} quarantined; "
        f"release {summary['release_key']} (version {summary['version']}) in {summary['elapsed_s']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
