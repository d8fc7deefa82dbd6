"""Inventory: one header-only read per file, one manifest row per file.

The inventory decides what each file is before anything is changed: DICOM (with the
identifiers that later stages group and check by), a supporting file, or something that
cannot be ingested, in which case the row carries the reason. Only the header is read
(``stop_before_pixels``), so a submission of large images inventories at disk speed.
Submission-wide checks follow: duplicate SOP Instance UIDs, series that mix patients.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import UID

from imaging_ingest.core.checksum import file_sha256
from imaging_ingest.core.dicom_read import encoding_transfer_syntax, read_dataset, truncation
from imaging_ingest.core.pool import process_pool
from imaging_ingest.core.records import frame_from_records
from imaging_ingest.inventory.raw_header import raw_header
from imaging_ingest.inventory.twins import content_key, decoded_key, preferred

if TYPE_CHECKING:  # frames are the callers'; a worker that reads headers never imports pandas
    import pandas as pd

__all__ = [
    "HEADER_COLUMNS",
    "FileKind",
    "check_submission",
    "inventory_frame",
    "read_header",
    "read_header_with_pydicom",
]

#: Manifest columns filled from the header (PHI: the manifest lives in the restricted staging tier).
HEADER_COLUMNS = (
    "sop_class_uid",
    "sop_uid",
    "modality",
    "patient_id",
    "study_uid",
    "series_uid",
    "transfer_syntax",
    "rows",
    "cols",
    "frames",
    "burned_in_annotation",
    "image_type",
    "manufacturer",
    "body_part",
    "recognizable_visual_features",
)

#: What pydicom raises on a corrupt header (an unknown VR, a value of the wrong length...): a reason, never a crash.
_CORRUPT = (
    EOFError,
    struct.error,
    ValueError,
    TypeError,
    KeyError,
    OverflowError,
    IndexError,
    RecursionError,
    NotImplementedError,
    BytesLengthException,
)

_CLINICAL_SUFFIXES = {".csv", ".tsv", ".xlsx", ".xls"}
_SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".scn", ".mrxs"}


class FileKind:
    DICOM = "dicom"
    CLINICAL = "clinical"
    SLIDE = "slide"
    OTHER = "other"


@dataclass(frozen=True)
class HeaderRead:
    kind: str
    values: dict[str, Any]
    reason: str | None = None


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _int(ds: Any, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _kind_by_name(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in _CLINICAL_SUFFIXES:
        return FileKind.CLINICAL
    if suffix in _SLIDE_SUFFIXES:
        return FileKind.SLIDE
    return FileKind.OTHER


#: Files up to this size are read whole, once, and their header taken from the bytes.
WHOLE_READ = 8 << 20


def read_header(
    path: Path, display_name: str, *, remapped_uids: frozenset[str] = frozenset()
) -> HeaderRead:
    """Read one file's header; never raises for bad input, returns the reason instead.

    ``remapped_uids``: keywords of the instance UIDs the collection's profile replaces by their
    keyed remapping (``ResolvedProfile.remapped_instance_uids``); a value of one of them in the
    wrong syntax (a hash in hex, say) is still an identifier that is never published, so it is
    accepted as long as it is one value of printable characters of a UID's length.

    A file up to ``WHOLE_READ`` is read once, whole: its header elements come from
    ``raw_header`` (the bytes walked without pydicom, the values converted by pydicom), or,
    where that steps aside, from pydicom reading the same bytes; the result is the same
    either way (``read_header_with_pydicom``). A larger file is read by pydicom, header only.
    """
    size = path.stat().st_size
    if size == 0:
        return HeaderRead(FileKind.OTHER, {}, "zero-byte file")
    if size > WHOLE_READ:
        return read_header_with_pydicom(path, display_name, remapped_uids=remapped_uids)
    data = path.read_bytes()
    fast = raw_header(data)
    if fast is None:
        return _pydicom_header(io.BytesIO(data), len(data), display_name, remapped_uids)
    return _header(fast.values, lambda: fast.transfer_syntax, fast.truncation, remapped_uids)


def read_header_with_pydicom(
    path: Path, display_name: str, *, remapped_uids: frozenset[str] = frozenset()
) -> HeaderRead:
    """``read_header`` through pydicom's own reading of the header: the reference the fast path must equal."""
    size = path.stat().st_size
    if size == 0:
        return HeaderRead(FileKind.OTHER, {}, "zero-byte file")
    with open(path, "rb") as fh:
        return _pydicom_header(fh, size, display_name, remapped_uids)


