"""Discover, claim, stage_raw, inventory and plan_batches: from the drop to batches of whole series."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from imaging_ingest.analysis.references import check_frame
from imaging_ingest.catalog import SubmissionState
from imaging_ingest.core.checksum import Digests, file_digests
from imaging_ingest.core.records import frame_from_records, iter_records
from imaging_ingest.curation.quarantine import (
    APPROVALS_STATE,
    submissions_with_approvals,
    unpublished_approvals,
)
from imaging_ingest.deid.patients import assign_patients
from imaging_ingest.intake.drops import DropSubmission, SubmissionChanged
from imaging_ingest.intake.staging import stage_entries
from imaging_ingest.intake.submission_index import write_index
from imaging_ingest.inventory.scan import inventory_frame
from imaging_ingest.ops.observe import observed
from imaging_ingest.pipeline.base import (
    PLAN_COLUMNS,
    IngestBase,
    NothingToDo,
    StageResult,
    submission_id_for,
)
from imaging_ingest.pipeline.manifest import (
    STATUS_OK,
    rows_with_file_ids,
)
from imaging_ingest.pipeline.manifest import status_counts as _counts
from imaging_ingest.pipeline.supporting import (
    accept_supporting,
    plan_supporting,
)
from imaging_ingest.storage.transfers import Transfers, TransferStats

__all__ = ["IntakeStages"]

log = logging.getLogger(__name__)


class IntakeStages(IngestBase):
    """Discover, claim, stage_raw, inventory and plan_batches."""

    def _is_complete(self, sub: DropSubmission) -> bool:
        if self.config.drop.completion == "marker":
            return sub.marker_present
        return self.catalog.observe(self.config.id, sub.name, sub.fingerprint) and bool(sub.entries)

    def discover(self) -> list[dict[str, Any]]:
        """Record complete submissions in the drop; return those not published yet (by name order).

        The result names submissions by id only: a drop folder's name is the site's
        choice and may identify a patient, so it stays in the catalog.
        """
        found = []
        for sub in self.drop.submissions():
            if not self._is_complete(sub):
                continue
            submission_id = submission_id_for(self.config.id, sub.url, sub.fingerprint)
            state = self.catalog.discover(self.config.id, submission_id, sub.name, sub.url, sub.fingerprint)
            if state != SubmissionState.PUBLISHED:
                found.append({"submission_id": submission_id, "files": len(sub.entries), "state": state})
        for submission_id in submissions_with_approvals(self.catalog, self.config.id):
            if submission_id not in {f["submission_id"] for f in found}:
                found.append({"submission_id": submission_id, "files": 0, "state": APPROVALS_STATE})
        write_index(self.settings.home, self.config.id, self.catalog.submissions(self.config.id))
        log.info("discover: %d submission(s) ready", len(found))
        return found

    def claim(self, submission_id: str | None = None, *, force: bool = False) -> StageResult:
        """Claim a submission (by id, or the first one discovered); a second claim is a no-op.

        ``extra.proceed`` is False when the submission is already published and ``force``
        is not set: the run then has nothing to do.
        """
        if submission_id is None:
            ready = self.discover()
            if not ready:
                raise NothingToDo("no complete, unpublished submission in the drop")
            submission_id = ready[0]["submission_id"]
        outcome = self.catalog.claim(submission_id)
        proceed = force or not outcome.already_published
        if (
            outcome.already_published
            and not force
            and submission_id in unpublished_approvals(self.catalog, self.config.id)
        ):
            # Curators approved quarantined files: publish them, re-using the submission's manifests.
            self.catalog.set_state(submission_id, APPROVALS_STATE)
            outcome, proceed = replace(outcome, state=APPROVALS_STATE), True
        log.info("claim: %s (state %s, proceed %s)", submission_id, outcome.state, proceed)
        return StageResult("claim", submission_id, extra={"proceed": proceed, "state": outcome.state})

    @observed("stage_raw")
    def stage_raw(self, submission_id: str) -> StageResult:
        """Copy the originals into the restricted raw tier (content-addressed), hashing on the way."""
        row = self._submission(submission_id)
        sub = self.drop.submission(row.name)  # a submission folder that became a link is refused here
        if submission_id_for(self.config.id, sub.url, sub.fingerprint) != submission_id:
            if self.manifests(submission_id).exists("staged"):
                log.info("stage_raw: drop changed since the claim; re-using the staged originals")
                staged = self.manifests(submission_id).read("staged")
                return StageResult(
                    "stage_raw", submission_id, self.manifests(submission_id).key("staged"), _counts(staged)
                )
            # Never adopt a listing other than the one claimed: it may be another collection's folder.
            raise SubmissionChanged(
                f"stage_raw: the drop's listing of {submission_id} changed since it was claimed: refused"
            )
        present = self.store.sizes("raw", f"{self.config.id}/{submission_id}/")
        work = self.cache.root / "incoming" / submission_id / "archives"
        reads = TransferStats()
        # Each file is read once: hashed while it is copied into the local cache, then uploaded
        # from there on the bounded pool while the next file is read.
        with Transfers() as uploads:
            started = time.perf_counter()
            rows = stage_entries(
                sub.entries,
                lambda entry: self._stage_one(submission_id, entry, present, uploads, reads),
                lambda path: self._stage_local(submission_id, path, present, uploads, reads),
                self.config.drop.archives,
                work,
            )
            staged = frame_from_records({"kind": None, "raw_key": None} | row for row in rows)
            reads.wall_seconds = time.perf_counter() - started
        key = self.manifests(submission_id).write("staged", staged)
        self._quarantine(submission_id, staged, "stage_raw")
        self.catalog.set_state(submission_id, SubmissionState.STAGED, files_in=len(staged))
        counts = _counts(staged) | {
            "bytes": int(staged["size"].sum()),
            "uploaded_objects": uploads.stats.objects,
            "uploaded_bytes": uploads.stats.bytes,
        }
        timings = {"read": reads.summary(), "upload": uploads.stats.summary()}
        log.info("stage_raw: %s; read %s; uploaded %s", counts, reads.describe(), uploads.stats.describe())
        return StageResult("stage_raw", submission_id, key, counts, {"timings": timings})

    def _stage_one(
        self,
        submission_id: str,
        entry: Any,
        present: dict[str, int],
        uploads: Transfers,
        reads: TransferStats,
    ) -> dict[str, Any]:
        tmp = self.cache.root / "incoming" / submission_id / f"{abs(hash(entry.locator))}.partial"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        digests = Digests()
        started = time.perf_counter()
        with self.drop.open(entry) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                digests.update(chunk)
                out.write(chunk)
        reads.add(digests.size, time.perf_counter() - started)
        return self._keep_raw(submission_id, tmp, digests, present, uploads)

    def _stage_local(
        self,
        submission_id: str,
        path: Path,
        present: dict[str, int],
        uploads: Transfers,
        reads: TransferStats,
    ) -> dict[str, Any]:
        """Like ``_stage_one`` for a file already on this machine (an archive member); moves it."""
        started = time.perf_counter()
        digests = file_digests(path)
        reads.add(digests.size, time.perf_counter() - started)
        return self._keep_raw(submission_id, path, digests, present, uploads)

    def _keep_raw(
        self,
        submission_id: str,
        path: Path,
        digests: Digests,
        present: dict[str, int],
        uploads: Transfers,
    ) -> dict[str, Any]:
        """Move a staged file into the cache under its content address; upload it (on the pool) unless there.

        ``present`` learns each key as its upload is queued, so identical files in one
        submission are uploaded once.
        """
        raw_key = f"{self.config.id}/{submission_id}/{digests.sha256}"
        cached = self.cache.path("raw", raw_key)
        cached.parent.mkdir(parents=True, exist_ok=True)
        path.replace(cached)
        if present.get(raw_key) != digests.size:  # content-addressed: same key and size is the same bytes
            present[raw_key] = digests.size
            sha256 = digests.sha256
            uploads.submit(lambda: self.store.put_file("raw", raw_key, cached, sha256=sha256), digests.size)
        return {"raw_key": raw_key, "sha256_source": digests.sha256, "size": digests.size, "local": cached}

    @observed("inventory")
    def inventory(self, submission_id: str) -> StageResult:
        """Header-only reads into the inventory manifest; submission-wide checks; pseudonyms."""
        manifests = self.manifests(submission_id)
        staged = manifests.read("staged")
        frame = inventory_frame(
            iter_records(staged),
            lambda r: self.cache.fetch("raw", r["raw_key"], int(r["size"])),
            self.config.modalities,
            supporting=accept_supporting(self.config),
            remapped_uids=self.profile.remapped_instance_uids(),
        )
        frame = assign_patients(frame, self.secret, self.catalog, self.config, copy=False)
        if (
            self.config.derived_from
        ):  # analysis results: references to published instances resolve, and are kept
            frame = check_frame(
                frame,
                lambda r: self.cache.fetch("raw", r["raw_key"], int(r["size"])),
                self.catalog,
                self.config.derived_from,
                self.store,
            )
        key = manifests.write("inventory", frame)
        self._quarantine(submission_id, frame, "inventory")
        self._gate("inventory", submission_id, frame)
        self.catalog.set_state(submission_id, SubmissionState.INVENTORIED)
        counts = _counts(frame)
        log.info("inventory: %s", counts)
        return StageResult("inventory", submission_id, key, counts)

    @observed("plan_batches")
    def plan(self, submission_id: str) -> list[str]:
        """Split the files that go on into batches of whole series (a large series is split)."""
        manifests = self.manifests(submission_id)
        frame = manifests.read("inventory", columns=PLAN_COLUMNS)
        dicom = (
            frame["kind"].fillna("dicom") == "dicom" if "kind" in frame.columns else frame["status"].notna()
        )
        ok = frame[(frame["status"] == STATUS_OK) & dicom].sort_values(["series_uid", "file_id"])
        batches: list[list[int]] = [[]]
        for _, series in ok.groupby("series_uid", sort=True):
            ids = series["file_id"].tolist()
            if batches[-1] and len(batches[-1]) + len(ids) > self.config.batch_size:
                batches.append([])
            for start in range(0, len(ids), self.config.batch_size):
                if batches[-1] and len(batches[-1]) >= self.config.batch_size:
                    batches.append([])
                batches[-1].extend(ids[start : start + self.config.batch_size])
        inventory = manifests.parquet("inventory")
        keys = []
        for number, ids in enumerate(
            b for b in batches if b
        ):  # a batch's rows: a few row groups of the inventory
            keys.append(manifests.write(f"batches/{number:04d}", rows_with_file_ids(inventory, ids)))
        supporting = plan_supporting(rows_with_file_ids(inventory, frame.loc[~dicom, "file_id"]))
        log.info(
            "plan: %d DICOM files in %d batch(es), %d supporting file(s)", len(ok), len(keys), len(supporting)
        )
        keys += [manifests.write(name, item) for name, item in supporting]
        return keys
