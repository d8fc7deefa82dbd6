"""DICOM JSON (PS3.18 F.2): the attributes QIDO-RS answers with, and WADO-RS metadata.

QIDO's study and series attributes come from the catalog (UIDs, pseudonym, shifted study
date, modality, body part, counts) and the series' cached header fields (SeriesNumber,
StudyTime, ...). Instance metadata is the object's own header, read once and cached
(``metadata.py``), with every large binary value (pixel data included) replaced by a
``BulkDataURI``; the URIs are stored as the bare tag and made into links per answer, so
that a cached entry does not depend on the URL the service is reached at.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from imaging_ingest.api.releases import CollectionView, SeriesView, StudyView

__all__ = [
    "BINARY_VRS",
    "dataset_json",
    "element",
    "first_value",
    "keyword_of",
    "link_bulk_data",
    "select_fields",
    "series_attributes",
    "study_attributes",
    "tag_of",
]

#: Value representations whose large values go to bulk data.
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: Binary values up to this many bytes stay inline.
BULK_THRESHOLD = 1024


def tag_of(name: str) -> str | None:
    """``00100020`` for ``PatientID`` or ``00100020`` (upper-case hex), None if neither."""
    text = name.strip()
    if len(text) == 8:
        try:
            return f"{int(text, 16):08X}"
        except ValueError:
            pass
    number = tag_for_keyword(text)
    return f"{number:08X}" if number is not None else None


def keyword_of(tag: str) -> str:
    return keyword_for_tag(int(tag, 16)) or tag


@functools.lru_cache(maxsize=4096)
def _vr(tag: str) -> str:
    """The dictionary VR of a tag (pydicom's lookup costs microseconds; answers build thousands)."""
    return str(dictionary_VR(int(tag, 16)))


def element(tag: str, value: Any) -> dict[str, Any]:
    """One DICOM JSON element, its VR from the dictionary; None or "" gives an empty element."""
    vr = _vr(tag)
    if value is None or value == "" or value == []:
        return {"vr": vr}
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    if vr in ("IS", "SL", "SS", "UL", "US"):
        out: list[Any] = []
        for v in values:
            try:
                out.append(int(v))
            except (TypeError, ValueError):
                return {"vr": vr}
        return {"vr": vr, "Value": out}
    if vr in ("DS", "FL", "FD"):
        try:
            return {"vr": vr, "Value": [float(v) for v in values]}
        except (TypeError, ValueError):
            return {"vr": vr}
    return {"vr": vr, "Value": [str(v) for v in values]}


def _dicom_date(nbia: Any) -> str | None:
    """The header cache keeps SeriesDate as NBIA writes it (MM-DD-YYYY); DICOM wants YYYYMMDD."""
    text = str(nbia or "")
    if len(text) == 10 and text[2] == "-" and text[5] == "-":
        return f"{text[6:10]}{text[0:2]}{text[3:5]}"
    return text if len(text) == 8 and text.isdigit() else None


def study_attributes(view: CollectionView, study: StudyView) -> dict[str, dict[str, Any]]:
    """Study-level attributes (PS3.18 table 10.6.3-3), from the catalog and the first series' header."""
    header = study.header
    modalities = sorted({s.modality for s in study.series if s.modality})
    return {
        "00080020": element("00080020", study.date),
        "00080030": element("00080030", header.get("StudyTime")),
        "00080050": element("00080050", header.get("AccessionNumber")),
        "00080061": element("00080061", modalities),
        "00080090": element("00080090", None),
        "00081030": element("00081030", study.description),
        "00100010": element("00100010", study.patient_id),
        "00100020": element("00100020", study.patient_id),
        "00100030": element("00100030", None),
        "00100040": element("00100040", header.get("PatientSex")),
        "00101010": element("00101010", header.get("PatientAge")),
        "0020000D": element("0020000D", study.uid),
        "00200010": element("00200010", header.get("StudyID")),
        "00201206": element("00201206", len(study.series)),
        "00201208": element("00201208", sum(s.image_count for s in study.series)),
        "00081190": element("00081190", None),
        "00120010": element("00120010", view.title),  # Clinical Trial Sponsor Name: the collection, as TCIA does
        "00120020": element("00120020", view.id),  # Clinical Trial Protocol ID
    }


def series_attributes(series: SeriesView) -> dict[str, dict[str, Any]]:
    """Series-level attributes (PS3.18 table 10.6.3-4), from the catalog and the series' header."""
    header = series.header
    return {
        "00080021": element("00080021", _dicom_date(header.get("SeriesDate"))),
        "00080060": element("00080060", series.modality),
        "00080070": element("00080070", series.manufacturer),
        "0008103E": element("0008103E", series.description),
        "00081090": element("00081090", header.get("ManufacturerModelName")),
        "00180015": element("00180015", series.body_part),
        "00181030": element("00181030", header.get("ProtocolName")),
        "0020000E": element("0020000E", series.uid),
        "00200011": element("00200011", header.get("SeriesNumber")),
        "00201209": element("00201209", series.image_count),
    }


def _json_value(elem: Any) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=1 << 62))


def dataset_json(ds: Dataset, transfer_syntax: str | None) -> dict[str, Any]:
    """The header as DICOM JSON; large binary values (and pixel data) as ``{"BulkDataURI": <tag>}``.

    Nested sequences keep their values inline. ``AvailableTransferSyntaxUID`` (0008,3002)
    tells a viewer how the frames are encoded.
    """
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.tag.group == 0x0002:
            continue
        tag = f"{int(elem.tag):08X}"
        vr = str(elem.VR)
        if vr in BINARY_VRS or elem.tag == 0x7FE00010:
            length = len(elem.value) if isinstance(elem.value, (bytes, bytearray)) else 0
            if elem.tag == 0x7FE00010 or elem.is_undefined_length or length > BULK_THRESHOLD:
                out[tag] = {"vr": vr if vr in BINARY_VRS else "OB", "BulkDataURI": tag}
                continue
        try:
            out[tag] = _json_value(elem)
        except Exception:  # an element pydicom cannot express in JSON: leave it out rather than fail
            continue
    if transfer_syntax:
        out["00083002"] = {"vr": "UI", "Value": [transfer_syntax]}
    return dict(sorted(out.items()))


def link_bulk_data(document: Mapping[str, Any], base: str) -> dict[str, Any]:
    """Make the stored bare tags into links: ``{base}/bulk/{tag}`` (``base`` names the instance)."""
    out = dict(document)
    for tag, value in document.items():
        if isinstance(value, dict) and "BulkDataURI" in value:
            out[tag] = {**value, "BulkDataURI": f"{base}/bulk/{value['BulkDataURI']}"}
    return out


def select_fields(attributes: Mapping[str, Any], defaults: Iterable[str], include: set[str] | None,
                  everything: bool) -> dict[str, Any]:
    """The default attributes, plus those ``includefield`` names, or everything with ``all``."""
    if everything:
        return dict(sorted(attributes.items()))
    wanted = set(defaults) | (include or set())
    return {t: attributes[t] for t in sorted(wanted) if t in attributes}


def first_value(attributes: Mapping[str, Any], tag: str) -> Any:
    values = (attributes.get(tag) or {}).get("Value") or []
    return values[0] if values else None

