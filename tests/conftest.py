"""Shared fixtures: a loopback S3 server, per-test settings and catalog, synthetic submissions.

Airflow reads its configuration on first import, so the test session's Airflow home and
settings are put into the environment here, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from backing_services import REQUIREMENTS, missing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "dags"))

from imaging_dags.local import airflow_environment, migrate, s3_server  # noqa: E402

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="imaging-ingest-airflow-"))
os.environ.update(airflow_environment(AIRFLOW_HOME))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in list(os.environ):
    # the machine's archive settings must not leak into tests; where the test services are stays
    if _name.startswith("IMAGING_INGEST_") and not _name.startswith("IMAGING_INGEST_TEST_"):
        del os.environ[_name]

from imaging_ingest.catalog import Catalog  # noqa: E402
from imaging_ingest.config import CollectionConfig, load_collection_config  # noqa: E402
from imaging_ingest.config.settings import Settings  # noqa: E402
from imaging_ingest.storage.objects import ObjectStore  # noqa: E402

#: A test-only key (public, so never a production key): 64 hex characters, as check_secret requires.
SECRET = b"af2188caf095f81a0a45290744f42dfbd688ce31337066f35c633ada608322b4"
DEMO_CONFIG = ROOT / "dags" / "collections" / "demo.yaml"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``system`` every test that needs a tool or service outside Python (``make unit`` deselects it).

    Runs before pytest's own ``-m`` selection, so ``-m "not system"`` sees the added marker.
    """
    for item in items:
        if any(item.get_closest_marker(name) for name in REQUIREMENTS):
            item.add_marker(pytest.mark.system)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test whose tool or service is missing fails, naming the package that brings it."""
    for name in REQUIREMENTS:
        if item.get_closest_marker(name) and (why := missing(name)):
            pytest.fail(why, pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One S3 server on loopback for the session; each test gets its own buckets."""
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def secret() -> bytes:
    return SECRET


@pytest.fixture
def settings(tmp_path: Path, s3_endpoint: str) -> Settings:
    """Settings of a private archive: own home, SQLite catalog and bucket prefix."""
    home = tmp_path / "home"
    settings = Settings(
        home=home,
        catalog_url=f"sqlite:///{home / 'catalog.sqlite'}",
        s3_endpoint=s3_endpoint,
        bucket_prefix=f"t{uuid.uuid4().hex[:10]}",
    )
    ObjectStore(settings).ensure_buckets()
    return settings


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    return ObjectStore(settings)


@pytest.fixture
def catalog(settings: Settings) -> Iterator[Catalog]:
    catalog = Catalog.from_url(settings.catalog_url)
    yield catalog
    catalog.dispose()


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-patient synthetic submission, generated once; copy it before changing it."""
    from imaging_ingest.synth.generate import generate_submission

    root = tmp_path_factory.mktemp("synth") / "submission"
    generate_submission(root, patients=2, seed=11)
    return root


@pytest.fixture
def drop_root(tmp_path: Path) -> Path:
    root = tmp_path / "drop"
    root.mkdir()
    return root


@pytest.fixture
def submission(drop_root: Path, synth_cache: Path) -> Path:
    """The synthetic submission placed in the drop, complete (READY marker written)."""
    target = drop_root / "site-a-batch-1"
    shutil.copytree(synth_cache, target)
    (target / "READY").write_text("complete\n")
    return target


@pytest.fixture
def demo_config(drop_root: Path) -> CollectionConfig:
    """The shipped demo collection config, pointed at this test's drop."""
    config = load_collection_config(DEMO_CONFIG, environ={})
    return config.model_copy(update={"drop": config.drop.model_copy(update={"url": drop_root.as_uri()})})


@pytest.fixture
def ingest_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, drop_root: Path) -> Settings:
    """Environment for code that reads settings itself (Airflow tasks, the CLI)."""
    monkeypatch.setenv("IMAGING_INGEST_HOME", str(settings.home))
    monkeypatch.setenv("IMAGING_INGEST_CATALOG_URL", settings.catalog_url)
    monkeypatch.setenv("IMAGING_INGEST_S3_ENDPOINT", settings.s3_endpoint or "")
    monkeypatch.setenv("IMAGING_INGEST_BUCKET_PREFIX", settings.bucket_prefix)
    monkeypatch.setenv("IMAGING_INGEST_SECRET", SECRET.decode())
    monkeypatch.setenv("IMAGING_INGEST_CURATORS", "curator,curator-a,curator-b")  # who may approve in tests
    return settings


@pytest.fixture
def demo_collections(tmp_path: Path, drop_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A collections folder holding the shipped demo config with its drop at this test's drop root.

    The DAG factory reads it (``IMAGING_INGEST_COLLECTIONS``), so DAG runs ingest this test's submissions.
    """
    import yaml

    folder = tmp_path / "collections"
    folder.mkdir(exist_ok=True)
    document = yaml.safe_load(DEMO_CONFIG.read_text())
    document["drop"]["url"] = drop_root.as_uri()
    (folder / "demo.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setenv("IMAGING_INGEST_COLLECTIONS", str(folder))
    return folder


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) for the session."""
    migrate(AIRFLOW_HOME)
    return AIRFLOW_HOME
