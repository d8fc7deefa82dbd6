"""NBIA's v4 answers: field names, field order and value formats, as NBIA writes them.

The columns below are the v4 endpoints' own (``V4_getSeries``, ``V4_getPatient``, ...,
in NBIA's source), spellings included: ``PatientId`` in getPatient but ``PatientID`` in
getPatientStudy, ``AdmittingDiagnosisDescription`` for series but
``AdmittingDiagnosesDescription`` for studies. Dates are ``MM-DD-YYYY`` strings, counts
and sizes are numbers. NBIA leaves a field out of its JSON when it has no value; so do we.
Where each value comes from (catalog, release, DICOM header, fixed) is in docs/api.md.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any

from imaging_ingest.api.releases import CollectionView, PatientView, SeriesView, StudyView
from imaging_ingest.core.csvsafe import neutralise

__all__ = [
    "METADATA_COLUMNS",
    "PATIENT_COLUMNS",
    "SERIES_COLUMNS",
    "STUDY_COLUMNS",
    "License",
    "license_for",
    "metadata_row",
    "nbia_date",
    "patient_row",
    "csv_chunks",
    "json_chunks",
    "json_parts",
    "render_csv",
    "render_json",
    "series_row",
    "study_row",
]

PATIENT_COLUMNS = (
    "PatientId", "PatientName", "PatientSex", "EthnicGroup", "Collection", "Phantom", "SpeciesCode",
    "SpeciesDescription", "Authorized",
)
STUDY_COLUMNS = (
    "StudyInstanceUID", "StudyDate", "StudyDescription", "AdmittingDiagnosesDescription", "StudyID", "PatientAge",
    "PatientID", "PatientName", "PatientSex", "EthnicGroup", "Collection", "SeriesCount",
    "LongitudinalTemporalEventType", "LongitudinalTemporalOffsetFromEvent", "Authorized",
)
SERIES_COLUMNS = (
    "SeriesInstanceUID", "StudyInstanceUID", "Modality", "ProtocolName", "SeriesDate", "SeriesDescription",
    "BodyPartExamined", "SeriesNumber", "AnnotationsFlag", "Collection", "Site", "PatientID", "PatientSex",
    "PatientAge", "AdmittingDiagnosisDescription", "Manufacturer", "ManufacturerModelName", "SoftwareVersions",
    "ImageCount", "MaxSubmissionTimestamp", "LicenseName", "LicenseURI", "DataDescriptionURI", "FileSize",
    "ReleasedStatus", "DateReleased", "StudyDesc", "StudyDate", "ThirdPartyAnalysis", "Authorized",
)
METADATA_COLUMNS = (
    "PatientID", "PatientName", "PatientSex", "EthnicGroup", "Phantom", "SpeciesCode", "SpeciesDescription",
    "StudyInstanceUID", "StudyDate", "StudyDesc", "AdmittingDiagnosisDescription", "StudyID", "PatientAge",
    "LongitudinalTemporalEventType", "LongitudinalTemporalOffsetFromEvent", "SeriesInstanceUID", "Collection",
    "Site", "Modality", "ProtocolName", "SeriesDate", "SeriesDescription", "BodyPartExamined", "SeriesNumber",
    "AnnotationsFlag", "Manufacturer", "ManufacturerModelName", "PixelSpacing(mm)-Row", "SliceThickness(mm)",
    "SoftwareVersions", "ImageCount", "MaxSubmissionTimestamp", "LicenseName", "LicenseURI", "DataDescriptionURI",
    "FileSize", "ReleasedStatus", "DateReleased", "ThirdPartyAnalysis", "Authorized",
)

#: What NBIA reports for human subjects that are not phantoms (its own defaults).
_HUMAN = {"Phantom": "NO", "SpeciesCode": "337915000", "SpeciesDescription": "Homo sapiens"}


class License:
    """A licence's reported name, URI, and the text of a download's LICENSE file."""

    def __init__(self, key: str, name: str, uri: str | None) -> None:
        self.key, self.name, self.uri = key, name, uri or None

    def text(self, view: CollectionView) -> str:
        lines = [
            f"Collection: {view.title} ({view.id}), version {view.version}, released {view.released:%Y-%m-%d}.",
            f"License: {self.name}" + (f" <{self.uri}>" if self.uri else ""),
            f"Release manifest: {view.release_key}",
            "",
        ]
        return "\n".join(lines)


@cache
def _licenses() -> dict[str, License]:
    text = resources.files("imaging_ingest").joinpath("data/licenses.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    return {row["license"]: License(row["license"], row["name"], row["uri"]) for row in rows}


def license_for(view: CollectionView) -> License:
    return _licenses().get(view.license) or License(view.license, view.license, None)


def nbia_date(value: str | date | datetime | None) -> str | None:
    """``MM-DD-YYYY``, NBIA's date format (from a DICOM ``YYYYMMDD`` or a date)."""
    if value is None or value == "":
        return None
    if isinstance(value, (date, datetime)):
        return value.strftime("%m-%d-%Y")
    text = str(value)
    if len(text) == 8 and text.isdigit():
        return f"{text[4:6]}-{text[6:8]}-{text[0:4]}"
    return None


def _fields(columns: Sequence[str], values: Mapping[str, Any]) -> dict[str, Any]:
    return {c: values[c] for c in columns if values.get(c) is not None}


