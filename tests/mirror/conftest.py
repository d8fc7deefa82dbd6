"""Mirror and download fixtures: a two-version demo archive (SQLite catalog) and a second S3 server.

The archive is the catalog tests' scenario (``tests/catalog/conftest.py``): submission 1
makes version 1, submission 2 adds a patient and replaces a series (version 2).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from catalog.conftest import (  # the catalog tests' package (tests/ is on sys.path)
    SECRET,
    TwoVersions,
    demo_config_for,
    make_settings,
    object_versions,
    second_submission,
    snapshot,
)

from imaging_dags.local import s3_server
from imaging_ingest.catalog import Catalog
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore
from imaging_ingest.storage.tiers import init_storage

__all__ = ["second_submission"]


@pytest.fixture(scope="session")
def mirror_endpoint() -> Iterator[str]:
    """A second S3 server on loopback: the mirror target."""
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, synth_cache: Path, second_submission: Path
) -> Iterator[TwoVersions]:
    """Versions 1 and 2 of the demo collection on the primary S3 server (once per module)."""
    base = tmp_path_factory.mktemp("mirror-archive")
    drop = base / "drop"
    drop.mkdir()
    url = f"sqlite:///{base / 'catalog.sqlite'}"
    settings = make_settings(base / "home", url, s3_endpoint)
    config = demo_config_for(drop)
    store = ObjectStore(settings)
    init_storage(store)  # the tiers' policies: the public tier is readable anonymously
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
    yield TwoVersions("sqlite", settings, config, store, catalog, first, second, v1_snapshot, v1_versions)
    catalog.dispose()
