"""References of an analysis result to published instances: found, resolved, kept, or quarantined.

A collection configured with ``derived_from: [source, ...]`` holds analysis results made
on those collections' published data. Its files reference published, de-identified UIDs
(``ReferencedSOPInstanceUID`` in ``ReferencedSeriesSequence``, ``SourceImageSequence``,
``ReferencedSOPSequence``, ...; the shared ``StudyInstanceUID``; the referenced series).
Those values identify no one, and remapping them again would break every reference, so:

- every ``ReferencedSOPInstanceUID`` must resolve to a published instance of a source
  collection, or to an instance of the same submission; a file with one that resolves
  nowhere is quarantined, the reason naming the rule and the element (never the value);
- the UIDs that resolve (instances, series, studies of the sources) are kept as they are
  by the de-identifier and expected by the leak scan, and so is a ``FrameOfReferenceUID``
  equal to that of a referenced published series (read from one of its published objects:
  the catalog does not record frames of reference); every other UID is remapped as usual.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydicom.datadict import keyword_for_tag

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from imaging_ingest.catalog import Catalog
    from imaging_ingest.storage.objects import ObjectStore

__all__ = [
    "RULE",
    "Reference",
    "Resolution",
    "check_frame",
    "frames_of_reference",
    "kept_uids",
    "published_uids",
    "references",
    "resolve",
]

RULE = "analysis reference"
_REFERENCED_SOP = 0x00081155
_STUDY = 0x0020000D
_SERIES = 0x0020000E
_FRAME = 0x00200052
_LEVELS = {_REFERENCED_SOP: "instance", _SERIES: "series", _STUDY: "study", _FRAME: "frame of reference"}


@dataclass(frozen=True)
class Reference:
    """One UID an analysis result points at, and where it sits (element path, no value)."""

    element: str
    uid: str
    level: str  # instance, series, study, frame of reference


def _name(tag: int) -> str:
    return f"{keyword_for_tag(tag) or 'element'} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def references(ds: Dataset) -> list[Reference]:
    """Referenced SOP instances anywhere; series and study UIDs inside sequences; the file's own study."""
    found: list[Reference] = []

    def walk(item: Dataset, path: tuple[str, ...]) -> None:
        for elem in item:
            tag = int(elem.tag)
            if elem.VR == "SQ":
                for child in elem.value or ():
                    walk(child, (*path, keyword_for_tag(tag) or _name(tag)))
            elif tag in _LEVELS and (path or tag in (_STUDY, _FRAME)) and elem.value:
                values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
                where = " > ".join((*path, _name(tag)))
                found.extend(Reference(where, str(v).strip("\x00 "), _LEVELS[tag]) for v in values if str(v).strip())

    walk(ds, ())
    return found


