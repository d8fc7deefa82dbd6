"""Header de-identification of DICOM files, decided per tag on raw elements.

Converting an element's bytes into Python values is what costs time in pydicom, not
copying pixel bytes (measured in ``bench/deid``: ``bench/results/deid.json``). So the engine:

1. reads the header only (``stop_before_pixels``); elements stay raw;
2. decides each element's fate from its tag alone: deletes without converting, keeps
   without converting, rewrites UIDs and dates on their ASCII bytes, and converts only
   the few values it must read as text (descriptions to scrub, sequences to walk);
3. writes the new header with ``writer.encode_file_header`` (raw elements go out as the
   bytes they came in as), then copies the Pixel Data element as raw bytes, hashing
   everything on the way out.

Files whose pixel data cannot be copied raw (deflated transfer syntax, big endian, a data
set encoded differently from what its transfer syntax says) take the slower full read and
pydicom write through the same data set logic.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydicom.charset import python_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from ..checksum import HashingWriter, copy_range
from ..config import DeidOption
from ..dicom_read import encoding_transfer_syntax, read_dataset
from .dates import shift_da, shift_dt
from .freetext.element import clean_element, count_by_attribute, format_counts
from .profile import Action, ResolvedProfile, describe_tag, vr_of_tag
from .review import SeenText, TextPolicy, TextReview
from .uids import keyed_hash, remap_uid
from .writer import encode_dataset, encode_file_header, pixel_element_end

__all__ = [
    "CATALOG_ATTRIBUTES",
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
METHOD_CODES: dict[DeidOption | None, tuple[str, str]] = {
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
    "UR": "urn:anonymized",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
    "AT": 0,
}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: VRs whose values are ASCII whatever the character set: rewritten on their raw bytes.
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
#: Free text (and codes) the scrubber may clean.
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT", "CS"})
_NUMERIC_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT"})
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_SOP_CLASS_UID = 0x00080016
_SOP_INSTANCE_UID = 0x00080018
_SPECIFIC_CHARACTER_SET = 0x00080005
_UNDEFINED = 0xFFFFFFFF

#: Names and identifiers a file states about its patient, visit and staff: free text that
#: repeats one of them is cleaned of it (on top of the scrubber's patterns).
_OWN_ID_TAGS = (
    0x00080050,  # AccessionNumber
    0x00080080,  # InstitutionName
    0x00080090,  # ReferringPhysicianName
    0x00081010,  # StationName
    0x00081048,  # PhysiciansOfRecord
    0x00081050,  # PerformingPhysicianName
    0x00081060,  # NameOfPhysiciansReadingStudy
    0x00081070,  # OperatorsName
    0x00100010,  # PatientName
    0x00100020,  # PatientID
    0x00101000,  # OtherPatientIDs
    0x00101001,  # OtherPatientNames
    0x00101005,  # PatientBirthName
    0x00101060,  # PatientMotherBirthName
    0x00101090,  # MedicalRecordLocator
    0x00181000,  # DeviceSerialNumber
    0x00200010,  # StudyID
    0x00321032,  # RequestingPhysician
)


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
    descriptors_cleaned: int = 0
    replaced: int = 0
    private_removed: int = 0
    private_kept: int = 0
    #: free text cleaned, per attribute keyword: PHI spans replaced, values left with a suspect span
    freetext_removed: dict[str, int] = field(default_factory=dict)
    freetext_flagged: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int | str]:
        """Counts, and the per-attribute counts as one ``Keyword:n,...`` cell each (counts only)."""
        return {k: format_counts(v) if isinstance(v, dict) else v for k, v in self.__dict__.items()}


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
    #: kept free-text values and what the curators' review did with them (``review.py``); restricted
    texts: tuple[SeenText, ...] = field(default=(), compare=False)


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


_CATALOG_TAGS = {keyword: tag_for_keyword(keyword) or 0 for keyword in CATALOG_ATTRIBUTES}


def _elements(ds: Dataset) -> dict[int, Any]:
    """The data set's tag -> element map (keys are pydicom ``BaseTag`` s).

    Decisions are made on this map: ``Dataset`` access would convert every value it
    touches, which is what makes a pydicom round trip slow.
    """
    return cast(dict[int, Any], ds._dict)


def _first(ds: Dataset, tag: int) -> str:
    elem = _elements(ds).get(tag)
    return next(iter(_ascii_values(elem)), "") if elem is not None else ""


def _vr_of(tag: int, elem: RawDataElement | DataElement) -> str:
    vr = elem.VR
    if vr and (vr != "UN" or (tag >> 16) & 1):
        return str(vr)
    return vr_of_tag(tag)  # implicit VR, or a public attribute written as UN


def _text_values(elem: DataElement | RawDataElement) -> list[str]:
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, list | MultiValue):
        return [str(v) for v in value]
    return [str(value)]


def _ascii_values(elem: RawDataElement | DataElement) -> list[str]:
    """The values of an ASCII-VR element, read straight from raw bytes when still raw."""
    if type(elem) is RawDataElement:
        raw = elem.value
        if not raw:
            return []
        return [v.strip(" \x00") for v in raw.decode("latin-1").split("\\")]
    return [v.strip(" \x00") for v in _text_values(elem)]


def _codec(ds: Dataset) -> str | None:
    """The Python codec of a data set's single-byte or UTF-8 character set; None for ISO 2022 code extensions."""
    elem = _elements(ds).get(_SPECIFIC_CHARACTER_SET)
    terms = [t for t in _ascii_values(elem) if t] if elem is not None else []
    if not terms:
        return "latin-1"  # the default repertoire is ASCII: latin-1 decodes it, and never fails
    if len(terms) == 1 and not terms[0].startswith("ISO 2022"):
        return python_encoding.get(terms[0])
    return None


