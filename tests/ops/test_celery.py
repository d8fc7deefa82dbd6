"""Scale-out: the same Airflow on the CeleryExecutor, with the test PostgreSQL and Redis
(``IMAGING_INGEST_TEST_PG``, ``IMAGING_INGEST_TEST_REDIS``: see ``backing_services``).

Fresh PostgreSQL databases (Airflow's metadata and the archive's catalog), a Redis broker
on a queue of its own, an api-server, a scheduler, a dag-processor and two Celery workers
as processes; the demo collection is triggered through the REST API. The run must
succeed with every task executed by a Celery worker, and the metrics the workers send
over StatsD (Airflow's and the pipeline's) must arrive. More throughput is then a matter
of starting more workers on more machines: nothing here assumes one process or one host.
Prometheus (Debian's, with the shipped config) then scrapes the exporter and must return every
Airflow metric the dashboard and the alert rules select.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from airflow_stack import AirflowStack, running, wait_until
from backing_services import pg_url, redis_url
from demo_archive import demo_archive
from ops_support import Exporter, value
from prometheus_support import prometheus

pytestmark = [pytest.mark.celery, pytest.mark.postgres, pytest.mark.prometheus]

DAG_ID = "ingest__demo"


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new database on the test PostgreSQL server, dropped afterwards whatever happens."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url(driver=None), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(pg_url(driver=None), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_queue() -> Iterator[tuple[str, str]]:
    """A broker URL and a queue name no other test on this machine uses; its keys are removed after."""
    import random

    import redis

    queue = f"ops_{uuid.uuid4().hex[:10]}"
    url = redis_url(random.randint(1, 15))
    try:
        yield url, queue
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
        client.close()


def test_demo_collection_runs_on_celery_workers(
    tmp_path: Path, synth_cache: Path, exporter: Exporter
) -> None:
    with (
        postgres_database("airflow_celery") as airflow_db,
        postgres_database("imaging_catalog") as catalog_db,
        redis_queue() as (broker, queue),
        demo_archive(
            tmp_path / "archive", synth_cache, catalog_url=pg_url(catalog_db), batch_size=16
        ) as archive,
    ):
        metrics_env = {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(exporter.statsd_port),
            "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
            "AIRFLOW__METRICS__LEGACY_NAMES_ON": "False",
            "IMAGING_INGEST_STATSD_HOST": "127.0.0.1",
            "IMAGING_INGEST_STATSD_PORT": str(exporter.statsd_port),
        }
        stack = AirflowStack(
            home=tmp_path / "airflow",
            database_url=pg_url(airflow_db, driver="psycopg2"),
            executor="CeleryExecutor",
            extra_env=archive.env()
            | metrics_env
            | {
                "AIRFLOW__CELERY__BROKER_URL": broker,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg_url(airflow_db, driver=None),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            },
        )
        components = [["api-server", "--port", str(stack.port)], ["scheduler"], ["dag-processor"]]
        with running(stack, components):
            workers = [f"w{n}-{queue}" for n in (1, 2)]
            for n, name in enumerate(workers, start=1):
                stack.start(f"worker-{n}", "celery", "worker", "-q", queue, "-c", "2", "-H", f"{name}@%h",
                            "--without-gossip", "--without-mingle")
            stack.wait_ready(DAG_ID)
            wait_until(
                lambda: all("ready" in stack.tail(f"worker-{n}", 200) for n in (1, 2)) or stack.check_alive(),
                120, "both Celery workers",
            )

            run_id = stack.trigger(DAG_ID, {"submission": archive.submission_id})
            run = stack.wait_run(DAG_ID, run_id, timeout=480)
            states = stack.task_states(DAG_ID, run_id)
            assert run["state"] == "success", (states, stack.tail("scheduler"), stack.tail("worker-1"))
            assert set(states.values()) == {"success"}
            batches = [t for t in states if t.startswith("deidentify[")]
            assert len(batches) >= 3, "several de-identification batches to share between workers"

            # Every task instance went through a Celery worker of ours.
            executed: dict[str, int] = {}
            for n in (1, 2):
                log = (stack.home / "process-logs" / f"worker-{n}.log").read_text(errors="replace")
                executed[f"worker-{n}"] = len(re.findall(rf"Executing workload in Celery.*{DAG_ID}", log))
            assert sum(executed.values()) == len(states), (executed, len(states))
            print(f"task instances per worker: {executed}")

            with stack.client() as client:
                summary = client.get(
                    f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/announce/xcomEntries/return_value"
                ).json()["value"]
            assert summary["version"] == 1 and summary["published"] > 0

            # Metrics from the worker processes reached the exporter: Airflow's and the pipeline's.
            def metrics_arrived() -> bool:
                samples = exporter.scrape()
                return value(samples, "imaging_ingest_files_published_total", collection="demo") == summary["published"]

            wait_until(metrics_arrived, 30, "the workers' metrics")
            samples = exporter.scrape()
            assert value(samples, "imaging_ingest_files_in_total", collection="demo") == summary["files_in"]
            assert value(
                samples, "airflow_ti_finish_total", dag_id=DAG_ID, task_id="publish", state="success"
            ) == 1
            successes = sum(
                v for (name, labels), v in samples.items()
                if name == "airflow_ti_finish_total" and ("dag_id", DAG_ID) in labels and ("state", "success") in labels
            )
            assert successes == len(states)

            # The real Prometheus with the shipped config scrapes the same exporter: every airflow_*
            # name the dashboard and the alert rules select is one it returns from these processes.
            with prometheus(tmp_path / "prometheus", exporter.url.split("/")[2]) as server:
                server.wait_for(f'airflow_ti_finish_total{{dag_id="{DAG_ID}", task_id="publish", state="success"}}', 1)
                airflow = {name for name in server.selected_names() if name.startswith("airflow_")}
                assert airflow, "the dashboard and the rules select no Airflow metric"
                returned = set(server.api("label/__name__/values"))
                assert airflow <= returned, sorted(airflow - returned)
