"""Through Airflow (dag.test()): scanned documents and ultrasound caught, a slide and clinical tables published,
and a curator's approval published by the next run."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.cli import main
from imaging_ingest.config.settings import Settings
from imaging_ingest.curation.quarantine import supporting_files
from imaging_ingest.screen.slides import verify_slide
from imaging_ingest.storage.objects import ObjectStore
from imaging_ingest.synth.extras import US_TEXT_BAND

from .test_pipeline import check_clinical_matches_catalog

pytestmark = [pytest.mark.e2e, pytest.mark.ocr, pytest.mark.openslide]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pixels_env(ingest_env: Settings, extras_submission: Path, airflow_db: Path, demo_collections: Path) -> Settings:
    return ingest_env


def _run():
    from imaging_dags.local import run_dag

    return run_dag("ingest__demo", {})


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_dag_catches_pixel_phi_and_publishes_slides_and_tables(
    pixels_env: Settings, extras_submission: Path, secret: bytes
) -> None:
    run = _run()
    assert str(run.state) == "success", _states(run)
    store, catalog = ObjectStore(pixels_env), Catalog.from_url(pixels_env.catalog_url)
    items = {i.source_path: i for i in catalog.quarantine_items("demo")}

    scanned = [p for p in items if "SCANNED" in p]
    assert len(scanned) == 2 and all("scanned document" in items[p].reason for p in scanned)
    us_path = next(str(p.relative_to(extras_submission)) for p in extras_submission.rglob("*_US_*/1.dcm"))
    assert us_path not in items  # caught and redacted by the collection's rule, so published
    us = next(i for i in catalog.instances("demo") if i.sop_class_uid == "1.2.840.10008.5.1.4.1.1.6.1")
    ds = pydicom.dcmread(io.BytesIO(store.get_bytes("public", us.object_key)))
    x, y, w, h = US_TEXT_BAND
    assert ds.BurnedInAnnotation == "NO" and not ds.pixel_array[y : y + h, x : x + w].any()

    files = {f.kind: f for f in supporting_files(catalog, "demo") if f.kind == "slide"}
    slide = files["slide"]
    local = pixels_env.home / "slide.svs"
    store.download("public", slide.object_key, local)
    source = next(extras_submission.rglob("*.svs"))
    assert verify_slide(source, local) == []  # opens in OpenSlide, no label or macro, tiles bit-identical

    csv_key = next(f.object_key for f in supporting_files(catalog, "demo") if f.object_key.endswith("clinical.csv"))
    check_clinical_matches_catalog(store, catalog, extras_submission, csv_key, secret)
    release = store.get_json("public", catalog.latest_version("demo").release_key)
    assert {slide.object_key, csv_key} <= {o["key"] for o in release["objects"]}

    # A curator approves one scanned document with its text blanked; the next run publishes it.
    item = items[scanned[0]]
    assert main(["quarantine", "approve", str(item.id), "--redact", "0,0,512,256", "--by", "curator"]) == 0
    second = _run()
    assert str(second.state) == "success", _states(second)
    assert catalog.latest_version("demo").number == 2
    added = {o["key"] for o in store.get_json("public", catalog.latest_version("demo").release_key)["objects"]}
    added -= {o["key"] for o in release["objects"]}
    assert len(added) == 1
    published = pydicom.dcmread(io.BytesIO(store.get_bytes("public", added.pop())))
    assert not np.asarray(published.pixel_array).any()
    third = _run()  # nothing left to do
    assert str(third.state) == "success" and _states(third)["publish"] == "skipped"
    catalog.dispose()