def _strings(ds: Dataset, tag: int, codec: str | None) -> list[str]:
    """An element's values as text: decoded from raw bytes when the character set allows, else by pydicom."""
    elem = _elements(ds)[tag]
    if type(elem) is RawDataElement and codec is not None:
        raw = elem.value
        return [v.strip(" \x00") for v in raw.decode(codec, "replace").split("\\")] if raw else []
    return _text_values(ds[tag])


def _own_identifiers(ds: Dataset) -> tuple[str, ...]:
    """The names and IDs a file itself states, so that free text mentioning them can be cleaned."""
    found: list[str] = []
    codec = _codec(ds)
    elements = _elements(ds)
    for tag in _OWN_ID_TAGS:
        if tag not in elements:
            continue
        try:
            values = _strings(ds, tag, codec)
        except (ValueError, TypeError, LookupError):  # an undecodable value: the patterns still apply
            continue
        for value in values:
            value = value.strip()
            if value:
                found.append(value)
                found.extend(p for p in value.replace("=", "^").replace(" ", "^").split("^") if len(p) >= 2)
    return tuple(found)


class _LazyIdentifiers:
    """The patient context's identifiers plus the file's own, decoded only if some text is scrubbed.

    The elements are set aside before the data set is changed (cheap: a few dictionary
    lookups); their values are decoded on first use.
    """

    def __init__(self, ds: Dataset, given: tuple[str, ...]) -> None:
        self._given = given
        self._values: tuple[str, ...] | None = None
        self._snapshot = Dataset()
        for tag in (_SPECIFIC_CHARACTER_SET, *_OWN_ID_TAGS):
            elem = _elements(ds).get(tag)
            if elem is not None:
                _elements(self._snapshot)[tag] = elem

    def get(self) -> tuple[str, ...]:
        if self._values is None:
            self._values = self._given + _own_identifiers(self._snapshot)
        return self._values


@dataclass(frozen=True)
class _Run:
    """What the element handlers need to know about the file at hand."""

    offset: int
    lazy_identifiers: _LazyIdentifiers
    path: list[int] = field(default_factory=list)  # the sequence tags around the item being cleaned

    def identifiers(self) -> tuple[str, ...]:
        return self.lazy_identifiers.get()


