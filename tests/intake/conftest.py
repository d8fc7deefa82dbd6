"""Fixtures of the intake tests: a real sshd, fault-injecting S3 proxies, hostile submissions."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from imaging_ingest.catalog import Catalog
from imaging_ingest.catalog.models import Submission
from imaging_ingest.config import CollectionConfig, DropConfig, License
from imaging_ingest.config.settings import Settings
from imaging_ingest.storage.objects import ObjectStore

from .servers import SSHD, FaultPlan, FaultProxy, SSHServer

#: The pseudonymisation key of every intake test (never a production key).
#: A test-only key (public, so never a production key): 64 hex characters, as check_secret requires.
SECRET = b"af2188caf095f81a0a45290744f42dfbd688ce31337066f35c633ada608322b4"


def make_settings(home: Path, endpoint: str) -> Settings:
    """A private archive on an S3 endpoint: own home, SQLite catalog and bucket prefix."""
    settings = Settings(
        home=home,
        catalog_url=f"sqlite:///{home / 'catalog.sqlite'}",
        s3_endpoint=endpoint,
        bucket_prefix=f"i{uuid.uuid4().hex[:10]}",
    )
    ObjectStore(settings).ensure_buckets()
    return settings


def run_intake_dag(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    settings: Settings,
    config: CollectionConfig,
    connection_id: str,
    connection: dict[str, object],
) -> Submission:
    """Run the ``ingest__intake`` DAG with ``config``, its drop reached through an Airflow Connection.

    Asserts the run succeeded; returns the catalog's submission. The Connection comes from
    the environment (``AIRFLOW_CONN_<ID>``), the way a deployment's secrets backend gives it.
    """
    from imaging_dags.local import run_dag

    collections = tmp_path / "collections"
    collections.mkdir()
    (collections / "intake.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    for name, value in {
        f"AIRFLOW_CONN_{connection_id.upper()}": json.dumps(connection),
        "IMAGING_INGEST_COLLECTIONS": str(collections),
        "IMAGING_INGEST_HOME": str(settings.home),
        "IMAGING_INGEST_CATALOG_URL": settings.catalog_url,
        "IMAGING_INGEST_S3_ENDPOINT": settings.s3_endpoint or "",
        "IMAGING_INGEST_BUCKET_PREFIX": settings.bucket_prefix,
        "IMAGING_INGEST_SECRET": SECRET.decode(),
    }.items():
        monkeypatch.setenv(name, value)
    run = run_dag("ingest__intake")
    assert str(run.state) == "success", {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    catalog = Catalog.from_url(settings.catalog_url)
    try:
        return catalog.submissions("intake")[0]
    finally:
        catalog.dispose()


def intake_config(url: str, **drop: object) -> CollectionConfig:
    """A small public CT/MR collection reading from ``url``."""
    return CollectionConfig(
        id="intake",
        title="Intake test collection",
        license=License.CC_BY_4_0,
        drop=DropConfig(url=url, **drop),  # type: ignore[arg-type]
        modalities=["CT", "MR"],
    )


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """One OpenSSH server for the session (tests that restart it take ``own_sshd``)."""
    if not Path(SSHD).exists():
        pytest.fail("OpenSSH sshd is missing: `make system-deps` installs openssh-server")
    server = SSHServer(tmp_path_factory.mktemp("sshd"))
    server.setup()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_sshd(tmp_path: Path) -> Iterator[SSHServer]:
    server = SSHServer(tmp_path / "sshd")
    server.setup()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fault_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """A proxy in front of the session's S3 server; tests set ``proxy.plan`` before the run."""
    with FaultProxy(s3_endpoint, FaultPlan()) as proxy:
        yield proxy


@pytest.fixture
def small_submission(tmp_path: Path, synth_cache: Path) -> Path:
    """One patient's baseline CT and MR series (14 files), with a READY marker, in a drop folder."""
    target = tmp_path / "intake-drop" / "site-b-1"
    patient = sorted(p for p in synth_cache.iterdir() if p.is_dir())[0]
    study = sorted(p for p in patient.iterdir() if p.is_dir())[0]
    for series in ("002_CT_CHEST_AXIAL", "003_MR_BRAIN_T1_POST"):
        shutil.copytree(study / series, target / series)
    (target / "READY").write_text("complete\n")
    return target
