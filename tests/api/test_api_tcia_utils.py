"""The real tcia_utils client against the service, compared with the catalog and the release.

Everything the client reports is checked against what the pipeline recorded: the catalog's
instances of the latest release, their sizes and MD5s, and the published objects.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from imaging_ingest.catalog.models import CollectionVersion, Instance, Patient, Series, Study

from .conftest import ApiArchive

pytestmark = pytest.mark.api


@dataclass
class SeriesTruth:
    uid: str
    study: str
    patient: str
    modality: str | None
    body_part: str | None
    manufacturer: str | None
    md5: dict[str, str] = field(default_factory=dict)
    size: int = 0


def catalog_truth(archive: ApiArchive, collection: str) -> dict[str, SeriesTruth]:
    """The series of the collection's latest release, from the catalog and release.json."""
    with Session(archive.catalog.engine) as s:
        latest = s.scalars(
            select(CollectionVersion).where(CollectionVersion.collection_id == collection)
            .order_by(CollectionVersion.number.desc())
        ).first()
        assert latest is not None
        tier = "public" if collection == "demo" else "restricted"
        objects = archive.store.get_json(tier, latest.release_key)["objects"]
        listed = {o["key"] for o in objects if o.get("kind", "dicom") == "dicom"}  # supporting files are not series
        rows = s.execute(
            select(Instance.object_key, Instance.sop_uid, Instance.md5, Instance.size, Series.uid, Series.modality,
                   Series.body_part, Series.manufacturer, Study.uid, Patient.pseudonym)
            .join(Series, Series.id == Instance.series_id).join(Study, Study.id == Series.study_id)
            .join(Patient, Patient.id == Study.patient_id)
            .where(Instance.collection_id == collection, Instance.published_version.is_not(None))
        ).all()
    assert {r[0] for r in rows} == listed, "every published instance is in the latest release and vice versa"
    truth: dict[str, SeriesTruth] = {}
    for _key, sop, md5, size, series, modality, body_part, manufacturer, study, patient in rows:
        t = truth.setdefault(series, SeriesTruth(series, study, patient, modality, body_part, manufacturer))
        t.md5[sop] = md5
        t.size += size
    return truth


def test_collections_listed_without_restricted_ones(nbia: Any) -> None:
    assert nbia.getCollections() == [{"Collection": "demo"}]


def test_patient_study_and_series_counts_equal_the_catalog(nbia: Any, api_archive: ApiArchive) -> None:
    truth = catalog_truth(api_archive, "demo")
    patients = nbia.getPatient(collection="demo")
    studies = nbia.getStudy("demo")
    series = nbia.getSeries(collection="demo")
    assert sorted(p["PatientId"] for p in patients) == sorted({t.patient for t in truth.values()})
    assert all(p["Collection"] == "demo" and p["PatientName"] == p["PatientId"] for p in patients)
    assert len(studies) == len({t.study for t in truth.values()})
    assert sorted(s["SeriesInstanceUID"] for s in series) == sorted(truth)
    per_study: dict[str, int] = defaultdict(int)
    for t in truth.values():
        per_study[t.study] += 1
    assert {s["StudyInstanceUID"]: s["SeriesCount"] for s in studies} == per_study
    assert len(patients) == 3 and len(series) > len(patients)


def test_study_of_one_patient(nbia: Any, api_archive: ApiArchive) -> None:
    truth = catalog_truth(api_archive, "demo")
    patient = sorted({t.patient for t in truth.values()})[0]
    studies = nbia.getStudy("demo", patientId=patient)
    assert {s["StudyInstanceUID"] for s in studies} == {t.study for t in truth.values() if t.patient == patient}
    assert all(s["PatientID"] == patient for s in studies)
    one = nbia.getStudy("demo", studyUid=studies[0]["StudyInstanceUID"])
    assert [s["StudyInstanceUID"] for s in one] == [studies[0]["StudyInstanceUID"]]