def patient_row(view: CollectionView, patient: PatientView) -> dict[str, Any]:
    header = patient.header
    return _fields(PATIENT_COLUMNS, {
        "PatientId": patient.id,
        "PatientName": patient.id,
        "PatientSex": header.get("PatientSex"),
        "EthnicGroup": header.get("EthnicGroup"),
        "Collection": view.id,
        **_HUMAN,
        "Authorized": 1,
    })


def study_row(view: CollectionView, study: StudyView, series_count: int | None = None) -> dict[str, Any]:
    header, patient = study.header, view.patients[study.patient_id].header
    return _fields(STUDY_COLUMNS, {
        "StudyInstanceUID": study.uid,
        "StudyDate": nbia_date(study.date),
        "StudyDescription": study.description,
        "AdmittingDiagnosesDescription": header.get("AdmittingDiagnosesDescription"),
        "StudyID": header.get("StudyID"),
        "PatientAge": header.get("PatientAge"),
        "PatientID": study.patient_id,
        "PatientName": study.patient_id,
        "PatientSex": patient.get("PatientSex"),
        "EthnicGroup": patient.get("EthnicGroup"),
        "Collection": view.id,
        "SeriesCount": len(study.series) if series_count is None else series_count,
        "LongitudinalTemporalEventType": header.get("LongitudinalTemporalEventType"),
        "LongitudinalTemporalOffsetFromEvent": header.get("LongitudinalTemporalOffsetFromEvent"),
        "Authorized": 1,
    })


def _series_values(view: CollectionView, series: SeriesView) -> dict[str, Any]:
    header, study = series.header, view.studies[series.study_uid]
    licence = license_for(view)
    return {
        "SeriesInstanceUID": series.uid,
        "StudyInstanceUID": series.study_uid,
        "Modality": series.modality,
        "ProtocolName": header.get("ProtocolName"),
        "SeriesDate": header.get("SeriesDate"),
        "SeriesDescription": series.description,
        "BodyPartExamined": series.body_part,
        "SeriesNumber": header.get("SeriesNumber"),
        "Collection": view.id,
        "PatientID": series.patient_id,
        "PatientSex": header.get("PatientSex"),
        "PatientAge": header.get("PatientAge"),
        "AdmittingDiagnosisDescription": header.get("AdmittingDiagnosesDescription"),
        "Manufacturer": series.manufacturer,
        "ManufacturerModelName": header.get("ManufacturerModelName"),
        "SoftwareVersions": header.get("SoftwareVersions"),
        "ImageCount": series.image_count,
        "MaxSubmissionTimestamp": nbia_date(series.submitted),
        "LicenseName": licence.name,
        "LicenseURI": licence.uri,
        "FileSize": series.total_bytes,
        "ReleasedStatus": "Released",
        "DateReleased": nbia_date(series.released),
        "StudyDesc": study.description,
        "StudyDate": nbia_date(study.date),
        "ThirdPartyAnalysis": "NO",
        "Authorized": 1,
    }


def series_row(view: CollectionView, series: SeriesView) -> dict[str, Any]:
    return _fields(SERIES_COLUMNS, _series_values(view, series))


def metadata_row(view: CollectionView, series: SeriesView) -> dict[str, Any]:
    values = _series_values(view, series)
    header, study_header = series.header, view.studies[series.study_uid].header
    values.update({
        "PatientName": series.patient_id,
        "EthnicGroup": header.get("EthnicGroup"),
        **_HUMAN,
        "StudyID": study_header.get("StudyID"),
        "LongitudinalTemporalEventType": study_header.get("LongitudinalTemporalEventType"),
        "LongitudinalTemporalOffsetFromEvent": study_header.get("LongitudinalTemporalOffsetFromEvent"),
        "PixelSpacing(mm)-Row": header.get("PixelSpacing"),
        "SliceThickness(mm)": header.get("SliceThickness"),
    })
    return _fields(METADATA_COLUMNS, values)


#: Rows per chunk of a streamed listing.
CHUNK_ROWS = 500


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def json_parts(parts: Iterable[bytes], size: int = CHUNK_ROWS) -> Iterator[bytes]:
    """A JSON array of already encoded values, in chunks of ``size`` values: ``[a,b`` ... ``,c]``."""
    opening = b"["
    for batch in _batches(parts, size):
        yield opening + b",".join(batch)
        opening = b","
    yield b"[]" if opening == b"[" else b"]"


def json_chunks(rows: Iterable[Mapping[str, Any]], size: int = CHUNK_ROWS) -> Iterator[bytes]:
    """``render_json`` in chunks of ``size`` rows (the same bytes, joined)."""
    return json_parts((json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode("utf-8") for row in rows),
                      size)


def csv_chunks(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], size: int = CHUNK_ROWS) -> Iterator[bytes]:
    """``render_csv`` in chunks: the header row, then ``size`` rows at a time (the same bytes, joined).

    Every value quoted, as NBIA's ``toCsvQuoted``; an absent value is an empty field. Values
    come from sites' headers: formula-like cells are neutralised (``csvsafe``).
    """
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(columns)
    yield out.getvalue().encode("utf-8")
    for batch in _batches(rows, size):
        out.seek(0)
        out.truncate()
        for row in batch:
            writer.writerow(["" if row.get(c) is None else neutralise(row[c]) for c in columns])
        yield out.getvalue().encode("utf-8")


def render_json(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(json_chunks(rows))


def render_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """The whole CSV answer (``csv_chunks`` joined)."""
    return b"".join(csv_chunks(columns, rows))
