"""Raw elements of a pydicom data set, read and written without converting what need not be.

Converting an element's bytes into Python values is what costs time in pydicom; the engine
(``engine.py``) and its value actions (``values.py``) decide and rewrite on the data set's
tag -> element map through these helpers: ASCII values straight from raw bytes, text decoded
with the data set's own character set, new raw elements as if read from a file. Also here:
the names and identifiers a file states about its patient, visit and staff, which free text
that repeats them is cleaned of.
"""

from __future__ import annotations

from typing import Any, cast

from pydicom.charset import python_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from imaging_ingest.deid.profile import vr_of_tag

__all__ = [
    "OWN_ID_TAGS",
    "PATIENT_ID",
    "PATIENT_NAME",
    "SOP_CLASS_UID",
    "SOP_INSTANCE_UID",
    "SPECIFIC_CHARACTER_SET",
    "UNDEFINED_LENGTH",
    "LazyIdentifiers",
    "ascii_values",
    "codec_of",
    "element_map",
    "first_value",
    "has_value",
    "own_identifiers",
    "raw_element",
    "string_values",
    "text_values",
    "vr_of",
]

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
SPECIFIC_CHARACTER_SET = 0x00080005
UNDEFINED_LENGTH = 0xFFFFFFFF

#: Names and identifiers a file states about its patient, visit and staff: free text that
#: repeats one of them is cleaned of it (on top of the scrubber's patterns).
OWN_ID_TAGS = (
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


def element_map(ds: Dataset) -> dict[int, Any]:
    """The data set's tag -> element map (keys are pydicom ``BaseTag`` s).

    Decisions are made on this map: ``Dataset`` access would convert every value it
    touches, which is what makes a pydicom round trip slow.
    """
    return cast(dict[int, Any], ds._dict)


def first_value(ds: Dataset, tag: int) -> str:
    elem = element_map(ds).get(tag)
    return next(iter(ascii_values(elem)), "") if elem is not None else ""


def vr_of(tag: int, elem: RawDataElement | DataElement) -> str:
    vr = elem.VR
    if vr and (vr != "UN" or (tag >> 16) & 1):
        return str(vr)
    return vr_of_tag(tag)  # implicit VR, or a public attribute written as UN


def text_values(elem: DataElement | RawDataElement) -> list[str]:
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, list | MultiValue):
        return [str(v) for v in value]
    return [str(value)]


def ascii_values(elem: RawDataElement | DataElement) -> list[str]:
    """The values of an ASCII-VR element, read straight from raw bytes when still raw."""
    if type(elem) is RawDataElement:
        raw = elem.value
        if not raw:
            return []
        return [v.strip(" \x00") for v in raw.decode("latin-1").split("\\")]
    return [v.strip(" \x00") for v in text_values(elem)]


def codec_of(ds: Dataset) -> str | None:
    """The Python codec of a data set's single-byte or UTF-8 character set; None for ISO 2022 code extensions."""
    elem = element_map(ds).get(SPECIFIC_CHARACTER_SET)
    terms = [t for t in ascii_values(elem) if t] if elem is not None else []
    if not terms:
        return "latin-1"  # the default repertoire is ASCII: latin-1 decodes it, and never fails
    if len(terms) == 1 and not terms[0].startswith("ISO 2022"):
        return python_encoding.get(terms[0])
    return None


def string_values(ds: Dataset, tag: int, codec: str | None) -> list[str]:
    """An element's values as text: decoded from raw bytes when the character set allows, else by pydicom."""
    elem = element_map(ds)[tag]
    if type(elem) is RawDataElement and codec is not None:
        raw = elem.value
        return [v.strip(" \x00") for v in raw.decode(codec, "replace").split("\\")] if raw else []
    return text_values(ds[tag])


def own_identifiers(ds: Dataset) -> tuple[str, ...]:
    """The names and IDs a file itself states, so that free text mentioning them can be cleaned."""
    found: list[str] = []
    codec = codec_of(ds)
    elements = element_map(ds)
    for tag in OWN_ID_TAGS:
        if tag not in elements:
            continue
        try:
            values = string_values(ds, tag, codec)
        except (ValueError, TypeError, LookupError):  # an undecodable value: the patterns still apply
            continue
        for value in values:
            value = value.strip()
            if value:
                found.append(value)
                found.extend(p for p in value.replace("=", "^").replace(" ", "^").split("^") if len(p) >= 2)
    return tuple(found)


class LazyIdentifiers:
    """The patient context's identifiers plus the file's own, decoded only if some text is scrubbed.

    The elements are set aside before the data set is changed (cheap: a few dictionary
    lookups); their values are decoded on first use.
    """

    def __init__(self, ds: Dataset, given: tuple[str, ...]) -> None:
        self._given = given
        self._values: tuple[str, ...] | None = None
        self._snapshot = Dataset()
        for tag in (SPECIFIC_CHARACTER_SET, *OWN_ID_TAGS):
            elem = element_map(ds).get(tag)
            if elem is not None:
                element_map(self._snapshot)[tag] = elem

    def get(self) -> tuple[str, ...]:
        if self._values is None:
            self._values = self._given + own_identifiers(self._snapshot)
        return self._values


def raw_element(tag: int, vr: str, value: bytes, implicit: bool) -> RawDataElement:
    """A raw element from bytes (padded to even length), as if it had been read from a file."""
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB", "UN") else b" "
    return RawDataElement(BaseTag(tag), vr, len(value), value, 0, implicit, True, True, False)


def has_value(elem: DataElement) -> bool:
    value = elem.value
    return not (
        value is None
        or value == ""
        or value == b""
        or (isinstance(value, list | MultiValue | Sequence) and not value)
    )
