"""What one request may see: the versions in its scope, filtered by the caller's grants.

Two rules, applied here and nowhere else:

* Listing never shows a restricted collection the caller has no grant for: not its
  patients, series, values, nor its name.
* Naming it (``Collection=``, a series, study or SOP Instance UID of it) answers exactly
  as naming something that does not exist, byte for byte: a 401 or 403 would tell anyone
  which restricted collections, versions and UIDs exist (an existence oracle). Clients
  that hold a grant send their token; the API documentation says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from imaging_ingest.api.auth import Caller
from imaging_ingest.api.releases import CollectionView, InstanceView, PatientView, SeriesView, StudyView

__all__ = ["Scope"]


@dataclass(frozen=True)
class Scope:
    """The collection versions a request addresses, and who is asking."""

    views: tuple[CollectionView, ...]
    caller: Caller

    def visible(self) -> list[CollectionView]:
        return [v for v in self.views if self.caller.can_see(v.id, v.restricted)]

    def collections(self, name: str | None) -> list[CollectionView]:
        """The visible collections, or the one named (case-insensitively, as NBIA matches)."""
        if not name:
            return self.visible()
        return [v for v in self.views if v.id.upper() == name.upper() and self.caller.can_see(v.id, v.restricted)]

    def series(self, collection: str | None = None) -> Iterator[tuple[CollectionView, SeriesView]]:
        for view in self.collections(collection):
            for series in view.series.values():
                yield view, series

    def studies(self, collection: str | None = None) -> Iterator[tuple[CollectionView, StudyView]]:
        for view in self.collections(collection):
            for study in view.studies.values():
                yield view, study

    def patients(self, collection: str | None = None) -> Iterator[tuple[CollectionView, PatientView]]:
        for view in self.collections(collection):
            for patient in view.patients.values():
                yield view, patient

    def find_patients(self, collection: str | None, patient_id: str) -> list[tuple[CollectionView, PatientView]]:
        """Patients with this ID (ignoring case, as NBIA) in the visible or named collections."""
        return [(view, p) for view in self.collections(collection) for p in view.find_patients_ignoring_case(patient_id)]

    def find_series(self, uid: str) -> tuple[CollectionView, SeriesView] | None:
        """The series with this UID, if published in scope and visible to the caller (else None, as if missing)."""
        for view in self.views:
            series = view.series.get(uid)
            if series is not None and self.caller.can_see(view.id, view.restricted):
                return view, series
        return None

    def find_study(self, uid: str) -> tuple[CollectionView, StudyView] | None:
        for view in self.views:
            study = view.studies.get(uid)
            if study is not None and self.caller.can_see(view.id, view.restricted):
                return view, study
        return None

    def find_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> tuple[CollectionView, InstanceView] | None:
        """The instance with these UIDs, if published in scope and visible to the caller (else None)."""
        for view in self.visible():
            instance = view.find_instance(study_uid, series_uid, sop_uid)
            if instance is not None:
                return view, instance
        return None