def _pydicom_header(fh: BinaryIO, size: int, display_name: str, remapped_uids: frozenset[str]) -> HeaderRead:
    try:
        ds = read_dataset(fh, stop_before_pixels=True)  # Part 10, or a data set without file meta
        cut = truncation(ds, fh, fh.tell(), size)
    except InvalidDicomError:
        kind = _kind_by_name(display_name)
        if kind == FileKind.OTHER:
            return HeaderRead(kind, {}, "not a DICOM file (no DICM prefix) and not a supported supporting-data type")
        return HeaderRead(kind, {})
    except _CORRUPT as exc:
        return HeaderRead(FileKind.DICOM, {}, f"truncated or corrupt DICOM header ({type(exc).__name__})")
    return _header(ds, lambda: str(encoding_transfer_syntax(ds)), cut, remapped_uids)


def _header(ds: Any, transfer_syntax: Callable[[], str], cut: str | None, remapped_uids: frozenset[str]) -> HeaderRead:
    """The row's values from a data set (pydicom's, or ``raw_header``'s); a value pydicom cannot convert is a reason."""
    try:
        values = {
            "sop_class_uid": _text(ds, "SOPClassUID"),
            "sop_uid": _text(ds, "SOPInstanceUID"),
            "modality": _text(ds, "Modality"),
            "patient_id": _text(ds, "PatientID"),
            "study_uid": _text(ds, "StudyInstanceUID"),
            "series_uid": _text(ds, "SeriesInstanceUID"),
            "transfer_syntax": transfer_syntax(),
            "rows": _int(ds, "Rows"),
            "cols": _int(ds, "Columns"),
            "frames": _int(ds, "NumberOfFrames"),
            "burned_in_annotation": _text(ds, "BurnedInAnnotation"),
            "image_type": _text(ds, "ImageType"),
            "manufacturer": _text(ds, "Manufacturer"),
            "body_part": _text(ds, "BodyPartExamined"),
            "recognizable_visual_features": _text(ds, "RecognizableVisualFeatures"),
        }
    except _CORRUPT as exc:
        return HeaderRead(FileKind.DICOM, {}, f"corrupt DICOM element ({type(exc).__name__})")
    # a truncated copy takes no part in duplicate detection: its intact original goes on
    return HeaderRead(FileKind.DICOM, values, cut or _header_problem(values, remapped_uids))


#: A value that can stand for an identifier even if it is not a UID's digits and dots: one value, printable, short.
_REMAPPABLE = re.compile(r"[!-\[\]-~]{1,64}")


def _header_problem(values: dict[str, Any], remapped_uids: frozenset[str] = frozenset()) -> str | None:
    for column, keyword in (
        ("sop_uid", "SOPInstanceUID"),
        ("sop_class_uid", "SOPClassUID"),
        ("study_uid", "StudyInstanceUID"),
        ("series_uid", "SeriesInstanceUID"),
    ):
        value = values.get(column)
        if not value:
            return f"missing {keyword}"
        if not UID(value).is_valid and not (keyword in remapped_uids and _REMAPPABLE.fullmatch(value)):
            return f"invalid {keyword} (not a valid UID)"
    if not values.get("modality"):
        return "missing Modality"
    return None


def check_submission(
    manifest: pd.DataFrame, *, copy: bool = True, path_of: Callable[[dict[str, Any]], Path] | None = None
) -> pd.DataFrame:
    """Submission-wide rules over rows still 'ok'; returns the manifest with new quarantines.

    - the same SOP Instance UID with identical bytes: the first copy goes on, others are duplicates;
    - the same SOP Instance UID with different bytes but the same data set in another transfer
      syntax, or with pixels coded differently that decode to the same values (``twins``; needs
      ``path_of`` to read them): the best encoding goes on, others are duplicates;
    - the same SOP Instance UID with different content: no copy can be trusted, all are quarantined;
    - a series whose files name more than one patient: the whole series is quarantined.

    ``copy=False`` changes ``manifest`` itself (for a caller that owns it: no second copy
    of a large submission's manifest). A row of a shared SOP Instance UID without its
    ``sha256_source`` gets it here, from ``path_of`` (a caller that needs no source checksum
    otherwise, the local CLI, hashes only these files).
    """
    if copy:
        manifest = manifest.copy()
    ok = manifest["status"] == "ok"
    shared = ok & manifest["sop_uid"].notna() & manifest.duplicated("sop_uid", keep=False)
    for _, group in manifest[shared].groupby("sop_uid", sort=False):
        missing = group.index[group["sha256_source"].isna()]
        if len(missing):
            if path_of is None:
                raise ValueError("rows sharing a SOPInstanceUID need their sha256_source, or path_of to hash them")
            records = manifest.loc[missing].to_dict("records")
            manifest.loc[missing, "sha256_source"] = [file_sha256(path_of(r))[0] for r in records]
            group = manifest.loc[group.index]
        if group["sha256_source"].nunique() > 1:
            if not _encoding_twins(manifest, group, path_of):
                manifest.loc[group.index, ["status", "reason"]] = [
                    "quarantined",
                    f"SOPInstanceUID shared by {len(group)} files with different content",
                ]
        else:
            first = int(group["file_id"].min())
            dupes = group.index[group["file_id"] != first]
            manifest.loc[dupes, ["status", "reason"]] = ["quarantined", f"exact duplicate of file {first}"]
    ok = manifest["status"] == "ok"
    patients_per_series = manifest[ok].groupby("series_uid")["patient_id"].nunique()
    for series_uid in patients_per_series[patients_per_series > 1].index:
        rows = ok & (manifest["series_uid"] == series_uid)
        count = int(patients_per_series[series_uid])
        manifest.loc[rows, ["status", "reason"]] = ["quarantined", f"series mixes {count} patients"]
    return manifest


