"""What a published version contains, asked of the catalog's tables when a request needs it.

A version's members are the catalog's span rows (``published_version <= N`` and not
retired by ``N``): the same rule the publish stage wrote the version's ``release.json``
from, answered by the catalog's indexes. Nothing is joined or loaded at start-up: a
lookup by UID is one indexed query, a listing of a whole collection one grouped query
(its series summaries, a few hundred bytes per series, are then kept for that version,
which never changes). Instances are read per series when a request needs them.

The DICOM header fields NBIA and DICOMweb report and the catalog does not keep come from
the persistent ``HeaderCache``, read per series on first use.

A version is served once its ``release.json`` can be found (the catalog records a version
after writing it; a missing one means a broken release, and the previous version is
served, the check repeated a minute later).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import Engine

from imaging_ingest.api.headers import HeaderCache
from imaging_ingest.api.queries import (
    SeriesRow,
    VersionRow,
    instance_row,
    patient_ids_ignoring_case,
    published_versions,
    series_instances,
    series_rows,
    series_uid_of_instance,
)

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
#: A version whose release could not be found is looked for again after this long.
_RETRY_BROKEN_S = 60.0
#: Header objects are fetched from their first 64 KiB; the exact size is not needed to decide that.
_UNKNOWN_SIZE = 1 << 62


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


class SeriesView:
    """One series of one version; its instances and header fields are read when first asked for."""

    __slots__ = ("_header", "_instances", "_lock", "collection", "row")

    def __init__(self, collection: CollectionView, row: SeriesRow) -> None:
        self.collection = collection
        self.row = row
        self._header: Mapping[str, Any] | None = None
        self._instances: tuple[InstanceView, ...] | None = None
        self._lock = threading.Lock()

    uid = property(lambda self: self.row.uid)
    study_uid = property(lambda self: self.row.study_uid)
    patient_id = property(lambda self: self.row.patient_id)
    collection_id = property(lambda self: self.collection.id)
    modality = property(lambda self: self.row.modality)
    body_part = property(lambda self: self.row.body_part)
    manufacturer = property(lambda self: self.row.manufacturer)
    description = property(lambda self: self.row.description)
    image_count = property(lambda self: self.row.count)
    total_bytes = property(lambda self: int(self.row.bytes or 0))
    submitted = property(lambda self: self.row.submitted_at)

    @property
    def released(self) -> datetime:
        """When the version that first published the series' newest instance was recorded."""
        return self.collection.created.get(self.row.newest_version, self.collection.released)

    @property
    def header(self) -> Mapping[str, Any]:
        if self._header is None:
            self.collection.load_headers([self])
        return self._header or _EMPTY

    @property
    def instances(self) -> tuple[InstanceView, ...]:
        with self._lock:
            if self._instances is None:
                rows = series_instances(self.collection.engine, self.row.pk, self.collection.version)
                self._instances = tuple(
                    InstanceView(r.sop_uid, r.sop_class_uid, r.object_key, r.tier, r.size, r.md5, r.sha256) for r in rows
                )
            return self._instances


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


def _studies(collection_id: str, series: list[SeriesView]) -> dict[str, StudyView]:
    """Studies of these series, by UID; a study's series in SeriesNumber order (then UID)."""
    by_study: dict[str, list[SeriesView]] = defaultdict(list)
    for s in series:
        by_study[s.study_uid].append(s)
    studies = {}
    for uid, members in sorted(by_study.items()):
        members.sort(key=lambda s: (s.header.get("SeriesNumber") or 0, s.uid))
        first = members[0].row
        studies[uid] = StudyView(uid, first.patient_id, collection_id, first.study_date, first.study_description,
                                 tuple(members))
    return studies


def _patients(collection_id: str, studies: Mapping[str, StudyView]) -> dict[str, PatientView]:
    by_patient: dict[str, list[StudyView]] = defaultdict(list)
    for study in studies.values():
        by_patient[study.patient_id].append(study)
    return {
        pid: PatientView(pid, collection_id, tuple(sorted(members, key=lambda s: (s.date or "", s.uid))))
        for pid, members in sorted(by_patient.items())
    }


