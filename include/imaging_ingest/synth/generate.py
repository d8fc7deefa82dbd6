"""Synthetic, deliberately PHI-laden DICOM submissions for testing the ingest pipeline.

The de-identification, screening and verification stages can only be trusted if they are
exercised against input that looks like a real site's submission: identifying strings in
the obvious places (PatientName, PatientID), in the less obvious ones (free-text
descriptions, private tags, sequences nested two and three levels deep, file and folder
names, a scanned document with burned-in text) and a clinical spreadsheet beside the
images. Real submissions cannot be checked into a public repository, so this module makes
fake ones and, crucially, reports *exactly* which identifying strings it planted
(:class:`PlantedPHI`) so that tests and benchmarks can scan the pipeline's output for leaks.

Everything is deterministic: the same arguments give byte-identical files. Dates and
names come from a ``random.Random(seed)``; UIDs are hashes of the seed and the object's
logical position; the file meta carries a fixed implementation UID and version name; the
current time is never read. That makes failures reproducible and outputs diffable.

The CT, MR, RTSTRUCT and Secondary Capture instances are built to satisfy dicom3tools'
``dciodvfy`` (no ``Error`` lines), because a pipeline test that starts from invalid
objects tells us nothing about what the pipeline does to valid ones.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imaging_ingest.synth.documents import secondary_capture, write_clinical
from imaging_ingest.synth.extras import write_extras
from imaging_ingest.synth.headers import private_text
from imaging_ingest.synth.images import ct_series, mr_series
from imaging_ingest.synth.people import Patient, Person, dicom_date, make_patients
from imaging_ingest.synth.rtstruct import rtstruct

__all__ = ["PlantedPHI", "SynthSummary", "generate_submission", "summary_as_dict"]


@dataclass(frozen=True)
class PlantedPHI:
    """The identifying strings planted for one patient: the truth a leak scan checks against.

    ``values`` holds each string exactly as it occurs in the written DICOM bytes (names
    both as ``FAMILY^GIVEN`` and as the ``FAMILY GIVEN`` used in free text, their parts,
    IDs, dates as ``YYYYMMDD``, addresses, phone numbers, staff and institution names,
    private-tag strings). Every value occurs in at least one of the patient's DICOM files.
    """

    patient_id: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_submission` wrote, so callers need not rediscover it."""

    root: Path
    files: tuple[Path, ...]
    dicom_files: int
    by_kind: dict[str, int]
    planted: tuple[PlantedPHI, ...]


def _person_values(person: Person) -> list[str]:
    return [person.pn, person.text, person.family, person.given]


def _planted(patient: Patient) -> PlantedPHI:
    """Collect every identifying string written for the patient, each as it appears in the DICOM bytes."""
    values = [*_person_values(patient.person), patient.mrn]
    for other_id, issuer in patient.other_ids:
        values += [other_id, issuer]
    values += [dicom_date(patient.birth), patient.address, patient.phone, dicom_date(patient.diagnosis_date)]
    values += [patient.institution[0], patient.institution[1]]
    for staff in (patient.referring, patient.performing, patient.operator):
        values += _person_values(staff)
    values += [patient.ct_serial, patient.mr_serial, f"TPS{patient.ct_serial[2:]}"]
    values += [f"{patient.institution[2]}{station}" for station in ("CT01", "MR01", "TPS01")]
    for study in patient.studies:
        values += [study.date, study.accession, study.study_id, study.requested_procedure_id, study.sps_id]
    baseline = patient.studies[0].start
    values += [
        dicom_date(baseline - dt.timedelta(minutes=15)),
        dicom_date(baseline + dt.timedelta(days=2, hours=1)),
    ]
    values += [private_text(patient)]
    return PlantedPHI(patient_id=patient.mrn, values=tuple(dict.fromkeys(values)))


def _kind(relative: Path) -> str:
    """The by_kind bucket of a written file, read from the series folder name."""
    if relative.suffix in (".csv", ".xlsx"):
        return "clinical"
    if relative.suffix == ".svs":
        return "slide"
    folder = relative.parent.name
    for marker, kind in (
        ("_CT_", "CT"),
        ("_MR_", "MR"),
        ("_RTSTRUCT_", "RTSTRUCT"),
        ("_SCANNED_", "SC"),
        ("_US_", "US"),
        ("_SM_", "SM"),
    ):
        if marker in f"_{folder}_":
            return kind
    raise AssertionError(f"unclassified synthetic file {relative}")


def _write_patient(
    root: Path, patient: Patient, seed: int, ct_slices: int, mr_slices: int, rows: int, columns: int
) -> list[Path]:
    files: list[Path] = []
    for study in patient.studies:
        if study.index == 0:
            files.append(secondary_capture(root, patient, study, seed))
        ct_files, ref, phantom = ct_series(root, patient, study, seed, ct_slices, rows, columns)
        files += ct_files
        files += mr_series(root, patient, study, seed, mr_slices, rows, columns)
        if study.index == 0:
            files.append(rtstruct(root, patient, study, ref, phantom, seed))
    return files


def generate_submission(
    out_dir: Path,
    patients: int = 2,
    seed: int = 0,
    *,
    ct_slices: int = 8,
    mr_slices: int = 6,
    rows: int = 64,
    columns: int = 64,
    extras: bool = False,
) -> SynthSummary:
    """Write a fake site submission (DICOM tree plus ``clinical.csv``) full of known PHI.

    Per patient: a baseline study (scanned-document SC, CT, MR, RTSTRUCT on the CT) and a
    follow-up study 60-400 days later (CT, MR). Folder and file names carry the patient's
    name and MRN, as real submissions do. The same arguments always give the same bytes.
    ``extras`` adds PHI beyond headers (``extras.py``): an ultrasound frame with a
    burned-in name and date, a DICOM WSI with a label, an SVS slide with label and macro
    for the first patient, and ``clinical_followup.xlsx``.
    """
    if patients < 1 or ct_slices < 1 or mr_slices < 1 or rows < 16 or columns < 16:
        raise ValueError("need at least one patient, one slice per series and 16x16 pixels")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    people = make_patients(seed, patients)
    files: list[Path] = []
    for patient in people:
        files += _write_patient(root, patient, seed, ct_slices, mr_slices, rows, columns)
    if extras:
        files += write_extras(root, people, seed)
    dicom_count = sum(1 for f in files if f.suffix == ".dcm")
    files.append(write_clinical(root, people))
    return SynthSummary(
        root=root,
        files=tuple(files),
        dicom_files=dicom_count,
        by_kind=dict(Counter(_kind(f) for f in files)),
        planted=tuple(_planted(p) for p in people),
    )


def summary_as_dict(summary: SynthSummary) -> dict[str, Any]:
    """A JSON-ready view of a summary, so a command can write the planted truth beside the data."""
    return {
        "root": str(summary.root),
        "files": [f.as_posix() for f in summary.files],
        "dicom_files": summary.dicom_files,
        "by_kind": dict(summary.by_kind),
        "planted": [{"patient_id": p.patient_id, "values": list(p.values)} for p in summary.planted],
    }
