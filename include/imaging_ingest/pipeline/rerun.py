"""Which stages a run executes, which it re-uses, and which it skips: the one place that decides.

Two things decide it, and :class:`StagePlan` combines them:

- **curators' approvals**: a published submission whose quarantined files curators approved
  is run again to publish them; its originals, inventory, batches and de-identified
  batches are those of its first run, so those stages re-use their manifests;
- **the run's parameters** (:class:`RunRequest`, the Airflow trigger form's fields).

A run is asked for with four parameters (the Airflow trigger form's fields):

- ``submission``: the submission to (re)run; empty takes the next complete one in the drop;
- ``stages``: the stages to execute. A stage left out re-uses the manifest its last
  execution left in the staging tier (every stage writes one, by convention), so rerunning
  ``verify`` and what follows does not copy, inventory or de-identify again. Nothing or
  everything selected means every stage;
- ``force``: re-run a submission that is already published (idempotent: nothing is
  published twice). Selecting only some stages implies it: asking for a stage is asking
  for it to run;
- ``dry_run``: execute up to ``verify`` and report what would be published; ``register``
  and ``publish`` are skipped, so the catalog gains no instances and no version.

Reruns are idempotent because the stages are: a re-executed stage rewrites the same
manifest, the same object keys and the same catalog rows.

This module is imported by the DAG factory at parse time for the stage names: it imports
nothing heavy (pandas, the catalog) until a function runs.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from imaging_ingest.pipeline.base import IngestBase as Ingest
    from imaging_ingest.pipeline.base import StageResult

__all__ = [
    "SELECTABLE_STAGES",
    "MissingManifest",
    "RunRequest",
    "StagePlan",
    "UnknownSubmission",
    "preview",
    "resolve_submission",
    "reuse",
    "reuse_batches",
    "run_or_reuse",
]

log = logging.getLogger(__name__)

#: The stages a curator may select, in order (discover, claim and announce always run).
SELECTABLE_STAGES: tuple[str, ...] = (
    "stage_raw",
    "inventory",
    "plan_batches",
    "deidentify",
    "screen",
    "verify",
    "register",
    "publish",
)
#: Stages that write the catalog's instances and versions or the public tier: a dry run skips them.
WRITING_STAGES = frozenset({"register", "publish"})

#: Stages a run publishing curators' approvals re-uses from the submission's first run.
APPROVALS_REUSE = frozenset({"stage_raw", "inventory", "plan_batches", "deidentify"})

#: The manifest each stage leaves behind (``deidentify`` leaves one per batch, ``plan_batches`` the batches).
STAGE_MANIFEST = {
    "stage_raw": "staged",
    "inventory": "inventory",
    "screen": "screened",
    "verify": "verified",
    "register": "verified",
    "publish": "published",
}

Action = Literal["run", "reuse", "skip"]


class UnknownSubmission(ValueError):
    """The requested submission id is not in the catalog nor among the drop's complete submissions."""


class MissingManifest(RuntimeError):
    """A stage was not selected, but no earlier execution left the manifest it would re-use."""


@dataclass(frozen=True)
class RunRequest:
    """A run's parameters, validated."""

    submission: str | None = None
    stages: tuple[str, ...] = SELECTABLE_STAGES
    force: bool = False
    dry_run: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> RunRequest:
        """Read the trigger form's values; raise ``ValueError`` naming anything invalid."""
        params = params or {}
        submission = params.get("submission") or None
        if submission is not None:
            submission = str(submission).strip() or None
        selected = params.get("stages") or []
        if isinstance(selected, str):
            selected = [s.strip() for s in selected.split(",") if s.strip()]
        unknown = sorted(set(selected) - set(SELECTABLE_STAGES))
        if unknown:
            raise ValueError(
                f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(SELECTABLE_STAGES)}"
            )
        stages = tuple(s for s in SELECTABLE_STAGES if s in selected) or SELECTABLE_STAGES
        return cls(submission, stages, bool(params.get("force")), bool(params.get("dry_run")))

    @property
    def partial(self) -> bool:
        """True when some stages re-use earlier manifests instead of running."""
        return set(self.stages) != set(SELECTABLE_STAGES)

    @property
    def proceed_if_published(self) -> bool:
        return self.force or self.partial



@dataclass(frozen=True)
class StagePlan:
    """Per stage of one run: ``run`` it, ``reuse`` its last manifest, or ``skip`` it.

    ``approvals`` is True when the run publishes curators' approvals of a published
    submission (the catalog says so: its state is ``approvals``).
    """

    request: RunRequest = RunRequest()
    approvals: bool = False

    @classmethod
    def for_submission(cls, ingest: Ingest, submission_id: str, request: RunRequest | None = None) -> StagePlan:
        from imaging_ingest.curation.quarantine import APPROVALS_STATE

        row = ingest.catalog.submission(submission_id)
        return cls(request or RunRequest(), approvals=row is not None and row.state == APPROVALS_STATE)

    def action(self, stage: str) -> Action:
        """``run`` the stage, ``reuse`` its last manifest, or ``skip`` it (a dry run's writes)."""
        if stage not in SELECTABLE_STAGES:
            raise ValueError(f"{stage} is not a selectable stage")
        if self.request.dry_run and stage in WRITING_STAGES:
            return "skip"
        if self.approvals and stage in APPROVALS_REUSE:
            return "reuse"
        return "run" if stage in self.request.stages else "reuse"