class _Listing:
    """A whole version's series, studies and patients: built on the first listing, then kept."""

    def __init__(self, view: CollectionView) -> None:
        series = [SeriesView(view, row) for row in series_rows(view.engine, view.id, view.version)]
        view.load_headers(series)
        self.series: Mapping[str, SeriesView] = MappingProxyType({s.uid: s for s in series})
        self.studies: Mapping[str, StudyView] = MappingProxyType(_studies(view.id, series))
        self.patients: Mapping[str, PatientView] = MappingProxyType(_patients(view.id, self.studies))


class _Lookup(Mapping[str, Any]):
    """``view.series`` / ``view.studies`` / ``view.patients``: a lookup by key is one indexed
    query (or the listing, once it exists); iterating lists the whole version."""

    def __init__(self, view: CollectionView, what: str, find: Callable[[str], Any]) -> None:
        self._view, self._what, self._find = view, what, find

    def _all(self) -> Mapping[str, Any]:
        listing = self._view.listing()
        return getattr(listing, self._what)

    def __getitem__(self, key: str) -> Any:
        listing = self._view.listed
        found = getattr(listing, self._what).get(key) if listing is not None else self._view.cached_lookup(
            self._what, key, self._find)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def values(self) -> Any:
        return self._all().values()

    def items(self) -> Any:
        return self._all().items()


class CollectionView:
    """One version of one collection, as served."""

    def __init__(self, row: VersionRow, engine: Engine, headers: HeaderCache, created: Mapping[int, datetime]) -> None:
        self.id = row.collection_id
        self.title = row.title
        self.license = row.license
        self.tier = row.tier
        self.version = row.number
        self.release_key = row.release_key
        self.released = row.created_at
        self.created = created
        self.engine = engine
        self.headers = headers
        #: Formatted answers for this version, filled as they are asked for (a version never changes).
        self.cache: dict[tuple[str, str], Any] = {}
        self.listed: _Listing | None = None
        self._lock = threading.Lock()
        self._lookups: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self.series: Mapping[str, SeriesView] = _Lookup(self, "series", self._find_series)
        self.studies: Mapping[str, StudyView] = _Lookup(self, "studies", self._find_study)
        self.patients: Mapping[str, PatientView] = _Lookup(self, "patients", self._find_patient)

    @property
    def restricted(self) -> bool:
        return is_restricted(self.license, self.tier)

    def listing(self) -> _Listing:
        with self._lock:
            if self.listed is None:
                started = time.perf_counter()
                self.listed = _Listing(self)
                self._lookups.clear()
                log.info("listed %s version %d: %d series (%.2f s)", self.id, self.version,
                         len(self.listed.series), time.perf_counter() - started)
            return self.listed

    def cached_lookup(self, what: str, key: str, find: Callable[[str], Any]) -> Any:
        """Lookups before any listing, kept (at most 4,096) so repeated ones cost no query."""
        with self._lock:
            if (what, key) in self._lookups:
                self._lookups.move_to_end((what, key))
                return self._lookups[(what, key)]
        found = find(key)
        with self._lock:
            self._lookups[(what, key)] = found
            while len(self._lookups) > 4096:
                self._lookups.popitem(last=False)
        return found

    def load_headers(self, series: list[SeriesView]) -> None:
        """Fill the header fields of these series (one persistent-cache lookup, reads for the missing)."""
        wanted = [s for s in series if s._header is None]
        if not wanted:
            return
        found = self.headers.get_many((s.row.tier, s.row.first_key, _UNKNOWN_SIZE) for s in wanted)
        for s in wanted:
            s._header = MappingProxyType(dict(found.get(s.row.first_key) or {}))

    def studies_of(self, uids: Iterable[str]) -> dict[str, StudyView]:
        """These studies of the version, by UID (one batched query unless the version is listed)."""
        wanted = list(dict.fromkeys(uids))
        if self.listed is not None:
            return {u: s for u in wanted if (s := self.listed.studies.get(u)) is not None}
        with self._lock:
            known = {u: self._lookups[("studies", u)] for u in wanted if ("studies", u) in self._lookups}
        missing = [u for u in wanted if u not in known]
        if missing:
            series = [SeriesView(self, r) for r in series_rows(self.engine, self.id, self.version, study_uids=missing)]
            self.load_headers(series)
            found = _studies(self.id, series)
            with self._lock:
                for uid in missing:
                    self._lookups[("studies", uid)] = found.get(uid)
                while len(self._lookups) > 4096:
                    self._lookups.popitem(last=False)
            known.update(found)
        return {u: s for u in wanted if (s := known.get(u)) is not None}

    def _find_series(self, uid: str) -> SeriesView | None:
        rows = series_rows(self.engine, self.id, self.version, series_uid=uid)
        return SeriesView(self, rows[0]) if rows else None

    def _find_study(self, uid: str) -> StudyView | None:
        series = [SeriesView(self, r) for r in series_rows(self.engine, self.id, self.version, study_uid=uid)]
        self.load_headers(series)
        return _studies(self.id, series).get(uid)

    def _find_patient(self, patient_id: str) -> PatientView | None:
        series = [SeriesView(self, r) for r in series_rows(self.engine, self.id, self.version, patient_id=patient_id)]
        self.load_headers(series)
        return _patients(self.id, _studies(self.id, series)).get(patient_id)

    def find_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> InstanceView | None:
        """One instance of the version by its UIDs: one indexed query, no series listing (frames, rendering)."""
        r = instance_row(self.engine, self.id, self.version, study_uid, series_uid, sop_uid)
        return InstanceView(r.sop_uid, r.sop_class_uid, r.object_key, r.tier, r.size, r.md5, r.sha256) if r else None

    def series_of_instance(self, sop_uid: str) -> SeriesView | None:
        """The series holding this instance in this version (one indexed query)."""
        uid = series_uid_of_instance(self.engine, self.id, sop_uid, self.version)
        return self.series.get(uid) if uid else None

    def find_patients_ignoring_case(self, patient_id: str) -> list[PatientView]:
        if self.listed is not None:
            wanted = patient_id.upper()
            return [p for pid, p in self.listed.patients.items() if pid.upper() == wanted]
        found = (self.patients.get(pid) for pid in patient_ids_ignoring_case(self.engine, self.id, patient_id))
        return [p for p in found if p is not None]


