"""The mirror DAG through Airflow (``dag.test()``): a run mirrors and audits; a tampered mirror object fails it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from imaging_ingest.mirror.config import load_mirror_target
from imaging_ingest.mirror.sync import MirrorStore, expected_objects

pytestmark = [pytest.mark.mirror, pytest.mark.e2e]


def _states(run) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in run.get_task_instances()}


def test_the_mirror_dag_mirrors_audits_and_fails_on_a_tampered_object(
    archive, mirror_endpoint: str, airflow_db: Path, demo_collections: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imaging_dags.local import run_dag

    settings = archive.settings
    for name, value in {"IMAGING_INGEST_HOME": str(settings.home), "IMAGING_INGEST_CATALOG_URL": settings.catalog_url,
                        "IMAGING_INGEST_S3_ENDPOINT": settings.s3_endpoint,
                        "IMAGING_INGEST_BUCKET_PREFIX": settings.bucket_prefix}.items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "mirrors"
    folder.mkdir()
    bucket = f"mirror-{uuid.uuid4().hex[:10]}"
    (folder / "partner.yaml").write_text(f"id: partner\nendpoint: {mirror_endpoint}\nbucket: {bucket}\n")
    monkeypatch.setenv("IMAGING_INGEST_MIRRORS", str(folder))

    run = run_dag("mirror__partner")
    assert str(run.state) == "success", _states(run)
    assert _states(run) == {"plan[-1]": "success", "sync[0]": "success", "audit[0]": "success"}
    mirror = MirrorStore(load_mirror_target(folder / "partner.yaml"))
    assert set(mirror.sizes("public", "demo/")) == set(expected_objects(archive.store, archive.catalog, "demo", "public"))

    key = sorted(k for k in mirror.sizes("public", "demo/") if k.endswith(".dcm"))[0]
    data = bytearray(mirror.get_bytes("public", key))
    data[-1] ^= 0xFF
    mirror.client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    run = run_dag("mirror__partner")
    assert str(run.state) == "failed"
    states = _states(run)
    assert states["sync[0]"] == "success" and states["audit[0]"] == "failed"  # the fixity audit's finding
    failure = next(ti for ti in run.get_task_instances() if ti.task_id == "audit")
    assert failure.try_number == 1  # a finding is not retried
