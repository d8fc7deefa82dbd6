"""What a published version contains: its release manifest joined with the catalog.

A version is exactly its ``{collection}/versions/{N}/release.json``: the API serves an
instance only when its object key is listed there, with the catalog supplying the
patient, study and series it belongs to. Releases never change once written, so the
joined view of a version (``CollectionView``) is built once and kept; the only thing
that changes is which versions exist, which is asked of the catalog at most every
``refresh_interval_s`` seconds.

The whole view of a version lives in memory: a few hundred bytes per instance (a
100,000-instance collection takes some tens of MB). Collections of many millions of
instances would want a persistent index instead; nothing outside this module would
change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import Engine

from .headers import HeaderCache
from .queries import InstanceRow, VersionRow, collection_instances, published_versions

__all__ = [
    "Archive",
    "CollectionView",
    "InstanceView",
    "PatientView",
    "SeriesView",
    "StudyView",
    "is_restricted",
]

log = logging.getLogger(__name__)

_EMPTY: Mapping[str, Any] = MappingProxyType({})
#: A version whose release could not be read is tried again after this long.
_RETRY_BROKEN_S = 60.0


def is_restricted(license: str, tier: str) -> bool:
    """Restricted data needs a token: the restricted licence or the restricted tier, either suffices."""
    return license == "restricted" or tier != "public"


@dataclass(frozen=True)
class InstanceView:
    sop_uid: str
    sop_class_uid: str
    key: str
    tier: str
    size: int
    md5: str
    sha256: str


@dataclass(frozen=True)
class SeriesView:
    uid: str
    study_uid: str
    patient_id: str
    collection_id: str
    modality: str | None
    body_part: str | None
    manufacturer: str | None
    description: str | None
    instances: tuple[InstanceView, ...]
    released: datetime
    submitted: datetime | None
    header: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def image_count(self) -> int:
        return len(self.instances)

    @property
    def total_bytes(self) -> int:
        return sum(i.size for i in self.instances)


@dataclass(frozen=True)
class StudyView:
    uid: str
    patient_id: str
    collection_id: str
    date: str | None
    description: str | None
    series: tuple[SeriesView, ...]

    @property
    def header(self) -> Mapping[str, Any]:
        return self.series[0].header if self.series else _EMPTY


@dataclass(frozen=True)
class PatientView:
    id: str
    collection_id: str
    studies: tuple[StudyView, ...]

    @property
    def header(self) -> Mapping[str, Any]:
        return self.studies[0].header if self.studies else _EMPTY

    @property
    def series(self) -> tuple[SeriesView, ...]:
        return tuple(s for study in self.studies for s in study.series)


@dataclass(frozen=True)
class CollectionView:
    """One version of one collection, as served."""

    id: str
    title: str
    license: str
    tier: str
    version: int
    release_key: str
    released: datetime
    patients: Mapping[str, PatientView]
    studies: Mapping[str, StudyView]
    series: Mapping[str, SeriesView]
    skipped: int = 0
    #: Formatted answers for this version, filled as they are asked for (a version never changes).
    cache: dict[tuple[str, str], Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def restricted(self) -> bool:
        return is_restricted(self.license, self.tier)


@dataclass
class _Versions:
    """The catalog's versions, as last read."""

    by_collection: dict[str, list[VersionRow]] = field(default_factory=dict)
    read_at: float = float("-inf")


ReleaseReader = Callable[[str, str], dict[str, Any]]
"""``read_release(tier, key)``: the parsed ``release.json``."""


