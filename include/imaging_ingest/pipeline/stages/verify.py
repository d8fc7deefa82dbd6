"""The verify stage: the independent leak scan of every output; gate 3."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pandas as pd

from imaging_ingest.catalog import SubmissionState
from imaging_ingest.core.reasons import with_reason_fields
from imaging_ingest.ops.observe import observed
from imaging_ingest.pipeline.base import (
    IngestBase,
    StageResult,
)
from imaging_ingest.pipeline.manifest import status_counts as _counts
from imaging_ingest.pipeline.onepass import known_verdicts
from imaging_ingest.pipeline.supporting import (
    SUPPORTING_KINDS,
    SupportingEnv,
    verify_all,
)
from imaging_ingest.verify.leaks import leak_scan_pool

__all__ = ["VerifyStage"]

log = logging.getLogger(__name__)


class VerifyStage(IngestBase):
    """The verify stage."""

    @observed("verify")
    def verify(self, submission_id: str) -> StageResult:
        """Search every output for its source's identifying values; a hit quarantines the file."""
        manifests = self.manifests(submission_id)
        env: SupportingEnv | None = None
        clinical: list[pd.DataFrame] = []
        with leak_scan_pool(self.config.workers) as pool:

            def verified() -> Iterator[pd.DataFrame]:
                nonlocal env
                for part in manifests.iter_frames("screened"):
                    if env is None and part["kind"].isin(SUPPORTING_KINDS).any():
                        env = self._supporting_env(submission_id)  # reads the inventory: only when needed
                    frame, projection = verify_all(
                        part,
                        lambda r: self.cache.fetch("raw", r["raw_key"], int(r["size"])),
                        lambda r: self.cache.fetch(
                            "staging", self._deid_object(submission_id, r["deid_key"]), int(r["size_out"])
                        ),
                        env,
                        options=self.config.deid.options,
                        pool=pool,
                        known=known_verdicts(part),  # scanned where it was written, output unchanged since
                    )
                    if not projection.empty:
                        clinical.append(projection)
                    self._quarantine(submission_id, frame, "verify")
                    yield with_reason_fields(frame)  # every quarantine of the run is known now

            key = manifests.write_frames("verified", verified())
        view = self._gate_view(manifests, "verified", "verified")
        self._gate("verified", submission_id, view)
        if clinical:
            self._gate("clinical", submission_id, pd.concat(clinical, ignore_index=True))
        self.catalog.set_state(submission_id, SubmissionState.VERIFIED)
        counts = _counts(view) | {"leaks_caught": int((view["leaks"] > 0).sum())}
        log.info("verify: %s", counts)
        return StageResult("verify", submission_id, key, counts)
