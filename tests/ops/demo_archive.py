"""A demo archive on loopback for the process-level tests: S3 (moto, its own process), a catalog,
a drop holding one complete synthetic submission, and the demo collection config pointing at it."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from airflow_stack import moto_server
from ops_support import demo_config_text

from imaging_ingest.config import load_collection_config
from imaging_ingest.config.settings import Settings
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore

SECRET = "b4fd58cce48365f40f7667e1de9a1a95f880989b960509a1b566300e6ff13fa9"  # test-only key (public)


@dataclass
class DemoArchive:
    settings: Settings
    collections: Path
    drop: Path
    submission_dir: Path
    submission_id: str

    def env(self) -> dict[str, str]:
        """What every Airflow process needs to reach this archive."""
        return {
            "IMAGING_INGEST_HOME": str(self.settings.home),
            "IMAGING_INGEST_CATALOG_URL": self.settings.catalog_url,
            "IMAGING_INGEST_S3_ENDPOINT": self.settings.s3_endpoint or "",
            "IMAGING_INGEST_BUCKET_PREFIX": self.settings.bucket_prefix,
            "IMAGING_INGEST_SECRET": SECRET,
            "IMAGING_INGEST_CURATORS": "admin",  # the simple auth manager has no Curator role
            "IMAGING_INGEST_COLLECTIONS": str(self.collections),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@contextmanager
def demo_archive(
    root: Path, synth: Path, catalog_url: str | None = None, batch_size: int | None = None
) -> Iterator[DemoArchive]:
    """Build the archive under ``root``; the submission is discovered so its id is known up front."""
    with moto_server(root / "logs") as endpoint:
        home = root / "home"
        settings = Settings(
            home=home,
            catalog_url=catalog_url or f"sqlite:///{home / 'catalog.sqlite'}",
            s3_endpoint=endpoint,
            bucket_prefix=f"ops{uuid.uuid4().hex[:8]}",
        )
        ObjectStore(settings).ensure_buckets()
        drop = root / "drop"
        submission_dir = drop / "site-a-batch-1"
        shutil.copytree(synth, submission_dir)
        (submission_dir / "READY").write_text("complete\n")
        collections = root / "collections"
        collections.mkdir()
        overrides = {"batch_size": batch_size} if batch_size is not None else {}
        (collections / "demo.yaml").write_text(demo_config_text(drop, **overrides))
        config = load_collection_config(collections / "demo.yaml")
        (ready,) = Ingest(config, settings, secret=SECRET.encode()).discover()
        yield DemoArchive(settings, collections, drop, submission_dir, ready["submission_id"])
