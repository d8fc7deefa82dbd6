"""What the archive page shows, gathered from the collection configs, the catalog and Airflow's runs.

Read on each request (the page is small); the catalog connection is opened once per
api-server process. Nothing here names a file or a drop folder: quarantined items are
shown by submission id, file number, stage and reason. Curators' previews (a file's path,
its pixels and identifying attributes) come from ``imaging_ingest.curation.previews``,
read from the restricted tiers through ``store()``.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "catalog",
    "collections",
    "freetext_collections",
    "item_collection",
    "item_dict",
    "pending_items",
    "rule_regions",
    "store",
]

_lock = threading.Lock()


def collections_folder() -> Path:
    """``IMAGING_INGEST_COLLECTIONS``, else the collections folder beside the DAG files."""
    if os.environ.get("IMAGING_INGEST_COLLECTIONS"):
        return Path(os.environ["IMAGING_INGEST_COLLECTIONS"])
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder")) / "collections"


@cache
def _catalog(url: str) -> Any:
    from imaging_ingest.catalog import Catalog

    return Catalog.from_url(url)


def catalog() -> Any:
    from imaging_ingest.config.settings import Settings

    with _lock:
        return _catalog(Settings.from_env().catalog_url)


@cache
def _store(settings: Any) -> Any:
    from imaging_ingest.storage.objects import ObjectStore

    return ObjectStore(settings)


def store() -> Any:
    """The archive's object store (the restricted tiers hold what previews show)."""
    from imaging_ingest.config.settings import Settings

    with _lock:
        return _store(Settings.from_env())


def rule_regions(collection_id: str) -> dict[str, list[tuple[int, int, int, int]]]:
    """The collection's redaction rules, id -> regions (what a preview draws for the rule the evidence names)."""
    from imaging_ingest.config import load_collections

    for config in load_collections(collections_folder()).configs:
        if config.id == collection_id:
            return {rule.id: list(rule.regions) for rule in config.pixels.redaction_rules}
    return {}


def _last_runs(dag_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The newest run of each DAG, from Airflow's metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    runs: dict[str, dict[str, Any]] = {}
    with create_session() as session:
        for dag_id in dag_ids:
            run = session.scalar(
                select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc()).limit(1)
            )
            if run is not None:
                runs[dag_id] = {
                    "run_id": run.run_id,
                    "state": str(run.state),
                    "run_type": str(run.run_type),
                    "start_date": run.start_date,
                    "end_date": run.end_date,
                    "url": f"/dags/{dag_id}/runs/{run.run_id}",
                }
    return runs


def collections() -> list[dict[str, Any]]:
    """One row per collection config: latest version, last run and the catalog's counts."""
    from sqlalchemy import func, select

    from imaging_ingest.catalog.models import Instance, QuarantineItem
    from imaging_ingest.config import load_collections

    loaded = load_collections(collections_folder())
    cat = catalog()
    with cat.session() as s:
        published = dict(
            s.execute(
                select(Instance.collection_id, func.count())
                .where(Instance.published_version.is_not(None))
                .group_by(Instance.collection_id)
            ).all()
        )
        quarantine = s.execute(
            select(QuarantineItem.collection_id, QuarantineItem.state, func.count()).group_by(
                QuarantineItem.collection_id, QuarantineItem.state
            )
        ).all()
    quarantined: dict[str, int] = {}
    pending: dict[str, int] = {}
    for collection_id, state, count in quarantine:
        quarantined[collection_id] = quarantined.get(collection_id, 0) + int(count)
        if state == "pending":
            pending[collection_id] = int(count)
    runs = _last_runs([c.dag_id for c in loaded.configs])
    rows = []
    for config in loaded.configs:
        latest = cat.latest_version(config.id)
        rows.append(
            {
                "id": config.id,
                "title": config.title,
                "license": config.license.value,
                "tier": config.tier,
                "dag_id": config.dag_id,
                "schedule": config.schedule,
                "latest_version": latest.number if latest else None,
                "latest_version_objects": latest.objects if latest else 0,
                "latest_version_at": latest.created_at if latest else None,
                "published": int(published.get(config.id, 0)),
                "quarantined": quarantined.get(config.id, 0),
                "pending_review": pending.get(config.id, 0),
                "last_run": runs.get(config.dag_id),
            }
        )
    return rows


def item_dict(item: Any) -> dict[str, Any]:
    return {
        "id": item.id,
        "collection": item.collection_id,
        "submission": item.submission_id,
        "file_id": item.file_id,
        "stage": item.stage,
        "reason": item.reason,
        "state": item.state,
        "created_at": item.created_at,
        "decided_at": item.decided_at,
        "decided_by": item.decided_by,
    }


def pending_items(collection: str | None = None) -> list[dict[str, Any]]:
    from imaging_ingest.curation import quarantine

    return [item_dict(i) for i in quarantine.pending(catalog(), collection)]


def item_collection(item_id: int) -> str | None:
    from imaging_ingest.catalog.models import QuarantineItem

    with catalog().session() as s:
        row = s.get(QuarantineItem, item_id)
        return row.collection_id if row is not None else None


def freetext_collections() -> list[str]:
    """Collections with free-text values waiting for review."""
    from sqlalchemy import select

    from imaging_ingest.catalog.textreview import FreeTextValue

    with catalog().session() as s:
        return sorted(s.scalars(select(FreeTextValue.collection_id).where(FreeTextValue.state == "pending").distinct()))