ReleaseExists = Callable[[str, str], bool]
"""``release_exists(tier, key)``: whether the version's ``release.json`` can be found."""


@dataclass
class _Versions:
    """The catalog's versions, as last read."""

    by_collection: dict[str, list[VersionRow]] = field(default_factory=dict)
    read_at: float = float("-inf")


class Archive:
    """The published versions of every collection; views are cheap handles on the catalog."""

    def __init__(
        self,
        engine: Engine,
        release_exists: ReleaseExists,
        headers: HeaderCache,
        *,
        refresh_interval_s: float = 5.0,
        max_views: int = 32,
    ) -> None:
        self.engine = engine
        self.headers = headers
        self._release_exists = release_exists
        self._refresh_interval_s = refresh_interval_s
        self._max_views = max_views
        self._versions = _Versions()
        self._versions_lock = threading.Lock()
        self._views: OrderedDict[tuple[str, int], CollectionView] = OrderedDict()
        self._views_lock = threading.Lock()
        self._checked: dict[tuple[str, int], float] = {}  # broken releases: when they were last looked for

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
        """The newest servable version of every collection (restricted ones included)."""
        views = []
        for _collection, rows in sorted(self.versions().items()):
            view = next((v for r in reversed(rows) if (v := self._view(r, rows)) is not None), None)
            if view is not None:
                views.append(view)
        return views

    def pinned(self, collection_id: str, number: int) -> CollectionView | None:
        """One named version of one collection, or None when it was never published."""
        rows = self.versions().get(collection_id, [])
        row = next((r for r in rows if r.number == number), None)
        return self._view(row, rows) if row is not None else None

    def _view(self, row: VersionRow, rows: list[VersionRow]) -> CollectionView | None:
        key = (row.collection_id, row.number)
        with self._views_lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
            if time.monotonic() - self._checked.get(key, float("-inf")) < _RETRY_BROKEN_S:
                return None
        try:
            found = self._release_exists(row.tier, row.release_key)
        except Exception as exc:  # the store is down or the release unreadable: the previous version is served
            log.error("the release of %s version %d cannot be read: %s", row.collection_id, row.number,
                      type(exc).__name__)
            found = False
        if not found:
            with self._views_lock:
                self._checked[key] = time.monotonic()
            return None
        view = CollectionView(row, self.engine, self.headers, {r.number: r.created_at for r in rows})
        with self._views_lock:
            view = self._views.setdefault(key, view)
            while len(self._views) > self._max_views:
                self._views.popitem(last=False)
        return view
