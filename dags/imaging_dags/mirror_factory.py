"""Build one ``mirror__<target>`` DAG per mirror target config.

The tasks are thin: each calls ``imaging_ingest.mirror`` (plan, sync and verify, audit)
and returns a PHI-free report through XCom. Nothing heavy is imported at parse time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAny, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from imaging_dags.callbacks import task_failed
from imaging_dags.factory import START_DATE, collection_asset

if TYPE_CHECKING:
    from imaging_ingest.mirror.config import MirrorConfigError, MirrorTarget


def _schedule(target: MirrorTarget, collection_ids: Sequence[str]) -> Any:
    """The mirrored collections' publish Assets, or a cron timetable too when the target names one."""
    assets = [collection_asset(c) for c in collection_ids if target.wants(c)]
    timetable = CronTriggerTimetable(target.schedule, timezone="UTC") if target.schedule else None
    if assets and timetable is not None:
        return AssetOrTimeSchedule(timetable=timetable, assets=AssetAny(*assets))
    if assets:
        return AssetAny(*assets)
    return timetable


def _doc(target: MirrorTarget) -> str:
    kind = "restricted and public collections" if target.restricted else "public collections only"
    return f"""### Mirror: {target.title or target.id}

Replicates published collection versions to `{target.endpoint or "AWS S3"}`, bucket `{target.bucket}`
({kind}). Runs when a mirrored collection publishes{" and on `" + target.schedule + "`" if target.schedule else ""}.

Each run copies only what the mirror lacks, each object with its SHA-256 (checked by the
mirror's server), every version's `release.json` last; then reports per collection what is
in sync, missing or different, and audits the mirror's bytes like the primary's fixity
audit (a finding fails the task and raises the same alert). A restricted collection is
never copied to a target not marked restricted. Parameters: `collection` (only one),
`repair` (re-copy objects that differ; they are kept as evidence otherwise).
"""


def build_mirror_dag(target: MirrorTarget, collection_ids: Sequence[str]) -> Any:
    """The ``mirror__<target>`` DAG."""

    @dag(
        dag_id=target.dag_id,
        description=f"Mirror published versions to {target.id}",
        doc_md=_doc(target),
        schedule=_schedule(target, collection_ids),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=target.paused,
        tags=["imaging-ingest", "mirror", target.id],
        default_args={"owner": "archive", "retries": 2, "retry_delay": timedelta(minutes=2),
                      "on_failure_callback": task_failed},
        params={
            "collection": Param("", type="string", title="Collection", description="Mirror only this collection (empty: all)."),
            "repair": Param(False, type="boolean", title="Repair",
                            description="Re-copy objects that differ on the mirror (otherwise only reported)."),
        },
    )
    def mirror() -> None:
        @task
        def plan(params: dict[str, Any] | None = None) -> list[str]:
            """The published collections this target may hold; restricted ones refused (and withdrawn) on a public target."""
            import logging

            from imaging_dags.runtime import task_settings
            from imaging_ingest.catalog import Catalog
            from imaging_ingest.mirror.sync import MirrorStore, plan_collections, withdraw_collection

            wanted = [(params or {}).get("collection")] if (params or {}).get("collection") else []
            catalog = Catalog.from_url(task_settings().catalog_url)
            try:
                covered, refused = plan_collections(catalog, target, wanted)
            finally:
                catalog.dispose()
            for collection_id in refused:
                logging.getLogger(__name__).warning(
                    "mirror %s: %s is restricted and the target is not: not mirrored", target.id, collection_id)
                withdraw_collection(MirrorStore(target), collection_id)  # reclassified after it was mirrored
            return covered

        @task
        def sync(collection_id: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
            """Copy what the mirror lacks; report what is in sync and what differs."""
            from imaging_dags.runtime import task_settings
            from imaging_ingest.catalog import Catalog
            from imaging_ingest.mirror.sync import MirrorStore, sync_collection
            from imaging_ingest.storage.objects import ObjectStore

            settings = task_settings()
            catalog = Catalog.from_url(settings.catalog_url)
            try:
                mirror_store = MirrorStore(target)
                mirror_store.ensure_bucket()
                report = sync_collection(ObjectStore(settings), catalog, mirror_store, collection_id,
                                         workers=target.workers, repair=bool((params or {}).get("repair")))
            finally:
                catalog.dispose()
            return report.as_dict()  # the audit fails the run when anything is missing or differs

        @task
        def audit(report: dict[str, Any]) -> dict[str, Any]:
            """Fixity of the mirror's copy (every published object re-hashed there), then the sync's report: a finding fails."""
            from airflow.sdk.exceptions import AirflowFailException

            from imaging_dags.runtime import task_settings
            from imaging_ingest.catalog import Catalog
            from imaging_ingest.mirror.audit import audit_mirror, raise_on_mirror_mismatch
            from imaging_ingest.mirror.sync import MirrorStore
            from imaging_ingest.publish.fixity import FixityMismatch

            catalog = Catalog.from_url(task_settings().catalog_url)
            try:
                result = audit_mirror(catalog, MirrorStore(target), report["collection"], workers=target.workers)
            finally:
                catalog.dispose()
            try:
                raise_on_mirror_mismatch(target.id, result)
            except FixityMismatch as exc:  # a finding, not a transient error
                raise AirflowFailException(str(exc)) from exc
            if not report["ok"]:
                raise AirflowFailException(
                    f"mirror {target.id}: {report['collection']}: {report['missing_count']} missing, "
                    f"{report['differs_count']} differ from the primary (see the sync task's log)")
            return report | {"fixity": result.as_dict()}

        audit.expand(report=sync.expand(collection_id=plan()))

    return mirror()


def build_invalid_mirror_dag(error: MirrorConfigError) -> Any:
    """A stand-in for a target whose config is invalid: visible, and failing when run."""
    message = str(error)

    @dag(
        dag_id=f"invalid_mirror__{error.path.stem.replace('-', '_')}",
        description="Invalid mirror target config: " + message[:200],
        doc_md=f"### Invalid mirror target config\n\n```\n{message}\n```\n",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        tags=["imaging-ingest", "invalid-config"],
        default_args={"owner": "archive", "retries": 0},
    )
    def invalid() -> None:
        @task
        def config_error() -> None:
            raise ValueError(message)

        config_error()

    return invalid()
