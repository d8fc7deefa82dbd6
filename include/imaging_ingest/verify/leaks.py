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

import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence

from imaging_ingest.core.pool import process_pool
from imaging_ingest.core.raw_elements import RawFile
from imaging_ingest.core.records import iter_records
from imaging_ingest.verify.coincidence import Place, unexcused
from imaging_ingest.verify.needles import (
    IDENTIFYING_KEYWORDS,
    META_AE_KEYWORDS,
    Needle,
    gather,
    raw_identifying_values,
    where,
)
from imaging_ingest.verify.raw_walk import RawFallback, code_values, read
from imaging_ingest.verify.text import raw_text_findings, text_findings
from imaging_ingest.verify.values import element_strings

if TYPE_CHECKING:  # frames are the callers'; a worker that only scans bytes never imports pandas
    import pandas as pd

__all__ = [
    "Leak",
    "Needle",
    "Verdict",
    "find_leaks",
    "find_leaks_in",
    "identifying_values",
    "leak_scan_pool",
    "row_scan_arguments",
    "scan_bytes",
    "verify_frame",
]

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

_PIXEL_SAFE_LENGTH = 6  # shorter needles match pixel noise by chance
_MAX_DEPTH = 64
_SOURCE_PREFIX = 1 << 22  # a source larger than this is read up to its pixel data only



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
    """Gather every identifying value of a source dataset, including nested sequences (rules: ``needles``)."""
    meta = ds.file_meta if getattr(ds, "file_meta", None) is not None else Dataset()
    ae_titles = [(keyword, str(meta.get(keyword, "") or "")) for keyword in META_AE_KEYWORDS]
    return gather(_walk(ds), element_strings, _private_creator, ae_titles)


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
            found.append(Place(where(tag, keyword), keyword, vr, tuple(texts), slot))
    meta = output_ds.file_meta if output_ds.file_meta is not None else Dataset()
    for meta_elem in meta:
        if lowered in str(meta_elem.value).lower():
            found.append(Place(where(meta_elem.tag, meta_elem.keyword), "", "", (str(meta_elem.value),)))
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
    """The runs of at least ``_PIXEL_SAFE_LENGTH`` printable ASCII bytes, lower-cased, NUL-separated.

    The runs are found with numpy (pixel data is most of a file; ``bytes.translate`` and a
    search over the result cost more than the rest of the check): a byte starts a run where
    it and the next ``_PIXEL_SAFE_LENGTH - 1`` are printable, and most images have none. The same
    runs as the plain reading (translate, then search for a run) in tests/deid/test_verify_fast_path.py.
    """
    size = len(data)
    if size < _PIXEL_SAFE_LENGTH:
        return b""
    printable = (np.frombuffer(data, dtype=np.uint8) - np.uint8(0x20)) < np.uint8(0x7F - 0x20)
    # window[i]: bytes i .. i+5 all printable, as three overlapping pairs (fewer passes than
    # six shifted ands); written for _PIXEL_SAFE_LENGTH 6 (the test compares with the plain reading)
    pairs = printable[:-1] & printable[1:]
    window = pairs[:-4] & pairs[2:-2] & pairs[4:]
    if not window.any():
        return b""
    # where the window starts and stops being all printable: one pair per run, a run ending
    # ``_PIXEL_SAFE_LENGTH - 1`` bytes after its last window
    edges = np.flatnonzero(np.diff(window.view(np.int8), prepend=np.int8(0), append=np.int8(0))).tolist()
    runs = [data[start : stop + _PIXEL_SAFE_LENGTH - 1] for start, stop in zip(edges[0::2], edges[1::2], strict=True)]
    return b"\x00".join(runs).lower()


def _hit(value: bytes, header_text: bytes, rest: bytes, tail_text: bytes) -> bool:
    """Is a needle in the output: in its lower-cased header, or (long enough) in the text runs after it?

    One substring search per needle, on purpose. A multi-pattern matcher was measured instead:
    one compiled alternation of the escaped lower-cased needles (longest first) run once over
    the header with ``re.finditer`` costs 4-10x as much on a scanner's header (about 3 KB,
    75 needles, 0.1 ms for the searches): the pattern differs for every source, so it is
    compiled for every file, while ``bytes.__contains__`` is a tuned C search. An Aho-Corasick
    automaton (pyahocorasick) would be a dependency for no measurable gain at this size.
    """
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


def _read_output(output: bytes) -> tuple[Dataset, bytes, bytes]:
    """The output's parsed header, its header bytes, and the bytes after the header."""
    fh = BytesIO(output)
    ds = dcmread(fh, stop_before_pixels=True)  # an output must be a proper DICOM file
    header_end = fh.tell()
    return ds, output[:header_end], output[header_end:]


def _codes(options: Iterable[str] | None, recorded: Callable[[], set[str]]) -> set[str]:
    """The CID 7050 codes of the options applied: the caller's, else what the output records."""
    if options is None:
        return recorded()
    return {_OPTION_CODES[str(o)] for o in options if str(o) in _OPTION_CODES}


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
    return find_leaks_in(_source_bytes(Path(source)), Path(output).read_bytes(), options, pseudonym, kept)


