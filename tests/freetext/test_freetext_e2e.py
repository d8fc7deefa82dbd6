"""The issue's free text end to end through ``imaging-ingest deidentify``, and the verifier on its own."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

import imaging_ingest.deid.values as values_module
from imaging_ingest.cli import main
from imaging_ingest.deid.freetext.element import ElementResult
from imaging_ingest.verify import text as verify_text
from imaging_ingest.verify.leaks import find_leaks

pytestmark = pytest.mark.freetext

PLANTED = {
    "AdditionalPatientHistory": "Neighbour Ottilie Brandsma found him on the floor at 88 Wexford Lane, Keene, NH",
    "PatientComments": "Earlier scans at Ridgemont Valley Hospital",
    "ImageComments": "Discussed with Dr. Anselm Quist",
    "StudyDescription": "CT ABDOMEN per Dr. Quist",
}
SECRET_WORDS = ("Ottilie", "Brandsma", "Wexford", "Keene", "Ridgemont", "Anselm", "Quist")


def _source(folder: Path, planted: dict[str, str] = PLANTED) -> Path:
    """A CT whose structured attributes repeat none of the planted text."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["freetext-sop"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["freetext-study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["freetext-series"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["freetext-for"])
    ds.PatientName = "PLUMWOOD^HESTER"
    ds.PatientID = "FT0001"
    ds.PatientBirthDate = "19400101"
    ds.PatientSex = "M"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20190302"
    ds.StudyTime = "101500"
    ds.Modality = "CT"
    ds.SeriesDescription = "AXIAL 5MM SOFT TISSUE"
    ds.ProtocolName = "CT CHEST W CONTRAST"
    for keyword, text in planted.items():
        setattr(ds, keyword, text)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["1", "1"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.PixelData = np.arange(16, dtype="<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _run(
    tmp_path: Path, secret: bytes, monkeypatch: pytest.MonkeyPatch, planted: dict[str, str] = PLANTED
) -> list[dict[str, str]]:
    monkeypatch.setenv("IMAGING_INGEST_HOME", str(tmp_path / "home"))
    _source(tmp_path / "src", planted)
    key = tmp_path / "secret.key"
    key.write_bytes(secret)
    assert main(["deidentify", str(tmp_path / "src"), str(tmp_path / "dst"), "--secret-file", str(key), "--workers", "1"]) == 0
    with open(tmp_path / "dst" / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_issues_free_text_is_cleaned_end_to_end(tmp_path: Path, secret: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    (row,) = _run(tmp_path, secret, monkeypatch)
    assert row["status"] == "published", row["reason"]
    out_path = tmp_path / "dst" / row["output_path"]
    out = pydicom.dcmread(out_path)
    assert out.AdditionalPatientHistory == "Neighbour [NAME] found him on the floor at [ADDRESS], [LOCATION]"
    assert out.PatientComments == "Earlier scans at [INSTITUTION]"
    assert out.ImageComments == "Discussed with Dr. [NAME]"
    assert out.StudyDescription == "CT ABDOMEN per Dr. [NAME]"
    assert out.SeriesDescription == "AXIAL 5MM SOFT TISSUE"  # clinical descriptions stay as they are
    data = out_path.read_bytes().lower()
    assert not [w for w in SECRET_WORDS if w.lower().encode() in data]


def test_the_verifier_catches_the_issues_text_when_the_scrubber_is_bypassed(
    tmp_path: Path, secret: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(values_module, "clean_element", lambda values, tag, vr, ids: ElementResult(list(values), 0, 0))
    # descriptors only: (0010,21B0) and (0010,4000) are searched as source values too, these are not
    descriptors = {k: PLANTED[k] for k in ("ImageComments", "StudyDescription")}
    (row,) = _run(tmp_path, secret, monkeypatch, descriptors)
    assert row["status"] == "quarantined"
    assert row["reason"].startswith("PHI leak: free text (name, rule ")
    assert any(row["reason"].endswith(keyword) for keyword in descriptors)
    assert not [w for w in SECRET_WORDS if w.lower() in row["reason"].lower()]  # the element and rule, never the value


def test_find_leaks_names_every_element_with_planted_text(tmp_path: Path, secret: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from imaging_ingest.config import DeidConfig
    from imaging_ingest.deid import Deidentifier, PatientContext, Profile

    monkeypatch.setattr(values_module, "clean_element", lambda values, tag, vr, ids: ElementResult(list(values), 0, 0))
    src = _source(tmp_path / "src")
    profile = Profile.load().resolve(DeidConfig())
    Deidentifier(profile, secret).deidentify_file(src, tmp_path / "out.dcm", PatientContext("FT-0001", -100))
    leaks = [leak for leak in find_leaks(src, tmp_path / "out.dcm") if leak.rule]
    found = {leak.found_in.split()[-1] for leak in leaks}
    assert found == set(PLANTED)
    rules = {leak.rule for leak in leaks}
    assert {"relation_and_name", "street_address", "institution", "title_and_name"} <= rules
    for leak in leaks:
        assert not [w for w in SECRET_WORDS if w.lower() in leak.reason.lower()]


def test_a_cleaned_output_has_no_text_findings(tmp_path: Path, secret: bytes) -> None:
    from imaging_ingest.config import DeidConfig
    from imaging_ingest.deid import Deidentifier, PatientContext, Profile

    src = _source(tmp_path / "src")
    Deidentifier(Profile.load().resolve(DeidConfig()), secret).deidentify_file(src, tmp_path / "out.dcm", PatientContext("FT-0001", -100))
    assert verify_text.text_findings(pydicom.dcmread(tmp_path / "out.dcm")) == []
    assert find_leaks(src, tmp_path / "out.dcm") == []


def test_the_text_check_shares_no_code_with_the_deidentifier() -> None:
    tree = ast.parse(Path(verify_text.__file__).read_text(encoding="utf-8"))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if "deid" in m or "freetext" in m or "scrub" in m], imported
