"""Catalog fixtures: every catalog test runs on SQLite and on PostgreSQL.

PostgreSQL is the server ``IMAGING_INGEST_TEST_PG`` names (``backing_services``; by default
127.0.0.1:5432, trust auth, database ``test``); each catalog gets a schema of its own
(``search_path``), dropped afterwards.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from backing_services import pg_url
from sqlalchemy import create_engine, text

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig, load_collection_config
from imaging_ingest.config.settings import Settings
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "dags" / "collections" / "demo.yaml"
SECRET = b"af2188caf095f81a0a45290744f42dfbd688ce31337066f35c633ada608322b4"  # test-only key (public)
PG_BASE = pg_url()

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

#: The series of submission 1 that submission 2 sends again with one changed instance.
REPLACED_SERIES_FOLDER = ("FOLLOWUP", "003_MR_BRAIN_T1_POST")


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one catalog; its URL points the search_path at it."""
    name = f"catalog_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@contextmanager
def catalog_url_for(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'catalog.sqlite'}"
    else:
        with pg_schema() as url:
            yield url


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with catalog_url_for(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    catalog = Catalog.from_url(catalog_url)
    yield catalog
    catalog.dispose()


def demo_config_for(drop: Path, *, supporting: bool = False) -> CollectionConfig:
    """The demo collection on ``drop``; DICOM only unless ``supporting`` (the version tests count instances)."""
    from imaging_ingest.config import ClinicalConfig

    config = load_collection_config(DEMO_CONFIG, environ={})
    update: dict = {"drop": config.drop.model_copy(update={"url": drop.as_uri()})}
    if not supporting:
        update["clinical"] = ClinicalConfig()
    return config.model_copy(update=update)


def make_settings(home: Path, catalog_url: str, s3_endpoint: str) -> Settings:
    settings = Settings(
        home=home, catalog_url=catalog_url, s3_endpoint=s3_endpoint, bucket_prefix=f"c{uuid.uuid4().hex[:10]}"
    )
    ObjectStore(settings).ensure_buckets()
    return settings


@pytest.fixture(scope="session")
def second_submission(tmp_path_factory: pytest.TempPathFactory, synth_cache: Path) -> Path:
    """Submission 2: a third patient, and one series of submission 1 again with one instance changed.

    The changed instance has different pixel bytes, so its de-identified object has the
    same UIDs and different content: a replacement of that series.
    """
    from imaging_ingest.synth.generate import generate_submission

    three = tmp_path_factory.mktemp("synth3") / "three"
    generate_submission(three, patients=3, seed=11)
    root = tmp_path_factory.mktemp("second") / "submission"
    root.mkdir()
    new_patients = sorted({p.name for p in three.iterdir() if p.is_dir()} - {p.name for p in synth_cache.iterdir()})
    assert len(new_patients) == 1
    shutil.copytree(three / new_patients[0], root / new_patients[0])
    first_patient = sorted(p for p in synth_cache.iterdir() if p.is_dir())[0]
    series = next(p for p in first_patient.glob("*/*") if p.parent.name.endswith(REPLACED_SERIES_FOLDER[0])
                  and p.name == REPLACED_SERIES_FOLDER[1])
    target = root / series.relative_to(synth_cache)
    shutil.copytree(series, target)
    changed = sorted(target.glob("*.dcm"))[0]
    ds = pydicom.dcmread(changed)
    pixels = bytearray(ds.PixelData)
    pixels[: len(pixels) // 4] = bytes(255 - b for b in pixels[: len(pixels) // 4])  # a corrected slice
    ds.PixelData = bytes(pixels)
    ds.save_as(changed)
    return root


@dataclass
class TwoVersions:
    """A collection after submission 1 (version 1) and submission 2 (version 2)."""

    backend: str
    settings: Settings
    config: CollectionConfig
    store: ObjectStore
    catalog: Catalog
    first: dict
    second: dict
    v1_snapshot: dict[str, bytes]
    v1_object_versions: dict[str, str]

    def ingest(self) -> Ingest:
        return Ingest(self.config, self.settings, secret=SECRET, catalog=self.catalog, store=self.store)


def snapshot(store: ObjectStore, tier: str, prefix: str) -> dict[str, bytes]:
    return {o.key: store.get_bytes(tier, o.key) for o in store.list(tier, prefix)}


def object_versions(store: ObjectStore, tier: str, prefix: str, *, exclude: str | None = None) -> dict[str, str]:
    """Every S3 object version under a prefix: key -> version id; fails if a key was written twice.

    (The tier buckets keep every version, so this proves an object was never copied again.)
    """
    seen: dict[str, str] = {}
    paginator = store.client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=store.bucket(tier), Prefix=prefix):
        for version in page.get("Versions", []):
            if exclude and exclude in version["Key"]:
                continue
            assert version["Key"] not in seen, f"{version['Key']} was written more than once"
            seen[version["Key"]] = version["VersionId"]
    return seen


@pytest.fixture(scope="module", params=BACKENDS)
def two_versions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str,
    synth_cache: Path, second_submission: Path,
) -> Iterator[TwoVersions]:
    """Ingest submission 1, snapshot version 1, then ingest submission 2 (once per module and backend)."""
    base = tmp_path_factory.mktemp(f"archive-{request.param}")
    drop = base / "drop"
    drop.mkdir()
    with catalog_url_for(request.param, base) as url:
        settings = make_settings(base / "home", url, s3_endpoint)
        config = demo_config_for(drop)
        store = ObjectStore(settings)
        catalog = Catalog.from_url(url)
        ingest = Ingest(config, settings, secret=SECRET, catalog=catalog, store=store)
        shutil.copytree(synth_cache, drop / "site-a-batch-1")
        (drop / "site-a-batch-1" / "READY").write_text("complete\n")
        first = ingest.run()
        v1_snapshot = snapshot(store, "public", "demo/")
        v1_versions = object_versions(store, "public", "demo/")
        shutil.copytree(second_submission, drop / "site-a-batch-2")
        (drop / "site-a-batch-2" / "READY").write_text("complete\n")
        second = ingest.run()
        yield TwoVersions(request.param, settings, config, store, catalog, first, second, v1_snapshot, v1_versions)
        catalog.dispose()