def _source_bytes(path: Path) -> bytes:
    """A source's bytes, as far as the check reads them: up to its pixel data when the file is large.

    Only the source's header is searched for needles (as ``dcmread(stop_before_pixels=True)``
    reads it); a large file (a multi-frame image, a slide) is not read whole for that. The
    bytes end where the pixel data starts, which both readers treat as the end of the header.
    """
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < _SOURCE_PREFIX:
            return fh.read()  # the whole file (read(n) would allocate n bytes first: slower for most files)
        data = fh.read(_SOURCE_PREFIX)
        raw = read(data)
        if raw is not None and raw.header_end < len(data):
            return data[: raw.header_end]
        return data + fh.read()  # a header longer than the prefix, or off the fast path: all of it


def find_leaks_in(
    source: bytes, output: bytes, options: Iterable[str] | None = None, pseudonym: str | None = None,
    kept: Iterable[str] = (), *, raw_source: RawFile | None = None,
) -> list[Leak]:
    """``find_leaks`` of two files' bytes, for a caller that holds them already (no file is read again).

    The common path reads both files as raw elements (``raw_walk``): no pydicom parse unless a
    value is found in the output (rare), when pydicom reads them to say where. A file off that
    path (another encoding, an element the two readers could read differently) is read with
    pydicom throughout, as it always was: the same verdicts either way (tests/deid/test_verify_fast_path.py).
    ``raw_source``: the caller's parse of ``source`` (``core.raw_elements.read``), not parsed again.
    """
    kept = tuple(kept)
    leaks = _fast_leaks(source, output, options, pseudonym, kept, raw_source)
    return leaks if leaks is not None else _reference_leaks(source, output, options, pseudonym, kept)


def _fast_leaks(
    source: bytes, output: bytes, options: Iterable[str] | None, pseudonym: str | None, kept: Iterable[str],
    raw_source: RawFile | None = None,
) -> list[Leak] | None:
    """The leaks from the files' raw elements, or None where a file is off the fast path."""
    raw_source = raw_source or read(source)
    raw_output = read(output) if raw_source is not None else None
    if raw_source is None or raw_output is None:
        return None
    try:
        needles = raw_identifying_values(raw_source)
        codes = _codes(options, lambda: code_values(raw_output, _METHOD_CODE_SEQUENCE))
        findings = raw_text_findings(raw_output, institution_retained=_RETAIN_INSTITUTION in codes)
    except RawFallback:
        return None
    parsed: dict[str, Dataset] = {}

    def output_ds() -> Dataset:  # only on a hit: where the value is
        if "output" not in parsed:
            parsed["output"] = dcmread(BytesIO(output), stop_before_pixels=True)
        return parsed["output"]

    def source_ds() -> Dataset:  # only on a hit in the header: what the source says is technical
        if "source" not in parsed:
            parsed["source"] = dcmread(BytesIO(source), stop_before_pixels=True, force=True)
        return parsed["source"]

    end = raw_output.header_end
    leaks = _judge(needles, codes, output[:end], output[end:], output_ds, source_ds, pseudonym, kept)
    leaks.extend(Leak(f.kind, f.element, f.rule) for f in findings)
    return leaks


def _reference_leaks(
    source: bytes, output: bytes, options: Iterable[str] | None, pseudonym: str | None, kept: Iterable[str]
) -> list[Leak]:
    """The leaks from pydicom's reading of both files: the fallback, and the reference the fast path is tested against."""
    source_ds = dcmread(BytesIO(source), stop_before_pixels=True, force=True)
    needles = identifying_values(source_ds)
    output_ds, header, rest = _read_output(output)
    codes = _codes(options, lambda: _retained_codes(output_ds))
    leaks = _judge(needles, codes, header, rest, lambda: output_ds, lambda: source_ds, pseudonym, kept)
    # PHI that no structured value of the source repeats: the output's text read on its own
    findings = text_findings(output_ds, institution_retained=_RETAIN_INSTITUTION in codes)
    leaks.extend(Leak(f.kind, f.element, f.rule) for f in findings)
    return leaks


def _judge(
    needles: list[Needle], codes: set[str], header: bytes, rest: bytes, output_ds: Callable[[], Dataset],
    source_ds: Callable[[], Dataset], pseudonym: str | None, kept: Iterable[str],
) -> list[Leak]:
    """The source values found in the output that no applied option keeps and no coincidence explains."""
    published = {uid.encode() for uid in kept}
    needles = [n for n in needles if not _expected(n, codes) and not (n.kind == "uid" and n.value in published)]
    header_text = header.lower()
    tail_text = _printable_runs(rest) if rest else b""
    hits = [n for n in needles if _hit(n.value, header_text, rest, tail_text)]
    leaks = []
    source_technical: set[tuple[str, str]] | None = None
    for needle in hits:
        places = _locate(output_ds(), needle.value)
        if needle.kind == "private" and _RETAIN_SAFE_PRIVATE in codes and _kept_in_place(needle, places, header_text):
            continue
        if not _hit(needle.value, b"", rest, tail_text):  # in the header only: may be a coincidence
            if source_technical is None:
                source_technical = _technical_values(source_ds())
            count = header_text.count(needle.value.lower())
            left = unexcused(
                needle.value, needle.keyword, needle.kind, places, count, source_technical, _NEVER_TECHNICAL, pseudonym
            )
            if left is None:
                continue
            places = left or places  # report where it is not a coincidence
        elsewhere = [p.where for p in places if needle.kind != "private" or p.slot != needle.slot]
        leaks.append(Leak(needle.source, (elsewhere or [p.where for p in places] or ["pixel data or unparsed bytes"])[0]))
    return leaks


