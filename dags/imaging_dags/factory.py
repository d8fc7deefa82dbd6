"""Build one ingest DAG per collection config.

Each task is a few lines that call one stage of ``imaging_ingest.pipeline.ingest.Ingest``; the
stages pass manifest keys and counts through XCom, never rows. The heavy libraries
(pydicom, pandas, Great Expectations, boto3) are imported by the tasks when they run,
not when the scheduler parses this file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AsyncCallback, DeadlineAlert, DeadlineReference, Param, dag, task

from imaging_dags.callbacks import task_failed
from imaging_ingest.config import CollectionConfig, ConfigError
from imaging_ingest.intake.submission_index import known_submission_ids
from imaging_ingest.pipeline.rerun import SELECTABLE_STAGES, RunRequest

if TYPE_CHECKING:
    from imaging_ingest.pipeline.ingest import Ingest, StageResult

START_DATE = datetime(2024, 1, 1)

#: The stages, in order: the task ids every ingest DAG has (discover, claim and announce always run).
STAGES = ("discover", "claim", *SELECTABLE_STAGES, "announce")

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


#: What each selectable stage does, for the trigger form's stage picker.
STAGE_LABELS = {
    "stage_raw": "stage_raw: copy the originals to the raw tier",
    "inventory": "inventory: read headers (gate 1)",
    "plan_batches": "plan_batches: split into batches",
    "deidentify": "deidentify: de-identify each batch",
    "screen": "screen: burned-in PHI screening (gate 2)",
    "verify": "verify: leak scan (gate 3)",
    "register": "register: catalog the instances",
    "publish": "publish: new collection version",
}


def _ingest(config: CollectionConfig) -> Ingest:
    from imaging_dags.runtime import task_drop, task_secret, task_settings
    from imaging_ingest.pipeline.ingest import Ingest

    return Ingest(config, task_settings(), secret=task_secret(), drop=task_drop(config))


def _request(params: dict[str, Any] | None) -> RunRequest:
    """The run's parameters; a bad value fails the task at once (retrying cannot fix it)."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return RunRequest.from_params(params)
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from None


def _stage(
    config: CollectionConfig,
    stage: str,
    submission_id: str,
    params: dict[str, Any] | None,
    execute: Callable[[Ingest], StageResult],
    batch_key: str | None = None,
) -> dict[str, Any]:
    """Execute a stage, re-use its last manifest, or skip it (a dry run's writes), as ``StagePlan`` decides."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from imaging_ingest.pipeline.rerun import MissingManifest, StagePlan, run_or_reuse

    request = _request(params)
    with _ingest(config) as ingest:
        plan = StagePlan.for_submission(ingest, submission_id, request)
        try:
            result = run_or_reuse(ingest, plan, stage, submission_id, lambda: execute(ingest), batch_key)
        except MissingManifest as exc:
            raise AirflowFailException(str(exc)) from None
    if result is None:
        raise AirflowSkipException(f"dry run: {stage} is skipped (nothing is registered or published)")
    return result.as_dict()


def submission_param(config: CollectionConfig) -> Param:
    """The submission field; its suggestions come from the local index, read only if present.

    Listing submissions from the catalog here would query a database at parse time; the
    pipeline keeps a small JSON index for this instead (``imaging_ingest.intake.submission_index``).
    The run checks the id against the catalog, so a stale suggestion cannot do harm.
    """
    known = known_submission_ids(os.environ.get("IMAGING_INGEST_HOME"), config.id)
    extra: dict[str, Any] = {"examples": known} if known else {}
    return Param(
        "",
        type=["null", "string"],
        title="Submission id",
        description="The submission (sub-...) to run or rerun; suggestions are the collection's known "
        "submissions, newest first. Empty takes the next complete submission in the drop.",
        **extra,
    )


def _doc(config: CollectionConfig) -> str:
    return f"""### Ingest: {config.title}

Collection `{config.id}` ({config.license.value}, tier `{config.tier}`), drop `{config.drop.url}`.

Each run takes one complete submission from the drop (or the one named in the
`submission` parameter), de-identifies, screens and verifies it, registers it in the
catalog and publishes a new collection version. Quarantined files keep their reason in
the catalog and the quarantine tier.

