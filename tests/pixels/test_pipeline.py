"""The stages in one process on a submission with PHI beyond headers (slides, US, DICOM WSI, tables)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.cli import main
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.curation.quarantine import evidence_keys, supporting_files
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.screen.slides import verify_slide
from imaging_ingest.storage.objects import ObjectStore
from imaging_ingest.synth.extras import US_TEXT_BAND

pytestmark = [pytest.mark.ocr, pytest.mark.openslide]


@pytest.fixture
def ingest(demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog) -> Ingest:
    return Ingest(demo_config, settings, secret=secret, catalog=catalog)


def _published(frame: pd.DataFrame, marker: str) -> pd.Series:
    return frame[frame["source_path"].str.contains(marker, regex=False)].iloc[0]


def check_clinical_matches_catalog(store: ObjectStore, catalog: Catalog, submission: Path, key: str, secret: bytes) -> None:
    """Each row carries its patient's pseudonym, and its date moved by the same offset as the patient's studies."""
    from imaging_ingest.catalog.models import Patient, Study
    from imaging_ingest.deid.patients import patient_key

    published = {r["patient_id"]: r for r in csv.DictReader(io.StringIO(store.get_bytes("public", key).decode()))}
    source = list(csv.DictReader((submission / "clinical.csv").open()))
    assert len(published) == len(source)
    originals: dict[str, set[str]] = {}
    for path in submission.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        originals.setdefault(ds.PatientID, set()).add(ds.StudyDate)
    with catalog.session() as s:
        for row in source:
            patient = s.query(Patient).filter_by(id_hash=patient_key(secret, "demo", row["patient_id"])).one()
            out = published[patient.pseudonym]  # the table uses the images' pseudonym
            shifted = sorted(d for (d,) in s.query(Study.study_date).filter_by(patient_id=patient.id))
            image_offset = {(_day(a) - _day(b)).days for a, b in zip(shifted, sorted(originals[row["patient_id"]]), strict=True)}
            table_offset = (date.fromisoformat(out["diagnosis_date"]) - date.fromisoformat(row["diagnosis_date"])).days
            assert image_offset == {table_offset} and table_offset != 0


def _day(value: str) -> date:
    return datetime.strptime(value, "%Y%m%d").date()


def test_run_publishes_slides_and_tables_beside_the_images(
    ingest: Ingest, extras_submission: Path, store: ObjectStore, catalog: Catalog, secret: bytes
) -> None:
    summary = ingest.run()
    assert summary is not None
    assert summary["published"] + summary["quarantined"] == summary["files_in"]
    frame = ingest.manifests(summary["submission_id"]).read("published")

    us = _published(frame, "_US_")
    assert us["status"] == "ok" and us["redaction_rule"] == "acme-sonoview-480x640"
    ds = pydicom.dcmread(io.BytesIO(store.get_bytes("public", f"demo/{us['deid_key']}")))
    x, y, w, h = US_TEXT_BAND
    assert ds.BurnedInAnnotation == "NO" and not ds.pixel_array[y : y + h, x : x + w].any()

    for _, sc in frame[frame["source_path"].str.contains("SCANNED")].iterrows():
        assert sc["status"] == "quarantined" and "scanned document" in sc["reason"]
        keys = evidence_keys("demo", summary["submission_id"], int(sc["file_id"]))
        evidence = store.get_json("quarantine", keys["evidence.json"])
        assert evidence["hits"] and store.head("quarantine", keys["evidence.png"]) is not None
        assert all("evidence" not in o.key for o in store.list("public"))

    label = frame[frame["source_path"].str.endswith("_SM_SLIDE/2.dcm")].iloc[0]
    assert label["status"] == "quarantined" and "LABEL" in label["reason"]
    item = next(i for i in catalog.quarantine_items("demo") if i.file_id == int(label["file_id"]))
    assert item.state == "rejected" and item.decided_by == "policy"
    assert _published(frame, "_SM_SLIDE/1.dcm")["status"] == "ok"

    slide = _published(frame, ".svs")
    assert slide["status"] == "ok" and slide["slide_labels_removed"] == 1 and slide["slide_macros_removed"] == 1
    assert slide["deid_key"].startswith(f"pathology/{slide['pseudo_patient_id']}/slide-")
    local = ingest.settings.home / "published.svs"
    store.download("public", f"demo/{slide['deid_key']}", local)
    assert verify_slide(extras_submission / slide["source_path"], local) == []

    release = store.get_json("public", summary["release_key"])
    keys = {o["key"] for o in release["objects"]}
    assert f"demo/{slide['deid_key']}" in keys
    patient_folders = {p.name for p in extras_submission.iterdir() if p.is_dir()}
    phi = {part for folder in patient_folders for part in folder.split("_")} | set(Path(slide["source_path"]).stem.split())
    assert not any(part in key for key in keys for part in phi)  # no submitted name reaches a published key

    tables = frame[frame["kind"] == "clinical"]
    assert (tables["status"] == "ok").all(), list(tables["reason"])
    rows = {r.object_key: r for r in supporting_files(catalog, "demo")}
    assert {r.kind for r in rows.values()} == {"slide", "clinical"}
    assert all(r.published_version == 1 for r in rows.values())
    assert rows[f"demo/{slide['deid_key']}"].pseudonym == slide["pseudo_patient_id"]
    csv_key = next(k for k in rows if k.endswith("/clinical.csv"))
    check_clinical_matches_catalog(store, catalog, extras_submission, csv_key, secret)
    xlsx = next(k for k in rows if k.endswith(".xlsx"))
    followup = pd.read_excel(io.BytesIO(store.get_bytes("public", xlsx)), dtype=str)
    assert list(followup.columns) == ["mrn", "visit_date", "ecog", "notes"]
    assert followup["mrn"].str.match(r"^DEMO-\d{4}$").all()


def test_an_approved_item_is_published_by_the_next_run(
    ingest: Ingest, extras_submission: Path, store: ObjectStore, catalog: Catalog, ingest_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = ingest.run()
    assert first is not None and first["version"] == 1
    assert ingest.run() is None  # nothing approved yet: nothing to do
    pending = [i for i in catalog.quarantine_items("demo", "pending") if "SCANNED" in i.source_path]
    approve, reject = pending
    assert main(["quarantine", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {i["id"] for i in listed} >= {approve.id, reject.id}
    assert main(["quarantine", "show", str(approve.id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["approvable"] and "evidence.png" in shown["evidence"] and shown["ocr_hits"] > 0
    assert all("text" not in h for h in shown["hits"])  # OCR'd text only with --words
    assert main(["quarantine", "approve", str(approve.id), "--redact", "0,0,512,256", "--by", "curator-a"]) == 0
    assert main(["quarantine", "reject", str(reject.id), "--by", "curator-a"]) == 0
    with pytest.raises(SystemExit):
        main(["quarantine", "approve", str(reject.id)])  # decided already: a usage error
    capsys.readouterr()

    second = ingest.run()
    assert second is not None and second["version"] == 2
    version = store.get_json("public", catalog.latest_version("demo").release_key)
    frame = ingest.manifests(first["submission_id"]).read("published")
    approved = frame[frame["file_id"] == approve.file_id].iloc[0]
    assert approved["status"] == "ok" and approved["screen_action"] == "approved-redacted"
    key = f"demo/{approved['deid_key']}"
    assert key in {o["key"] for o in version["objects"]}
    ds = pydicom.dcmread(io.BytesIO(store.get_bytes("public", key)))
    assert not np.asarray(ds.pixel_array).any() and ds.BurnedInAnnotation == "NO"
    assert frame[frame["file_id"] == reject.file_id].iloc[0]["status"] == "quarantined"
    assert ingest.run() is None  # published: the approval is done
    assert len(catalog.versions("demo")) == 2


def test_local_deidentify_handles_slides_and_tables_like_the_dag(
    demo_config: CollectionConfig, extras_cache: Path, tmp_path: Path, secret: bytes, catalog: Catalog
) -> None:
    from imaging_ingest.pipeline.localrun import deidentify_tree

    summary = deidentify_tree(extras_cache, tmp_path / "out", secret=secret, config=demo_config, catalog=catalog,
                              quarantine_dir=tmp_path / "q")
    rows = {r["source_path"]: r for r in csv.DictReader((tmp_path / "out" / "manifest.csv").open())}
    slide = next(r for p, r in rows.items() if p.endswith(".svs"))
    assert slide["status"] == "published" and slide["output_path"].startswith("pathology/DEMO-")
    assert (tmp_path / "out" / slide["output_path"]).exists()
    for name in ("clinical.csv", "clinical_followup.xlsx"):
        assert rows[name]["status"] == "published", rows[name]["reason"]
    table = (tmp_path / "out" / rows["clinical.csv"]["output_path"]).read_text()
    assert "MRN" not in table and "DEMO-" in table
    us = next(r for p, r in rows.items() if "_US_" in p)
    assert us["status"] == "published"
    assert summary.published + summary.quarantined == summary.files_in == len(rows)
    assert any(p.name.endswith("evidence.png") for p in (tmp_path / "q").iterdir())
