"""Independent verification: does any identifying value of the source survive in the output?

This is the second line of defence, and it shares no code with the de-identifier's
action table on purpose: a mistake in the table (an attribute kept that should have
gone) must not also blind the check. Instead of asking "was every rule applied", it
asks "does anything the source said about the patient appear in the output's bytes".

What counts as identifying is decided here, from the source alone: every person name
and its parts, every date (in DICOM and common human spellings), every instance-level
UID, the values of attributes known to carry identifiers, addresses and phone numbers,
and the strings of private elements.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary

from .checksum import iter_chunks

__all__ = ["Leak", "Needle", "find_leaks", "identifying_values", "verify_frame"]

#: Attributes whose values identify a person, a visit or a place, whatever their VR.
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
        "PatientInsurancePlanCodeSequence",
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
        "RegionOfResidence",
        "CountryOfResidence",
        "EthnicGroup",
        "Occupation",
        "PatientBirthName",
        "PatientMotherBirthName",
        "ResponsibleOrganization",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
        "OrderCallbackPhoneNumber",
    }
)
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT", "PN"})
_MIN_LENGTH = 4  # shorter strings (sexes, short codes) are everywhere in any file
_PIXEL_SAFE_LENGTH = 6  # shorter needles match pixel noise by chance


@dataclass(frozen=True)
class Needle:
    """An identifying value and where in the source it came from (the tag, never the value)."""

    value: bytes
    source: str


@dataclass(frozen=True)
class Leak:
    source: str
    found_in: str

    @property
    def reason(self) -> str:
        return f"PHI leak: a value of source {self.source} found in output {self.found_in}"


def _where(elem_tag: int, keyword: str) -> str:
    return f"({elem_tag >> 16:04X},{elem_tag & 0xFFFF:04X}) {keyword or 'private'}".rstrip()


def _date_spellings(value: str) -> list[str]:
    value = value.strip()[:8]
    if len(value) != 8 or not value.isdigit():
        return []
    y, m, d = value[:4], value[4:6], value[6:8]
    return [value, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{d}/{m}/{y}"]


def _name_spellings(value: str) -> list[str]:
    parts = [p for p in re.split(r"[\^=\s,]+", value) if p]
    out = [value.strip()]
    if len(parts) >= 2:
        out += [" ".join(parts[:2]), " ".join(reversed(parts[:2])), "^".join(parts[:2])]
    out += [p for p in parts if len(p) >= _MIN_LENGTH]
    return out


def identifying_values(ds: Dataset) -> list[Needle]:
    """Gather every identifying value of a source dataset, including nested sequences."""
    needles: dict[bytes, str] = {}

    def add(text: str, source: str) -> None:
        text = text.strip().strip("\x00")
        if len(text) >= _MIN_LENGTH:
            needles.setdefault(text.encode("utf-8", "replace"), source)

    for elem in ds.iterall():
        vr = elem.VR
        if vr == "SQ" or elem.value is None or elem.value == "":
            continue
        values = elem.value if isinstance(elem.value, list | tuple) or type(elem.value).__name__ == "MultiValue" else [elem.value]
        source = _where(elem.tag, elem.keyword)
        for value in values:
            text = str(value)
            if vr == "PN":
                for spelling in _name_spellings(text):
                    add(spelling, source)
            elif vr == "DA":
                for spelling in _date_spellings(text):
                    add(spelling, source)
            elif vr == "DT":
                for spelling in _date_spellings(text[:8]):
                    add(spelling, source)
            elif vr == "UI":
                if text not in UID_dictionary and len(text) >= 10:
                    add(text, source)
            elif elem.keyword in IDENTIFYING_KEYWORDS and vr in _TEXT_VRS or elem.tag.is_private and vr in _TEXT_VRS and len(text) >= _PIXEL_SAFE_LENGTH:
                add(text, source)
    return [Needle(value, source) for value, source in needles.items()]


def _locate(output: Path, needle: bytes) -> str:
    """Name the output element that holds a value (only called on a hit: rare, may be slow)."""
    ds = dcmread(output, force=True)
    lowered = needle.decode("utf-8", "replace").lower()
    for elem in ds.iterall():
        if elem.VR in ("SQ", "OB", "OW", "OF", "OD", "UN") and elem.tag != 0x7FE00010:
            continue
        if elem.tag == 0x7FE00010:
            continue
        if lowered in str(elem.value).lower():
            return _where(elem.tag, elem.keyword)
    for elem in ds.file_meta.iterall() if ds.file_meta else ():
        if lowered in str(elem.value).lower():
            return _where(elem.tag, elem.keyword)
    return "pixel data or unparsed bytes"


def find_leaks(source: str | Path, output: str | Path) -> list[Leak]:
    """Search the whole output file for the source's identifying values.

    The header is searched case-insensitively for every value; the pixel data (anything
    after the header) only for values long enough not to match image noise by chance.
    Burned-in text is the screening stage's business, not this byte search.
    """
    source_ds = dcmread(source, stop_before_pixels=True, force=True)
    needles = identifying_values(source_ds)
    output = Path(output)
    long_needles = [n for n in needles if len(n.value) >= _PIXEL_SAFE_LENGTH]
    overlap = max((len(n.value) for n in long_needles), default=1) - 1
    found: dict[Needle, None] = {}
    with open(output, "rb") as fh:
        dcmread(fh, stop_before_pixels=True, force=True)
        header_end = fh.tell()
        fh.seek(0)
        header = fh.read(header_end).lower()
        found.update((n, None) for n in needles if n.value.lower() in header)
        tail = b""
        for chunk in iter_chunks(fh):
            window = tail + chunk
            found.update((n, None) for n in long_needles if n not in found and n.value in window)
            tail = window[-overlap:] if overlap else b""
    return [Leak(n.source, _locate(output, n.value)) for n in found]


def verify_frame(
    frame: pd.DataFrame,
    source_of: Callable[[dict[str, Any]], Path],
    output_of: Callable[[dict[str, Any]], Path],
) -> pd.DataFrame:
    """Leak-scan every still-ok row; a hit quarantines the file, naming the elements (never the value)."""
    frame = frame.copy()
    frame["leaks"] = 0
    frame["verified"] = False
    for index in frame.index[frame["status"] == "ok"]:
        record = frame.loc[index].to_dict()
        leaks = find_leaks(source_of(record), output_of(record))
        frame.loc[index, ["leaks", "verified"]] = [len(leaks), True]
        if leaks:
            frame.loc[index, ["status", "reason"]] = ["quarantined", leaks[0].reason]
    return frame
