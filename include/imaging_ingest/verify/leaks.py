"""Independent verification: does any identifying value of the source survive in the output?

This is the second line of defence, and it shares no code with the de-identifier's
action table on purpose: a mistake in the table (an attribute kept that should have
gone) must not also blind the check. Instead of asking "was every rule applied", it
asks "does anything the source said about the patient appear in the output's bytes".

What counts as identifying is decided here, from the source alone: every person name
and its parts, every date (in DICOM and common human spellings), every instance-level
UID, the values of attributes known to carry identifiers (IDs, addresses, phone numbers,
institution and device names), and the strings of private elements. The whole output
file is searched: the header case-insensitively for every value, the rest of the file
(pixel data, and anything after it) for the values long enough not to match image noise.

The one thing the check takes from the output is what the output says was retained on
purpose: its De-identification Method Code Sequence names the PS3.15 options applied
(CID 7050), and a value of a kind an applied Retain option keeps (UIDs under Retain UIDs,
dates under Retain Full Dates, the institution under Retain Institution Identity...) is
not a leak. A caller may name the options instead.
"""

from __future__ import annotations

import multiprocessing
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from imaging_ingest.core.records import iter_records
from imaging_ingest.verify.coincidence import PATIENT_IDENTITY_KEYWORDS, Place, unexcused
from imaging_ingest.verify.text import text_findings
from imaging_ingest.verify.values import element_strings

__all__ = ["Leak", "Needle", "find_leaks", "identifying_values", "leak_scan_pool", "verify_frame"]

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

#: What each Retain option (by its CID 7050 code) keeps on purpose, in this module's terms.
_RETAIN_UIDS = "113110"
_RETAIN_FULL_DATES = "113106"
_RETAIN_DEVICE = "113109"
_RETAIN_INSTITUTION = "113112"
_RETAIN_SAFE_PRIVATE = "113111"
_OPTION_CODES = {
    "retain_uids": _RETAIN_UIDS,
    "retain_longitudinal_full_dates": _RETAIN_FULL_DATES,
    "retain_device_identity": _RETAIN_DEVICE,
    "retain_institution_identity": _RETAIN_INSTITUTION,
    "retain_safe_private": _RETAIN_SAFE_PRIVATE,
}
_DEVICE_KEYWORDS = frozenset(
    {
        "StationName",
        "DeviceSerialNumber",
        "PlateID",
        "DetectorID",
        "GantryID",
        "CassetteID",
        "GeneratorID",
        "DeviceLabel",
        "DeviceDescription",
        "SourceSerialNumber",
        "TreatmentMachineName",
        "PerformedStationName",
        "ScheduledStationName",
        "DateOfLastCalibration",
        "TimeOfLastCalibration",
        "DateOfLastDetectorCalibration",
        "CalibrationDate",
        "DateOfManufacture",
        "DateOfInstallation",
    }
)
_INSTITUTION_KEYWORDS = frozenset({"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName"})
#: Attributes never excused as kept non-identifying ones, whatever their VR.
_NEVER_TECHNICAL = IDENTIFYING_KEYWORDS | _DEVICE_KEYWORDS | _INSTITUTION_KEYWORDS
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_METHOD_CODE_SEQUENCE = 0x00120064
_META_AE_KEYWORDS = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle")

_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT", "PN", "UR"})
_MIN_LENGTH = 4  # shorter strings (sexes, short codes) are everywhere in any file
_PIXEL_SAFE_LENGTH = 6  # shorter needles match pixel noise by chance
_MAX_DEPTH = 64

#: printable ASCII -> 1, everything else -> 0: runs of 1s are where text can hide in binary data
_PRINTABLE = bytes(1 if 0x20 <= b < 0x7F else 0 for b in range(256))
_RUN = bytes([1]) * _PIXEL_SAFE_LENGTH


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


@dataclass(frozen=True)
class Leak:
    """A source value found in the output, or (``rule`` set) PHI found in the output's free text."""

    source: str
    found_in: str
    rule: str = ""

    @property
    def reason(self) -> str:
        if self.rule:
            return f"PHI leak: free text ({self.source}, rule {self.rule}) in output {self.found_in}"
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


