"""Run a collection's DAG in-process (``dag.test()``) on embedded defaults.

Used by ``make demo``, the pipeline benchmark and the end-to-end tests: a real Airflow
DAG run (metadata database, XComs, mapped tasks, Asset events) without a scheduler.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"


def airflow_environment(airflow_home: Path) -> dict[str, str]:
    """Settings for a local, SQLite-backed Airflow that loads only our DAGs."""
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "GX_ANALYTICS_ENABLED": "False",
        # Arrow's own allocator (mimalloc) keeps what manifest reads freed; the system one gives it back.
        "ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "system"),
    }


def migrate(airflow_home: Path) -> None:
    """``airflow db migrate`` once per Airflow home (a few seconds on SQLite)."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    if (airflow_home / ".migrated").exists():
        return
    env = os.environ | airflow_environment(airflow_home)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, capture_output=True)
    (airflow_home / ".migrated").touch()


def load_dag(dag_id: str) -> Any:
    """Parse the DAGs folder as the dag-processor would, and return one DAG."""
    import warnings

    from airflow.dag_processing.dagbag import BundleDagBag

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # third-party deprecations, not ours

    bag = BundleDagBag(str(DAGS_FOLDER), bundle_path=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise KeyError(f"no DAG {dag_id}; found {sorted(bag.dags)}")
    return bag.dags[dag_id]


def run_dag(dag_id: str, conf: dict[str, Any] | None = None) -> Any:
    """Run a DAG once with ``dag.test()``; return the DagRun.

    Deadline alerts are dropped first: ``dag.test()`` (Airflow 3.3.2) hands the run a DAG
    whose ``deadline`` holds serialized alerts instead of the alert ids the dag-processor
    stores, and the run crashes when it succeeds and tries to prune its deadlines. No
    deadline could fire in-process anyway (no scheduler evaluates them).
    """
    dag = load_dag(dag_id)
    dag.deadline = None
    return dag.test(run_conf=conf or {})


@contextmanager
def s3_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """An S3 endpoint on loopback (moto's server, in a thread) for the life of the block."""
    from moto.server import ThreadedMotoServer

    if port == 0:
        import socket

        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()

