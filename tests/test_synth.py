"""Tests for the synthetic PHI-laden submission generator.

Every pipeline test downstream trusts two things about ``generate_submission``: that its
objects are valid DICOM (so a failure downstream is the pipeline's fault) and that the
planted-PHI truth it reports is complete and real (so a clean leak scan means something).
These tests pin both, plus the determinism that makes failures reproducible.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config as pydicom_config
from pydicom.uid import ExplicitVRLittleEndian

from imaging_ingest.synth.generate import SynthSummary, generate_submission, summary_as_dict

PATIENTS = 2
CT_SLICES = 8
MR_SLICES = 6


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return generate_submission(tmp_path_factory.mktemp("synth") / "drop", patients=PATIENTS, seed=7,
                               ct_slices=CT_SLICES, mr_slices=MR_SLICES)


def _kind_of(path: Path) -> str:
    return {"CT": "CT", "MR": "MR", "RTSTRUCT": "RTSTRUCT", "SCANNED": "SC"}[path.parent.name.split("_")[1]]


def _dicom_by_kind(summary: SynthSummary) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = defaultdict(list)
    for relative in summary.files:
        if relative.suffix == ".dcm":
            grouped[_kind_of(relative)].append(summary.root / relative)
    return grouped


def _read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def test_same_arguments_give_identical_bytes(submission: SynthSummary, tmp_path: Path) -> None:
    again = generate_submission(tmp_path / "drop", patients=PATIENTS, seed=7, ct_slices=CT_SLICES,
                                mr_slices=MR_SLICES)
    assert again.files == submission.files
    assert again.planted == submission.planted
    for relative in submission.files:
        assert (again.root / relative).read_bytes() == (submission.root / relative).read_bytes(), relative


def test_other_seed_gives_other_people(submission: SynthSummary, tmp_path: Path) -> None:
    other = generate_submission(tmp_path / "drop", patients=PATIENTS, seed=8, ct_slices=1, mr_slices=1)
    assert {p.patient_id for p in other.planted} != {p.patient_id for p in submission.planted}


def test_patients_do_not_depend_on_patient_count(submission: SynthSummary, tmp_path: Path) -> None:
    larger = generate_submission(tmp_path / "drop", patients=PATIENTS + 1, seed=7, ct_slices=CT_SLICES,
                                 mr_slices=MR_SLICES)
    assert larger.planted[:PATIENTS] == submission.planted


def test_counts_per_kind(submission: SynthSummary) -> None:
    assert submission.by_kind == {
        "CT": PATIENTS * 2 * CT_SLICES,
        "MR": PATIENTS * 2 * MR_SLICES,
        "RTSTRUCT": PATIENTS,
        "SC": PATIENTS,
        "clinical": 1,
    }
    assert submission.dicom_files == sum(n for kind, n in submission.by_kind.items() if kind != "clinical")
    on_disk = sorted(p.relative_to(submission.root) for p in submission.root.rglob("*") if p.is_file())
    assert on_disk == sorted(submission.files)


def test_counts_follow_arguments(tmp_path: Path) -> None:
    summary = generate_submission(tmp_path / "drop", patients=1, seed=1, ct_slices=3, mr_slices=2, rows=32,
                                  columns=48)
    assert summary.by_kind == {"CT": 6, "MR": 4, "RTSTRUCT": 1, "SC": 1, "clinical": 1}
    ct = _read(_dicom_by_kind(summary)["CT"][0])
    assert (ct.Rows, ct.Columns) == (32, 48)
    assert ct.pixel_array.shape == (32, 48)


def test_folders_carry_name_mrn_and_study_dates(submission: SynthSummary) -> None:
    for planted in submission.planted:
        folders = {f.parts[0] for f in submission.files if len(f.parts) > 1 and planted.patient_id in f.parts[0]}
        assert len(folders) == 1
        family, given, mrn = next(iter(folders)).split("_")
        assert mrn == planted.patient_id
        assert f"{family}^{given}" in planted.values
        studies = sorted({f.parts[1] for f in submission.files if f.parts[0] == f"{family}_{given}_{mrn}"})
        dates = [dt.datetime.strptime(s.split("_")[0], "%Y%m%d").date() for s in studies]
        assert len(dates) == 2
        assert 60 <= (dates[1] - dates[0]).days <= 400
        assert all(2015 <= d.year <= 2023 for d in dates)


def test_file_meta_is_explicit_little_endian_part10(submission: SynthSummary) -> None:
    for paths in _dicom_by_kind(submission).values():
        raw = paths[0].read_bytes()
        assert raw[128:132] == b"DICM"
        ds = _read(paths[0])
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_image_series_geometry(submission: SynthSummary) -> None:
    by_series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for kind in ("CT", "MR"):
        for path in _dicom_by_kind(submission)[kind]:
            ds = _read(path)
            by_series[ds.SeriesInstanceUID].append(ds)
    for series in by_series.values():
        series.sort(key=lambda ds: int(ds.InstanceNumber))
        assert len({ds.FrameOfReferenceUID for ds in series}) == 1
        zs = [float(ds.ImagePositionPatient[2]) for ds in series]
        steps = {round(b - a, 3) for a, b in zip(zs, zs[1:], strict=False)}
        assert steps == {float(series[0].SliceThickness)}
        first = series[0]
        if first.Modality == "CT":
            assert first.PixelRepresentation == 1 and first.BitsAllocated == 16
            assert first.pixel_array.dtype == np.int16
            assert float(first.RescaleIntercept) == -1024
        else:
            assert first.PixelRepresentation == 0 and first.BitsAllocated == 16
            assert first.pixel_array.max() < 4096
            assert first.ScanningSequence and first.MagneticFieldStrength


def test_rtstruct_references_resolve_to_ct_slices(submission: SynthSummary) -> None:
    grouped = _dicom_by_kind(submission)
    ct_by_study: dict[str, dict[str, pydicom.Dataset]] = defaultdict(dict)
    for path in grouped["CT"]:
        ds = _read(path)
        ct_by_study[ds.StudyInstanceUID][ds.SOPInstanceUID] = ds
    assert len(grouped["RTSTRUCT"]) == PATIENTS
    for path in grouped["RTSTRUCT"]:
        rs = _read(path)
        cts = ct_by_study[rs.StudyInstanceUID]
        (frame,) = rs.ReferencedFrameOfReferenceSequence
        assert {ds.FrameOfReferenceUID for ds in cts.values()} == {frame.FrameOfReferenceUID}
        (study,) = frame.RTReferencedStudySequence
        assert study.ReferencedSOPInstanceUID == rs.StudyInstanceUID
        (series,) = study.RTReferencedSeriesSequence
        assert {ds.SeriesInstanceUID for ds in cts.values()} == {series.SeriesInstanceUID}
        assert {item.ReferencedSOPInstanceUID for item in series.ContourImageSequence} == set(cts)
        assert {item.ReferencedSOPClassUID for item in series.ContourImageSequence} == {cts[
            next(iter(cts))].SOPClassUID}
        roi_numbers = {roi.ROINumber for roi in rs.StructureSetROISequence}
        assert {obs.ReferencedROINumber for obs in rs.RTROIObservationsSequence} == roi_numbers
        gtv = next(roi.ROINumber for roi in rs.StructureSetROISequence if roi.ROIName == "GTV")
        for roi_contour in rs.ROIContourSequence:
            assert roi_contour.ReferencedROINumber in roi_numbers
            contours = roi_contour.ContourSequence
            if roi_contour.ReferencedROINumber == gtv:
                assert 1 <= len(contours) < len(cts)
            for contour in contours:
                (image,) = contour.ContourImageSequence
                slice_ds = cts[image.ReferencedSOPInstanceUID]
                points = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
                assert contour.ContourGeometricType == "CLOSED_PLANAR"
                assert len(points) == contour.NumberOfContourPoints >= 3
                assert np.allclose(points[:, 2], float(slice_ds.ImagePositionPatient[2]))


def test_secondary_capture_is_a_scanned_document_with_burned_in_text(submission: SynthSummary) -> None:
    for path in _dicom_by_kind(submission)["SC"]:
        ds = _read(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert ds.BurnedInAnnotation == "YES"
        assert ds.ConversionType == "SD"
        assert ds.Modality == "OT"
        assert (ds.BitsAllocated, ds.PhotometricInterpretation) == (8, "MONOCHROME2")
        pixels = ds.pixel_array
        assert pixels.shape == (256, 512)
        dark = (pixels < 128).mean()
        assert 0.01 < dark < 0.3  # mostly white paper, with a fair amount of black text


@pytest.mark.ocr
def test_burned_in_text_is_readable(submission: SynthSummary, tmp_path: Path) -> None:
    from PIL import Image

    path = _dicom_by_kind(submission)["SC"][0]
    ds = _read(path)
    Image.fromarray(ds.pixel_array).save(tmp_path / "sc.png")
    text = subprocess.run(["tesseract", str(tmp_path / "sc.png"), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert ds.PatientID in text
    assert str(ds.PatientName.family_name) in text
    assert ds.PatientBirthDate in text


def test_every_planted_value_occurs_in_the_patients_dicom_bytes(submission: SynthSummary) -> None:
    for planted in submission.planted:
        blob = b"".join((submission.root / f).read_bytes() for f in submission.files
                        if f.suffix == ".dcm" and planted.patient_id in f.parts[0])
        missing = [v for v in planted.values if v.encode() not in blob]
        assert not missing, (planted.patient_id, missing)


def test_phi_is_planted_in_private_tags_and_nested_sequences(submission: SynthSummary) -> None:
    for path in _dicom_by_kind(submission)["CT"][:1] + _dicom_by_kind(submission)["MR"][:1]:
        ds = _read(path)
        name = str(ds.PatientName)
        text_name = name.replace("^", " ")
        block = ds.private_block(0x0029, "ACME_PRIVATE 1.0")
        assert block[0x10].value == name
        assert ds.PatientID in block[0x11].value and ds.PatientTelephoneNumbers in block[0x11].value
        (request,) = ds.RequestAttributesSequence
        assert text_name in request.RequestedProcedureDescription
        assert request.RequestedProcedureID and request.ScheduledProcedureStepID
        (protocol,) = request.ScheduledProtocolCodeSequence
        (comment,) = protocol.ProtocolContextSequence
        assert text_name in comment.TextValue and ds.PatientID in comment.TextValue
        assert ds.ProcedureCodeSequence[0].CodeValue
        assert {item.IssuerOfPatientID for item in ds.OtherPatientIDsSequence}
        for free_text in (ds.StudyDescription, ds.SeriesDescription, ds.ImageComments):
            assert text_name in free_text and ds.PatientID in free_text
        for keyword in ("PatientAddress", "PatientTelephoneNumbers", "InstitutionName", "InstitutionAddress",
                        "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "StationName",
                        "DeviceSerialNumber", "AccessionNumber", "StudyID", "PatientAge",
                        "InstanceCreationDate", "AcquisitionDate", "ContentDate", "SeriesDate"):
            assert ds.get(keyword), keyword


def test_people_are_distinct_and_dates_in_range(submission: SynthSummary, tmp_path: Path) -> None:
    summary = generate_submission(tmp_path / "drop", patients=20, seed=3, ct_slices=1, mr_slices=1, rows=16,
                                  columns=16)
    ids = [p.patient_id for p in summary.planted]
    names = [p.values[0] for p in summary.planted]
    assert len(set(ids)) == len(ids) and len(set(names)) == len(names)
    assert all(len(part) >= 4 for name in names for part in name.split("^"))
    for path in _dicom_by_kind(summary)["SC"]:
        ds = _read(path)
        assert 1940 <= int(ds.PatientBirthDate[:4]) <= 1985
        assert 2015 <= int(ds.StudyDate[:4]) <= 2023


def test_values_fit_their_vrs_for_many_patients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Names and addresses vary per patient; pydicom raising on any over-long or malformed
    # value proves the fixed dciodvfy sample is not just lucky.
    # pydicom validates a new element against reading_validation_mode, the file writer against
    # writing_validation_mode: raise on both.
    monkeypatch.setattr(pydicom_config.settings, "reading_validation_mode", pydicom_config.RAISE)
    monkeypatch.setattr(pydicom_config.settings, "writing_validation_mode", pydicom_config.RAISE)
    summary = generate_submission(tmp_path / "drop", patients=40, seed=11, ct_slices=1, mr_slices=1, rows=16,
                                  columns=16)
    assert summary.dicom_files == 40 * 6


def test_clinical_csv(submission: SynthSummary) -> None:
    with (submission.root / "clinical.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["patient_id", "patient_name", "birth_date", "diagnosis_date", "age_at_diagnosis",
                             "sex", "diagnosis", "notes"]
    assert [r["patient_id"] for r in rows] == [p.patient_id for p in submission.planted]
    for row in rows:
        birth = dt.date.fromisoformat(row["birth_date"])
        diagnosis = dt.date.fromisoformat(row["diagnosis_date"])
        assert int(row["age_at_diagnosis"]) in (diagnosis.year - birth.year - 1, diagnosis.year - birth.year)
        family, given = row["patient_name"].split("^")
        assert family in row["notes"] and given in row["notes"]


def test_summary_as_dict_is_json_ready(submission: SynthSummary) -> None:
    data = json.loads(json.dumps(summary_as_dict(submission)))
    assert data["dicom_files"] == submission.dicom_files
    assert data["by_kind"] == submission.by_kind
    assert len(data["files"]) == len(submission.files)
    assert data["planted"][0]["patient_id"] == submission.planted[0].patient_id
    assert data["planted"][0]["values"] == list(submission.planted[0].values)


@pytest.mark.dciodvfy
@pytest.mark.parametrize("kind", ["CT", "MR", "RTSTRUCT", "SC"])
def test_dciodvfy_reports_no_errors(submission: SynthSummary, kind: str) -> None:
    paths = _dicom_by_kind(submission)[kind]
    assert paths
    for path in paths:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (path.relative_to(submission.root), errors)