def _encoding_twins(manifest: pd.DataFrame, group: pd.DataFrame, path_of: Callable[[dict[str, Any]], Path] | None) -> bool:
    """One instance in several encodings? Then quarantine all but the best copy and say so.

    First the data sets as values (another transfer syntax); failing that, the decoded pixels with
    the data set less its pixel-coding attributes (another photometric coding, planar configuration
    or Bits Stored). Decoding is paid only here, for files that share a SOP Instance UID.
    """
    if path_of is None:
        return False
    records = [dict(r, file_id=int(r["file_id"])) for r in group.to_dict("records")]
    paths = [path_of(r) for r in records]
    how = next(
        (
            how
            for key_of, how in (
                (content_key, "the same instance in another transfer syntax"),
                (decoded_key, "the same instance with its pixels coded differently (identical when decoded)"),
            )
            if len(keys := {key_of(p) for p in paths}) == 1 and None not in keys
        ),
        None,
    )
    if how is None:
        return False
    keep = preferred((r["file_id"], r.get("transfer_syntax")) for r in records)
    others = group.index[group["file_id"] != keep]
    manifest.loc[others, ["status", "reason"]] = ["quarantined", f"duplicate of file {keep}: {how}"]
    return True


def inventory_frame(
    records: Iterable[dict[str, Any]],
    path_of: Callable[[dict[str, Any]], Path],
    modalities: Iterable[str],
    supporting: Callable[[str, str], str | None] | None = None,
    *,
    remapped_uids: frozenset[str] = frozenset(),
    workers: int = 1,
) -> pd.DataFrame:
    """Read every still-ok file's header into its record, then apply the submission-wide rules.

    ``records`` carry at least ``file_id``, ``source_path``, ``sha256_source``, ``status``
    and ``reason``; ``path_of`` gives a record's local file. ``supporting(kind, path)``
    says whether the collection takes a supporting file (None) or why not; without it,
    every supporting file is quarantined as undeclared. ``remapped_uids``: see ``read_header``.

    A record may come without its ``sha256_source`` (the local CLI hashes no source it does
    not need): the duplicate rules hash the files that share a SOP Instance UID
    (``check_submission``).

    ``workers`` > 1 reads the headers in that many processes (``core.pool``); the rows, and
    everything decided from them, are the same.
    """
    accepted = {m.upper() for m in modalities}

    def judged(record: dict[str, Any], header: HeaderRead) -> None:
        record["kind"] = header.kind
        record.update(header.values)
        if header.reason:
            record.update(status="quarantined", reason=header.reason)
        elif header.kind != FileKind.DICOM:
            refusal = (
                supporting(header.kind, record["source_path"])
                if supporting is not None
                else f"supporting file of type '{header.kind}' is not declared in the collection config"
            )
            if refusal:
                record.update(status="quarantined", reason=refusal)
        elif (record.get("modality") or "").upper() not in accepted:
            record.update(
                status="quarantined", reason=f"modality {record.get('modality')} is not accepted by this collection"
            )

    def task(record: dict[str, Any]) -> _HeaderTask:
        return str(path_of(record)), str(record["source_path"]), remapped_uids

    def read_all(records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        todo = [task(r) for r in records if r["status"] == "ok"]
        reads: Iterator[HeaderRead]
        if workers > 1 and len(todo) >= 2 * workers:
            with process_pool(workers) as pool:
                chunk = max(1, min(64, len(todo) // (workers * 4)))
                reads = iter(list(pool.map(_read_header_task, todo, chunksize=chunk)))
        else:
            reads = map(_read_header_task, todo)  # one at a time, as the rows are made
        for record in records:
            record = dict(record)
            if record["status"] == "ok":
                judged(record, next(reads))
            yield record

    frame = frame_from_records(read_all(list(records)))
    for column in ("kind", *HEADER_COLUMNS):
        if column not in frame.columns:
            frame[column] = None
    return check_submission(frame, copy=False, path_of=path_of)


#: What one header read needs: the file, its name in the submission, and ``remapped_uids``.
_HeaderTask = tuple[str, str, frozenset[str]]


def _read_header_task(task: _HeaderTask) -> HeaderRead:
    """``read_header`` of one file, in this process or a worker."""
    path, name, remapped_uids = task
    return read_header(Path(path), name, remapped_uids=remapped_uids)
