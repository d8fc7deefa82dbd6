"""Faults: S3 errors and throttling, workers killed mid-task, catalog connection loss.

After each fault the run (or its rerun, as an Airflow retry would do) must succeed with
nothing lost, no partial version visible, and the catalog agreeing with storage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from backing_services import pg_url

from imaging_ingest.catalog import Catalog, SubmissionState
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore

from .conftest import SECRET, intake_config, make_settings
from .servers import FaultPlan, FaultProxy

pytestmark = pytest.mark.faults

KILLER = Path(__file__).with_name("killer.py")


def assert_consistent(ingest: Ingest, files_in: int) -> dict:
    """Exactly one complete release; every listed object verified; catalog == storage; conservation."""
    store, catalog = ingest.store, ingest.catalog
    versions = catalog.versions(ingest.config.id)
    assert [v.number for v in versions] == [1]
    release_key = versions[0].release_key
    release = store.get_json(ingest.publish_tier, release_key)
    listed = {o["key"]: o for o in release["objects"]}
    assert len(listed) == release["object_count"]
    stored = {o.key for o in store.list(ingest.publish_tier, f"{ingest.config.id}/") if "/versions/" not in o.key}
    assert stored == set(listed)  # no stray object from the killed attempt, none missing
    instances = {i.object_key: i for i in catalog.instances(ingest.config.id)}
    assert set(instances) == set(listed)
    for key, obj in listed.items():
        head = store.head(ingest.publish_tier, key)
        assert head is not None and head.sha256 == obj["sha256"] == instances[key].sha256
        assert head.size == obj["size"]
        assert instances[key].published_version == 1
    history = store.client.list_object_versions(Bucket=store.bucket(ingest.publish_tier), Prefix=release_key)
    assert len(history.get("Versions", [])) == 1  # release.json written once, never overwritten
    sub = catalog.submissions(ingest.config.id)[0]
    assert sub.state == SubmissionState.PUBLISHED
    assert sub.published + sub.quarantined == files_in
    return release


def _run_killed(stage: str, ingest: Ingest, submission_id: str, point: str, count: int) -> None:
    env = os.environ | {"IMAGING_INGEST_SECRET": SECRET.decode(), "PYTHONPATH": str(Path(__file__).parents[2] / "include")}
    result = subprocess.run(
        [
            sys.executable, str(KILLER), stage, ingest.settings.model_dump_json(), ingest.config.model_dump_json(),
            submission_id, point, str(count),
        ],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr


@pytest.fixture
def ingest(small_submission: Path, settings: Settings, catalog: Catalog) -> Ingest:
    return Ingest(intake_config(small_submission.parent.as_uri()), settings, secret=SECRET, catalog=catalog)


@pytest.mark.parametrize(("point", "count"), [("copy", 1), ("copy", 7), ("record_version", 0)])
def test_publish_killed_half_way_then_rerun(ingest: Ingest, point: str, count: int) -> None:
    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    ingest.inventory(sub)
    ingest.screen(sub, [ingest.deidentify(sub, key).manifest for key in ingest.plan(sub)])
    ingest.verify(sub)
    ingest.register(sub)

    _run_killed("publish", ingest, sub, point, count)

    store, tier = ingest.store, ingest.publish_tier
    assert ingest.catalog.versions("intake") == []
    assert ingest.catalog.submission(sub).state == SubmissionState.REGISTERED
    if point == "copy":  # killed before the release: no version is visible
        assert [o.key for o in store.list(tier, "intake/versions/")] == []
        # Copies run concurrently: the kill lands after at least ``count`` of them (other copies in
        # flight may finish first), always before release.json, so no version is visible either way.
        assert count <= len([o for o in store.list(tier, "intake/")]) <= 14
    result = ingest.publish(sub)  # the task's retry
    assert result.counts["version"] == 1
    release = assert_consistent(ingest, files_in=14)
    assert release["object_count"] == 14


def test_stage_raw_killed_half_way_then_rerun(ingest: Ingest) -> None:
    sub = ingest.claim().submission_id
    _run_killed("stage_raw", ingest, sub, "put", 5)
    staged = ingest.stage_raw(sub)
    assert staged.counts["files"] == 14 and staged.counts["ok"] == 14
    frame = ingest.manifests(sub).read("staged")
    for row in frame.itertuples():
        assert ingest.store.head("raw", row.raw_key).sha256 == row.sha256_source
    summary = ingest.run(sub, force=True)
    assert summary is not None and summary["published"] == 14
    assert_consistent(ingest, files_in=14)


@pytest.mark.parametrize("kinds", [("500",), ("503",), ("SlowDown",), ("500", "503", "SlowDown")])
def test_s3_errors_and_throttling_are_retried(
    small_submission: Path, tmp_path: Path, s3_endpoint: str, fault_proxy: FaultProxy, kinds: tuple[str, ...]
) -> None:
    direct = make_settings(tmp_path / "home", s3_endpoint)  # buckets made without faults
    settings = direct.model_copy(update={"s3_endpoint": fault_proxy.endpoint})
    fault_proxy.plan = FaultPlan(first=3, fraction=0.05, kinds=kinds, seed=len(kinds))
    catalog = Catalog.from_url(settings.catalog_url)
    ingest = Ingest(intake_config(small_submission.parent.as_uri()), settings, secret=SECRET, catalog=catalog)
    summary = ingest.run()
    assert summary is not None and summary["published"] == 14
    assert set(fault_proxy.plan.injected) == set(kinds)
    assert fault_proxy.plan.total_injected >= 3
    checked = Ingest(ingest.config, direct, secret=SECRET, catalog=catalog, store=ObjectStore(direct))
    assert_consistent(checked, files_in=14)
    catalog.dispose()


def test_s3_drop_read_through_faults(
    small_submission: Path, tmp_path: Path, s3_endpoint: str, fault_proxy: FaultProxy
) -> None:
    """The drop itself is an S3 prefix behind the faulty proxy: listing and reads are retried too."""
    direct = make_settings(tmp_path / "home", s3_endpoint)
    store = ObjectStore(direct)
    for path in small_submission.rglob("*"):
        if path.is_file():
            store.put_file("staging", f"drop/{small_submission.name}/{path.relative_to(small_submission)}", path)
    settings = direct.model_copy(update={"s3_endpoint": fault_proxy.endpoint})
    fault_proxy.plan = FaultPlan(first=2, fraction=0.05, seed=3)
    catalog = Catalog.from_url(settings.catalog_url)
    config = intake_config(f"s3://{direct.bucket('staging')}/drop")
    summary = Ingest(config, settings, secret=SECRET, catalog=catalog).run()
    assert summary is not None and summary["published"] == 14 and summary["files_in"] == 14
    assert fault_proxy.plan.total_injected >= 2
    catalog.dispose()


@pytest.mark.e2e
def test_catalog_connection_loss_is_retried_by_the_task(
    small_submission: Path, ingest_env: Settings, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog drops the connection during stage_raw; Airflow retries the task, which then succeeds."""
    import yaml
    from sqlalchemy.exc import OperationalError

    from imaging_dags.local import run_dag

    config: CollectionConfig = intake_config(small_submission.parent.as_uri())
    collections = tmp_path / "collections"
    collections.mkdir()
    (collections / "intake.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    monkeypatch.setenv("IMAGING_INGEST_COLLECTIONS", str(collections))

    real_set_state = Catalog.set_state
    failures = {"n": 0}

    def flaky_set_state(self: Catalog, submission_id: str, state: str, **kwargs: object) -> None:
        if state == SubmissionState.STAGED and failures["n"] == 0:
            failures["n"] += 1
            self.engine.dispose()
            raise OperationalError("UPDATE submissions", {}, ConnectionResetError("server closed the connection"))
        real_set_state(self, submission_id, state, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Catalog, "set_state", flaky_set_state)
    from imaging_dags import factory

    monkeypatch.setitem(factory.IO_RETRIES, "retry_delay", __import__("datetime").timedelta(seconds=1))
    run = run_dag("ingest__intake")
    tries = {ti.task_id: ti.try_number for ti in run.get_task_instances()}
    assert str(run.state) == "success", tries
    assert failures["n"] == 1
    assert tries["stage_raw"] == 2
    catalog = Catalog.from_url(ingest_env.catalog_url)
    checked = Ingest(config, ingest_env, secret=SECRET, catalog=catalog)
    assert_consistent(checked, files_in=14)
    catalog.dispose()


def test_restricted_collection_never_reaches_the_public_tier(ingest: Ingest, store: ObjectStore) -> None:
    """Even a config that slipped past validation (model_copy does not validate) cannot publish publicly."""
    from imaging_ingest.config import License
    from imaging_ingest.storage.objects import PublicTierViolation

    bad = Ingest(
        ingest.config.model_copy(update={"license": License.RESTRICTED, "tier": "public"}),
        ingest.settings, secret=SECRET, catalog=ingest.catalog,
    )
    sub = bad.claim().submission_id
    bad.stage_raw(sub)
    bad.inventory(sub)
    bad.screen(sub, [bad.deidentify(sub, key).manifest for key in bad.plan(sub)])
    bad.verify(sub)
    bad.register(sub)
    with pytest.raises(PublicTierViolation):
        bad.publish(sub)
    assert list(store.list("public")) == []
    assert bad.catalog.versions("intake") == []


@pytest.fixture
def postgres_catalog() -> Iterator[Catalog]:
    """A catalog in its own database on the test PostgreSQL server (``IMAGING_INGEST_TEST_PG``); dropped afterwards."""
    import uuid

    import psycopg

    name = f"intake_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(pg_url(driver=None), autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    catalog = Catalog.from_url(pg_url(name))
    catalog.database = name  # type: ignore[attr-defined]
    try:
        yield catalog
    finally:
        catalog.dispose()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _terminate_connections(database: str) -> int:
    import psycopg

    with psycopg.connect(pg_url(driver=None), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


@pytest.mark.postgres
def test_catalog_connections_killed_by_the_server(
    small_submission: Path, settings: Settings, postgres_catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real connection loss: the server terminates the catalog's connections between and inside stages."""
    from sqlalchemy.exc import OperationalError

    database = postgres_catalog.database  # type: ignore[attr-defined]
    ingest = Ingest(intake_config(small_submission.parent.as_uri()), settings, secret=SECRET, catalog=postgres_catalog)
    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    assert _terminate_connections(database) >= 1  # idle pooled connections die between stages
    ingest.inventory(sub)  # the pool notices (pre-ping) and reconnects
    ingest.screen(sub, [ingest.deidentify(sub, key).manifest for key in ingest.plan(sub)])
    ingest.verify(sub)

    real_upsert = Catalog._upsert_study
    killed = {"n": 0}

    def upsert_then_lose_connection(s, collection_id, record, patient_id):  # type: ignore[no-untyped-def]
        study_id = real_upsert(s, collection_id, record, patient_id)
        if killed["n"] == 0:
            killed["n"] += 1
            _terminate_connections(database)  # the register transaction's own connection dies mid-way
        return study_id

    monkeypatch.setattr(Catalog, "_upsert_study", staticmethod(upsert_then_lose_connection))
    with pytest.raises(OperationalError):
        ingest.register(sub)
    assert ingest.catalog.instances("intake") == []  # the transaction rolled back as a whole
    ingest.register(sub)  # the task's retry
    ingest.publish(sub)
    assert_consistent(ingest, files_in=14)