def _vr(tag: int, elem: Any) -> str:
    vr = elem.VR
    if vr and vr != "UN":
        return str(vr)
    if (tag >> 16) & 1:
        return "UN" if (tag & 0xFFFF) >= 0x1000 else "LO"
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _private_creator(ds: Dataset, tag: int) -> str:
    creator = ds._dict.get((tag & 0xFFFF0000) | ((tag & 0xFF00) >> 8))  # type: ignore[call-overload]
    return (element_strings(creator) or [""])[0] if creator is not None else ""


def _walk(ds: Dataset, depth: int = 0) -> Iterator[tuple[Dataset, int, Any, str]]:
    """Every element of a data set and its sequences, without converting values that are not needed."""
    if depth > _MAX_DEPTH:
        return
    for tag, elem in list(ds._dict.items()):
        vr = _vr(tag, elem)
        if vr == "SQ" or (vr == "UN" and getattr(elem, "length", 0) == 0xFFFFFFFF):
            try:
                items = ds[tag].value
            except Exception:  # noqa: BLE001 - an unparseable sequence is searched as bytes below
                yield ds, tag, elem, "UN"
                continue
            if isinstance(items, Sequence):
                for item in items:
                    yield from _walk(item, depth + 1)
                continue
        yield ds, tag, elem, vr


def identifying_values(ds: Dataset) -> list[Needle]:
    """Gather every identifying value of a source dataset, including nested sequences."""
    needles: dict[bytes, Needle] = {}

    def add(text: str, source: str, kind: str, keyword: str, slot: tuple[str, int, int] | None = None) -> None:
        text = text.strip().strip("\x00")
        if len(text) >= _MIN_LENGTH:
            value = text.encode("utf-8", "replace")
            old = needles.get(value)
            # the patient's own identity wins: it decides what may be excused as a coincidence
            if old is None or (keyword in PATIENT_IDENTITY_KEYWORDS and old.keyword not in PATIENT_IDENTITY_KEYWORDS):
                needles[value] = Needle(value, source, kind, keyword, slot)

    for item, tag, elem, vr in _walk(ds):
        private = bool((tag >> 16) & 1)
        if private and (tag & 0xFFFF) < 0x1000:
            continue  # private creator names are vendors' names
        if vr not in _TEXT_VRS and vr not in ("DA", "DT", "UI") and not (private and vr == "UN"):
            continue
        keyword = "" if private else keyword_for_tag(tag)
        source = _where(tag, keyword)
        for text in element_strings(elem):
            if not text:
                continue
            if private:
                if len(text) >= _PIXEL_SAFE_LENGTH and text.isprintable():
                    slot = (_private_creator(item, tag), tag >> 16, tag & 0xFF)
                    add(text, source, "private", keyword, slot)
            elif vr == "PN":
                for spelling in _name_spellings(text):
                    add(spelling, source, "name", keyword)
            elif vr in ("DA", "DT"):
                for spelling in _date_spellings(text[:8]):
                    add(spelling, source, "date", keyword)
            elif vr == "UI":
                if text not in UID_dictionary and len(text) >= 10:
                    add(text, source, "uid", keyword)
            elif keyword in IDENTIFYING_KEYWORDS:
                add(text, source, "id", keyword)
    meta = ds.file_meta if getattr(ds, "file_meta", None) is not None else Dataset()
    for keyword in _META_AE_KEYWORDS:  # the sending site's AE titles name the site
        text = str(meta.get(keyword, "") or "")
        add(text, f"file meta {keyword}", "id", keyword)
    return list(needles.values())


def _retained_codes(output_ds: Dataset) -> set[str]:
    """The CID 7050 codes the output says were applied."""
    if _METHOD_CODE_SEQUENCE not in output_ds._dict:
        return set()
    try:
        return {str(item.get("CodeValue", "")) for item in output_ds[_METHOD_CODE_SEQUENCE].value or ()}
    except Exception:  # noqa: BLE001 - an unreadable record claims nothing
        return set()


def _expected(needle: Needle, codes: set[str]) -> bool:
    """Is this value of a kind an applied Retain option keeps on purpose?"""
    if needle.kind == "uid":
        return _RETAIN_UIDS in codes
    if needle.kind == "date" and _RETAIN_FULL_DATES in codes:
        return True
    if needle.keyword in _DEVICE_KEYWORDS:
        return _RETAIN_DEVICE in codes
    if needle.keyword in _INSTITUTION_KEYWORDS:
        return _RETAIN_INSTITUTION in codes
    return False


