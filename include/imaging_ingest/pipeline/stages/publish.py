"""The register and publish stages: catalog rows, then objects and the version's release last."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from imaging_ingest.catalog import InstanceRecord, SubmissionState
from imaging_ingest.core.records import iter_records
from imaging_ingest.curation.quarantine import (
    mark_approvals_published,
    mark_supporting_published,
    register_supporting,
)
from imaging_ingest.intake.submission_index import write_index
from imaging_ingest.ops.observe import observed
from imaging_ingest.pipeline.base import (
    QUARANTINE_COLUMNS,
    REGISTER_COLUMNS,
    IngestBase,
    StageResult,
)
from imaging_ingest.pipeline.manifest import (
    STATUS_OK,
)
from imaging_ingest.pipeline.manifest import status_counts as _counts
from imaging_ingest.pipeline.supporting import (
    SUPPORTING_KINDS,
    supporting_records,
)
from imaging_ingest.publish.versions import PUBLISH_COLUMNS, Archive, publish_submission

__all__ = ["PublishStages"]

log = logging.getLogger(__name__)


def _opt(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(value)


class PublishStages(IngestBase):
    """The register and publish stages."""

    @observed("register")
    def register(self, submission_id: str) -> StageResult:
        """Upsert the de-identified patients, studies, series and instances into the catalog."""
        manifests = self.manifests(submission_id)
        instances = new = 0
        supporting = []
        # A chunk at a time, each in its own transaction: a rerun after a crash skips what is
        # already registered (same SOP Instance UID, same bytes), so a partial register is safe.
        for frame in manifests.iter_frames("verified", columns=REGISTER_COLUMNS):
            ok = frame[(frame["status"] == STATUS_OK) & ~frame["kind"].isin(SUPPORTING_KINDS)]
            records = [self._instance_record(r) for r in iter_records(ok)]
            new += self.catalog.register(self.config.id, submission_id, records)
            instances += len(records)
            supporting += supporting_records(frame, self.config.tier, self.public_key)
        register_supporting(self.catalog, self.config.id, submission_id, supporting)
        self.catalog.set_state(submission_id, SubmissionState.REGISTERED)
        counts = {"instances": instances, "new_instances": new, "supporting_files": len(supporting)}
        log.info("register: %s", counts)
        return StageResult("register", submission_id, manifests.key("verified"), counts)

    def _instance_record(self, r: dict[str, Any]) -> InstanceRecord:
        return InstanceRecord(
            pseudonym=r["pseudo_patient_id"],
            id_hash=r["patient_key"],
            study_uid=r["deid_study_uid"],
            study_date=_opt(r.get("out_StudyDate")),
            study_description=_opt(r.get("out_StudyDescription")),
            series_uid=r["deid_series_uid"],
            modality=_opt(r.get("out_Modality")),
            body_part=_opt(r.get("out_BodyPartExamined")),
            manufacturer=_opt(r.get("out_Manufacturer")),
            series_description=_opt(r.get("out_SeriesDescription")),
            sop_uid=r["deid_sop_uid"],
            sop_class_uid=r["deid_sop_class_uid"],
            object_key=self.public_key(r["deid_key"]),
            tier=self.config.tier,
            size=int(r["size_out"]),
            sha256=r["sha256"],
            md5=r["md5"],
        )

    @observed("publish")
    def publish(self, submission_id: str) -> StageResult:
        """Copy verified objects to the collection's tier, then write the version's release LAST.

        A version is exactly its ``release.json`` (see ``versions.py``): a publish killed
        half-way leaves no visible partial version, and its rerun completes the same
        version without copying anything twice. A series resubmitted with different bytes
        replaces the published one in the new version.
        """
        manifests = self.manifests(submission_id)
        frame = manifests.read("verified", columns=[*PUBLISH_COLUMNS, *QUARANTINE_COLUMNS])
        outcome = publish_submission(
            Archive(self.config, self.store, self.catalog, self.publish_tier),
            submission_id,
            frame,
            lambda row: self._deid_object(submission_id, row["deid_key"]),
        )
        # publishing changes no row: the published manifest is the verified one (a server-side copy)
        self.store.copy("staging", manifests.key("verified"), "staging", manifests.key("published"))
        self._quarantine(submission_id, frame, "publish")
        mark_supporting_published(self.catalog, self.config.id, outcome.published_keys, outcome.version or 0)
        ok_ids = frame.loc[frame["status"] == STATUS_OK, "file_id"]
        mark_approvals_published(self.catalog, submission_id, ok_ids, outcome.version or 0)
        copies = outcome.timings.get("copy", {})
        counts = _counts(frame) | {
            "added_objects": outcome.added,
            "version": outcome.version or 0,
            "copied_objects": int(copies.get("objects") or 0),
            "copied_bytes": int(copies.get("bytes") or 0),
        }
        self.catalog.set_state(
            submission_id,
            SubmissionState.PUBLISHED,
            published=counts["ok"],
            quarantined=counts["quarantined"],
            version=outcome.version,
        )
        write_index(self.settings.home, self.config.id, self.catalog.submissions(self.config.id))
        log.info(
            "publish: %s (replaced series: %d); timings %s",
            counts,
            len(outcome.changed_series),
            outcome.timings,
        )
        return StageResult(
            "publish",
            submission_id,
            manifests.key("published"),
            counts,
            {"release_key": outcome.release_key, "timings": outcome.timings},
        )