def published_uids(catalog: Catalog, collections: Iterable[str], uids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Which of ``uids`` are published in the source collections: uid -> (level, collection)."""
    from sqlalchemy import select

    from imaging_ingest.catalog.models import Instance, Series, Study
    from imaging_ingest.core.records import chunks

    sources = sorted(set(collections))
    wanted = sorted(set(uids))
    found: dict[str, tuple[str, str]] = {}
    if not sources or not wanted:
        return found
    with catalog.session() as s:
        for chunk in chunks(wanted, 500):
            for uid, collection in s.execute(
                select(Instance.sop_uid, Instance.collection_id).where(
                    Instance.sop_uid.in_(chunk), Instance.collection_id.in_(sources),
                    Instance.published_version.is_not(None))
            ).tuples():
                found.setdefault(uid, ("instance", collection))
            for uid, collection in s.execute(
                select(Series.uid, Series.collection_id)
                .join(Instance, Instance.series_id == Series.id)
                .where(Series.uid.in_(chunk), Series.collection_id.in_(sources), Instance.published_version.is_not(None))
            ).tuples():
                found.setdefault(uid, ("series", collection))
            for uid, collection in s.execute(
                select(Study.uid, Study.collection_id)
                .join(Series, Series.study_id == Study.id)
                .join(Instance, Instance.series_id == Series.id)
                .where(Study.uid.in_(chunk), Study.collection_id.in_(sources), Instance.published_version.is_not(None))
            ).tuples():
                found.setdefault(uid, ("study", collection))
    return found


@dataclass
class Resolution:
    """One file's references: the UIDs to keep, and the instance references that resolve nowhere."""

    keep: set[str] = field(default_factory=set)
    unresolved: list[Reference] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        if not self.unresolved:
            return None
        first = self.unresolved[0]
        more = f" (and {len(self.unresolved) - 1} more)" if len(self.unresolved) > 1 else ""
        return (f"{RULE}: {first.element} resolves to no published instance of the source collections "
                f"nor to an instance of this submission{more}")


def frames_of_reference(catalog: Catalog, store: ObjectStore, sources: Iterable[str], series_uids: Iterable[str]) -> set[str]:
    """The FrameOfReferenceUIDs of published series, each read from one published object of the series."""
    from pydicom import dcmread
    from sqlalchemy import select

    from imaging_ingest.catalog.models import Instance, Series
    from imaging_ingest.core.records import chunks

    first: dict[str, tuple[str, str]] = {}
    with catalog.session() as s:
        for chunk in chunks(sorted(set(series_uids)), 500):
            for uid, key, tier in s.execute(
                select(Series.uid, Instance.object_key, Instance.tier)
                .join(Instance, Instance.series_id == Series.id)
                .where(Series.uid.in_(chunk), Series.collection_id.in_(sorted(set(sources))),
                       Instance.published_version.is_not(None))
                .order_by(Instance.id)
            ).tuples():
                first.setdefault(uid, (tier, key))
    frames = set()
    for tier, key in first.values():
        ds = dcmread(io.BytesIO(store.get_bytes(tier, key)), stop_before_pixels=True, specific_tags=["FrameOfReferenceUID"])
        if ds.get("FrameOfReferenceUID"):
            frames.add(str(ds.FrameOfReferenceUID))
    return frames


def resolve(
    refs: Iterable[Reference], published: Mapping[str, tuple[str, str]], submitted: set[str], frames: Set[str] = frozenset()
) -> Resolution:
    """Keep what resolves to published data; list instance references that resolve nowhere."""
    result = Resolution()
    for ref in refs:
        if ref.level == "frame of reference":
            if ref.uid in frames:
                result.keep.add(ref.uid)
        elif ref.uid in published:
            result.keep.add(ref.uid)
        elif ref.level == "instance" and ref.uid not in submitted:
            result.unresolved.append(ref)
    return result


def check_frame(frame: Any, read: Any, catalog: Catalog, sources: Iterable[str], store: ObjectStore | None = None) -> Any:
    """The inventory stage's check for a derived collection: quarantine unresolved files, record kept UIDs.

    ``read(record)`` gives a row's local file. Adds the column ``kept_uids`` (space-separated
    UIDs the de-identifier keeps for that file); changes ``status``/``reason`` of files whose
    references resolve nowhere.
    """
    from pydicom import dcmread

    frame = frame.copy()
    frame["kept_uids"] = None
    dicom = (frame["status"] == "ok") & (frame["kind"].fillna("dicom") == "dicom" if "kind" in frame else True)
    submitted = set(frame.loc[frame["sop_uid"].notna(), "sop_uid"].astype(str))
    refs_by_row: dict[Any, list[Reference]] = {}
    for index, record in frame[dicom].iterrows():
        ds = dcmread(read(record.to_dict()), stop_before_pixels=True)
        refs_by_row[index] = references(ds)
    sources = list(sources)
    published = published_uids(catalog, sources, {r.uid for refs in refs_by_row.values() for r in refs})
    series = {uid for uid, (level, _) in published.items() if level == "series"}
    frames = frames_of_reference(catalog, store, sources, series) if store is not None and series else set()
    for index, refs in refs_by_row.items():
        result = resolve(refs, published, submitted, frames)
        if result.reason:
            frame.loc[index, ["status", "reason"]] = ["quarantined", result.reason]
        elif result.keep:
            frame.at[index, "kept_uids"] = " ".join(sorted(result.keep))
    return frame


def kept_uids(frame: Any) -> frozenset[str]:
    """The UIDs a batch keeps (the union of its rows' ``kept_uids``; empty for a collection that derives nothing)."""
    if "kept_uids" not in frame.columns:
        return frozenset()
    return frozenset(u for value in frame["kept_uids"].dropna() for u in str(value).split())
