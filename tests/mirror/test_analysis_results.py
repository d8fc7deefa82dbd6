"""Analysis results on published data: a SEG made on a published demo series keeps its references and cites its source."""

from __future__ import annotations

import io
import json
import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest
from catalog.conftest import SECRET
from pydicom.sr.codedict import codes

from imaging_ingest.analysis.references import references
from imaging_ingest.pipeline.ingest import Ingest

pytestmark = pytest.mark.mirror


def _segmentation(sources: list[pydicom.Dataset]) -> pydicom.Dataset:
    rows, cols = sources[0].Rows, sources[0].Columns
    mask = np.zeros((len(sources), rows, cols), dtype=bool)
    mask[:, rows // 4 : rows // 2, cols // 4 : cols // 2] = True
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion", segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="Analysis Centre",
        manufacturer_model_name="annotator", software_versions="1.0", device_serial_number="1",
    )


def test_a_seg_on_a_published_series_publishes_with_resolving_references_and_cites_the_source(archive, tmp_path) -> None:
    store, catalog = archive.store, archive.catalog
    release = store.get_json("public", "demo/versions/2/release.json")
    by_series: dict[str, list[dict]] = {}
    for entry in release["objects"]:
        if entry.get("kind", "dicom") == "dicom":
            by_series.setdefault(entry["series_uid"], []).append(entry)
    datasets = {}
    for uid, entries in sorted(by_series.items()):
        loaded = [pydicom.dcmread(io.BytesIO(store.get_bytes("public", e["key"]))) for e in entries]
        if loaded[0].Modality in ("CT", "MR") and "PixelData" in loaded[0] and loaded[0].get("NumberOfFrames", 1) == 1:
            datasets[uid] = loaded
            break
    (series_uid, sources), = datasets.items()
    published_sops = {e["sop_uid"] for e in by_series[series_uid]}

    drop = tmp_path / "drop"
    good = drop / "centre-batch-1"
    good.mkdir(parents=True)
    _segmentation(sources).save_as(good / "seg.dcm")
    unknown = [pydicom.dcmread(io.BytesIO(store.get_bytes("public", by_series[series_uid][0]["key"])))]
    unknown[0].SOPInstanceUID = hd.UID()  # an instance the archive never published
    _segmentation(unknown).save_as(good / "seg-unknown.dcm")
    (good / "READY").write_text("complete\n")

    config = archive.config.model_copy(update={
        "id": "demo_seg", "title": "Demo segmentations", "derived_from": ["demo"], "modalities": ["SEG", "SR", "RTSTRUCT"],
        "drop": archive.config.drop.model_copy(update={"url": drop.as_uri()}),
    })
    summary = Ingest(config, archive.settings, secret=SECRET, catalog=catalog, store=store).run()
    assert summary["version"] == 1, summary
    assert summary["published"] == 1 and summary["quarantined"] == 1
    (item,) = catalog.quarantine_items("demo_seg")
    assert item.source_path.endswith("seg-unknown.dcm")
    assert item.reason.startswith("analysis reference: ReferencedSeriesSequence > ReferencedInstanceSequence > "
                                  "ReferencedSOPInstanceUID (0008,1155) resolves to no published instance")

    seg_release = store.get_json("public", "demo_seg/versions/1/release.json")
    (entry,) = seg_release["objects"]
    seg = pydicom.dcmread(io.BytesIO(store.get_bytes("public", entry["key"])))
    refs = references(seg)
    instance_refs = {r.uid for r in refs if r.level == "instance"}
    assert instance_refs and instance_refs <= published_sops  # kept, not remapped a second time
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID  # the source's frame: kept
    assert seg.SOPInstanceUID not in published_sops and seg.SeriesInstanceUID != series_uid  # its own UIDs: remapped

    datacite = json.loads(store.get_bytes("public", "demo_seg/versions/1/datacite.json"))
    assert {"relatedIdentifier": "10.5072/imaging.demo.v2", "relatedIdentifierType": "DOI",
            "relationType": "IsDerivedFrom"} in datacite["relatedIdentifiers"]
    citation = store.get_bytes("public", "demo_seg/versions/1/citation.txt").decode()
    assert "Derived from: https://doi.org/10.5072/imaging.demo.v2" in citation
    shutil.rmtree(drop)


def test_a_submission_whose_references_all_resolve_nowhere_is_quarantined_whole(archive, tmp_path) -> None:
    store = archive.store
    release = store.get_json("public", "demo/versions/2/release.json")
    entry = next(e for e in release["objects"] if e.get("kind", "dicom") == "dicom")
    image = pydicom.dcmread(io.BytesIO(store.get_bytes("public", entry["key"])))
    assert "PixelData" in image and image.get("NumberOfFrames", 1) == 1  # the demo's first object is a single frame
    image.SOPInstanceUID = hd.UID()
    drop = tmp_path / "drop"
    folder = drop / "centre-batch-9"
    folder.mkdir(parents=True)
    _segmentation([image]).save_as(folder / "seg.dcm")
    (folder / "READY").write_text("complete\n")
    config = archive.config.model_copy(update={
        "id": "demo_seg_bad", "title": "Unresolved segmentations", "derived_from": ["demo"], "modalities": ["SEG"],
        "drop": archive.config.drop.model_copy(update={"url": drop.as_uri()}),
    })
    catalog = archive.catalog
    summary = Ingest(config, archive.settings, secret=SECRET, catalog=catalog, store=store).run()
    assert summary["published"] == 0 and summary["quarantined"] == 1, summary
    (item,) = catalog.quarantine_items("demo_seg_bad")
    assert item.reason.startswith("analysis reference: ")
    assert store.sizes("public", "demo_seg_bad/") == {}