def _locate(output_ds: Dataset, needle: bytes) -> list[Place]:
    """The output elements that hold a value (only called on a hit: rare, may be slow)."""
    lowered = needle.decode("utf-8", "replace").lower()
    found = []
    for item, tag, elem, vr in _walk(output_ds):
        texts = element_strings(elem)
        if any(lowered in text.lower() for text in texts):
            private = bool((tag >> 16) & 1)
            slot = (_private_creator(item, tag), tag >> 16, tag & 0xFF) if private else None
            keyword = "" if private else keyword_for_tag(tag)
            found.append(Place(_where(tag, keyword), keyword, vr, tuple(texts), slot))
    meta = output_ds.file_meta if output_ds.file_meta is not None else Dataset()
    for meta_elem in meta:
        if lowered in str(meta_elem.value).lower():
            found.append(Place(_where(meta_elem.tag, meta_elem.keyword), "", "", (str(meta_elem.value),)))
    return found


def _technical_values(ds: Dataset) -> set[tuple[str, str]]:
    """The (keyword, lower-case value) pairs of a source's public non-identifying attributes, at any depth."""
    pairs: set[tuple[str, str]] = set()
    for _item, tag, elem, vr in _walk(ds):
        if (tag >> 16) & 1 or vr in ("PN", "DA", "DT", "TM", "UI", "SQ") or vr in _BINARY_VRS:
            continue
        keyword = keyword_for_tag(tag)
        if keyword and keyword not in _NEVER_TECHNICAL:
            pairs.update((keyword, text.strip().lower()) for text in element_strings(elem))
    return pairs


def _printable_runs(data: bytes) -> bytes:
    """The runs of at least ``_PIXEL_SAFE_LENGTH`` printable ASCII bytes, lower-cased, NUL-separated."""
    classes = data.translate(_PRINTABLE)
    runs = []
    start = classes.find(_RUN)
    while start != -1:
        end = classes.find(b"\x00", start)
        if end == -1:
            end = len(data)
        runs.append(data[start:end])
        start = classes.find(_RUN, end)
    return b"\x00".join(runs).lower()


def _hit(value: bytes, header_text: bytes, rest: bytes, tail_text: bytes) -> bool:
    lowered = value.lower()
    if lowered in header_text:
        return True
    if not rest or len(lowered) < _PIXEL_SAFE_LENGTH:
        return False
    return lowered in tail_text if value.isascii() else value in rest


def _kept_in_place(needle: Needle, places: list[Place], header_text: bytes) -> bool:
    """A safe private element kept as it was (same creator and element) is not a leak; the same value elsewhere is."""
    return bool(places) and all(p.slot == needle.slot for p in places) and (
        header_text.count(needle.value.lower()) == len(places)
    )


def _read_output(output: Path) -> tuple[Dataset, bytes, bytes]:
    """The output's parsed header, its header bytes, and the bytes after the header."""
    with open(output, "rb") as fh:
        ds = dcmread(fh, stop_before_pixels=True)  # an output must be a proper DICOM file
        header_end = fh.tell()
        fh.seek(0)
        header = fh.read(header_end)
        rest = fh.read()
    return ds, header, rest