#: A scan's outcome for one output: how many leaks (-1: it could not be read) and the first one's reason.
Verdict = tuple[int, str | None]


def _verdict(scan: Callable[[], list[Leak]]) -> Verdict:
    try:
        leaks = scan()
    except (InvalidDicomError, OSError, EOFError, struct.error, ValueError, TypeError, KeyError) as exc:
        return -1, f"verification failed ({type(exc).__name__}): output not readable"
    return len(leaks), leaks[0].reason if leaks else None


def scan_bytes(
    source: bytes, output: bytes, options: Iterable[str] | None, pseudonym: str | None, kept: Iterable[str],
    *, raw_source: RawFile | None = None,
) -> Verdict:
    """``verify_frame``'s verdict on one output from both files' bytes (``find_leaks_in``): for a caller that holds them."""
    return _verdict(lambda: find_leaks_in(source, output, options, pseudonym, kept, raw_source=raw_source))


def _scan(pair: tuple[str, str, tuple[str, ...] | None, str | None, tuple[str, ...]]) -> Verdict:
    source, output, options, pseudonym, kept = pair
    return _verdict(lambda: find_leaks(source, output, options, pseudonym, kept))


def row_scan_arguments(record: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """A manifest row's ``pseudonym`` and ``kept`` UIDs for ``find_leaks``, wherever its output is scanned."""
    value = record.get("pseudo_patient_id")
    return (value if isinstance(value, str) and value else None), tuple(str(record.get("kept_uids") or "").split())


@contextmanager
def leak_scan_pool(workers: int) -> Iterator[Executor | None]:
    """Processes for ``verify_frame`` to share across calls (None: scan in this process).

    A stage that verifies a submission part by part starts its processes once, not per part.
    """
    if workers <= 1:
        yield None
        return
    with process_pool(workers) as pool:
        yield pool


def verify_frame(
    frame: pd.DataFrame,
    source_of: Callable[[dict[str, Any]], Path],
    output_of: Callable[[dict[str, Any]], Path],
    *,
    options: Iterable[str] | None = None,
    workers: int = 1,
    pool: Executor | None = None,
    known: Mapping[int, tuple[str, Verdict]] | None = None,
) -> pd.DataFrame:
    """Leak-scan every still-ok row; a hit quarantines the file, naming the elements (never the value).

    ``workers`` > 1 scans in a process pool of its own, ``pool`` in a shared one (see
    ``leak_scan_pool``); the paths are resolved here, in the caller. ``known`` maps a file id
    to a verdict already reached on its output (``scan_bytes``, run where the output was
    written) and that output's SHA-256: a row whose output still has that checksum takes the
    verdict instead of being scanned again; any other row is scanned.
    """
    frame = frame.copy()
    frame["leaks"] = 0
    frame["verified"] = False
    ok = frame.index[frame["status"] == "ok"]
    if not len(ok):
        return frame
    opts = tuple(str(o) for o in options) if options is not None else None
    reached: list[Verdict | None] = []
    pairs = []
    for r in iter_records(frame.loc[ok]):
        earlier = (known or {}).get(int(r["file_id"]))
        reached.append(earlier[1] if earlier is not None and earlier[0] == r.get("sha256") else None)
        if reached[-1] is None:
            pairs.append((str(source_of(r)), str(output_of(r)), opts, *row_scan_arguments(r)))
    if pool is not None:
        scanned = iter(pool.map(_scan, pairs, chunksize=16))
    elif workers > 1 and len(pairs) >= 2 * workers:
        with leak_scan_pool(workers) as own:
            assert own is not None
            scanned = iter(list(own.map(_scan, pairs, chunksize=max(1, min(64, len(pairs) // (workers * 4))))))
    else:
        scanned = (_scan(p) for p in pairs)
    results = [verdict if verdict is not None else next(scanned) for verdict in reached]
    counts = [max(n, 0) for n, _ in results]
    frame.loc[ok, "leaks"] = counts
    frame.loc[ok, "verified"] = [n >= 0 for n, _ in results]
    failed = [index for index, (n, _) in zip(ok, results, strict=True) if n != 0]
    if failed:
        reasons = {index: reason for index, (n, reason) in zip(ok, results, strict=True) if n != 0}
        frame.loc[failed, "status"] = "quarantined"
        frame.loc[failed, "reason"] = [reasons[i] for i in failed]
    return frame
