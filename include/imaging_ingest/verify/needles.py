"""What counts as identifying in a source file: the needles the leak scan looks for in the output.

The rules live here once and run over elements from either reading of the source: a pydicom
data set (``leaks.identifying_values``, the reference and the fallback) or the file's raw
elements (``raw_identifying_values``, the common path: no pydicom parse, no value converted).
Both readings feed the same ``gather``, so the two paths differ only in how they walk the
file, never in what they keep.

Every person name and its parts, every date (in DICOM and common human spellings), every
instance-level UID, the values of attributes known to carry identifiers (IDs, addresses,
phone numbers, institution and device names), the strings of private elements, and the
sending site's AE titles in the file meta.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from pydicom.charset import default_encoding
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.uid import UID_dictionary

from imaging_ingest.core.raw_elements import RawFile, RawItem
from imaging_ingest.verify.coincidence import PATIENT_IDENTITY_KEYWORDS
from imaging_ingest.verify.raw_walk import RawFallback, converted, raw_strings, walk

__all__ = ["IDENTIFYING_KEYWORDS", "META_AE_KEYWORDS", "Needle", "gather", "raw_identifying_values", "where"]

#: Attributes whose values identify a person, a visit, a place or a device, whatever their VR.
IDENTIFYING_KEYWORDS = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "IssuerOfPatientID",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "MilitaryRank",
        "BranchOfService",
        "MedicalRecordLocator",
        "AccessionNumber",
        "StudyID",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        "PlateID",
        "DetectorID",
        "GantryID",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "AdmissionID",
        "ServiceEpisodeID",
        "VisitComments",
        "PatientComments",
        "AdditionalPatientHistory",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "PersonAddress",
        "PersonTelephoneNumbers",
        "PersonTelecomInformation",
        "RegionOfResidence",
        "CountryOfResidence",
        "Occupation",
        "PatientBirthName",
        "PatientMotherBirthName",
        "ResponsibleOrganization",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
        "OrderCallbackPhoneNumber",
        "ClinicalTrialSubjectID",
        "ClinicalTrialSubjectReadingID",
        "ClinicalTrialSiteName",
        "ClinicalTrialSiteID",
        "ContainerIdentifier",
        "SpecimenIdentifier",
        "BarcodeValue",
    }
)
META_AE_KEYWORDS = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle")

_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT", "PN", "UR"})
#: the VRs whose values may be needles (private UN is decided per element)
_NEEDLE_VRS = _TEXT_VRS | {"DA", "DT", "UI"}
_WALKED_VRS = _NEEDLE_VRS | {"UN"}  # a private UN value may be a needle too
_MIN_LENGTH = 4  # shorter strings (sexes, short codes) are everywhere in any file
_PIXEL_SAFE_LENGTH = 6  # shorter needles match pixel noise by chance
_NAME_PARTS = re.compile(r"[\^=\s,]+")


@dataclass(frozen=True)
class Needle:
    """An identifying value and where in the source it came from (the tag, never the value).

    ``kind`` says what the value is (``name``, ``date``, ``uid``, ``id``, ``private``), so
    that a value an applied Retain option keeps on purpose is not reported; ``slot`` is the
    private creator and element of a private value.
    """

    value: bytes
    source: str
    kind: str = "id"
    keyword: str = ""
    slot: tuple[str, int, int] | None = None


def where(elem_tag: int, keyword: str) -> str:
    return f"({elem_tag >> 16:04X},{elem_tag & 0xFFFF:04X}) {keyword or 'private'}".rstrip()


@cache
def _named(tag: int) -> tuple[str, str]:
    """(keyword, where) of a public tag: the same per tag in every file, so looked up once."""
    keyword = keyword_for_tag(tag)
    return keyword, where(tag, keyword)


@cache
def _private_where(tag: int) -> str:
    return where(tag, "")


@lru_cache(maxsize=4096)  # the same dates and names recur in every file of a study
def _date_spellings(value: str) -> tuple[str, ...]:
    value = value.strip()[:8]
    if len(value) != 8 or not value.isdigit():
        return ()
    y, m, d = value[:4], value[4:6], value[6:8]
    return (value, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{d}/{m}/{y}")


@lru_cache(maxsize=4096)
def _name_spellings(value: str) -> tuple[str, ...]:
    parts = [p for p in _NAME_PARTS.split(value) if p]
    out = [value.strip()]
    if len(parts) >= 2:
        out += [" ".join(parts[:2]), " ".join(reversed(parts[:2])), "^".join(parts[:2])]
    out += [p for p in parts if len(p) >= _MIN_LENGTH]
    return tuple(out)


def gather(
    elements: Iterable[tuple[Any, int, Any, str]],
    strings: Callable[[Any], list[str]],
    creator: Callable[[Any, int], str],
    meta: Iterable[tuple[str, str]],
) -> list[Needle]:
    """The needles of a walk's elements ((data set, tag, element, VR)) and of the file meta's AE titles.

    ``strings`` reads an element's values as text; ``creator`` names the private creator of a
    private tag in its data set; ``meta`` is (keyword, text) of each AE title the file meta has.
    An element's values are read only when its VR or keyword can make a needle of them.
    """
    needles: dict[bytes, Needle] = {}
    found = needles.get
    identity = PATIENT_IDENTITY_KEYWORDS

    def add(text: str, source: str, kind: str, keyword: str, slot: tuple[str, int, int] | None = None) -> None:
        text = text.strip().strip("\x00")
        if len(text) >= _MIN_LENGTH:
            value = text.encode("utf-8", "replace")
            old = found(value)
            # the patient's own identity wins: it decides what may be excused as a coincidence
            if old is None or (keyword in identity and old.keyword not in identity):
                needles[value] = Needle(value, source, kind, keyword, slot)

    for item, tag, elem, vr in elements:
        if (tag >> 16) & 1:
            if (tag & 0xFFFF) < 0x1000:
                continue  # private creator names are vendors' names
            if vr not in _NEEDLE_VRS and vr != "UN":
                continue
            source = _private_where(tag)
            for text in strings(elem):
                if len(text) >= _PIXEL_SAFE_LENGTH and text.isprintable():
                    add(text, source, "private", "", (creator(item, tag), tag >> 16, tag & 0xFF))
            continue
        if vr not in _NEEDLE_VRS:
            continue
        keyword, source = _named(tag)
        if vr == "PN":
            for text in strings(elem):
                if text:
                    for spelling in _name_spellings(text):
                        add(spelling, source, "name", keyword)
        elif vr in ("DA", "DT"):
            for text in strings(elem):
                for spelling in _date_spellings(text[:8]):
                    add(spelling, source, "date", keyword)
        elif vr == "UI":
            for text in strings(elem):
                if text not in UID_dictionary and len(text) >= 10:
                    add(text, source, "uid", keyword)
        elif keyword in IDENTIFYING_KEYWORDS:
            for text in strings(elem):
                if text:
                    add(text, source, "id", keyword)
    for keyword, text in meta:  # the sending site's AE titles name the site
        add(text, f"file meta {keyword}", "id", keyword)
    return list(needles.values())


def _raw_creator(item: RawItem, tag: int) -> str:
    creator = item.get((tag & 0xFFFF0000) | ((tag & 0xFF00) >> 8))
    if creator is None:
        return ""
    if creator.items is not None:  # pydicom would read it as str(a Sequence): not guessed here
        raise RawFallback("a private creator that is a sequence")
    return (raw_strings(creator) or [""])[0]


@cache
def _meta_tags() -> tuple[tuple[str, int], ...]:
    return tuple((keyword, int(tag_for_keyword(keyword) or 0)) for keyword in META_AE_KEYWORDS)


def _raw_meta(meta: RawItem) -> list[tuple[str, str]]:
    """The file meta's AE titles as pydicom reads them (``str`` of the converted value, as ``meta.get``).

    pydicom converts these on access (an AE value is stripped, a multi-valued one is a list):
    a plain title is read here, any other by pydicom's own converter (``raw_walk.converted``).
    """
    elements = ((keyword, meta.get(tag)) for keyword, tag in _meta_tags())
    return [(keyword, "" if elem is None else str(converted(elem, default_encoding, plain_vrs=("AE",)) or ""))
            for keyword, elem in elements]


def raw_identifying_values(raw: RawFile) -> list[Needle]:
    """The needles of a source read as raw elements: the same list ``identifying_values`` makes of its pydicom reading.

    Raises ``raw_walk.RawFallback`` where the two readings could differ.
    """
    return gather(walk(raw.dataset, raw.implicit, _WALKED_VRS), raw_strings, _raw_creator, _raw_meta(raw.meta))