def find_leaks(
    source: str | Path, output: str | Path, options: Iterable[str] | None = None, pseudonym: str | None = None,
    kept: Iterable[str] = (),
) -> list[Leak]:
    """Search the whole output file for the source's identifying values.

    The header is searched case-insensitively for every value; the rest of the file
    (pixel data) for values long enough not to match image noise by chance: as ASCII
    text, which is how a value would be carried there (JPEG comments, embedded text).
    Burned-in text drawn into the image is the screening stage's business.

    ``options`` (DeidOption values) names the PS3.15 options the collection applied;
    without it, the output's own De-identification Method Code Sequence says.
    A hit found only where it is a coincidence (see ``coincidence``) is not a leak;
    ``pseudonym`` is the patient's catalog pseudonym, which a short ID may happen to be part of.
    ``kept`` are UIDs kept on purpose: an analysis result's references to published instances.
    """
    source_ds = dcmread(source, stop_before_pixels=True, force=True)
    needles = identifying_values(source_ds)
    output_ds, header, rest = _read_output(Path(output))
    if options is None:
        codes = _retained_codes(output_ds)
    else:
        codes = {_OPTION_CODES[str(o)] for o in options if str(o) in _OPTION_CODES}
    published = {uid.encode() for uid in kept}
    needles = [n for n in needles if not _expected(n, codes) and not (n.kind == "uid" and n.value in published)]
    header_text = header.lower()
    tail_text = _printable_runs(rest) if rest else b""
    hits = [n for n in needles if _hit(n.value, header_text, rest, tail_text)]
    leaks = []
    source_technical: set[tuple[str, str]] | None = None
    for needle in hits:
        places = _locate(output_ds, needle.value)
        if needle.kind == "private" and _RETAIN_SAFE_PRIVATE in codes and _kept_in_place(needle, places, header_text):
            continue
        if not _hit(needle.value, b"", rest, tail_text):  # in the header only: may be a coincidence
            if source_technical is None:
                source_technical = _technical_values(source_ds)
            count = header_text.count(needle.value.lower())
            left = unexcused(
                needle.value, needle.keyword, needle.kind, places, count, source_technical, _NEVER_TECHNICAL, pseudonym
            )
            if left is None:
                continue
            places = left or places  # report where it is not a coincidence
        elsewhere = [p.where for p in places if needle.kind != "private" or p.slot != needle.slot]
        leaks.append(Leak(needle.source, (elsewhere or [p.where for p in places] or ["pixel data or unparsed bytes"])[0]))
    # PHI that no structured value of the source repeats: the output's text read on its own
    findings = text_findings(output_ds, institution_retained=_RETAIN_INSTITUTION in codes)
    leaks.extend(Leak(f.kind, f.element, f.rule) for f in findings)
    return leaks


def _scan(pair: tuple[str, str, tuple[str, ...] | None, str | None, str]) -> tuple[int, str | None]:
    source, output, options, pseudonym, kept = pair
    try:
        leaks = find_leaks(source, output, options, pseudonym, kept.split())
    except (InvalidDicomError, OSError, EOFError, struct.error, ValueError, TypeError, KeyError) as exc:
        return -1, f"verification failed ({type(exc).__name__}): output not readable"
    return len(leaks), leaks[0].reason if leaks else None


def _pseudonym(record: dict[str, Any]) -> str | None:
    value = record.get("pseudo_patient_id")
    return value if isinstance(value, str) and value else None


@contextmanager
def leak_scan_pool(workers: int) -> Iterator[Executor | None]:
    """Processes for ``verify_frame`` to share across calls (None: scan in this process).

    A stage that verifies a submission part by part starts its processes once, not per part.
    """
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("forkserver")  # no fork of a (possibly threaded) caller
    context.set_forkserver_preload(["pydicom", "pydicom.dataset", "pydicom.filereader", "pandas"])
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield pool


def verify_frame(
    frame: pd.DataFrame,
    source_of: Callable[[dict[str, Any]], Path],
    output_of: Callable[[dict[str, Any]], Path],
    *,
    options: Iterable[str] | None = None,
    workers: int = 1,
    pool: Executor | None = None,
) -> pd.DataFrame:
    """Leak-scan every still-ok row; a hit quarantines the file, naming the elements (never the value).

    ``workers`` > 1 scans in a process pool of its own, ``pool`` in a shared one (see
    ``leak_scan_pool``); the paths are resolved here, in the caller.
    """
    frame = frame.copy()
    frame["leaks"] = 0
    frame["verified"] = False
    ok = frame.index[frame["status"] == "ok"]
    if not len(ok):
        return frame
    opts = tuple(str(o) for o in options) if options is not None else None
    pairs = [(str(source_of(r)), str(output_of(r)), opts, _pseudonym(r), str(r.get("kept_uids") or ""))
             for r in iter_records(frame.loc[ok])]
    if pool is not None:
        results = list(pool.map(_scan, pairs, chunksize=16))
    elif workers > 1 and len(pairs) >= 2 * workers:
        with leak_scan_pool(workers) as own:
            assert own is not None
            results = list(own.map(_scan, pairs, chunksize=max(1, min(64, len(pairs) // (workers * 4)))))
    else:
        results = [_scan(p) for p in pairs]
    counts = [max(n, 0) for n, _ in results]
    frame.loc[ok, "leaks"] = counts
    frame.loc[ok, "verified"] = [n >= 0 for n, _ in results]
    failed = [index for index, (n, _) in zip(ok, results, strict=True) if n != 0]
    if failed:
        reasons = {index: reason for index, (n, reason) in zip(ok, results, strict=True) if n != 0}
        frame.loc[failed, "status"] = "quarantined"
        frame.loc[failed, "reason"] = [reasons[i] for i in failed]
    return frame