Trigger with parameters to rerun a submission: pick its id, the stages to execute
(stages left out re-use the manifests of their last execution), `force` to re-run an
already published submission (idempotent: nothing is published twice) and `dry_run` to
stop after verification and report what would be published.
Files a curator approved (`imaging-ingest quarantine approve`, or the Archive page) are
published by the next run, in a new version.
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
        default_args={
            "owner": config.owner,
            "retries": 1,
            "retry_delay": timedelta(seconds=30),
            "on_failure_callback": task_failed,
        },
        params={
            "submission": submission_param(config),
            "stages": Param(
                list(SELECTABLE_STAGES),
                type=["null", "array"],
                items={"type": "string", "enum": list(SELECTABLE_STAGES)},
                examples=list(SELECTABLE_STAGES),
                values_display=STAGE_LABELS,
                title="Stages to run",
                description="Stages to execute; a stage left out re-uses the manifest of its last execution "
                "(for example keep verify, register and publish to re-verify and re-publish without "
                "de-identifying again). Choosing only some stages re-runs them even on a published submission.",
            ),
            "force": Param(
                False,
                type="boolean",
                title="Force re-publish",
                description="Re-run a submission that is already published (idempotent: nothing is published twice).",
            ),
            "dry_run": Param(
                False,
                type="boolean",
                title="Dry run",
                description="Stop after verify and report what would be published: register and publish are "
                "skipped, so the catalog gains no instances and the collection no version.",
            ),
        },
        deadline=DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(minutes=config.run_deadline_minutes),
            callback=AsyncCallback(
                "imaging_dags.callbacks.deadline_missed",
                kwargs={"collection": config.id, "minutes": config.run_deadline_minutes},
            ),
        ),
        render_template_as_native_obj=False,
    )
    def ingest() -> None:
        @task(**IO_RETRIES)
        def discover(params: dict[str, Any] | None = None) -> str:
            """Find the submission to work on: the requested one (checked), or the first complete one in the drop.

            Returns "" when there is none (an empty XCom, not a missing one).
            """
            from airflow.sdk.exceptions import AirflowFailException

            from imaging_ingest.pipeline.rerun import UnknownSubmission, resolve_submission
            from imaging_ingest.storage.tiers import ensure_storage

            request = _request(params)
            with _ingest(config) as ingest:
                ensure_storage(ingest.store)  # the tiers exist and carry the policy (reconciled when it changed)
                if request.submission:
                    try:
                        return resolve_submission(ingest, request.submission)
                    except UnknownSubmission as exc:
                        raise AirflowFailException(str(exc)) from None
                ready = ingest.discover()
            return str(ready[0]["submission_id"]) if ready else ""

        @task.short_circuit
        def claim(submission_id: str, params: dict[str, Any] | None = None) -> str | bool:
            """Claim it in the catalog; skip the rest of the run when there is nothing to do."""
            if not submission_id:
                return False
            request = _request(params)
            with _ingest(config) as ingest:
                result = ingest.claim(submission_id, force=request.proceed_if_published)
            return result.submission_id if result.extra["proceed"] else False

        @task(**IO_RETRIES)
        def stage_raw(submission_id: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
            """Copy the originals to the restricted raw tier, checksummed."""
            return _stage(config, "stage_raw", submission_id, params, lambda i: i.stage_raw(submission_id))

        @task
        def inventory(submission_id: str, staged: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
            """Header-only inventory into a Parquet manifest; gate 1."""
            return _stage(config, "inventory", submission_id, params, lambda i: i.inventory(submission_id))

        @task
        def plan_batches(
            submission_id: str, inventoried: dict[str, Any], params: dict[str, Any] | None = None
        ) -> list[str]:
            """Batches of whole series, by manifest key."""
            from airflow.sdk.exceptions import AirflowFailException

            from imaging_ingest.pipeline.rerun import MissingManifest, StagePlan, reuse_batches

            with _ingest(config) as ingest:
                if StagePlan.for_submission(ingest, submission_id, _request(params)).action("plan_batches") == "run":
                    return ingest.plan(submission_id)
                try:
                    return reuse_batches(ingest, submission_id)
                except MissingManifest as exc:
                    raise AirflowFailException(str(exc)) from None

        @task(max_active_tis_per_dagrun=4)
        def deidentify(batch_key: str, submission_id: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
            """De-identify one batch into the staging tier."""
            return _stage(
                config, "deidentify", submission_id, params, lambda i: i.deidentify(submission_id, batch_key), batch_key
            )

        @task
        def screen(
            submission_id: str, batches: list[dict[str, Any]], params: dict[str, Any] | None = None
        ) -> dict[str, Any]:
            """Burned-in PHI screening; gate 2."""
            # Index the mapped results (not iterate): iteration probes one past the end, which logs an error.
            keys = [batches[i]["manifest"] for i in range(len(batches))]
            return _stage(config, "screen", submission_id, params, lambda i: i.screen(submission_id, keys))

        @task
        def verify(submission_id: str, screened: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
            """Independent leak scan of every output; gate 3. A dry run reports what would be published."""
            import json
            import logging

            from imaging_ingest.pipeline.rerun import preview

            result = _stage(config, "verify", submission_id, params, lambda i: i.verify(submission_id))
            if _request(params).dry_run:
                with _ingest(config) as ingest:
                    report = preview(ingest, submission_id)
                logging.getLogger(__name__).info("dry run report: %s", json.dumps(report))
                result["extra"] = {**result.get("extra", {}), "dry_run_report": report}
            return result

        @task(**IO_RETRIES)
        def register(submission_id: str, verified: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
            """Catalog upsert of patients, studies, series, instances."""
            return _stage(config, "register", submission_id, params, lambda i: i.register(submission_id))

        @task(**IO_RETRIES)
        def publish(submission_id: str, registered: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
            """Objects to the collection's tier, then the version's release.json last."""
            return _stage(config, "publish", submission_id, params, lambda i: i.publish(submission_id))

        @task(outlets=[asset])
        def announce(submission_id: str, published: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
            """The run's PHI-free summary, the site's submission report (to its drop), an Asset event."""
            with _ingest(config) as ingest:
                summary = ingest.announce(submission_id)
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
