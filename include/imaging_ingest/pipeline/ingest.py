"""One collection's ingest, stage by stage, as plain methods.

``Ingest`` is what the Airflow tasks call, one method per task, and what the benchmark
and tests call directly. Every stage reads the previous stage's manifest from the
staging tier, writes its own, and returns a ``StageResult`` (a manifest key and counts:
small and PHI-free, fit for an XCom). Every stage is idempotent: rerunning it after a
crash or on a curator's request converges to the same manifest, objects and rows.

Conservation holds at every stage: each file of the submission is in every manifest,
either still ``ok`` or ``quarantined`` with a reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from imaging_ingest.core.reasons import rates_by_rule
from imaging_ingest.pipeline.base import (
    NothingToDo,
    StageResult,
    submission_id_for,
)
from imaging_ingest.pipeline.manifest import (
    STATUS_OK,
    STATUS_QUARANTINED,
)
from imaging_ingest.pipeline.rerun import StagePlan, reuse_batches, run_or_reuse
from imaging_ingest.pipeline.site_report import write_site_report
from imaging_ingest.pipeline.stages.deidentify import DeidentifyStage
from imaging_ingest.pipeline.stages.intake import IntakeStages
from imaging_ingest.pipeline.stages.publish import PublishStages
from imaging_ingest.pipeline.stages.screen import ScreenStage
from imaging_ingest.pipeline.stages.verify import VerifyStage

__all__ = ["Ingest", "NothingToDo", "StageResult", "submission_id_for"]

log = logging.getLogger(__name__)


class Ingest(IntakeStages, DeidentifyStage, ScreenStage, VerifyStage, PublishStages):
    """The stages of one collection's ingest, one method per DAG task.

    Each stage's code is in ``stages/`` (one module per stage or group of stages);
    what they share (resources, gates, quarantine bookkeeping) is in ``base.py``.
    """

    def summary(self, submission_id: str) -> dict[str, Any]:
        """A PHI-free summary of a submission's outcome (counts, reasons, version)."""
        manifests = self.manifests(submission_id)
        frame = manifests.read("published")
        row = self._submission(submission_id)
        latest = self.catalog.latest_version(self.config.id)
        reasons = Counter(frame.loc[frame["status"] == STATUS_QUARANTINED, "reason"])
        return {
            "collection": self.config.id,
            "submission_id": submission_id,
            "files_in": len(frame),
            "published": int((frame["status"] == STATUS_OK).sum()),
            "quarantined": int((frame["status"] == STATUS_QUARANTINED).sum()),
            "quarantine_reasons": dict(sorted(reasons.items())),
            "quarantine_by_rule": rates_by_rule(reasons.elements(), len(frame)),
            "version": row.version,
            "release_key": latest.release_key if latest else None,
            "tier": self.config.tier,
        }

    def run(self, submission_id: str | None = None, *, force: bool = False) -> dict[str, Any] | None:
        """Every stage in order, in this process: what the DAG does, without Airflow.

        Which stages run and which re-use their last manifest is the same ``StagePlan`` the
        DAG's tasks consult (a run publishing curators' approvals re-uses the first run's).

        Returns the summary, or None when there is nothing to do.
        """
        try:
            claimed = self.claim(submission_id, force=force)
        except NothingToDo:
            return None
        if not claimed.extra["proceed"]:
            return None
        sub = claimed.submission_id
        plan = StagePlan.for_submission(self, sub)

        def step(stage: str, execute: Callable[[], StageResult], batch_key: str | None = None) -> StageResult | None:
            return run_or_reuse(self, plan, stage, sub, execute, batch_key)

        step("stage_raw", lambda: self.stage_raw(sub))
        step("inventory", lambda: self.inventory(sub))
        batches = self.plan(sub) if plan.action("plan_batches") == "run" else reuse_batches(self, sub)
        results = [step("deidentify", partial(self.deidentify, sub, key), key) for key in batches]
        self.screen(sub, [r.manifest for r in results if r is not None and r.manifest])
        step("verify", lambda: self.verify(sub))
        step("register", lambda: self.register(sub))
        step("publish", lambda: self.publish(sub))
        return self.announce(sub)

    def announce(self, submission_id: str) -> dict[str, Any]:
        """The run's PHI-free summary; the site's submission report goes to its drop on the way."""
        summary = self.summary(submission_id)
        return summary | {"site_report": write_site_report(self, submission_id, summary)}
