"""Curator previews of quarantined images, and decisions on a whole series.

The thumbnail is the first frame, windowed and downsampled, with screening's evidence
drawn where it says (OCR hits red, other words yellow, redaction regions blue); the page
shows the path in the submission, series and pseudonym, and the identifying attributes
before and after de-identification. A series decision is one audited ``quarantine.decide``
per item, for curators only. Nothing of it goes to the public tier or to a log.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.curation import previews, quarantine
from imaging_ingest.curation.curators import NotCurator
from imaging_ingest.storage.objects import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))

pytestmark = pytest.mark.security

COLLECTION, SUBMISSION = "demo", "sub-00000000000000p1"
SERIES_A, SERIES_B = "1.2.826.0.1.3680043.8.498.1001", "1.2.826.0.1.3680043.8.498.2002"
DEID_SERIES_A = "2.25.111"
NAME, BIRTH = "DOE^JOHN", "19700101"
HIT = (120, 40, 80, 20)  # (x, y, w, h) in the full 400 x 200 frame
WORD = (240, 120, 60, 20)
REGION = (0, 0, 400, 24)


@dataclass
class Role:
    name: str


@dataclass
class FabUser:
    username: str
    roles: list[Role] = field(default_factory=list)

    def get_name(self) -> str:
        return self.username


def _dicom(series: str, sop: str, *, name: str, birth: str | None, pixels: np.ndarray) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.9", series
    ds.PatientName, ds.PatientID, ds.Modality = name, "MRN-0042" if birth else "PSEUDO-1", "OT"
    if birth:
        ds.PatientBirthDate = birth
    ds.AccessionNumber = "ACC-77" if birth else ""  # the output keeps it empty (PS3.15 Z)
    ds.WindowCenter, ds.WindowWidth = 1000, 2000
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _grey_frame() -> np.ndarray:
    return np.full((200, 400), 1000, dtype=np.uint16)  # the window's centre: mid grey


@dataclass
class Queue:
    ids: dict[int, int]  # file id -> item id
    store: ObjectStore


@pytest.fixture
def queue(catalog: Catalog, store: ObjectStore, demo_config: CollectionConfig) -> Queue:
    """Four quarantined files: 1-3 in series A (3 stopped at inventory), 4 in series B; 1 has OCR evidence."""
    catalog.ensure_collection(demo_config)
    catalog.discover(COLLECTION, SUBMISSION, "site-a", "file:///drop/site-a", "f" * 64)
    rows = []
    for file_id, series in ((1, SERIES_A), (2, SERIES_A), (3, SERIES_A), (4, SERIES_B)):
        sop = f"1.2.826.0.1.3680043.8.498.77.{file_id}"
        original = f"{COLLECTION}/{SUBMISSION}/{file_id:06d}/original"
        store.put_bytes(
            "quarantine", original, _dicom(series, sop, name=NAME, birth=BIRTH, pixels=_grey_frame())
        )
        deid_key = f"2.25.9/{DEID_SERIES_A if series == SERIES_A else '2.25.222'}/2.25.{file_id}.dcm"
        if file_id != 3:
            out = _dicom(DEID_SERIES_A, f"2.25.{file_id}", name="PSEUDO-1", birth=None, pixels=_grey_frame())
            store.put_bytes("staging", f"{COLLECTION}/{SUBMISSION}/deid/{deid_key}", out)
        rows.append(
            {
                "file_id": file_id,
                "series_uid": series,
                "pseudo_patient_id": "PSEUDO-1",
                "modality": "OT",
                "deid_key": deid_key,
                "deid_series_uid": DEID_SERIES_A if series == SERIES_A else "2.25.222",
            }
        )
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer, index=False)
    store.put_bytes("staging", f"{COLLECTION}/{SUBMISSION}/manifests/screened.parquet", buffer.getvalue())
    evidence = {
        "words": [_word("JOHN", HIT, "(0010,0010) PatientName"), _word("CHEST", WORD, None)],
        "hits": [_word("JOHN", HIT, "(0010,0010) PatientName")],
        "redaction_rule": "band",
    }
    keys = quarantine.evidence_keys(COLLECTION, SUBMISSION, 1)
    store.put_bytes("quarantine", keys["evidence.json"], json.dumps(evidence).encode(), "application/json")
    burned = "burned-in PHI: BurnedInAnnotation=YES, OCR matched identifying text"
    catalog.add_quarantine(
        COLLECTION,
        SUBMISSION,
        [
            (1, "DOE_JOHN/sc/1.dcm", "screen", burned, f"{COLLECTION}/{SUBMISSION}/000001/original"),
            (2, "DOE_JOHN/sc/2.dcm", "screen", burned, f"{COLLECTION}/{SUBMISSION}/000002/original"),
            (
                3,
                "DOE_JOHN/sc/3.dcm",
                "inventory",
                "missing PatientID",
                f"{COLLECTION}/{SUBMISSION}/000003/original",
            ),
            (4, "DOE_JOHN/us/4.dcm", "screen", burned, f"{COLLECTION}/{SUBMISSION}/000004/original"),
        ],
    )
    return Queue({i.file_id: i.id for i in quarantine.pending(catalog, COLLECTION)}, store)


def _word(text: str, box: tuple[int, int, int, int], match: str | None) -> dict[str, Any]:
    x, y, w, h = box
    return {"text": text, "confidence": 91.0, "left": x, "top": y, "width": w, "height": h, "match": match}


# -- rendering -----------------------------------------------------------------------------------


def test_window_frame_applies_the_voi_window_and_inverts_monochrome1() -> None:
    header = {"WindowCenter": 100, "WindowWidth": 200, "PhotometricInterpretation": "MONOCHROME2"}
    out = previews.window_frame(np.array([[0, 100, 200, 4000]], dtype=np.uint16), header)
    assert out.dtype == np.uint8 and out[0, 0] == 0 and 126 <= out[0, 1] <= 129 and out[0, 2] == 255
    assert out[0, 3] == 255  # clipped, not wrapped
    inverted = previews.window_frame(
        np.array([[0, 200]], dtype=np.uint16), header | {"PhotometricInterpretation": "MONOCHROME1"}
    )
    assert list(inverted[0]) == [255, 0]
    no_window = previews.window_frame(np.linspace(0, 5000, 100, dtype=np.float32).reshape(10, 10), {})
    assert no_window.min() == 0 and no_window.max() == 255


def test_thumbnail_draws_hits_red_words_yellow_and_regions_blue_where_the_evidence_says() -> None:
    frame = np.full((200, 400), 128, dtype=np.uint8)
    image = previews.render_thumbnail(frame, words=[HIT, WORD], hits=[HIT], regions=[REGION], max_side=200)
    assert image.size == (200, 100)  # downsampled by 2: boxes scale with it
    px = image.load()
    x, y, w, h = (v // 2 for v in HIT)
    assert px[x, y + h // 2] == previews.HIT_COLOUR  # left edge of the hit
    assert px[x + w - 1, y + h // 2] == previews.HIT_COLOUR  # right edge
    assert px[x + w // 2, y + h // 2] == (128, 128, 128)  # the inside is the image
    wx, wy, ww, wh = (v // 2 for v in WORD)
    assert px[wx, wy + wh // 2] == previews.WORD_COLOUR  # a word that matched nothing
    assert px[100, 0] == previews.REGION_COLOUR and px[199, 5] == previews.REGION_COLOUR
    assert px[100, 50] == (128, 128, 128)  # away from every box
    assert previews.render_thumbnail(frame, max_side=4000).size == (400, 200)  # never enlarged


def test_item_thumbnail_reads_the_tiers_and_draws_the_evidence_and_the_rule(
    queue: Queue, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    png = previews.item_thumbnail(
        catalog, queue.store, queue.ids[1], rule_regions={"band": [REGION]}, max_side=200
    )
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (200, 100)
    px = image.convert("RGB").load()
    x, y, w, h = (v // 2 for v in HIT)
    assert px[x, y + h // 2] == previews.HIT_COLOUR and px[100, 0] == previews.REGION_COLOUR
    grey = px[100, 60]
    assert grey[0] == grey[1] == grey[2] and 120 <= grey[0] <= 135  # windowed: the centre is mid grey
    # file 3 has no de-identified output: its original is shown, without boxes
    plain = Image.open(io.BytesIO(previews.item_thumbnail(catalog, queue.store, queue.ids[3]))).convert("RGB")
    assert set(plain.getdata()) == {grey}
    assert list(queue.store.list("public")) == []  # never written to a public tier
    assert not any(
        v in record.getMessage() for record in caplog.records for v in (NAME, "DOE", BIRTH, "JOHN")
    )


def test_a_page_of_thumbnails_reads_the_manifest_once(
    queue: Queue, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    get_bytes = queue.store.get_bytes
    monkeypatch.setattr(queue.store, "get_bytes", lambda tier, key: reads.append(key) or get_bytes(tier, key))
    for file_id in (1, 2, 4):
        previews.item_thumbnail(catalog, queue.store, queue.ids[file_id])
    assert len([k for k in reads if k.endswith("/manifests/screened.parquet")]) == 1


def test_item_facts_name_the_path_series_pseudonym_rule_and_element(queue: Queue, catalog: Catalog) -> None:
    facts = previews.item_facts(catalog, queue.store, [queue.ids[1], queue.ids[3]])
    first = facts[queue.ids[1]]
    assert (first.source_path, first.series_uid, first.deid_series_uid, first.pseudonym) == (
        "DOE_JOHN/sc/1.dcm",
        SERIES_A,
        DEID_SERIES_A,
        "PSEUDO-1",
    )
    assert (first.reason.rule, first.reason.element) == ("burned_in_pixels", "(0028,0301) BurnedInAnnotation")
    assert facts[queue.ids[3]].reason.rule == "invalid_header"
    evidence = previews.item_evidence(queue.store, first)
    assert evidence == {
        "words": 2,
        "hits": [{"match": "(0010,0010) PatientName", "box": list(HIT)}],
        "redaction_rule": "band",
    }  # what matched and where, never the text read
    assert "JOHN" not in json.dumps(evidence)


def test_attribute_table_shows_identifying_values_before_and_after(queue: Queue, catalog: Catalog) -> None:
    rows = {r.keyword: r for r in previews.item_attributes(catalog, queue.store, queue.ids[1])}
    assert (rows["PatientName"].before, rows["PatientName"].after, rows["PatientName"].change) == (
        NAME,
        "PSEUDO-1",
        "replaced",
    )
    assert (rows["PatientBirthDate"].before, rows["PatientBirthDate"].after) == (BIRTH, None)
    assert rows["PatientBirthDate"].change == "removed" and rows["PatientBirthDate"].tag == "(0010,0030)"
    assert rows["SOPInstanceUID"].change == "replaced"
    assert (rows["AccessionNumber"].before, rows["AccessionNumber"].after) == ("ACC-77", "")
    assert rows["AccessionNumber"].change == "emptied"
    assert "Rows" not in rows and "WindowCenter" not in rows  # not identifying (not in PS3.15 Table E.1-1)
    no_output = {r.keyword: r for r in previews.item_attributes(catalog, queue.store, queue.ids[3])}
    assert no_output["PatientName"].after is None and no_output["PatientName"].change == "removed"


# -- series decisions ------------------------------------------------------------------------------


def test_series_members_are_the_pending_items_of_the_same_source_series(
    queue: Queue, catalog: Catalog
) -> None:
    a = [queue.ids[1], queue.ids[2], queue.ids[3]]
    assert previews.series_members(catalog, queue.store, queue.ids[2]) == a
    assert previews.series_members(catalog, queue.store, queue.ids[4]) == [queue.ids[4]]


def test_series_rejection_decides_every_item_of_the_series_each_audited(
    queue: Queue, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGING_INGEST_CURATORS", "ann")
    result = previews.decide_series(
        catalog, queue.store, queue.ids[1], "rejected", FabUser("ann"), "names burned in"
    )
    assert result.curator == "ann" and [i.state for i in result.items] == ["rejected"] * 3
    assert [i.id for i in quarantine.pending(catalog, COLLECTION)] == [queue.ids[4]]  # the other series waits
    events = [e for e in catalog.audit_events() if e.event_type.startswith("quarantine")]
    reviews = [e for e in events if e.event_type == "quarantine-review"]
    assert len(reviews) == 3 and {(e.agent, e.outcome, e.detail) for e in reviews} == {
        ("curator:ann", "rejected", "names burned in")
    }
    (series,) = [e for e in events if e.event_type == "quarantine-series-review"]
    assert (series.agent, series.outcome, series.object_type) == ("curator:ann", "rejected", "series")
    assert series.object_id == f"quarantine/{COLLECTION}/{SUBMISSION}/series/{DEID_SERIES_A}"
    assert SERIES_A not in series.object_id + (
        series.detail or ""
    )  # the source UID stays out of the audit trail


def test_series_decisions_are_refused_for_non_curators(
    queue: Queue, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGING_INGEST_CURATORS", raising=False)
    for user in (FabUser("op", [Role("Op")]), FabUser("root", [Role("Admin")]), "someone"):
        with pytest.raises(NotCurator):
            previews.decide_series(catalog, queue.store, queue.ids[4], "rejected", user)
    assert len(quarantine.pending(catalog, COLLECTION)) == 4
    assert [e for e in catalog.audit_events() if e.event_type.startswith("quarantine")] == []
    curator = FabUser("cat", [Role("Curator")])
    assert (
        previews.decide_series(catalog, queue.store, queue.ids[4], "approved", curator).items[0].state
        == "approved"
    )


def test_series_approval_is_all_or_nothing_and_follows_the_two_person_rule(
    queue: Queue, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGING_INGEST_CURATORS", "ann,bob")
    with pytest.raises(quarantine.QuarantineDecisionError, match="cannot be approved"):
        previews.decide_series(
            catalog, queue.store, queue.ids[1], "approved", "ann"
        )  # file 3 stopped at inventory
    assert len(quarantine.pending(catalog, COLLECTION)) == 4
    assert [e for e in catalog.audit_events() if e.event_type.startswith("quarantine")] == []
    quarantine.reject(catalog, queue.ids[3], "bob")
    first = previews.decide_series(
        catalog, queue.store, queue.ids[1], "approved", "ann", approvals_required=2
    )
    assert first.still_pending == 2  # one of two approvals, for each item
    second = previews.decide_series(
        catalog, queue.store, queue.ids[2], "approved", "bob", approvals_required=2
    )
    assert second.still_pending == 0 and {i.decided_by for i in second.items} == {"bob"}
    approvals = [e for e in catalog.audit_events() if e.event_type == "quarantine-approval"]
    assert sorted((e.agent, e.outcome) for e in approvals) == [
        ("curator:ann", "1/2"),
        ("curator:ann", "1/2"),
        ("curator:bob", "2/2"),
        ("curator:bob", "2/2"),
    ]


# -- the plugin --------------------------------------------------------------------------------------


def _plugin(monkeypatch: pytest.MonkeyPatch, user: Any) -> TestClient:
    from archive_ui import app as plugin
    from archive_ui import overview

    monkeypatch.setattr(
        plugin, "_can", lambda *args, **kwargs: True
    )  # Airflow may read the DAG: not the question
    monkeypatch.setattr(overview, "_last_runs", lambda dag_ids: {})  # no Airflow metadata database here
    application = plugin.create_app()
    application.dependency_overrides[plugin.current_user] = lambda: user
    return TestClient(application)


def test_plugin_serves_previews_to_curators_only_and_never_cached(
    ingest_env: Settings,
    demo_collections: Path,
    queue: Queue,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMAGING_INGEST_CURATORS", "ann")
    ann, viewer = _plugin(monkeypatch, FabUser("ann")), _plugin(monkeypatch, FabUser("vic", [Role("Viewer")]))
    item = queue.ids[1]
    thumb = ann.get(f"/api/quarantine/{item}/thumbnail.png", params={"size": 128})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert thumb.headers["cache-control"] == "no-store"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 128
    assert viewer.get(f"/api/quarantine/{item}/thumbnail.png").status_code == 403
    assert ann.get("/api/quarantine/987654/thumbnail.png").status_code == 404

    page = ann.get("/quarantine", params={"collection": COLLECTION})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert f'src="api/quarantine/{item}/thumbnail.png' in page.text and "DOE_JOHN/sc/1.dcm" in page.text
    assert "PSEUDO-1" in page.text and DEID_SERIES_A in page.text and "burned_in_pixels" in page.text
    shown = viewer.get("/quarantine", params={"collection": COLLECTION})
    assert (
        "thumbnail.png" not in shown.text
        and "DOE_JOHN" not in shown.text
        and "burned_in_pixels" in shown.text
    )

    preview = ann.get("/preview", params={"item": item})
    assert preview.status_code == 200 and preview.headers["cache-control"] == "no-store"
    assert NAME in preview.text and "PSEUDO-1" in preview.text and "(0010,0030)" in preview.text
    assert viewer.get("/preview", params={"item": item}).status_code == 403
    data = ann.get(f"/api/quarantine/{item}/preview").json()
    assert data["source_path"] == "DOE_JOHN/sc/1.dcm" and data["rule"] == "burned_in_pixels"
    assert {a["keyword"] for a in data["attributes"]} >= {"PatientName", "PatientID", "PatientBirthDate"}
    assert list(queue.store.list("public")) == []


def test_plugin_series_decision_for_curators_only(
    ingest_env: Settings,
    demo_collections: Path,
    queue: Queue,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMAGING_INGEST_CURATORS", "ann")
    item = queue.ids[2]
    denied = _plugin(monkeypatch, FabUser("op", [Role("Op")])).post(
        f"/api/quarantine/{item}/series/reject", json={"note": "x"}
    )
    assert denied.status_code == 403 and len(quarantine.pending(catalog, COLLECTION)) == 4
    ann = _plugin(monkeypatch, FabUser("ann"))
    assert ann.post(f"/api/quarantine/{item}/series/reject", data={"note": "x"}).status_code == 415
    refused = ann.post(f"/api/quarantine/{item}/series/approve", json={})
    assert refused.status_code == 409 and "cannot be approved" in refused.json()["detail"]
    done = ann.post(f"/api/quarantine/{item}/series/reject", json={"note": "text in the pixels"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["decision"], body["decided_by"], body["still_pending"]) == ("rejected", "ann", 0)
    assert sorted(i["id"] for i in body["items"]) == [queue.ids[1], queue.ids[2], queue.ids[3]]
    assert [i.id for i in quarantine.pending(catalog, COLLECTION)] == [queue.ids[4]]
