"""A scanned document with burned-in PHI (Secondary Capture) and the clinical spreadsheet beside the images."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.uid import (
    SecondaryCaptureImageStorage,
)

from imaging_ingest.synth.headers import add_common, add_series, new_dataset, synthetic_uid, write_instance
from imaging_ingest.synth.images import study_folder
from imaging_ingest.synth.people import Patient, Study, age_on, dicom_date, dicom_time

_SC_ROWS, _SC_COLUMNS = 256, 512


def load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans if installed (it OCRs well), else Pillow's built-in scalable font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def _document_lines(patient: Patient) -> list[str]:
    return [
        patient.institution[0],
        f"NAME: {patient.person.text}",
        f"MRN: {patient.mrn}",
        f"DOB: {dicom_date(patient.birth)}",
    ]


def _render_document(patient: Patient) -> np.ndarray:
    """A referral sheet as a scanner would capture it: black text on white, big enough to OCR."""
    image = Image.new("L", (_SC_COLUMNS, _SC_ROWS), 255)
    draw = ImageDraw.Draw(image)
    lines = _document_lines(patient)
    size = 34
    font = load_font(size)
    while size > 12 and max(draw.textlength(line, font=font) for line in lines) > _SC_COLUMNS - 32:
        size -= 2
        font = load_font(size)
    for i, line in enumerate(lines):
        draw.text((16, 16 + i * (size + 20)), line, fill=0, font=font)
    return np.asarray(image, dtype=np.uint8)


def secondary_capture(root: Path, patient: Patient, study: Study, seed: int) -> Path:
    captured = study.start - dt.timedelta(minutes=15)
    ds = new_dataset(
        SecondaryCaptureImageStorage, synthetic_uid(seed, patient.index, study.index, "SC", 0), captured
    )
    ds.ImageType = ["DERIVED", "SECONDARY"]
    add_common(ds, patient, study, seed)
    add_series(
        ds,
        "OT",
        synthetic_uid(seed, patient.index, study.index, "SC", "series"),
        1,
        captured,
        f"Scanned referral for {patient.tag}",
        patient,
    )
    ds.Laterality = ""
    ds.Manufacturer = "ACME Scanning"
    ds.InstitutionName = patient.institution[0]
    ds.ConversionType = "SD"
    ds.SecondaryCaptureDeviceManufacturer = "ACME Scanning"
    ds.SecondaryCaptureDeviceManufacturerModelName = "DocuScan 9"
    ds.DateOfSecondaryCapture = dicom_date(captured)
    ds.TimeOfSecondaryCapture = dicom_time(captured)
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ContentDate = dicom_date(captured)
    ds.ContentTime = dicom_time(captured)
    ds.BurnedInAnnotation = "YES"
    ds.ImageComments = f"Referral letter for {patient.tag}"
    pixels = _render_document(patient)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.add_new(0x7FE00010, "OB", pixels.tobytes())
    return write_instance(ds, root, study_folder(patient, study) / "001_SCANNED_DOCUMENT" / "1.dcm")


_CLINICAL_COLUMNS = (
    "patient_id",
    "patient_name",
    "birth_date",
    "diagnosis_date",
    "age_at_diagnosis",
    "sex",
    "diagnosis",
    "notes",
)


def _clinical_row(patient: Patient) -> dict[str, str]:
    return {
        "patient_id": patient.mrn,
        "patient_name": patient.person.pn,
        "birth_date": patient.birth.isoformat(),
        "diagnosis_date": patient.diagnosis_date.isoformat(),
        "age_at_diagnosis": str(age_on(patient.birth, patient.diagnosis_date)),
        "sex": patient.sex,
        "diagnosis": patient.diagnosis,
        "notes": (
            f"{patient.person.given} {patient.person.family} ({patient.mrn}) referred by "
            f"Dr {patient.referring.text}; phone {patient.phone}"
        ),
    }


def write_clinical(root: Path, patients: Sequence[Patient]) -> Path:
    relative = Path("clinical.csv")
    with (root / relative).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=_CLINICAL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_clinical_row(p) for p in patients)
    return relative