class Deidentifier:
    """Applies one resolved profile with one secret; reusable across files (one per process).

    Args:
        profile: the per-tag decisions for the collection's options and overrides.
        secret: the pseudonymisation key (UIDs, hashes).
    """

    def __init__(
        self,
        profile: ResolvedProfile,
        secret: bytes,
        keep_uids: frozenset[str] = frozenset(),
        review: TextPolicy | None = None,
    ) -> None:
        self.profile = profile
        self.secret = secret
        #: Published UIDs an analysis result references: already de-identified, never remapped again.
        self.keep_uids = keep_uids
        self._review = TextReview(review, secret) if review is not None else None
        options = set(profile.options)
        self._retain_uids = DeidOption.RETAIN_UIDS in options
        self._retain_private = DeidOption.RETAIN_SAFE_PRIVATE in options
        self._shift_dates = DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in options
        self._full_dates = DeidOption.RETAIN_LONGITUDINAL_FULL_DATES in options
        self._literal_keep = frozenset(t for t in profile.overridden if profile.actions.get(t) is Action.KEEP)
        # Private copies: decisions for unlisted tags are added as they are first met.
        self._nested: dict[tuple[int, ...], dict[int, Action]] = {}  # per path of sequence tags
        self._top: dict[str | None, dict[int, Action]] = {}
        self._method_codes = [METHOD_CODES[None]] + [METHOD_CODES[o] for o in profile.options if o in METHOD_CODES]
        if self._full_dates:
            self._temporal = "UNMODIFIED"
        elif self._shift_dates:
            self._temporal = "MODIFIED"
        else:
            self._temporal = "REMOVED"

    # -- datasets -------------------------------------------------------------------------

    def deidentify_dataset(self, ds: Dataset, patient: PatientContext) -> DeidStats:
        """De-identify a dataset in place (file meta excluded) and record what was done."""
        stats = DeidStats()
        run = _Run(patient.date_offset_days, _LazyIdentifiers(ds, patient.identifiers))
        self._clean(ds, run, stats, 0, self._top_actions(ds))
        self._record(ds, patient.pseudonym)
        return stats

    def _top_actions(self, ds: Dataset) -> dict[int, Action]:
        elem = _elements(ds).get(_SOP_CLASS_UID)
        sop_class = next(iter(_ascii_values(elem)), None) if elem is not None else None
        actions = self._top.get(sop_class)
        if actions is None:
            actions = dict(self.profile.actions_for_sop_class(sop_class))
            self._top[sop_class] = actions
        return actions

    def _clean(self, ds: Dataset, run: _Run, stats: DeidStats, depth: int, actions: dict[int, Action]) -> None:
        if depth > MAX_SEQUENCE_DEPTH:
            raise DeidError(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
        elements = _elements(ds)  # decisions are made on the raw map: Dataset access would convert values
        private: list[int] = []
        for tag, elem in list(elements.items()):
            key = int(tag)  # int keys: a BaseTag compares through a Python-level __eq__
            if type(elem) is RawDataElement:
                length = elem.length
                if length != _UNDEFINED and length > MAX_VALUE_BYTES:
                    raise DeidError(f"element {describe_tag(tag)} is {length} bytes, over the limit")
            if (tag >> 16) & 1:
                private.append(tag)
                continue
            action = actions.get(key)
            if action is None:
                action = actions[key] = self.profile.unlisted_action(key)
            if action is Action.REMOVE:
                del elements[tag]
                stats.removed += 1
            elif action is Action.KEEP:
                if key in self._literal_keep:
                    continue
                vr = _vr_of(tag, elem)
                if vr == "UI":
                    if not self._retain_uids:
                        self._remap(ds, tag, elem, stats)
                elif vr == "SQ":
                    self._sequence(ds, tag, run, stats, depth)
            else:
                self._apply(ds, tag, elem, action, run, stats, depth)
        if private:
            self._private(ds, private, run, stats, depth)

    def _sequence(self, ds: Dataset, tag: int, run: _Run, stats: DeidStats, depth: int) -> None:
        try:
            elem = ds[tag]  # parses the items; their elements stay raw
        except (ValueError, TypeError, struct.error, EOFError, KeyError, NotImplementedError) as exc:
            raise DeidError(f"unreadable sequence {describe_tag(tag)} ({type(exc).__name__})") from None
        if elem.VR != "SQ":  # bytes that do not parse as items cannot be inspected: they go
            del _elements(ds)[tag]
            stats.removed += 1
            return
        run.path.append(int(tag))
        key = tuple(run.path)
        actions = self._nested.get(key)
        if actions is None:  # combined codes follow the attribute's Type at this path
            actions = self._nested[key] = self.profile.nested_actions(key)
        try:
            for item in elem.value or ():
                self._clean(item, run, stats, depth + 1, actions)
        finally:
            run.path.pop()

    def _private(self, ds: Dataset, tags: list[int], run: _Run, stats: DeidStats, depth: int) -> None:
        """Remove private attributes, except the safe ones of a known private creator (Retain Safe Private)."""
        elements = _elements(ds)
        if not self._retain_private:
            for tag in tags:
                del elements[tag]
            stats.private_removed += len(tags)
            return
        creators: list[int] = []
        kept_blocks: set[int] = set()
        names: dict[int, str] = {}
        for tag in tags:
            group, element = tag >> 16, tag & 0xFFFF
            if 0x10 <= element <= 0xFF:
                creators.append(tag)  # decided once its block is known
                continue
            creator_tag = (group << 16) | (element >> 8)
            if element >= 0x1000 and creator_tag in elements:
                if creator_tag not in names:
                    values = _ascii_values(elements[creator_tag])
                    names[creator_tag] = values[0] if values else ""
                key = (names[creator_tag], group, element & 0xFF)
                if key in self.profile.safe_private:
                    kept_blocks.add(creator_tag)
                    stats.private_kept += 1
                    elem = elements[tag]
                    vr = elem.VR if elem.VR and elem.VR != "UN" else self.profile.safe_private_vr.get(key, "UN")
                    if vr == "SQ":
                        self._sequence(ds, tag, run, stats, depth)
                    elif vr == "UI" and not self._retain_uids:
                        self._remap(ds, tag, elem, stats)
                    continue
            del elements[tag]
            stats.private_removed += 1
        for creator in creators:
            if creator not in kept_blocks:
                del elements[creator]
                stats.private_removed += 1

    # -- actions --------------------------------------------------------------------------

    def _apply(
        self,
        ds: Dataset,
        tag: int,
        elem: RawDataElement | DataElement,
        action: Action,
        run: _Run,
        stats: DeidStats,
        depth: int,
    ) -> None:
        vr = _vr_of(tag, elem)
        if action is Action.EMPTY:
            self._empty(ds, tag, elem, vr, stats)
            return
        if vr == "SQ":
            if action in (Action.REPLACE, Action.HASH, Action.SHIFT):
                self._remove(ds, tag, stats)
            else:  # D, C, U on a sequence: keep the structure, de-identify every item
                self._sequence(ds, tag, run, stats, depth)
            return
        if vr == "UI":
            if action is Action.REPLACE:
                self._replace(ds, tag, vr, stats)
            elif action is Action.SHIFT:
                self._remove(ds, tag, stats)
            else:  # U, D, C, hash: a UID's only safe stand-in is its keyed remapping
                self._remap(ds, tag, elem, stats)
            return
        if action is Action.DUMMY:
            self._dummy(ds, tag, elem, vr, run, stats)
        elif action is Action.CLEAN:
            self._clean_value(ds, tag, elem, vr, run, stats)
        elif action is Action.SHIFT:
            self._shift_or_drop(ds, tag, elem, vr, run, stats)
        elif action is Action.REPLACE:
            self._replace(ds, tag, vr, stats)
        elif action is Action.HASH:
            self._hash(ds, tag, elem, vr, run, stats)
        else:  # U on something that is neither a UID nor a sequence
            self._remove(ds, tag, stats)

    def _remove(self, ds: Dataset, tag: int, stats: DeidStats) -> None:
        del _elements(ds)[tag]
        stats.removed += 1

    def _empty(self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, vr: str, stats: DeidStats) -> None:
        if type(elem) is RawDataElement and vr != "SQ":
            _elements(ds)[tag] = elem._replace(value=b"", length=0)
        else:
            _elements(ds)[tag] = DataElement(tag, vr, Sequence() if vr == "SQ" else None)
        stats.emptied += 1

    def _set_ascii(self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, vr: str, values: list[str]) -> None:
        """Store new values of an ASCII VR, as raw bytes when the element was raw."""
        if type(elem) is RawDataElement:
            data = "\\".join(values).encode("latin-1")
            if len(data) % 2:
                data += b"\x00" if vr == "UI" else b" "
            _elements(ds)[tag] = elem._replace(value=data, length=len(data))
        else:
            _elements(ds)[tag] = DataElement(tag, vr, values[0] if len(values) == 1 else values)

    def _remap(self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, stats: DeidStats) -> None:
        values = _ascii_values(elem)
        new = [v if v in self.keep_uids else remap_uid(self.secret, v) for v in values]
        if new != values:
            self._set_ascii(ds, tag, elem, "UI", new)
            stats.uids += 1

    def _dummy(
        self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, vr: str, run: _Run, stats: DeidStats
    ) -> None:
        if (elem.length == 0) if type(elem) is RawDataElement else not _has_value(cast(DataElement, elem)):
            return  # nothing to replace
        if vr in ("DA", "DT") and (self._shift_dates or self._full_dates):
            self._shift(ds, tag, elem, vr, run, stats)
            return
        if vr in _BINARY_VRS:
            _elements(ds)[tag] = DataElement(tag, "OB" if vr == "UN" else vr, b"\x00\x00")
        else:
            _elements(ds)[tag] = DataElement(tag, vr, _DUMMY.get(vr, "ANONYMIZED"))
        stats.dummied += 1

    def _clean_value(
        self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, vr: str, run: _Run, stats: DeidStats
    ) -> None:
        """Action C: keep what the value means, minus what identifies."""
        if 0x5000 <= tag >> 16 <= 0x60FF and (tag >> 24) in (0x50, 0x60):
            # Clean Graphics on curves and overlays: a header engine cannot clean a bitmap, and
            # an overlay without its data is invalid, so each of their elements goes
            self._remove(ds, tag, stats)
        elif vr in ("DA", "DT"):
            if not self._full_dates:
                self._shift(ds, tag, elem, vr, run, stats)
        elif vr in ("TM", "AS") or vr in _NUMERIC_VRS:
            return  # times of day, ages and numbers survive: dates around them are shifted
        elif vr in _TEXT_VRS:
            self._scrub(ds, tag, vr, run, stats)
            if self._review is not None:
                self._review.apply(ds[tag], tag, vr)
        elif vr == "AE":  # device identity retained as a stable keyed pseudonym, not the real name
            values = _ascii_values(elem)
            self._set_ascii(ds, tag, elem, vr, [("AE" + keyed_hash(self.secret, "ae", v).hex()[:14]).upper() for v in values])
            stats.replaced += 1
        elif vr == "PN":
            self._empty(ds, tag, elem, vr, stats)
        else:  # binary graphics (overlay data, curves), URLs, unknown VRs: nothing can clean them
            self._remove(ds, tag, stats)

    def _scrub(self, ds: Dataset, tag: int, vr: str, run: _Run, stats: DeidStats) -> None:
        elem = ds[tag]  # text needs the character set: let pydicom decode it
        result = clean_element(_text_values(elem), tag, vr, run.identifiers())
        count_by_attribute(stats.freetext_flagged, tag, result.flagged)
        if result.removed:
            stats.scrubbed += result.removed
            stats.descriptors_cleaned += 1
            count_by_attribute(stats.freetext_removed, tag, result.removed)
            elem.value = result.values[0] if len(result.values) == 1 else result.values

    def _shift(
        self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, vr: str, run: _Run, stats: DeidStats
    ) -> None:
        values = _ascii_values(elem)
        if not any(values):
            return
        text = "\\".join(values)
        try:
            shifted = shift_da(text, run.offset) if vr == "DA" else shift_dt(text, run.offset)
        except (ValueError, OverflowError):
            # An unparseable date cannot be shifted, so it cannot be kept.
            self._empty(ds, tag, elem, vr, stats)
            return
        self._set_ascii(ds, tag, elem, vr, shifted.split("\\"))
        stats.dates_shifted += 1

    def _shift_or_drop(
        self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, vr: str, run: _Run, stats: DeidStats
    ) -> None:
        if vr in ("DA", "DT"):
            self._shift(ds, tag, elem, vr, run, stats)
        elif vr != "TM":  # a time of day is kept as it is; anything else cannot be shifted
            self._remove(ds, tag, stats)

    def _replace(self, ds: Dataset, tag: int, vr: str, stats: DeidStats) -> None:
        value = self.profile.replacements[tag]
        if vr in _BINARY_VRS:
            data = value.encode("utf-8")
            _elements(ds)[tag] = DataElement(tag, "OB" if vr == "UN" else vr, data + b"\x00" * (len(data) % 2))
        else:
            _elements(ds)[tag] = DataElement(tag, vr, value)
        stats.replaced += 1

    def _hash(
        self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, vr: str, run: _Run, stats: DeidStats
    ) -> None:
        """A stable keyed pseudonym of the value: equal inputs stay equal, nothing else is kept."""
        if vr in ("DA", "DT"):
            self._shift(ds, tag, elem, vr, run, stats)
            return
        if vr not in _TEXT_VRS and vr not in ("PN", "AE"):
            self._remove(ds, tag, stats)  # numbers, times, binary: no meaningful pseudonym
            return
        converted = ds[tag]
        values = [keyed_hash(self.secret, "override-hash", v).hex()[:16].upper() for v in _text_values(converted)]
        if values:
            converted.value = values[0] if len(values) == 1 else values
            stats.replaced += 1

    def _record(self, ds: Dataset, pseudonym: str) -> None:
        """The pseudonym, then PatientIdentityRemoved, DeidentificationMethod(CodeSequence), ...: PS3.15 E.1.1.

        The values are the same for every file of a run, so they are encoded once (as raw
        elements, which the writer copies) in the encoding of the data set at hand.
        """
        implicit = ds.original_encoding[0] is True
        elements = _elements(ds)
        for tag, _vr, value in self._recording(implicit):
            elements[BaseTag(tag)] = value
        for tag, vr in ((_PATIENT_ID, "LO"), (_PATIENT_NAME, "PN")):
            if pseudonym.isascii():
                elements[BaseTag(tag)] = _raw(tag, vr, pseudonym.encode("ascii"), implicit)
            else:
                ds[tag] = DataElement(tag, vr, pseudonym)

    @functools.cache  # noqa: B019 - one Deidentifier per process, two encodings
    def _recording(self, implicit: bool) -> tuple[tuple[int, str, RawDataElement], ...]:
        codes = Dataset()
        items = []
        for value, meaning in self._method_codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        codes.DeidentificationMethodCodeSequence = Sequence(items)
        sequence = b"".join(encode_dataset(codes, implicit))[8 if implicit else 12 :]
        method = "\\".join(["imaging-ingest " + IMPLEMENTATION_VERSION_NAME, "PS3.15 E.1-1 Basic Profile"])
        return (
            (0x00120062, "CS", _raw(0x00120062, "CS", b"YES", implicit)),
            (0x00120063, "LO", _raw(0x00120063, "LO", method.encode("ascii"), implicit)),
            (0x00120064, "SQ", _raw(0x00120064, "SQ", sequence, implicit)),
            (0x00280303, "CS", _raw(0x00280303, "CS", self._temporal.encode("ascii"), implicit)),
        )

    # -- files ----------------------------------------------------------------------------

    def deidentify_file(self, src: str | Path, dst: str | Path, patient: PatientContext) -> DeidOutput:
        """De-identify one file to ``dst`` (written atomically) and return its new identity and hashes.

        Raises:
            DeidError: the file cannot be de-identified safely; the reason names no PHI.
        """
        src, dst = Path(src), Path(dst)
        if self._review is not None:
            self._review.begin()
        with open(src, "rb") as fp:
            try:
                ds = read_dataset(fp, stop_before_pixels=True)  # files without file meta too
            except (InvalidDicomError, EOFError, struct.error, ValueError, TypeError, KeyError, OverflowError) as exc:
                raise DeidError(f"unreadable DICOM header ({type(exc).__name__})") from None
            pixel_start = fp.tell()
            file_size = os.fstat(fp.fileno()).st_size
            meta = ds.file_meta if ds.file_meta is not None else FileMetaDataset()
            transfer_syntax = meta.get("TransferSyntaxUID")
            implicit, little = ds.original_encoding
            raw_copy = (
                transfer_syntax is not None
                and transfer_syntax not in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian)
                and little is True
                and bool(implicit) == UID(transfer_syntax).is_implicit_VR
            )
            if not raw_copy:
                fp.seek(0)
                try:
                    ds = read_dataset(fp, stop_before_pixels=False)
                except (InvalidDicomError, EOFError, struct.error, ValueError, TypeError, KeyError) as exc:
                    raise DeidError(f"unreadable DICOM file ({type(exc).__name__})") from None
            stats = self._deidentify_loaded(ds, patient)
            texts = self._review.take() if self._review is not None else ()  # may hold the file back
            pixel_end = pixel_start
            try:
                if raw_copy:
                    header = encode_file_header(ds, ds.file_meta, bool(implicit))
                    if pixel_start < file_size:
                        pixel_end = pixel_element_end(fp, pixel_start, file_size, bool(implicit), True)
                else:
                    buffer = io.BytesIO()
                    ds.save_as(buffer, enforce_file_format=True)
                    header = buffer.getvalue()
            except ValueError as exc:
                raise DeidError(f"cannot write the de-identified file: {str(exc).split(':')[0]}") from None
            tmp = dst.with_name(f".{dst.name}.partial")
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                writer = HashingWriter(out)
                writer.write(header)
                if pixel_end > pixel_start:
                    fp.seek(pixel_start)
                    copy_range(fp, writer, pixel_end - pixel_start)
            os.replace(tmp, dst)
        return DeidOutput(
            study_uid=_first(ds, 0x0020000D),
            series_uid=_first(ds, 0x0020000E),
            sop_uid=_first(ds, _SOP_INSTANCE_UID),
            sop_class_uid=_first(ds, _SOP_CLASS_UID),
            size=writer.digests.size,
            sha256=writer.digests.sha256,
            md5=writer.digests.md5,
            stats=stats,
            attributes=_catalog_attributes(ds),
            texts=texts,
        )

    def _deidentify_loaded(self, ds: Dataset, patient: PatientContext) -> DeidStats:
        sop_uid = _elements(ds).get(_SOP_INSTANCE_UID)
        if sop_uid is None or not any(_ascii_values(sop_uid)):
            raise DeidError("no SOPInstanceUID")
        old_meta = ds.file_meta if ds.file_meta is not None else FileMetaDataset()
        transfer_syntax = encoding_transfer_syntax(ds)
        stats = self.deidentify_dataset(ds, patient)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.get("SOPClassUID") or old_meta.get("MediaStorageSOPClassUID")
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = old_meta.get("TransferSyntaxUID") or transfer_syntax  # a file without meta: as read
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128  # a preamble can hold a whole TIFF (and its PHI): never copied
        return stats


def _catalog_attributes(ds: Dataset) -> dict[str, str | None]:
    codec = _codec(ds)
    out: dict[str, str | None] = {}
    for keyword, tag in _CATALOG_TAGS.items():
        values = _strings(ds, tag, codec) if tag in _elements(ds) else []
        out[keyword] = "\\".join(values) or None
    return out


def _raw(tag: int, vr: str, value: bytes, implicit: bool) -> RawDataElement:
    """A raw element from bytes (padded to even length), as if it had been read from a file."""
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB", "UN") else b" "
    return RawDataElement(BaseTag(tag), vr, len(value), value, 0, implicit, True, True, False)


def _has_value(elem: DataElement) -> bool:
    value = elem.value
    return not (value is None or value == "" or value == b"" or (isinstance(value, list | MultiValue | Sequence) and not value))