def test_values_match_the_series(nbia: Any, api_archive: ApiArchive) -> None:
    series = nbia.getSeries(collection="demo")
    upper = lambda values: sorted({v.upper() for v in values if v})  # noqa: E731 - NBIA reports values upper-cased
    assert [b["BodyPartExamined"] for b in nbia.getBodyPart(collection="demo")] == upper(
        s.get("BodyPartExamined") for s in series)
    assert [m["Modality"] for m in nbia.getModality(collection="demo")] == upper(s.get("Modality") for s in series)
    manufacturers = [m["Manufacturer"] for m in nbia.getManufacturer(collection="demo")]
    assert set(manufacturers) == {s["Manufacturer"] for s in series if s.get("Manufacturer")}, (
        "getManufacturerValues reports each manufacturer as getSeries does (tcia_utils users cross-check them)")
    assert any(m != m.upper() for m in manufacturers), "the demo's mixed-case manufacturer is not upper-cased"
    truth = catalog_truth(api_archive, "demo")
    assert {m["Modality"] for m in nbia.getModality()} == {t.modality for t in truth.values() if t.modality}
    ct_chest = nbia.getSeries(collection="demo", modality="ct", bodyPart="chest")
    assert ct_chest and {s["SeriesInstanceUID"] for s in ct_chest} == {
        u for u, t in truth.items() if t.modality == "CT" and (t.body_part or "").upper() == "CHEST"}
    assert [b["BodyPartExamined"] for b in nbia.getBodyPart(collection="demo", modality="MR")] == ["BRAIN"]
    with_ct = nbia.getPatientByCollectionAndModality("demo", "CT")
    assert sorted(p["PatientId"] for p in with_ct) == sorted({t.patient for t in truth.values() if t.modality == "CT"})


def test_series_fields_and_filters(nbia: Any, api_archive: ApiArchive) -> None:
    truth = catalog_truth(api_archive, "demo")
    series = {s["SeriesInstanceUID"]: s for s in nbia.getSeries(collection="demo")}
    for uid, t in truth.items():
        row = series[uid]
        assert row["StudyInstanceUID"] == t.study and row["PatientID"] == t.patient
        assert row["Modality"] == t.modality and row.get("BodyPartExamined") == t.body_part
        assert row.get("Manufacturer") == t.manufacturer
        assert row["ImageCount"] == len(t.md5) and row["FileSize"] == t.size
        assert isinstance(row["ImageCount"], int) and isinstance(row["FileSize"], int)
        assert row["LicenseName"].startswith("Creative Commons") and row["Collection"] == "demo"
        assert len(row["DateReleased"]) == 10 and row["DateReleased"][2] == "-"  # MM-DD-YYYY
    ct = next(r for r in series.values() if r["Modality"] == "CT")
    assert isinstance(ct["SeriesNumber"], int) and ct["ManufacturerModelName"] and ct["PatientAge"].endswith("Y")
    uid = next(iter(truth))
    assert [s["SeriesInstanceUID"] for s in nbia.getSeries(seriesUid=uid)] == [uid]
    assert {s["SeriesInstanceUID"] for s in nbia.getSeries(studyUid=truth[uid].study)} == {
        u for u, t in truth.items() if t.study == truth[uid].study}
    assert {s["SeriesInstanceUID"] for s in nbia.getSeries(patientId=truth[uid].patient.lower())} == {
        u for u, t in truth.items() if t.patient == truth[uid].patient}
    model = ct["ManufacturerModelName"]
    assert {s["ManufacturerModelName"] for s in nbia.getSeries(manufacturerModel=model)} == {model}
    assert nbia.getSeries(collection="no_such_collection") is None  # NBIA: an empty 200


def test_series_metadata(nbia: Any, api_archive: ApiArchive) -> None:
    truth = catalog_truth(api_archive, "demo")
    frame = nbia.getSeriesList(list(truth))
    assert sorted(frame["SeriesInstanceUID"]) == sorted(truth)
    for row in frame.to_dict("records"):
        t = truth[row["SeriesInstanceUID"]]
        assert row["PatientID"] == t.patient and row["StudyInstanceUID"] == t.study
        assert row["Modality"] == t.modality and row["Collection"] == "demo"
        assert int(row["ImageCount"]) == len(t.md5) and int(row["FileSize"]) == t.size
        assert row["SpeciesDescription"] == "Homo sapiens"


