"""NBIA fields the catalog does not hold, read from the DICOM header of one published object.

NBIA answers with series and study attributes (SeriesNumber, ProtocolName, PatientAge,
SoftwareVersions, ...) that the catalog does not keep. Each series' first published
object (in key order) is asked for them: a ranged GET of its first 64 KiB, parsed up to
group 0028 and never into pixel data; the whole object only when its header is longer.
Published objects are immutable (a key is written once), so what was read is cached for
good in a small SQLite file beside the API, keyed by object key (``jsoncache.py``), and a
restart reads nothing again. The objects are de-identified and public to whoever may download them,
so nothing here is more sensitive than the download itself.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag

from imaging_ingest.api.jsoncache import KeyedJsonCache

__all__ = ["HEADER_KEYWORDS", "HeaderCache", "fields_from_dataset", "read_header_fields"]

log = logging.getLogger(__name__)

#: The DICOM attributes read from each series' first object (all in groups <= 0028).
HEADER_KEYWORDS: tuple[str, ...] = (
    "PatientSex",
    "PatientAge",
    "EthnicGroup",
    "StudyID",
    "AdmittingDiagnosesDescription",
    "LongitudinalTemporalEventType",
    "LongitudinalTemporalOffsetFromEvent",
    "SeriesNumber",
    "SeriesDate",
    "ProtocolName",
    "ManufacturerModelName",
    "SoftwareVersions",
    "SliceThickness",
    "PixelSpacing",
    "StudyTime",  # DICOMweb's study attributes
    "AccessionNumber",
)

_HEAD_BYTES = 64 * 1024
_LAST_GROUP = 0x0028

Fetch = Callable[[str, str, int | None], bytes]
"""``fetch(tier, key, length)``: the object's first ``length`` bytes (all of it when None)."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        parts = [str(v) for v in value if str(v) != ""]
        return "\\".join(parts) or None
    text = str(value).strip()
    return text or None


def fields_from_dataset(ds: Dataset) -> dict[str, str | int | None]:
    """The header attributes as NBIA reports them (dates MM-DD-YYYY, series number an integer)."""
    fields: dict[str, str | int | None] = {}
    for keyword in HEADER_KEYWORDS:
        value = ds.get(keyword)
        if keyword == "SeriesNumber":
            try:
                fields[keyword] = int(value) if value not in (None, "") else None
            except (TypeError, ValueError):
                fields[keyword] = None
        elif keyword == "SeriesDate":
            text = _text(value)
            fields[keyword] = f"{text[4:6]}-{text[6:8]}-{text[0:4]}" if text and len(text) == 8 and text.isdigit() else None
        elif keyword == "PixelSpacing":
            fields[keyword] = _text(value[0]) if value else None  # NBIA's "PixelSpacing(mm)-Row"
        else:
            fields[keyword] = _text(value)
    return fields


def read_header_fields(fetch: Fetch, tier: str, key: str, size: int) -> dict[str, str | int | None]:
    """Parse the header attributes of one object, fetching as little of it as possible."""
    head = fetch(tier, key, _HEAD_BYTES if size > _HEAD_BYTES else None)
    parsed = _parse(head, complete=len(head) >= size)
    if parsed is None:
        parsed = _parse(fetch(tier, key, None), complete=True)
    if parsed is None:
        raise ValueError(f"the object {key} has no readable DICOM header")
    return fields_from_dataset(parsed)


def _parse(data: bytes, complete: bool) -> Dataset | None:
    reached = False

    def stop_when(tag: BaseTag, vr: str | None, length: int) -> bool:
        nonlocal reached
        if tag.group > _LAST_GROUP:
            reached = True
        return reached

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_partial(io.BytesIO(data), stop_when=stop_when, force=True)
    except Exception:  # a truncated element or sequence: read the whole object instead
        return None
    if "SOPInstanceUID" not in ds:  # not a DICOM instance at all
        return None
    return ds if (reached or complete) else None


class HeaderCache(KeyedJsonCache):
    """Header fields by object key: in memory, and in the ``header_fields`` table of a SQLite file when one is given."""

    def __init__(self, path: Path | None, fetch: Fetch, workers: int = 8) -> None:
        super().__init__(path, "header_fields", "fields",
                         lambda tier, key, size: dict(read_header_fields(fetch, tier, key, size)),
                         what="DICOM header fields", workers=workers)