class Archive:
    """The published versions of every collection, joined with the catalog, cached."""

    def __init__(
        self,
        engine: Engine,
        read_release: ReleaseReader,
        headers: HeaderCache,
        *,
        refresh_interval_s: float = 5.0,
        max_views: int = 32,
    ) -> None:
        self.engine = engine
        self._read_release = read_release
        self._headers = headers
        self._refresh_interval_s = refresh_interval_s
        self._max_views = max_views
        self._versions = _Versions()
        self._versions_lock = threading.Lock()
        self._views: OrderedDict[tuple[str, int], CollectionView] = OrderedDict()
        self._views_lock = threading.Lock()
        self._build_locks: defaultdict[tuple[str, int], threading.Lock] = defaultdict(threading.Lock)
        self._broken: dict[tuple[str, int], float] = {}
        self._building: set[tuple[str, int]] = set()

    # -- versions --------------------------------------------------------------------------

    def versions(self) -> dict[str, list[VersionRow]]:
        """Every collection's recorded versions, oldest first; re-read when stale."""
        with self._versions_lock:
            if time.monotonic() - self._versions.read_at >= self._refresh_interval_s:
                by_collection: dict[str, list[VersionRow]] = defaultdict(list)
                for row in published_versions(self.engine):
                    by_collection[row.collection_id].append(row)
                self._versions = _Versions(dict(by_collection), time.monotonic())
            return self._versions.by_collection

    def latest(self) -> list[CollectionView]:
        """The newest servable version of every collection (restricted ones included).

        A collection served for the first time is joined right away (the caller waits).
        When a newer version of a collection already served appears, its view is built in
        the background and the previous version is served until it is ready, so that no
        request waits for a new release's header reads.
        """
        views = []
        for _collection, rows in sorted(self.versions().items()):
            view = self._newest_ready(rows)
            if view is not None:
                views.append(view)
        return views

    def _newest_ready(self, rows: list[VersionRow]) -> CollectionView | None:
        newest = self._cached(rows[-1])
        if newest is not None:
            return newest
        older = next((v for r in reversed(rows[:-1]) if (v := self._cached(r)) is not None), None)
        if older is None:
            for row in reversed(rows):
                view = self._view(row)
                if view is not None:
                    return view
            return None
        self._build_in_background(rows[-1])
        return older

    def _cached(self, row: VersionRow) -> CollectionView | None:
        with self._views_lock:
            return self._views.get((row.collection_id, row.number))

    def _build_in_background(self, row: VersionRow) -> None:
        key = (row.collection_id, row.number)
        with self._views_lock:
            if key in self._building:
                return
            self._building.add(key)

        def build() -> None:
            try:
                self._view(row)
            finally:
                with self._views_lock:
                    self._building.discard(key)

        threading.Thread(target=build, name=f"build-{row.collection_id}-{row.number}", daemon=True).start()

    def pinned(self, collection_id: str, number: int) -> CollectionView | None:
        """One named version of one collection, or None when it was never published."""
        for row in self.versions().get(collection_id, []):
            if row.number == number:
                return self._view(row)
        return None

    # -- views -----------------------------------------------------------------------------

    def _view(self, row: VersionRow) -> CollectionView | None:
        key = (row.collection_id, row.number)
        with self._views_lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
        if time.monotonic() - self._broken.get(key, float("-inf")) < _RETRY_BROKEN_S:
            return None
        with self._build_locks[key]:
            with self._views_lock:
                if key in self._views:
                    return self._views[key]
            try:
                view = self._build(row)
            except Exception as exc:  # an unreadable release: serve the previous version instead
                log.error("version %d of %s cannot be served: %s", row.number, row.collection_id, exc)
                self._broken[key] = time.monotonic()
                return None
            with self._views_lock:
                self._views[key] = view
                while len(self._views) > self._max_views:
                    self._views.popitem(last=False)
        return view

    def _build(self, row: VersionRow) -> CollectionView:
        started = time.perf_counter()
        release = self._read_release(row.tier, row.release_key)
        # NBIA serves DICOM series; supporting files (tables, slides) are listed with a "kind" and not served here.
        listed = {str(o["key"]): o for o in release.get("objects", []) if o.get("kind", "dicom") == "dicom"}
        if release.get("collection") not in (None, row.collection_id):
            raise ValueError(f"{row.release_key} names collection {release.get('collection')!r}")
        created = {r.number: r.created_at for r in self.versions().get(row.collection_id, [])}
        grouped: dict[str, list[InstanceRow]] = defaultdict(list)
        skipped = 0
        for instance in collection_instances(self.engine, row.collection_id):
            entry = listed.pop(instance.object_key, None)
            if entry is None:
                continue
            if int(entry.get("size", -1)) != instance.size or entry.get("md5", instance.md5) != instance.md5:
                skipped += 1
                log.error("release %s and the catalog disagree on %s; it is not served", row.release_key, instance.object_key)
                continue
            grouped[instance.series_uid].append(instance)
        if listed:
            skipped += len(listed)
            log.error("release %s lists %d objects the catalog does not know; they are not served",
                      row.release_key, len(listed))
        headers = self._headers.get_many(
            (rows[0].tier, rows[0].object_key, rows[0].size) for rows in grouped.values()
        )
        series: dict[str, SeriesView] = {}
        for uid, rows in grouped.items():
            first = rows[0]
            released = max(
                min(created.get(r.published_version or row.number, row.created_at), row.created_at) for r in rows
            )
            series[uid] = SeriesView(
                uid=uid,
                study_uid=first.study_uid,
                patient_id=first.patient_id,
                collection_id=row.collection_id,
                modality=first.modality,
                body_part=first.body_part,
                manufacturer=first.manufacturer,
                description=first.series_description,
                instances=tuple(
                    InstanceView(r.sop_uid, r.sop_class_uid, r.object_key, r.tier, r.size, r.md5, r.sha256) for r in rows
                ),
                released=released,
                submitted=max((r.submitted_at for r in rows if r.submitted_at), default=None),
                header=MappingProxyType(dict(headers.get(first.object_key, {}))),
            )
        studies = _studies(row.collection_id, series.values(), grouped)
        patients = _patients(row.collection_id, studies.values())
        log.info(
            "serving %s version %d: %d patients, %d studies, %d series, %d instances (%.1f s)",
            row.collection_id, row.number, len(patients), len(studies), len(series),
            sum(len(r) for r in grouped.values()), time.perf_counter() - started,
        )
        return CollectionView(
            id=row.collection_id,
            title=row.title,
            license=row.license,
            tier=row.tier,
            version=row.number,
            release_key=row.release_key,
            released=row.created_at,
            patients=MappingProxyType(patients),
            studies=MappingProxyType(studies),
            series=MappingProxyType(series),
            skipped=skipped,
        )


def _studies(
    collection_id: str, series: Iterable[SeriesView], rows: Mapping[str, list[InstanceRow]]
) -> dict[str, StudyView]:
    by_study: dict[str, list[SeriesView]] = defaultdict(list)
    for s in series:
        by_study[s.study_uid].append(s)
    studies = {}
    for uid, members in sorted(by_study.items()):
        members.sort(key=lambda s: (s.header.get("SeriesNumber") or 0, s.uid))
        first = rows[members[0].uid][0]
        studies[uid] = StudyView(
            uid=uid,
            patient_id=first.patient_id,
            collection_id=collection_id,
            date=first.study_date,
            description=first.study_description,
            series=tuple(members),
        )
    return studies


def _patients(collection_id: str, studies: Iterable[StudyView]) -> dict[str, PatientView]:
    by_patient: dict[str, list[StudyView]] = defaultdict(list)
    for study in studies:
        by_patient[study.patient_id].append(study)
    return {
        pid: PatientView(pid, collection_id, tuple(sorted(members, key=lambda s: (s.date or "", s.uid))))
        for pid, members in sorted(by_patient.items())
    }
