"""What every stage of an ingest shares: the collection's resources, gates, and quarantine bookkeeping."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Self

import pandas as pd

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig, DeidOption, License
from imaging_ingest.config.settings import Settings
from imaging_ingest.core.gates import gate_inputs, run_gate
from imaging_ingest.core.reasons import classify, needs_curator
from imaging_ingest.core.secret import load_secret
from imaging_ingest.curation.quarantine import auto_reject
from imaging_ingest.deid import Profile, ResolvedProfile
from imaging_ingest.deid.review import Detector
from imaging_ingest.intake.connect import open_drop
from imaging_ingest.intake.drops import Drop
from imaging_ingest.pipeline.manifest import (
    STATUS_QUARANTINED,
    ManifestStore,
    public_projection,
)
from imaging_ingest.pipeline.supporting import (
    SupportingEnv,
)
from imaging_ingest.publish.reclassify import reconcile_tier
from imaging_ingest.storage.objects import LocalCache, ObjectStore, PublicTierViolation
from imaging_ingest.storage.transfers import IO_THREADS as IO_THREADS  # re-exported for the stages
from imaging_ingest.storage.transfers import Transfers

__all__ = ["IngestBase", "NothingToDo", "StageResult", "submission_id_for"]

log = logging.getLogger(__name__)




# Whole-submission stages read only the manifest columns they use (see ``ManifestStore.read``):
#: what the stage counts report from
COUNT_COLUMNS = ("file_id", "status", "leaks")


#: what planning batches groups by
PLAN_COLUMNS = ("file_id", "status", "kind", "series_uid")


#: what keeping a quarantined original needs
QUARANTINE_COLUMNS = ("file_id", "status", "reason", "raw_key", "source_path")


#: what registering instances and supporting files reads
REGISTER_COLUMNS = (
    "file_id",
    "status",
    "kind",
    "pseudo_patient_id",
    "patient_key",
    "deid_key",
    "size_out",
    "sha256",
    "md5",
    "deid_study_uid",
    "deid_series_uid",
    "deid_sop_uid",
    "deid_sop_class_uid",
    "out_StudyDate",
    "out_StudyDescription",
    "out_Modality",
    "out_BodyPartExamined",
    "out_Manufacturer",
    "out_SeriesDescription",
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


class IngestBase:
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

    def close(self) -> None:
        """Release what this object opened itself: the catalog's connections, the drop's session.

        A catalog, store or drop passed in belongs to the caller and stays open. A task
        opens an ``Ingest`` with ``with``, so its connections end with the task.
        """
        if self._catalog is None and "catalog" in self.__dict__:
            self.__dict__.pop("catalog").dispose()
        if self._drop is None and "drop" in self.__dict__:
            close = getattr(self.__dict__.pop("drop"), "close", None)
            if callable(close):
                close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
        reconcile_tier(
            catalog, self.store, self.config
        )  # public -> restricted withdraws; the reverse is refused
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
            destination_of=destination
            or (lambda key: self.cache.path("staging", self._deid_object(submission_id, key))),
            on_output=upload,
        )

    def public_key(self, deid_key: str) -> str:
        return f"{self.config.id}/{deid_key}"

    @property
    def publish_tier(self) -> str:
        """Where this collection's objects go; a restricted collection can never name the public tier."""
        if self.config.license == License.RESTRICTED and self.config.tier != "restricted":
            raise PublicTierViolation(
                f"collection {self.config.id} is restricted but configured for {self.config.tier}"
            )
        return self.config.tier

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
        projection = public_projection(
            frame[[c for c in gate_inputs(name) if c in frame.columns]], self.secret
        )
        uid_regex = (
            r"^[0-9.]{1,64}$"
            if DeidOption.RETAIN_UIDS in self.config.deid.options
            else r"^2\.25\.[1-9]\d{0,38}$"
        )
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
        known = {
            item.file_id
            for item in self.catalog.quarantine_items(self.config.id)
            if item.submission_id == submission_id
        }
        items = []
        with Transfers() as pool:  # each original's copy and reason concurrently, on a bounded pool
            for record in rows.to_dict("records"):
                file_id = int(record["file_id"])
                if file_id in known:
                    continue
                key = None
                if isinstance(record.get("raw_key"), str):
                    key = f"{self.config.id}/{submission_id}/{file_id:06d}/original"
                    pool.submit(partial(self._keep_quarantined, submission_id, record, key, stage))
                items.append((file_id, str(record["source_path"]), stage, str(record["reason"]), key))
        self.catalog.add_quarantine(self.config.id, submission_id, items)
        # what no person needs to look at (an exact duplicate) is closed by policy, not queued for curators
        settled = [file_id for file_id, _, _, reason, _ in items if not needs_curator(reason)]
        auto_reject(self.catalog, submission_id, settled, "policy")

    def _keep_quarantined(self, submission_id: str, record: dict[str, Any], key: str, stage: str) -> None:
        file_id = int(record["file_id"])
        if self.store.head("quarantine", key) is None:
            self.store.copy("raw", record["raw_key"], "quarantine", key)
        self.store.put_json(
            "quarantine",
            f"{self.config.id}/{submission_id}/{file_id:06d}/reason.json",
            {"file_id": file_id, "stage": stage, "source_path": record["source_path"]}
            | classify(record["reason"]).as_dict(),
        )