def test_series_size_and_sop_instance_uids(nbia: Any, api_archive: ApiArchive) -> None:
    for uid, t in catalog_truth(api_archive, "demo").items():
        assert nbia.getSeriesSize(uid) == [{"TotalSizeInBytes": t.size, "ObjectCount": len(t.md5)}]
        assert sorted(s["SOPInstanceUID"] for s in nbia.getSopInstanceUids(uid)) == sorted(t.md5)


def _dicom_files(folder: Path) -> dict[str, str]:
    """SOPInstanceUID -> MD5 of each DICOM file in a downloaded series folder."""
    found = {}
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.pixel_array if "PixelData" in ds else None  # noqa: B018 - the pixel data decodes
        found[str(ds.SOPInstanceUID)] = hashlib.md5(path.read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize("with_hashes", [False, True], ids=["getImage", "getImageWithMD5Hash"])
def test_download_series(nbia: Any, api_archive: ApiArchive, tmp_path: Path, with_hashes: bool) -> None:
    truth = catalog_truth(api_archive, "demo")
    uids = sorted(truth)[:4]
    nbia.downloadSeries(uids, input_type="list", path=str(tmp_path), hash="y" if with_hashes else "")
    for uid in uids:
        folder = tmp_path / uid
        files = _dicom_files(folder)
        assert sorted(files) == sorted(s["SOPInstanceUID"] for s in nbia.getSopInstanceUids(uid))
        assert files == truth[uid].md5, "downloaded files are byte-identical to the catalogued objects"
        assert (folder / "LICENSE").read_text().startswith("Collection: ")
        if with_hashes:
            with open(folder / "md5hashes.csv", newline="") as fh:
                listed = {row["Filename"]: row["MD5Hash"] for row in csv.DictReader(fh)}
            on_disk = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.glob("*.dcm")}
            assert listed == on_disk
        else:
            assert not (folder / "md5hashes.csv").exists()
            assert all(p.name.startswith("1-") for p in folder.glob("*.dcm"))  # NewFileNames=Yes


def test_download_series_as_zip(nbia: Any, api_archive: ApiArchive, tmp_path: Path) -> None:
    import zipfile

    uid = sorted(catalog_truth(api_archive, "demo"))[0]
    nbia.downloadSeries([uid], input_type="list", path=str(tmp_path), as_zip=True)
    with zipfile.ZipFile(tmp_path / f"{uid}.zip") as archive:
        assert archive.testzip() is None
        assert archive.namelist()[0] == "LICENSE"


def test_download_one_image(nbia: Any, api_archive: ApiArchive, tmp_path: Path) -> None:
    truth = catalog_truth(api_archive, "demo")
    uid = sorted(truth)[0]
    sop = sorted(truth[uid].md5)[0]
    nbia.downloadImage(uid, sop, path=str(tmp_path))
    path = tmp_path / uid / f"{sop}.dcm"
    assert pydicom.dcmread(path).SOPInstanceUID == sop
    assert hashlib.md5(path.read_bytes()).hexdigest() == truth[uid].md5[sop]


def test_updated_series_and_new_patients(nbia: Any, api_archive: ApiArchive) -> None:
    truth = catalog_truth(api_archive, "demo")
    assert {s["SeriesInstanceUID"] for s in nbia.getUpdatedSeries("2000/01/01")} == set(truth)
    assert nbia.getUpdatedSeries("2999/01/01") is None
    patients = nbia.getNewPatientsInCollection("demo", "2000/01/01")
    assert sorted(p["PatientId"] for p in patients) == sorted({t.patient for t in truth.values()})
    patient = patients[0]["PatientId"]
    studies = nbia.getNewStudiesInPatient("demo", patient, "2000/01/01")
    assert {s["StudyInstanceUID"] for s in studies} == {t.study for t in truth.values() if t.patient == patient}
    assert nbia.getNewStudiesInPatient("demo", patient, "2999/01/01") is None
