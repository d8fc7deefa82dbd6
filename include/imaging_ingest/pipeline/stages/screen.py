"""The screen stage: burned-in PHI in pixels (attributes, OCR, redaction rules, curators' decisions); gate 2."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from imaging_ingest.catalog import SubmissionState
from imaging_ingest.curation.quarantine import (
    auto_reject,
    decisions_for,
    evidence_keys,
)
from imaging_ingest.ops.observe import observed
from imaging_ingest.pipeline.base import (
    IngestBase,
    StageResult,
)
from imaging_ingest.pipeline.manifest import (
    STATUS_OK,
    ManifestStore,
)
from imaging_ingest.pipeline.manifest import status_counts as _counts
from imaging_ingest.pipeline.supporting import (
    merge_all,
)
from imaging_ingest.pipeline.text_review import record_submission_texts
from imaging_ingest.screen.pixels import ScreenContext, screen_images

__all__ = ["ScreenStage"]

log = logging.getLogger(__name__)


class _BatchResults:
    """Every batch's de-identification results, read a few batches at a time by file id.

    Screening walks the inventory part by part; each part needs the results of the
    batches that hold its files, not the results of the whole submission at once.
    """

    def __init__(self, manifests: ManifestStore, keys: Iterable[str]) -> None:
        self._manifests = manifests
        self._keys = list(keys)
        self._batch_of: dict[int, int] = {}
        columns: dict[str, None] = {"file_id": None}
        for index, key in enumerate(self._keys):
            batch = manifests.parquet_key(key)  # its columns and file ids; the rows are read when needed
            columns |= dict.fromkeys(batch.schema_arrow.names)
            for file_id in batch.read(columns=["file_id"]).column("file_id").to_pylist():
                self._batch_of[int(file_id)] = index
        self._columns = list(columns)  # every part gets every batch's columns, in one order

    def rows(self, file_ids: Iterable[int]) -> pd.DataFrame:
        """The results of these files (those a batch holds), in batch order."""
        wanted = {int(i) for i in file_ids}
        batches = sorted({self._batch_of[i] for i in wanted if i in self._batch_of})
        if not batches:
            return pd.DataFrame(
                {c: pd.Series(dtype="int64" if c == "file_id" else object) for c in self._columns}
            )
        frame = pd.concat([self._manifests.read_key(self._keys[b]) for b in batches], ignore_index=True)
        frame = frame.loc[frame["file_id"].isin(wanted)]
        missing = {
            c: pd.Series(None, index=frame.index, dtype=object)
            for c in self._columns
            if c not in frame.columns
        }
        return frame.assign(**missing)[self._columns]


class ScreenStage(IngestBase):
    """The screen stage."""

    @observed("screen")
    def screen(self, submission_id: str, batch_results: Iterable[str]) -> StageResult:
        """Merge the batches' results; screen images for burned-in PHI (attributes, OCR, redaction rules, curators)."""
        manifests = self.manifests(submission_id)
        results = _BatchResults(manifests, batch_results)
        record_submission_texts(self, submission_id, batch_results)
        self.catalog.set_state(submission_id, SubmissionState.DEIDENTIFIED)
        context = self._screen_context(submission_id)

        def screened() -> Iterator[pd.DataFrame]:
            for part in manifests.iter_frames("inventory"):
                frame = screen_images(merge_all(part, results.rows(part["file_id"])), context)
                self._quarantine(submission_id, frame, "screen")
                auto_reject(
                    self.catalog,
                    submission_id,
                    frame.loc[frame["policy_rejected"].astype(bool), "file_id"],
                    "policy",
                )
                for row in frame[
                    (frame["status"] == STATUS_OK) & frame["redaction_rule"].notna()
                ].itertuples():
                    self.catalog.audit(
                        "redaction",
                        "screen",
                        "success",
                        f"{submission_id}/{row.file_id}",
                        self.config.id,
                        f"rule {row.redaction_rule}",
                    )
                yield frame

        key = manifests.write_frames("screened", screened())
        view = self._gate_view(manifests, "screened", "deidentified")
        self._gate("deidentified", submission_id, view)
        self.catalog.set_state(submission_id, SubmissionState.SCREENED)
        counts = _counts(view)
        log.info("screen: %s", counts)
        return StageResult("screen", submission_id, key, counts)

    def _screen_context(self, submission_id: str) -> ScreenContext:
        def output_of(r: dict[str, Any]) -> Path:
            return self.cache.fetch(
                "staging", self._deid_object(submission_id, r["deid_key"]), int(r["size_out"])
            )

        def rewrite(r: dict[str, Any]) -> None:
            staging_key = self._deid_object(submission_id, r["deid_key"])
            self.store.put_file(
                "staging", staging_key, self.cache.path("staging", staging_key), sha256=r["sha256"]
            )

        def evidence(r: dict[str, Any], name: str, data: bytes, content_type: str) -> None:
            key = evidence_keys(self.config.id, submission_id, int(r["file_id"]))[name]
            self.store.put_bytes("quarantine", key, data, content_type)

        return ScreenContext(
            pixels=self.config.pixels,
            pathology=self.config.pathology,
            source_of=lambda r: self.cache.fetch("raw", r["raw_key"], int(r["size"])),
            output_of=output_of,
            on_rewrite=rewrite,
            on_evidence=evidence,
            decisions=decisions_for(self.catalog, submission_id),
        )
