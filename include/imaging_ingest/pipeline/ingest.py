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

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from imaging_ingest.analysis.references import check_frame, kept_uids
from imaging_ingest.catalog import Catalog, InstanceRecord, SubmissionState
from imaging_ingest.core.checksum import Digests, file_digests
from imaging_ingest.config import CollectionConfig, DeidOption, License
from imaging_ingest.core.reasons import classify, rates_by_rule, with_reason_fields
from imaging_ingest.deid import Profile, ResolvedProfile
from imaging_ingest.deid.batch import deidentify_frame, freetext_counts
from imaging_ingest.deid.review import Detector
from imaging_ingest.core.gates import gate_inputs, run_gate
from imaging_ingest.intake.staging import stage_entries
from imaging_ingest.inventory.scan import inventory_frame
from imaging_ingest.pipeline.manifest import (
    STATUS_OK,
    STATUS_QUARANTINED,
    ManifestStore,
    public_projection,
    rows_with_file_ids,
)
from imaging_ingest.pipeline.manifest import status_counts as _counts
from imaging_ingest.ops.observe import observed
from imaging_ingest.deid.patients import assign_patients
from imaging_ingest.pipeline.site_report import write_site_report
from imaging_ingest.pipeline.text_review import BatchTexts, load_policy, record_submission_texts
from imaging_ingest.screen.pixels import ScreenContext, screen_images
from imaging_ingest.publish.reclassify import reconcile_tier
from imaging_ingest.curation.quarantine import (
    APPROVALS_STATE,
    auto_reject,
    decisions_for,
    evidence_keys,
    mark_approvals_published,
    mark_supporting_published,
    register_supporting,
    submissions_with_approvals,
    unpublished_approvals,
)
from imaging_ingest.core.records import frame_from_records, iter_records
from imaging_ingest.core.secret import load_secret
from imaging_ingest.config.settings import Settings
from imaging_ingest.intake.drops import Drop, DropSubmission, SubmissionChanged
from imaging_ingest.intake.connect import open_drop
from imaging_ingest.storage.objects import LocalCache, ObjectStore, PublicTierViolation
from imaging_ingest.intake.submission_index import write_index
from imaging_ingest.pipeline.supporting import (
    SUPPORTING_KINDS,
    SupportingEnv,
    accept_supporting,
    deidentify_supporting,
    is_supporting_batch,
    merge_all,
    plan_supporting,
    supporting_records,
    verify_all,
)
from imaging_ingest.verify.leaks import leak_scan_pool
from imaging_ingest.publish.versions import PUBLISH_COLUMNS, Archive, publish_submission

__all__ = ["Ingest", "NothingToDo", "StageResult", "submission_id_for"]

log = logging.getLogger(__name__)

#: Concurrent object-store requests per task: S3 latency, not CPU, bounds copies and uploads.
IO_THREADS = 8

# Whole-submission stages read only the manifest columns they use (see ``ManifestStore.read``):
#: what the stage counts report from
COUNT_COLUMNS = ("file_id", "status", "leaks")
#: what planning batches groups by
PLAN_COLUMNS = ("file_id", "status", "kind", "series_uid")
#: what keeping a quarantined original needs
QUARANTINE_COLUMNS = ("file_id", "status", "reason", "raw_key", "source_path")
#: what registering instances and supporting files reads
REGISTER_COLUMNS = (
    "file_id", "status", "kind", "pseudo_patient_id", "patient_key", "deid_key", "size_out", "sha256", "md5",
    "deid_study_uid", "deid_series_uid", "deid_sop_uid", "deid_sop_class_uid", "out_StudyDate",
    "out_StudyDescription", "out_Modality", "out_BodyPartExamined", "out_Manufacturer", "out_SeriesDescription",
)


class NothingToDo(Exception):
    """No complete, unpublished submission is waiting (not an error: the run has nothing to do)."""


@dataclass(frozen=True)
class StageResult:
    """What a stage hands to the next: a manifest key and PHI-free counts."""

    stage: str
    submission_id: str
    manifest: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def submission_id_for(collection_id: str, source_url: str, fingerprint: str) -> str:
    """Collection + where it came from + what it contained: the same drop content is the same submission."""
    digest = hashlib.sha256(f"{collection_id}\x00{source_url}\x00{fingerprint}".encode()).hexdigest()
    return f"sub-{digest[:16]}"


