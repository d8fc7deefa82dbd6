"""Header de-identification of DICOM files, decided per tag on raw elements.

Converting an element's bytes into Python values is what costs time in pydicom, not
copying pixel bytes (``shared/design/deid-perf-notes.md``). So the engine:

1. reads the header only (``stop_before_pixels``); elements stay raw;
2. decides each element's fate from its tag alone, deleting without converting, and
   converts only the values it has to change (UIDs, dates, names, free text);
3. writes the new header, then copies the Pixel Data element as raw bytes, hashing
   everything on the way out.

Files whose pixel data cannot be copied raw (deflated transfer syntax, big endian) take
the slower full read and write through the same dataset logic.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from ..checksum import HashingWriter, copy_range
from ..config import DeidOption
from .dates import shift_da, shift_dt
from .profile import Action, ResolvedProfile, describe_tag
from .scrub import scrub_text
from .uids import remap_uid

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "DeidError",
    "DeidOutput",
    "DeidStats",
    "Deidentifier",
    "PatientContext",
]

#: Our implementation's UID: 2.25 + the first 128 bits of SHA-256("imaging-ingest").
IMPLEMENTATION_CLASS_UID = UID("2.25.231032682590870297395370879454935802084")
IMPLEMENTATION_VERSION_NAME = "IMGINGEST_0_1"
MAX_SEQUENCE_DEPTH = 32
MAX_VALUE_BYTES = 16 * 1024 * 1024

#: CID 7050 "De-identification Method": one code per option applied.
_METHOD_CODES: dict[DeidOption | None, tuple[str, str]] = {
    None: ("113100", "Basic Application Confidentiality Profile"),
    DeidOption.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    DeidOption.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    DeidOption.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    DeidOption.RETAIN_LONGITUDINAL_FULL_DATES: ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    DeidOption.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    DeidOption.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    DeidOption.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    DeidOption.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    DeidOption.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}

#: Dummy values for action D, by VR: valid for the VR, and say nothing.
_DUMMY: dict[str, Any] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
}
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_SOP_INSTANCE_UID = 0x00080018
_RECORDING_TAGS = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})


class DeidError(Exception):
    """A file that cannot be de-identified; the message is PHI-free and becomes a quarantine reason."""


@dataclass(frozen=True)
class PatientContext:
    """What the engine needs to know about the patient a file belongs to."""

    pseudonym: str
    date_offset_days: int
    identifiers: tuple[str, ...] = ()


@dataclass
class DeidStats:
    """What was done to one file, counted per kind of action (never values)."""

    removed: int = 0
    emptied: int = 0
    dummied: int = 0
    uids: int = 0
    dates_shifted: int = 0
    scrubbed: int = 0
    replaced: int = 0
    private_removed: int = 0
    private_kept: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DeidOutput:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    size: int
    sha256: str
    md5: str
    stats: DeidStats = field(compare=False)
    attributes: dict[str, str | None] = field(default_factory=dict, compare=False)


#: De-identified attributes the catalog keeps about each file (read from the output, never the source).
CATALOG_ATTRIBUTES = (
    "StudyDate",
    "StudyDescription",
    "SeriesDescription",
    "Modality",
    "BodyPartExamined",
    "Manufacturer",
    "SeriesNumber",
    "InstanceNumber",
)
_OWN_ID_TAGS = (0x00100020, 0x00101000, 0x00080050, 0x00101090)  # PatientID, OtherPatientIDs, Accession, MRN locator


def _plain(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _own_identifiers(ds: Dataset) -> tuple[str, ...]:
    """The names and IDs a file itself states, so that free text mentioning them can be cleaned."""
    found: list[str] = []
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if raw is None or (tag >> 16) & 1:
            continue
        if _vr_of(raw) == "PN" or tag in _OWN_ID_TAGS:
            for value in _text_values(ds[tag]):
                found.append(value)
                found.extend(p for p in value.replace("=", "^").replace(" ", "^").split("^") if len(p) >= 2)
    return tuple(found)


def _vr_of(elem: RawDataElement | DataElement) -> str:
    vr = elem.VR
    if vr:
        return str(vr)
    try:
        return str(dictionary_VR(elem.tag))
    except KeyError:
        return "UN"


def _text_values(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, list | MultiValue):
        return [str(v) for v in value]
    return [str(value)]


def _set_values(elem: DataElement, values: list[str]) -> None:
    elem.value = values[0] if len(values) == 1 else values


class Deidentifier:
    """Applies one resolved profile with one secret; reusable across files and thread-safe.

    Args:
        profile: the per-tag decisions for the collection's options and overrides.
        secret: the pseudonymisation key (UIDs, hashes).
    """

    def __init__(self, profile: ResolvedProfile, secret: bytes) -> None:
        self.profile = profile
        self.secret = secret
        self._retain_uids = DeidOption.RETAIN_UIDS in profile.options
        self._shift_dates = DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in profile.options
        self._full_dates = DeidOption.RETAIN_LONGITUDINAL_FULL_DATES in profile.options

    # -- datasets -------------------------------------------------------------------------

    def deidentify_dataset(self, ds: Dataset, patient: PatientContext) -> DeidStats:
        """De-identify a dataset in place (file meta excluded) and record what was done."""
        stats = DeidStats()
        patient = replace(patient, identifiers=patient.identifiers + _own_identifiers(ds))
        self._clean(ds, patient, stats, depth=0)
        ds[_PATIENT_ID] = DataElement(_PATIENT_ID, "LO", patient.pseudonym)
        ds[_PATIENT_NAME] = DataElement(_PATIENT_NAME, "PN", patient.pseudonym)
        self._record(ds)
        return stats

    def _clean(self, ds: Dataset, patient: PatientContext, stats: DeidStats, depth: int) -> None:
        if depth > MAX_SEQUENCE_DEPTH:
            raise DeidError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
        creators: list[int] = []
        kept_blocks: set[int] = set()
        for tag in list(ds.keys()):
            raw = ds.get_item(tag)
            if raw is None:
                continue
            length = getattr(raw, "length", None)  # raw elements only; converted ones were read already
            if length is not None and length != 0xFFFFFFFF and length > MAX_VALUE_BYTES:
                raise DeidError(f"element {describe_tag(tag)} is {length} bytes, over the limit")
            if tag >> 16 & 1:
                self._private(ds, tag, raw, patient, stats, depth, creators, kept_blocks)
                continue
            if tag in _RECORDING_TAGS:
                continue
            action = self.profile.action_for(tag)
            self._apply(ds, tag, raw, action, patient, stats, depth)
        for creator in creators:
            if creator not in kept_blocks:
                del ds[creator]

    def _private(
        self,
        ds: Dataset,
        tag: BaseTag,
        raw: RawDataElement | DataElement,
        patient: PatientContext,
        stats: DeidStats,
        depth: int,
        creators: list[int],
        kept_blocks: set[int],
    ) -> None:
        group, element = tag >> 16, tag & 0xFFFF
        if 0x10 <= element <= 0xFF:
            creators.append(tag)  # decided once its block is known
            return
        creator_tag = (group << 16) | (element >> 8)
        if element >= 0x1000 and creator_tag in ds:
            creator = ds[creator_tag].value
            if isinstance(creator, str) and self.profile.keeps_private(creator, group, element):
                kept_blocks.add(creator_tag)
                stats.private_kept += 1
                if _vr_of(raw) == "SQ":
                    self._apply(ds, tag, raw, Action.KEEP, patient, stats, depth)
                return
        del ds[tag]
        stats.private_removed += 1

    def _apply(
        self,
        ds: Dataset,
        tag: BaseTag,
        raw: RawDataElement | DataElement,
        action: Action,
        patient: PatientContext,
        stats: DeidStats,
        depth: int,
    ) -> None:
        vr = _vr_of(raw)
        if action is Action.KEEP and vr not in ("SQ", "UI"):
            return  # the common case: no conversion at all
        if action is Action.REMOVE:
            del ds[tag]
            stats.removed += 1
            return
        if action is Action.EMPTY:
            ds[tag] = DataElement(tag, vr, Sequence() if vr == "SQ" else None)
            stats.emptied += 1
            return
        elem = ds[tag]  # converts the raw value
        if vr == "SQ":
            for item in elem.value or ():
                self._clean(item, patient, stats, depth + 1)
            return
        if vr == "UI":
            if not self._retain_uids or action is Action.UID:
                values = _text_values(elem)
                new = [remap_uid(self.secret, v) for v in values]
                if new != values:
                    _set_values(elem, new)
                    stats.uids += 1
            return
        handler = _HANDLERS.get(action)
        if handler is None:
            raise DeidError(f"no handler for action {action} on {describe_tag(tag)}")
        handler(self, ds, elem, vr, patient, stats)

    # -- per-action handlers --------------------------------------------------------------

    def _dummy(self, ds: Dataset, elem: DataElement, vr: str, patient: PatientContext, stats: DeidStats) -> None:
        if elem.is_empty:
            return
        if vr in ("DA", "DT") and self._shift_dates:
            self._shift(ds, elem, vr, patient, stats)
            return
        dummy = _DUMMY.get(vr)
        ds[elem.tag] = DataElement(elem.tag, vr, dummy)
        stats.dummied += 1

    def _clean_value(
        self, ds: Dataset, elem: DataElement, vr: str, patient: PatientContext, stats: DeidStats
    ) -> None:
        if vr in ("DA", "DT"):
            if self._full_dates:
                return
            self._shift(ds, elem, vr, patient, stats)
        elif vr == "TM":
            return  # times of day carry no identity once dates are shifted; kept for research
        elif vr in _TEXT_VRS:
            values = _text_values(elem)
            cleaned = []
            for value in values:
                text, removed = scrub_text(value, patient.identifiers)
                stats.scrubbed += removed
                cleaned.append(text)
            if cleaned != values:
                _set_values(elem, cleaned)
        elif vr == "PN":
            ds[elem.tag] = DataElement(elem.tag, vr, None)
            stats.emptied += 1

    def _shift(self, ds: Dataset, elem: DataElement, vr: str, patient: PatientContext, stats: DeidStats) -> None:
        if elem.is_empty:
            return
        text = "\\".join(_text_values(elem))
        try:
            shifted = shift_da(text, patient.date_offset_days) if vr == "DA" else shift_dt(text, patient.date_offset_days)
        except ValueError:
            # An unparseable date cannot be shifted, so it cannot be kept.
            ds[elem.tag] = DataElement(elem.tag, vr, None)
            stats.emptied += 1
            return
        ds[elem.tag] = DataElement(elem.tag, vr, shifted)
        stats.dates_shifted += 1

    def _replace(self, ds: Dataset, elem: DataElement, vr: str, patient: PatientContext, stats: DeidStats) -> None:
        ds[elem.tag] = DataElement(elem.tag, vr, self.profile.replacements[elem.tag])
        stats.replaced += 1

    def _hash(self, ds: Dataset, elem: DataElement, vr: str, patient: PatientContext, stats: DeidStats) -> None:
        from .uids import keyed_hash

        values = [keyed_hash(self.secret, "override-hash", v).hex()[:16].upper() for v in _text_values(elem)]
        if values:
            _set_values(elem, values)
            stats.replaced += 1

    def _record(self, ds: Dataset) -> None:
        """PatientIdentityRemoved, DeidentificationMethod(CodeSequence), LongitudinalTemporal...: PS3.15 E.1.1."""
        ds.PatientIdentityRemoved = "YES"
        codes = [_METHOD_CODES[None]] + [_METHOD_CODES[o] for o in self.profile.options if o in _METHOD_CODES]
        ds.DeidentificationMethod = ["imaging-ingest " + IMPLEMENTATION_VERSION_NAME, "PS3.15 E.1-1 Basic Profile"]
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        if self._full_dates:
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
        elif self._shift_dates:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        else:
            ds.LongitudinalTemporalInformationModified = "REMOVED"

    # -- files ----------------------------------------------------------------------------

    def deidentify_file(self, src: str | Path, dst: str | Path, patient: PatientContext) -> DeidOutput:
        """De-identify one file to ``dst`` (written atomically) and return its new identity and hashes.

        Raises:
            DeidError: the file cannot be de-identified safely; the reason names no PHI.
        """
        src, dst = Path(src), Path(dst)
        with open(src, "rb") as fp:
            try:
                ds = dcmread(fp, stop_before_pixels=True)
            except (InvalidDicomError, EOFError, struct.error, ValueError, TypeError, KeyError, OverflowError) as exc:
                raise DeidError(f"unreadable DICOM header ({type(exc).__name__})") from None
            pixel_start = fp.tell()
            file_size = os.fstat(fp.fileno()).st_size
            transfer_syntax = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta else None
            raw_copy = transfer_syntax not in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian)
            if not raw_copy:
                fp.seek(0)
                ds = dcmread(fp)
            stats = self._deidentify_loaded(ds, patient)
            header = io.BytesIO()
            ds.save_as(header, enforce_file_format=True)
            pixel_end = pixel_start
            if raw_copy and pixel_start < file_size:
                implicit, little = ds.original_encoding
                pixel_end = _pixel_element_end(fp, pixel_start, file_size, bool(implicit), little is not False)
            tmp = dst.with_name(f".{dst.name}.partial")
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                writer = HashingWriter(out)
                writer.write(header.getbuffer())
                if pixel_end > pixel_start:
                    fp.seek(pixel_start)
                    copy_range(fp, writer, pixel_end - pixel_start)
            os.replace(tmp, dst)
        return DeidOutput(
            study_uid=str(ds.get("StudyInstanceUID", "")),
            series_uid=str(ds.get("SeriesInstanceUID", "")),
            sop_uid=str(ds.get("SOPInstanceUID", "")),
            sop_class_uid=str(ds.get("SOPClassUID", "")),
            size=writer.digests.size,
            sha256=writer.digests.sha256,
            md5=writer.digests.md5,
            stats=stats,
            attributes={k: _plain(ds.get(k)) for k in CATALOG_ATTRIBUTES},
        )

    def _deidentify_loaded(self, ds: Dataset, patient: PatientContext) -> DeidStats:
        sop_uid = ds.get(_SOP_INSTANCE_UID)
        if sop_uid is None or not str(sop_uid.value or "").strip():
            raise DeidError("no SOPInstanceUID")
        stats = self.deidentify_dataset(ds, patient)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128  # a preamble can hold a whole TIFF (and its PHI): never copied
        return stats


_HANDLERS = {
    Action.DUMMY: Deidentifier._dummy,
    Action.CLEAN: Deidentifier._clean_value,
    Action.SHIFT: Deidentifier._shift,
    Action.REPLACE: Deidentifier._replace,
    Action.HASH: Deidentifier._hash,
    Action.UID: lambda self, ds, elem, vr, patient, stats: None,  # non-UI value under U: nothing to map
    Action.KEEP: lambda self, ds, elem, vr, patient, stats: None,
}

_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD


def _pixel_element_end(fp: BinaryIO, start: int, file_size: int, implicit: bool, little: bool) -> int:
    """Where the pixel data element that starts at ``start`` ends (native or encapsulated).

    Anything after it (Data Set Trailing Padding, Digital Signatures) is dropped: it is
    either padding or a signature that de-identification invalidates anyway.
    """
    endian = "<" if little else ">"
    fp.seek(start)
    head = fp.read(8)
    if len(head) < 8:
        raise DeidError("truncated before the pixel data element")
    if implicit:
        (length,) = struct.unpack(endian + "L", head[4:8])
        value_start = start + 8
    elif head[4:6] in _LONG_LENGTH_VRS:
        extra = fp.read(4)
        if len(extra) < 4:
            raise DeidError("truncated pixel data element header")
        (length,) = struct.unpack(endian + "L", extra)
        value_start = start + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        value_start = start + 8
    if length != 0xFFFFFFFF:
        end = value_start + length
        if end > file_size:
            raise DeidError(f"pixel data truncated: {file_size - value_start} of {length} bytes present")
        return end
    position = value_start  # encapsulated: walk the items up to the sequence delimiter
    while True:
        fp.seek(position)
        item = fp.read(8)
        if len(item) < 8:
            raise DeidError("encapsulated pixel data truncated (no sequence delimiter)")
        group, element, item_length = struct.unpack(endian + "HHL", item)
        tag = Tag(group, element)
        if tag == _SEQUENCE_DELIMITER:
            return position + 8
        if tag != _ITEM or item_length == 0xFFFFFFFF:
            raise DeidError("malformed encapsulated pixel data")
        position += 8 + item_length
        if position > file_size:
            raise DeidError("encapsulated pixel data truncated")