def run_or_reuse(
    ingest: Ingest,
    plan: StagePlan,
    stage: str,
    submission_id: str,
    execute: Callable[[], StageResult],
    batch_key: str | None = None,
) -> StageResult | None:
    """Execute a stage or re-use its last manifest, as the plan says; None when the plan skips it."""
    action = plan.action(stage)
    if action == "skip":
        return None
    if action == "run":
        return execute()
    return reuse(ingest, stage, submission_id, batch_key)


class _Discovering(Protocol):
    """An ingest that can list its drop (``Ingest``); typed structurally so this module stays light."""

    @property
    def catalog(self) -> Any: ...

    config: Any

    def discover(self) -> list[dict[str, Any]]: ...


def resolve_submission(ingest: _Discovering, submission_id: str) -> str:
    """Check a requested id belongs to this collection, discovering the drop once if it is new."""
    for attempt in range(2):
        row = ingest.catalog.submission(submission_id)
        if row is not None:
            if row.collection_id != ingest.config.id:
                raise UnknownSubmission(
                    f"submission {submission_id} belongs to collection {row.collection_id}, not {ingest.config.id}"
                )
            return submission_id
        if attempt == 0:
            ingest.discover()
    known = [s.id for s in ingest.catalog.submissions(ingest.config.id)][-5:]
    raise UnknownSubmission(
        f"unknown submission {submission_id} for collection {ingest.config.id}"
        + (f"; recent ones: {', '.join(known)}" if known else "; the catalog knows none yet")
    )


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    from imaging_ingest.pipeline.manifest import status_counts

    return status_counts(frame)


def _read(ingest: Ingest, stage: str, submission_id: str, name: str) -> tuple[str, pd.DataFrame]:
    manifests = ingest.manifests(submission_id)
    if not manifests.exists(name):
        raise MissingManifest(
            f"stage {stage} was not selected, but submission {submission_id} has no '{name}' manifest "
            f"from an earlier run to re-use: select {stage} too"
        )
    return manifests.key(name), manifests.read(name)


def reuse(ingest: Ingest, stage: str, submission_id: str, batch_key: str | None = None) -> StageResult:
    """The result a stage's last execution left, read back from its manifest (nothing re-done)."""
    from imaging_ingest.pipeline.base import StageResult

    if stage == "deidentify":
        if batch_key is None:
            raise ValueError("re-using deidentify needs the batch key")
        name = "deid/" + batch_key.rsplit("/", 1)[-1].removesuffix(".parquet")
    else:
        name = STAGE_MANIFEST[stage]
    key, frame = _read(ingest, stage, submission_id, name)
    log.info("%s: not run; re-using %s", stage, key)
    extra: dict[str, Any] = {"reused": True}
    if stage == "deidentify":
        from imaging_ingest.deid.batch import freetext_counts

        extra |= freetext_counts(frame)
    return StageResult(stage, submission_id, key, _counts(frame), extra)


def reuse_batches(ingest: Ingest, submission_id: str) -> list[str]:
    """The batch manifests the last ``plan_batches`` wrote, in order."""
    from imaging_ingest.pipeline.manifest import STATUS_OK

    prefix = ingest.manifests(submission_id).key("batches/").removesuffix(".parquet")
    keys = sorted(o.key for o in ingest.store.list("staging", prefix) if o.key.endswith(".parquet"))
    if not keys and ingest.manifests(submission_id).exists("inventory"):
        frame = ingest.manifests(submission_id).read("inventory")
        if not (frame["status"] == STATUS_OK).any():
            return []  # nothing went on past the inventory: no batches is the right answer
    if not keys:
        raise MissingManifest(
            f"stage plan_batches was not selected, but submission {submission_id} has no batches "
            "from an earlier run to re-use: select plan_batches too"
        )
    log.info("plan_batches: not selected; re-using %d batch(es)", len(keys))
    return keys


def preview(ingest: Ingest, submission_id: str) -> dict[str, Any]:
    """A dry run's report: what publishing the verified manifest would do (PHI-free counts)."""
    from imaging_ingest.pipeline.manifest import STATUS_OK, STATUS_QUARANTINED

    key, frame = _read(ingest, "verify", submission_id, "verified")
    reasons = Counter(frame.loc[frame["status"] == STATUS_QUARANTINED, "reason"])
    latest = ingest.catalog.latest_version(ingest.config.id)
    return {
        "collection": ingest.config.id,
        "submission_id": submission_id,
        "dry_run": True,
        "files_in": len(frame),
        "would_publish": int((frame["status"] == STATUS_OK).sum()),
        "quarantined": int((frame["status"] == STATUS_QUARANTINED).sum()),
        "quarantine_reasons": dict(sorted(reasons.items())),
        "current_version": latest.number if latest else None,
        "manifest": key,
        "tier": ingest.config.tier,
    }
