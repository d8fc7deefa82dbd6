"""The deidentify stage: one batch of whole series through the PS3.15 profile into the staging tier."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imaging_ingest.analysis.references import kept_uids
from imaging_ingest.deid.batch import deidentify_frame, freetext_counts
from imaging_ingest.ops.observe import observed
from imaging_ingest.pipeline.base import IngestBase, StageResult
from imaging_ingest.pipeline.manifest import status_counts as _counts
from imaging_ingest.pipeline.onepass import leak_check_of, leak_scan, with_verdicts
from imaging_ingest.pipeline.supporting import (
    deidentify_supporting,
    is_supporting_batch,
)
from imaging_ingest.pipeline.text_review import BatchTexts, load_policy
from imaging_ingest.storage.transfers import Transfers

__all__ = ["DeidentifyStage"]

log = logging.getLogger(__name__)


class DeidentifyStage(IngestBase):
    """The deidentify stage."""

    @observed("deidentify")
    def deidentify(self, submission_id: str, batch_key: str) -> StageResult:
        """De-identify one batch into the staging tier; checksums are computed while writing."""
        manifests = self.manifests(submission_id)
        name = "deid/" + batch_key.rsplit("/", 1)[-1].removesuffix(".parquet")
        batch = manifests.read_key(batch_key)

        def destination(key: str) -> Path:
            return self.cache.path("staging", self._deid_object(submission_id, key))

        # Each output's upload is queued on the bounded pool as soon as its file is written, so the
        # uploads overlap the de-identification of the next files; a failed upload fails the task
        # when the block ends (``Transfers`` re-raises it), before the batch's manifest is written.
        with Transfers() as uploads:

            def upload(row: dict[str, Any]) -> None:
                staging_key = self._deid_object(submission_id, row["deid_key"])
                path, sha256 = self.cache.path("staging", staging_key), row["sha256"]
                uploads.submit(
                    lambda: self.store.put_file("staging", staging_key, path, sha256=sha256),
                    int(row["size_out"]),
                )

            if is_supporting_batch(batch):
                frame = deidentify_supporting(batch, self._supporting_env(submission_id, destination, upload))
            else:
                texts = BatchTexts()  # the curators' free-text decisions go in, the batch's values come out
                frame = deidentify_frame(
                    batch,
                    self.profile,
                    self.secret,
                    source_of=lambda r: self.cache.fetch("raw", r["raw_key"], int(r["size"])),
                    destination_of=destination,
                    workers=self.config.workers,
                    on_output=upload,  # every ok row, as its outcome arrives
                    keep_uids=kept_uids(batch),
                    review=load_policy(self.catalog, self.config, self.text_detector),
                    on_texts=texts.add,
                    follow_up=leak_scan,  # the leak scan on the bytes just written; the verify task takes its verdicts
                    check_of=leak_check_of(self.config.deid.options),
                )
                frame = with_verdicts(frame)  # adds the verdict columns; no row's status changes
                texts.write(manifests, name)
        key = manifests.write(name, frame)
        self._quarantine(
            submission_id,
            frame.merge(batch[["file_id", "raw_key", "source_path"]], on="file_id"),
            "deidentify",
        )
        counts = _counts(frame) | {
            "uploaded_objects": uploads.stats.objects,
            "uploaded_bytes": uploads.stats.bytes,
        }
        log.info("deidentify %s: %s; uploaded %s", name, counts, uploads.stats.describe())
        return StageResult(
            "deidentify",
            submission_id,
            key,
            counts,
            freetext_counts(frame) | {"timings": {"upload": uploads.stats.summary()}},
        )
