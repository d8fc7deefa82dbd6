"""End to end through Airflow: the demo collection's DAG run in-process with ``dag.test()``."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore

pytestmark = pytest.mark.e2e


@pytest.fixture
def demo_env(ingest_env: Settings, submission: Path, airflow_db: Path, demo_collections: Path) -> Settings:
    """The shipped demo config, with its drop pointed at this test's submission."""
    return ingest_env


def _run(conf: dict | None = None):
    from imaging_dags.local import run_dag

    return run_dag("ingest__demo", conf or {})


def _task_states(run) -> dict[str, str]:
    states: dict[str, str] = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, str(ti.state))
    return states


def test_demo_dag_ingests_and_publishes(demo_env: Settings, demo_config: CollectionConfig, submission: Path) -> None:
    run = _run()
    assert str(run.state) == "success", _task_states(run)
    store, catalog = ObjectStore(demo_env), Catalog.from_url(demo_env.catalog_url)

    dicom_files = list(submission.rglob("*.dcm"))
    scanned = [p for p in dicom_files if "SCANNED" in p.parent.name]
    quarantined = catalog.quarantine_items("demo")
    quarantined_dicom = [q for q in quarantined if q.source_path.endswith(".dcm")]
    published = [o for o in store.list("public", "demo/") if o.key.endswith(".dcm")]
    assert len(published) == len(dicom_files) - len(quarantined_dicom)

    instances = {i.object_key: i for i in catalog.instances("demo")}
    assert set(instances) == {o.key for o in published}
    for obj in published:
        assert store.head("public", obj.key).sha256 == instances[obj.key].sha256

    version = catalog.latest_version("demo")
    release = store.get_json("public", version.release_key)
    assert {o["key"] for o in release["objects"] if o["key"].endswith(".dcm")} == {o.key for o in published}
    assert release["object_count"] == len(published) + 1  # and the clinical CSV the demo collection declares

    reasons = {q.source_path: q.reason for q in quarantined}
    for path in scanned:
        assert "BurnedInAnnotation" in reasons[str(path.relative_to(submission))]

    sample = pydicom.dcmread(io.BytesIO(store.get_bytes("public", published[0].key)))
    assert sample.PatientIdentityRemoved == "YES"

    # A second run finds nothing new: every task after discover is skipped, nothing is added.
    before = sorted((o.key, o.size) for o in store.list("public"))
    second = _run()
    assert str(second.state) == "success"
    assert _task_states(second)["publish"] == "skipped"
    assert sorted((o.key, o.size) for o in store.list("public")) == before
    assert len(catalog.versions("demo")) == 1

    # A forced rerun of the same submission re-does every stage and still adds nothing.
    sub = Ingest(demo_config, demo_env).discover() or [{"submission_id": catalog.submissions("demo")[0].id}]
    forced = _run({"submission": sub[0]["submission_id"], "force": True})
    assert str(forced.state) == "success", _task_states(forced)
    assert sorted((o.key, o.size) for o in store.list("public")) == before
    assert len(catalog.versions("demo")) == 1
    catalog.dispose()
