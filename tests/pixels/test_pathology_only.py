"""Pathology-only collections: a slide whose patient has no DICOM image is published when the collection names its patient."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig, DropConfig, License
from imaging_ingest.config.sections import PathologyConfig
from imaging_ingest.pipeline.localrun import deidentify_tree
from imaging_ingest.synth.extras import SlideText, write_svs

# verifying a slide reads it back with OpenSlide
pytestmark = pytest.mark.openslide

SECRET = bytes.fromhex("5e" * 32)
TEXT = SlideText(
    filename="S19-4711 QUARTERMAINE", date="03/02/19", time="10:11:12", user="kingsbury", barcode="S19-4711",
    scanner="SS12345", label_lines=["QUARTERMAINE THEODORE", "MRN4839201"], artist="KINGSBURY FLETCHER",
    host="RIVERBENDPATH01", datetime_tag="2019:03:02 10:11:12",
)


def _run(tmp_path: Path, pathology: PathologyConfig) -> dict[str, dict[str, str]]:
    drop = tmp_path / "drop"
    write_svs(drop / "case-0042" / "block-A.svs", 512, 384, TEXT, seed=3)
    write_svs(drop / "case-0043" / "block-B.svs", 512, 384, TEXT, seed=4)
    config = CollectionConfig(
        id="slides_only", title="Slides only", license=License.CC_BY_4_0, drop=DropConfig(url=drop.as_uri()),
        pathology=pathology,
    )
    catalog = Catalog.from_url(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        deidentify_tree(drop, tmp_path / "out", secret=SECRET, config=config, catalog=catalog)
    finally:
        catalog.dispose()
    return {r["source_path"]: r for r in csv.DictReader((tmp_path / "out" / "manifest.csv").open())}


def test_without_a_patient_rule_a_lone_slide_is_quarantined(tmp_path: Path) -> None:
    rows = _run(tmp_path, PathologyConfig(enabled=True))
    assert {r["status"] for r in rows.values()} == {"quarantined"}
    assert all("patient_id_from_path or slide_patients" in r["reason"] for r in rows.values())


@pytest.mark.parametrize(
    "pathology",
    [
        PathologyConfig(enabled=True, patient_id_from_path=r"(?P<patient_id>case-\d+)/"),
        PathologyConfig(enabled=True, slide_patients={"case-0042/block-A.svs": "P42", "block-B.svs": "P43"}),
    ],
    ids=["patient_id_from_path", "slide_patients"],
)
def test_a_named_patient_needs_no_dicom_image(pathology: PathologyConfig, tmp_path: Path) -> None:
    rows = _run(tmp_path, pathology)
    assert {r["status"] for r in rows.values()} == {"published"}, {p: r["reason"] for p, r in rows.items()}
    folders = {Path(r["output_path"]).parent.name for r in rows.values()}
    assert folders == {"SLIDES-ONLY-0001", "SLIDES-ONLY-0002"}  # one pseudonym per patient, none from a DICOM file
    for row in rows.values():
        data = (tmp_path / "out" / row["output_path"]).read_bytes()
        assert b"QUARTERMAINE" not in data and b"case-004" not in data
