"""The fixity audit DAG: re-verify published objects daily and after every publication.

Scheduled on a cron timetable (``IMAGING_INGEST_FIXITY_CRON``, default 03:00 UTC) OR on
any collection's publish Asset. A timetabled run checks every collection by its
``fixity`` policy (all objects, or the daily sample that covers the collection within
``period_days``); a run triggered by a publication checks that collection, including
every object the new version added. The work is ``imaging_ingest.publish.fixity``; a mismatch
fails the collection's task, naming the objects, after every check has been recorded.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import AssetAny, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from imaging_dags.factory import START_DATE, collection_asset
from imaging_ingest.config import load_collections

COLLECTIONS_FOLDER = Path(os.environ.get("IMAGING_INGEST_COLLECTIONS", Path(__file__).parent / "collections"))
FIXITY_CRON = os.environ.get("IMAGING_INGEST_FIXITY_CRON", "0 3 * * *")
ASSET_PREFIX = "imaging-collection-"

_collection_ids = [c.id for c in load_collections(COLLECTIONS_FOLDER).configs]
_timetable = CronTriggerTimetable(FIXITY_CRON, timezone="UTC")
_schedule: Any = (
    AssetOrTimeSchedule(timetable=_timetable, assets=AssetAny(*(collection_asset(c) for c in _collection_ids)))
    if _collection_ids
    else _timetable
)


def _published(triggering_asset_events: Any) -> dict[str, list[int]]:
    """Collection id -> versions announced by the publish Asset events that triggered this run."""
    published: dict[str, list[int]] = {}
    for asset in triggering_asset_events or {}:
        name = getattr(asset, "name", "") or ""
        if not name.startswith(ASSET_PREFIX):
            continue
        versions = published.setdefault(name.removeprefix(ASSET_PREFIX), [])
        for event in triggering_asset_events[asset]:
            version = (event.extra or {}).get("version")
            if isinstance(version, int) and version > 0:
                versions.append(version)
    return published


@dag(
    dag_id="fixity_audit",
    description="Re-verify published objects against their recorded checksums",
    doc_md=__doc__,
    schedule=_schedule,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["imaging-ingest", "fixity"],
    default_args={"owner": "archive", "retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "collection": Param("", type="string", title="Collection", description="Audit only this collection (empty: all)."),
        "mode": Param(
            "policy",
            enum=["policy", "all", "sample"],
            title="Mode",
            description="policy: each collection's fixity config; all: every object; sample: the daily sample.",
        ),
    },
)
def fixity_audit() -> None:
    @task
    def plan(params: dict[str, Any] | None = None, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Which collections to check: the requested one, those that just published, or all."""
        from imaging_ingest.publish.fixity import plan_audits

        params = params or {}
        configs = load_collections(COLLECTIONS_FOLDER).configs
        plans = plan_audits(
            configs,
            requested=params.get("collection") or None,
            mode=params.get("mode") or "policy",
            published=_published(triggering_asset_events),
        )
        return [p.as_dict() for p in plans]

    @task
    def audit(item: dict[str, Any]) -> dict[str, Any]:
        """Check one collection's objects; record every check; fail naming any mismatched object."""
        from airflow.sdk.exceptions import AirflowFailException

        from imaging_dags.runtime import task_settings
        from imaging_ingest.catalog import Catalog
        from imaging_ingest.config import FixityConfig
        from imaging_ingest.publish.fixity import (
            FixityMismatch,
            audit_collection,
            raise_on_mismatch,
            select_targets,
        )
        from imaging_ingest.storage.objects import ObjectStore

        settings = task_settings()
        catalog = Catalog.from_url(settings.catalog_url)
        try:
            policies = {c.id: c.fixity for c in load_collections(COLLECTIONS_FOLDER).configs}
            collection_id = item["collection"]
            targets = select_targets(
                catalog, collection_id, policies.get(collection_id, FixityConfig()),
                mode=item.get("mode") or "policy", version=item.get("version"),
            )
            report = audit_collection(catalog, ObjectStore(settings), collection_id, targets)
            try:
                raise_on_mismatch([report])
            except FixityMismatch as exc:  # a mismatch is a finding, not a transient error: no retry
                raise AirflowFailException(str(exc)) from exc
            return report.as_dict()
        finally:
            catalog.dispose()

    audit.expand(item=plan())


fixity_audit()
