"""Fixtures of the intake tests: a real sshd, fault-injecting S3 proxies, hostile submissions."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging_ingest.config import CollectionConfig, DropConfig, License
from imaging_ingest.settings import Settings
from imaging_ingest.storage import ObjectStore

from .servers import SSHD, FaultPlan, FaultProxy, SSHServer


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
