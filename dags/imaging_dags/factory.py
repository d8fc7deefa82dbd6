"""Build one ingest DAG per collection config.

Each task is a few lines that call one stage of ``imaging_ingest.ingest.Ingest``; the
stages pass manifest keys and counts through XCom, never rows. The heavy libraries
(pydicom, pandas, Great Expectations, boto3) are imported by the tasks when they run,
not when the scheduler parses this file.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, Param, dag, task

from imaging_ingest.config import CollectionConfig, ConfigError

if TYPE_CHECKING:
    from imaging_ingest.ingest import Ingest

START_DATE = datetime(2024, 1, 1)

#: The stages, in order: the task ids every ingest DAG has.
STAGES = (
    "discover",
    "claim",
    "stage_raw",
    "inventory",
    "plan_batches",
    "deidentify",
    "screen",
    "verify",
    "register",
    "publish",
    "announce",
)

#: I/O-bound tasks retry with exponential backoff; CPU-bound ones retry once (a lost worker).
IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}


def collection_asset(collection_id: str) -> Asset:
    """The Asset a collection's publications update; fixity audits and index refreshes schedule on it."""
    return Asset(name=f"imaging-collection-{collection_id}", uri=f"imaging://collections/{collection_id}")


def _ingest(config: CollectionConfig) -> Ingest:
    from imaging_dags.runtime import task_drop, task_secret, task_settings
    from imaging_ingest.ingest import Ingest

    return Ingest(config, task_settings(), secret=task_secret(), drop=task_drop(config))


def _doc(config: CollectionConfig) -> str:
    return f"""### Ingest: {config.title}

Collection `{config.id}` ({config.license.value}, tier `{config.tier}`), drop `{config.drop.url}`.

Each run takes one complete submission from the drop (or the one named in the
`submission` parameter), de-identifies, screens and verifies it, registers it in the
catalog and publishes a new collection version. Quarantined files keep their reason in
the catalog and the quarantine tier.

Trigger with parameters to rerun a submission; `force` re-runs an already published one
(idempotent: nothing is published twice). Files a curator approved with
`imaging-ingest quarantine approve` are published by the next run, in a new version.
"""


def build_ingest_dag(config: CollectionConfig) -> Any:
    """The ``ingest__<collection>`` DAG for one validated config."""
    asset = collection_asset(config.id)

    @dag(
        dag_id=config.dag_id,
        description=f"Ingest submissions of {config.title}",
        doc_md=_doc(config),
        schedule=config.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["imaging-ingest", config.id, *config.tags],
        default_args={"owner": config.owner, "retries": 1, "retry_delay": timedelta(seconds=30)},
        params={
            "submission": Param(
                "",
                type="string",
                title="Submission id",
                description="A submission id (sub-...) to (re)run; empty takes the next complete one from the drop.",
            ),
            "force": Param(
                False,
                type="boolean",
                title="Force",
                description="Re-run a submission that is already published (idempotent: nothing is published twice).",
            ),
        },
        render_template_as_native_obj=False,
    )
    def ingest() -> None:
        @task(**IO_RETRIES)
        def discover(params: dict[str, Any] | None = None) -> str:
            """Find the submission to work on: the requested one, or the first complete one in the drop.

            Returns "" when there is none (an empty XCom, not a missing one).
            """
            from imaging_ingest.tiers import init_storage

            ingest = _ingest(config)
            init_storage(ingest.store)  # idempotent set-up of the tiers (buckets, versioning, lifecycle, access)
            requested = (params or {}).get("submission") or ""
            if requested:
                return str(requested)
            ready = ingest.discover()
            return str(ready[0]["submission_id"]) if ready else ""

        @task.short_circuit
        def claim(submission_id: str, params: dict[str, Any] | None = None) -> str | bool:
            """Claim it in the catalog; skip the rest of the run when there is nothing to do."""
            if not submission_id:
                return False
            result = _ingest(config).claim(submission_id, force=bool((params or {}).get("force")))
            return result.submission_id if result.extra["proceed"] else False

        @task(**IO_RETRIES)
        def stage_raw(submission_id: str) -> dict[str, Any]:
            """Copy the originals to the restricted raw tier, checksummed."""
            return _ingest(config).stage_raw(submission_id).as_dict()

        @task
        def inventory(submission_id: str, staged: dict[str, Any]) -> dict[str, Any]:
            """Header-only inventory into a Parquet manifest; gate 1."""
            return _ingest(config).inventory(submission_id).as_dict()

        @task
        def plan_batches(submission_id: str, inventoried: dict[str, Any]) -> list[str]:
            """Batches of whole series, by manifest key."""
            return _ingest(config).plan(submission_id)

        @task(max_active_tis_per_dagrun=4)
        def deidentify(batch_key: str, submission_id: str) -> dict[str, Any]:
            """De-identify one batch into the staging tier."""
            return _ingest(config).deidentify(submission_id, batch_key).as_dict()

        @task
        def screen(submission_id: str, batches: list[dict[str, Any]]) -> dict[str, Any]:
            """Burned-in PHI screening; gate 2."""
            # Index the mapped results (not iterate): iteration probes one past the end, which logs an error.
            manifests = [batches[i]["manifest"] for i in range(len(batches))]
            return _ingest(config).screen(submission_id, manifests).as_dict()

        @task
        def verify(submission_id: str, screened: dict[str, Any]) -> dict[str, Any]:
            """Independent leak scan of every output; gate 3."""
            return _ingest(config).verify(submission_id).as_dict()

        @task(**IO_RETRIES)
        def register(submission_id: str, verified: dict[str, Any]) -> dict[str, Any]:
            """Catalog upsert of patients, studies, series, instances."""
            return _ingest(config).register(submission_id).as_dict()

        @task(**IO_RETRIES)
        def publish(submission_id: str, registered: dict[str, Any]) -> dict[str, Any]:
            """Objects to the collection's tier, then the version's release.json last."""
            return _ingest(config).publish(submission_id).as_dict()

        @task(outlets=[asset])
        def announce(submission_id: str, published: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
            """The run's PHI-free summary, and an Asset event for downstream DAGs."""
            summary = _ingest(config).summary(submission_id)
            if outlet_events is not None:
                outlet_events[asset].extra = {
                    "submission_id": submission_id,
                    "version": summary["version"],
                    "release_key": summary["release_key"],
                }
            return summary

        claimed = claim(discover())
        staged = stage_raw(claimed)
        inventoried = inventory(claimed, staged)
        batches = plan_batches(claimed, inventoried)
        deidentified = deidentify.partial(submission_id=claimed).expand(batch_key=batches)
        screened = screen(claimed, deidentified)
        verified = verify(claimed, screened)
        registered = register(claimed, verified)
        published = publish(claimed, registered)
        announce(claimed, published)

    return ingest()


def build_invalid_config_dag(error: ConfigError) -> Any:
    """A stand-in for a collection whose config is invalid: visible in the UI, fails when run.

    Raising at parse time would drop every collection's DAG with it; this keeps the others
    and still shows the file and fields in the DAG's docs, its tags and its one task.
    """
    stem = error.path.stem.replace("-", "_")
    message = str(error)

    @dag(
        dag_id=f"invalid_config__{stem}",
        description="Invalid collection config: " + message[:200],
        doc_md=f"### Invalid collection config\n\n```\n{message}\n```\n",
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