class Ingest:
    """The stages of one collection's ingest.

    Args:
        config: the collection.
        settings: where the catalog, object store and work area are.
        secret: the pseudonymisation key; read from the environment when not given, and
            only by the stages that need it.
        store, catalog, drop: injected in tests or by Airflow hooks; built from settings otherwise.
    """

    def __init__(
        self,
        config: CollectionConfig,
        settings: Settings,
        *,
        secret: bytes | None = None,
        store: ObjectStore | None = None,
        catalog: Catalog | None = None,
        drop: Drop | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self._secret = secret
        self._store = store
        self._catalog = catalog
        self._drop = drop
        #: flags free-text values for review (``pipeline/text_review.default_detector`` when None)
        self.text_detector: Detector | None = None

    # -- resources ------------------------------------------------------------------------

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = load_secret()
        return self._secret

    @cached_property
    def store(self) -> ObjectStore:
        return self._store or ObjectStore(self.settings)

    @cached_property
    def catalog(self) -> Catalog:
        catalog = self._catalog or Catalog.from_url(self.settings.catalog_url)
        reconcile_tier(catalog, self.store, self.config)  # public -> restricted withdraws; the reverse is refused
        catalog.ensure_collection(self.config)
        return catalog

    @cached_property
    def drop(self) -> Drop:
        return self._drop or open_drop(self.config.drop, self.settings)

    @cached_property
    def cache(self) -> LocalCache:
        return LocalCache(self.settings.cache_dir, self.store)

    @cached_property
    def profile(self) -> ResolvedProfile:
        return Profile.load().resolve(self.config.deid)

    def manifests(self, submission_id: str) -> ManifestStore:
        return ManifestStore(self.store, self.config.id, submission_id)

    def _reports(self, submission_id: str) -> Path:
        return self.settings.reports_dir / self.config.id / submission_id

    # -- discover and claim ---------------------------------------------------------------

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
        if outcome.already_published and not force and submission_id in unpublished_approvals(self.catalog, self.config.id):
            # Curators approved quarantined files: publish them, re-using the submission's manifests.
            self.catalog.set_state(submission_id, APPROVALS_STATE)
            outcome, proceed = replace(outcome, state=APPROVALS_STATE), True
        log.info("claim: %s (state %s, proceed %s)", submission_id, outcome.state, proceed)
        return StageResult("claim", submission_id, extra={"proceed": proceed, "state": outcome.state})

    # -- stage raw ------------------------------------------------------------------------

    @observed("stage_raw")
    def stage_raw(self, submission_id: str) -> StageResult:
        """Copy the originals into the restricted raw tier (content-addressed), hashing on the way."""
        row = self._submission(submission_id)
        if row.state == APPROVALS_STATE:
            return self._reused("stage_raw", submission_id, "staged")
        sub = self.drop.submission(row.name)  # a submission folder that became a link is refused here
        if submission_id_for(self.config.id, sub.url, sub.fingerprint) != submission_id:
            if self.manifests(submission_id).exists("staged"):
                log.info("stage_raw: drop changed since the claim; re-using the staged originals")
                staged = self.manifests(submission_id).read("staged")
                return StageResult("stage_raw", submission_id, self.manifests(submission_id).key("staged"), _counts(staged))
            # Never adopt a listing other than the one claimed: it may be another collection's folder.
            raise SubmissionChanged(f"stage_raw: the drop's listing of {submission_id} changed since it was claimed: refused")
        present = self.store.sizes("raw", f"{self.config.id}/{submission_id}/")
        work = self.cache.root / "incoming" / submission_id / "archives"
        rows = stage_entries(
            sub.entries,
            lambda entry: self._stage_one(submission_id, entry, present),
            lambda path: self._stage_local(submission_id, path, present),
            self.config.drop.archives,
            work,
        )
        staged = frame_from_records({"kind": None, "raw_key": None} | row for row in rows)
        key = self.manifests(submission_id).write("staged", staged)
        self._quarantine(submission_id, staged, "stage_raw")
        self.catalog.set_state(submission_id, SubmissionState.STAGED, files_in=len(staged))
        counts = _counts(staged) | {"bytes": int(staged["size"].sum())}
        log.info("stage_raw: %s", counts)
        return StageResult("stage_raw", submission_id, key, counts)

    def _stage_one(self, submission_id: str, entry: Any, present: dict[str, int]) -> dict[str, Any]:
        tmp = self.cache.root / "incoming" / submission_id / f"{abs(hash(entry.locator))}.partial"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        digests = Digests()
        with self.drop.open(entry) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                digests.update(chunk)
                out.write(chunk)
        return self._keep_raw(submission_id, tmp, digests, present)

    def _stage_local(self, submission_id: str, path: Path, present: dict[str, int]) -> dict[str, Any]:
        """Like ``_stage_one`` for a file already on this machine (an archive member); moves it."""
        return self._keep_raw(submission_id, path, file_digests(path), present)

    def _keep_raw(self, submission_id: str, path: Path, digests: Digests, present: dict[str, int]) -> dict[str, Any]:
        """Move a staged file into the cache under its content address and upload it unless already there."""
        raw_key = f"{self.config.id}/{submission_id}/{digests.sha256}"
        cached = self.cache.path("raw", raw_key)
        cached.parent.mkdir(parents=True, exist_ok=True)
        path.replace(cached)
        if present.get(raw_key) != digests.size:  # content-addressed: same key and size is the same bytes
            self.store.put_file("raw", raw_key, cached, sha256=digests.sha256)
        return {"raw_key": raw_key, "sha256_source": digests.sha256, "size": digests.size, "local": cached}

    # -- inventory ------------------------------------------------------------------------

    @observed("inventory")
    def inventory(self, submission_id: str) -> StageResult:
        """Header-only reads into the inventory manifest; submission-wide checks; pseudonyms."""
        if self._submission(submission_id).state == APPROVALS_STATE:
            return self._reused("inventory", submission_id, "inventory")
        manifests = self.manifests(submission_id)
        staged = manifests.read("staged")
        frame = inventory_frame(
            iter_records(staged),
            lambda r: self.cache.fetch("raw", r["raw_key"], int(r["size"])),
            self.config.modalities,
            supporting=accept_supporting(self.config),
        )
        frame = assign_patients(frame, self.secret, self.catalog, self.config, copy=False)
        if self.config.derived_from:  # analysis results: references to published instances resolve, and are kept
            frame = check_frame(frame, lambda r: self.cache.fetch("raw", r["raw_key"], int(r["size"])), self.catalog,
                                self.config.derived_from, self.store)
        key = manifests.write("inventory", frame)
        self._quarantine(submission_id, frame, "inventory")
        self._gate("inventory", submission_id, frame)
        self.catalog.set_state(submission_id, SubmissionState.INVENTORIED)
        counts = _counts(frame)
        log.info("inventory: %s", counts)
        return StageResult("inventory", submission_id, key, counts)

    # -- plan -----------------------------------------------------------------------------

    @observed("plan_batches")
    def plan(self, submission_id: str) -> list[str]:
        """Split the files that go on into batches of whole series (a large series is split)."""
        manifests = self.manifests(submission_id)
        if self._submission(submission_id).state == APPROVALS_STATE:
            return sorted(o.key for o in self.store.list("staging", manifests.key("batches/").removesuffix(".parquet")))
        frame = manifests.read("inventory", columns=PLAN_COLUMNS)
        dicom = frame["kind"].fillna("dicom") == "dicom" if "kind" in frame.columns else frame["status"].notna()
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
        for number, ids in enumerate(b for b in batches if b):  # a batch's rows: a few row groups of the inventory
            keys.append(manifests.write(f"batches/{number:04d}", rows_with_file_ids(inventory, ids)))
        supporting = plan_supporting(rows_with_file_ids(inventory, frame.loc[~dicom, "file_id"]))
        log.info("plan: %d DICOM files in %d batch(es), %d supporting file(s)", len(ok), len(keys), len(supporting))
        keys += [manifests.write(name, item) for name, item in supporting]
        return keys

    # -- de-identify ----------------------------------------------------------------------

    @observed("deidentify")
    def deidentify(self, submission_id: str, batch_key: str) -> StageResult:
        """De-identify one batch into the staging tier; checksums are computed while writing."""
        manifests = self.manifests(submission_id)
        name = "deid/" + batch_key.rsplit("/", 1)[-1].removesuffix(".parquet")
        if self._submission(submission_id).state == APPROVALS_STATE and manifests.exists(name):
            done = manifests.read(name)
            return StageResult("deidentify", submission_id, manifests.key(name), _counts(done), freetext_counts(done))
        batch = manifests.read_key(batch_key)

        def destination(key: str) -> Path:
            return self.cache.path("staging", self._deid_object(submission_id, key))

        def upload(row: dict[str, Any]) -> None:
            staging_key = self._deid_object(submission_id, row["deid_key"])
            self.store.put_file("staging", staging_key, self.cache.path("staging", staging_key), sha256=row["sha256"])

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
                keep_uids=kept_uids(batch),
                review=load_policy(self.catalog, self.config, self.text_detector),
                on_texts=texts.add,
            )
            texts.write(manifests, name)
            with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
                list(pool.map(upload, frame[frame["status"] == STATUS_OK].to_dict("records")))
        key = manifests.write(name, frame)
        self._quarantine(submission_id, frame.merge(batch[["file_id", "raw_key", "source_path"]], on="file_id"), "deidentify")
        counts = _counts(frame)
        log.info("deidentify %s: %s", name, counts)
        return StageResult("deidentify", submission_id, key, counts, freetext_counts(frame))

    def _deid_object(self, submission_id: str, deid_key: str) -> str:
        return f"{self.config.id}/{submission_id}/deid/{deid_key}"

    def _supporting_env(
        self,
        submission_id: str,
        destination: Any = None,
        upload: Any = None,
    ) -> SupportingEnv:
        return SupportingEnv(
            config=self.config,
            secret=self.secret,
            catalog=self.catalog,
            submission_id=submission_id,
            inventory=self.manifests(submission_id).read("inventory"),
            source_of=lambda r: self.cache.fetch("raw", r["raw_key"], int(r["size"])),
            destination_of=destination or (lambda key: self.cache.path("staging", self._deid_object(submission_id, key))),
            on_output=upload,
        )

    def _reused(self, stage: str, submission_id: str, name: str) -> StageResult:
        """An approvals run re-uses the manifests the submission's first run wrote."""
        frame = self.manifests(submission_id).read(name)
        log.info("%s: re-using the manifest of the published run (curators approved quarantined files)", stage)
        return StageResult(stage, submission_id, self.manifests(submission_id).key(name), _counts(frame))

    # -- screen ---------------------------------------------------------------------------

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
                auto_reject(self.catalog, submission_id, frame.loc[frame["policy_rejected"].astype(bool), "file_id"], "policy")
                for row in frame[(frame["status"] == STATUS_OK) & frame["redaction_rule"].notna()].itertuples():
                    self.catalog.audit("redaction", "screen", "success", f"{submission_id}/{row.file_id}", self.config.id,
                                       f"rule {row.redaction_rule}")
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
            return self.cache.fetch("staging", self._deid_object(submission_id, r["deid_key"]), int(r["size_out"]))

        def rewrite(r: dict[str, Any]) -> None:
            staging_key = self._deid_object(submission_id, r["deid_key"])
            self.store.put_file("staging", staging_key, self.cache.path("staging", staging_key), sha256=r["sha256"])

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

    # -- verify ---------------------------------------------------------------------------

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

    # -- register -------------------------------------------------------------------------

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

    def public_key(self, deid_key: str) -> str:
        return f"{self.config.id}/{deid_key}"

    # -- publish --------------------------------------------------------------------------

    @property
    def publish_tier(self) -> str:
        """Where this collection's objects go; a restricted collection can never name the public tier."""
        if self.config.license == License.RESTRICTED and self.config.tier != "restricted":
            raise PublicTierViolation(f"collection {self.config.id} is restricted but configured for {self.config.tier}")
        return self.config.tier

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
        counts = _counts(frame) | {"added_objects": outcome.added, "version": outcome.version or 0}
        self.catalog.set_state(
            submission_id,
            SubmissionState.PUBLISHED,
            published=counts["ok"],
            quarantined=counts["quarantined"],
            version=outcome.version,
        )
        write_index(self.settings.home, self.config.id, self.catalog.submissions(self.config.id))
        log.info("publish: %s (replaced series: %d)", counts, len(outcome.changed_series))
        return StageResult("publish", submission_id, manifests.key("published"), counts, {"release_key": outcome.release_key})

    # -- announce -------------------------------------------------------------------------

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

        Returns the summary, or None when there is nothing to do.
        """
        try:
            claimed = self.claim(submission_id, force=force)
        except NothingToDo:
            return None
        if not claimed.extra["proceed"]:
            return None
        sub = claimed.submission_id
        self.stage_raw(sub)
        self.inventory(sub)
        results = [self.deidentify(sub, key).manifest for key in self.plan(sub)]
        self.screen(sub, [r for r in results if r])
        self.verify(sub)
        self.register(sub)
        self.publish(sub)
        return self.announce(sub)

    def announce(self, submission_id: str) -> dict[str, Any]:
        """The run's PHI-free summary; the site's submission report goes to its drop on the way."""
        summary = self.summary(submission_id)
        return summary | {"site_report": write_site_report(self, submission_id, summary)}

    # -- shared helpers -------------------------------------------------------------------

    def _submission(self, submission_id: str) -> Any:
        row = self.catalog.submission(submission_id)
        if row is None:
            raise KeyError(f"unknown submission {submission_id}")
        return row

    @staticmethod
    def _gate_view(manifests: ManifestStore, manifest: str, gate: str) -> pd.DataFrame:
        """The columns of a manifest that its gate and the stage's counts read (not every column)."""
        return manifests.read(manifest, columns=[*gate_inputs(gate), *COUNT_COLUMNS])

    def _gate(self, name: str, submission_id: str, frame: pd.DataFrame) -> None:
        projection = public_projection(frame[[c for c in gate_inputs(name) if c in frame.columns]], self.secret)
        uid_regex = r"^[0-9.]{1,64}$" if DeidOption.RETAIN_UIDS in self.config.deid.options else r"^2\.25\.[1-9]\d{0,38}$"
        parameters = {
            "files_in": len(frame),
            "modalities": self.config.modalities,
            "uid_regex": uid_regex,
            "pseudonym_regex": rf"^{self.config.pseudonym_prefix}-\d{{4,}}$",
        }
        report_dir = self._reports(submission_id)
        started = time.perf_counter()
        try:
            run_gate(name, projection, parameters, report_dir)
        finally:
            for suffix in ("json", "html"):
                path = report_dir / f"{name}.{suffix}"
                if path.exists():
                    self.store.put_file(
                        "staging",
                        f"{self.config.id}/{submission_id}/reports/{name}.{suffix}",
                        path,
                        content_type="text/html" if suffix == "html" else "application/json",
                    )
            log.info("gate %s took %.2f s", name, time.perf_counter() - started)

    def _quarantine(self, submission_id: str, frame: pd.DataFrame, stage: str) -> None:
        """Keep every newly quarantined original, with its reason, in the quarantine tier and catalog."""
        rows = frame[frame["status"] == STATUS_QUARANTINED]
        if rows.empty:
            return
        known = {item.file_id for item in self.catalog.quarantine_items(self.config.id) if item.submission_id == submission_id}
        items = []
        for record in rows.to_dict("records"):
            file_id = int(record["file_id"])
            if file_id in known:
                continue
            key = None
            if isinstance(record.get("raw_key"), str):
                key = f"{self.config.id}/{submission_id}/{file_id:06d}/original"
                if self.store.head("quarantine", key) is None:
                    self.store.copy("raw", record["raw_key"], "quarantine", key)
                self.store.put_json(
                    "quarantine",
                    f"{self.config.id}/{submission_id}/{file_id:06d}/reason.json",
                    {"file_id": file_id, "stage": stage, "source_path": record["source_path"]}
                    | classify(record["reason"]).as_dict(),
                )
            items.append((file_id, str(record["source_path"]), stage, str(record["reason"]), key))
        self.catalog.add_quarantine(self.config.id, submission_id, items)


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
            return pd.DataFrame({c: pd.Series(dtype="int64" if c == "file_id" else object) for c in self._columns})
        frame = pd.concat([self._manifests.read_key(self._keys[b]) for b in batches], ignore_index=True)
        frame = frame.loc[frame["file_id"].isin(wanted)]
        missing = {c: pd.Series(None, index=frame.index, dtype=object) for c in self._columns if c not in frame.columns}
        return frame.assign(**missing)[self._columns]


def _opt(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(value)
