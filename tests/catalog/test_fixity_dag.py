"""The fixity audit DAG: its schedule, and a run through Airflow (``dag.test()``) that finds a flipped byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore

ROOT = Path(__file__).resolve().parents[2]


def test_the_fixity_dag_runs_daily_and_on_every_publication() -> None:
    from imaging_dags.local import load_dag

    dag = load_dag("fixity_audit")
    timetable = dag.timetable
    assert type(timetable).__name__ == "AssetOrTimeSchedule"
    assert "imaging-collection-demo" in str(timetable.asset_condition)
    assert type(timetable.timetable).__name__ == "CronTriggerTimetable"
    assert [t.task_id for t in dag.tasks] == ["plan", "audit"]
    assert type(dag.get_task("audit")).__name__.endswith("MappedOperator")  # one task instance per collection
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert {"collection", "mode"} <= set(dag.params)


def _states(run) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in run.get_task_instances()}


@pytest.mark.e2e
def test_fixity_dag_fails_naming_a_tampered_object_and_records_the_event(
    ingest_env: Settings, demo_config: CollectionConfig, submission: Path, airflow_db: Path,
    secret: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from imaging_dags.local import run_dag

    collections = tmp_path / "collections"
    collections.mkdir()
    (collections / "demo.yaml").write_text((ROOT / "dags/collections/demo.yaml").read_text())
    monkeypatch.setenv("IMAGING_INGEST_COLLECTIONS", str(collections))
    store, catalog = ObjectStore(ingest_env), Catalog.from_url(ingest_env.catalog_url)
    summary = Ingest(demo_config, ingest_env, secret=secret, catalog=catalog, store=store).run()
    keys = [o["key"] for o in store.get_json("public", summary["release_key"])["objects"]]

    clean = run_dag("fixity_audit", {"collection": "demo", "mode": "all"})
    assert str(clean.state) == "success", _states(clean)

    victim = keys[3]
    data = bytearray(store.get_bytes("public", victim))
    data[100] ^= 0x40
    store.client.put_object(Bucket=store.bucket("public"), Key=victim, Body=bytes(data))  # behind the pipeline's back

    capfd.readouterr()
    failed = run_dag("fixity_audit", {"collection": "demo", "mode": "all"})
    assert str(failed.state) == "failed"
    out = capfd.readouterr()
    assert f"fixity check failed for 1 object(s): {victim}" in out.out + out.err + caplog.text  # the task log names it
    assert _states(failed) == {"plan[-1]": "success", "audit[0]": "failed"}
    checks = {}
    for key in keys:
        events = [e for e in catalog.audit_trail(key) if e.event_type == "fixity check"]
        assert len(events) == 2, key  # one per run
        checks[key] = events[-1]
    assert checks[victim].outcome == "failure" and "SHA-256" in checks[victim].detail
    assert {k for k, e in checks.items() if e.outcome == "failure"} == {victim}
    catalog.dispose()
