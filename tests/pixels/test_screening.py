"""Screening decisions: attributes, OCR, redaction rules, scanned documents, DICOM WSI labels, curators."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest

from imaging_ingest.config.sections import PathologyConfig, PixelsConfig, RedactionRule
from imaging_ingest.inventory.scan import read_header
from imaging_ingest.screen.pixels import CuratorDecision, ScreenContext, screen_images
from imaging_ingest.synth.extras import US_TEXT_BAND

pytestmark = pytest.mark.ocr

US_RULE = RedactionRule(id="acme-us", manufacturer="ACME Ultrasound", model="SonoView", rows=480, columns=640,
                        regions=[US_TEXT_BAND])


def _find(root: Path, folder_marker: str, name: str = "1.dcm") -> Path:
    return next(p for p in sorted(root.rglob(name)) if folder_marker in p.parent.name)


def _screen(
    tmp_path: Path, sources: list[Path], pixels: PixelsConfig | None = None, pathology: PathologyConfig | None = None,
    decisions: dict[int, CuratorDecision] | None = None,
) -> tuple[pd.DataFrame, dict[int, Path], list[tuple[int, str]]]:
    rows, outputs, evidence = [], {}, []
    for file_id, src in enumerate(sources):
        header = read_header(src, src.name)
        out = tmp_path / "out" / f"{file_id}.dcm"
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, out)
        outputs[file_id] = out
        rows.append({"file_id": file_id, "kind": "dicom", "status": "ok", "reason": None, "src": str(src),
                     "deid_key": f"{file_id}.dcm", "sha256": "x", **header.values})

    def on_evidence(record: dict[str, Any], name: str, data: bytes, _type: str) -> None:
        evidence.append((int(record["file_id"]), name))
        assert data

    ctx = ScreenContext(
        pixels=pixels or PixelsConfig(),
        pathology=pathology or PathologyConfig(),
        source_of=lambda r: Path(r["src"]),
        output_of=lambda r: outputs[int(r["file_id"])],
        on_evidence=on_evidence,
        decisions=decisions or {},
    )
    return screen_images(pd.DataFrame(rows), ctx), outputs, evidence


def test_ultrasound_with_burned_in_name_is_quarantined_with_evidence_without_a_rule(extras_cache: Path, tmp_path: Path) -> None:
    us = _find(extras_cache, "_US_")
    frame, _, evidence = _screen(tmp_path, [us])
    row = frame.iloc[0]
    assert row["status"] == "quarantined"
    assert row["reason"] == "burned-in PHI: OCR matched identifying text"
    assert row["ocr_hits"] >= 3 and row["frames_decoded"] == 1
    assert evidence == [(0, "evidence.png"), (0, "evidence.json")]


def test_a_matching_redaction_rule_blanks_the_band_and_the_frame_goes_on(extras_cache: Path, tmp_path: Path) -> None:
    us = _find(extras_cache, "_US_")
    frame, outputs, evidence = _screen(tmp_path, [us], PixelsConfig(redaction_rules=[US_RULE]))
    row = frame.iloc[0]
    assert row["status"] == "ok", row["reason"]
    assert row["screen_action"] == "redacted" and row["redaction_rule"] == "acme-us"
    assert row["frames_decoded"] == 2  # the frame, and the redacted frame read again
    out = pydicom.dcmread(outputs[0])
    assert out.BurnedInAnnotation == "NO"
    x, y, w, h = US_TEXT_BAND
    assert (out.pixel_array[y : y + h, x : x + w] == 0).all()
    assert np.array_equal(out.pixel_array[h:], pydicom.dcmread(us).pixel_array[h:])
    assert row["sha256"] != "x"  # the manifest carries the new digests
    assert evidence == []


def test_a_rule_that_misses_the_text_is_caught_by_reading_again(extras_cache: Path, tmp_path: Path) -> None:
    us = _find(extras_cache, "_US_")
    wrong = US_RULE.model_copy(update={"regions": [(0, 440, 640, 40)]})
    frame, _, evidence = _screen(tmp_path, [us], PixelsConfig(redaction_rules=[wrong]))
    assert frame.iloc[0]["status"] == "quarantined"
    assert "after redaction rule acme-us" in frame.iloc[0]["reason"]
    assert (0, "evidence.png") in evidence


def test_scanned_documents_are_quarantined_unless_allowed(extras_cache: Path, tmp_path: Path) -> None:
    sc = _find(extras_cache, "SCANNED")
    frame, _, evidence = _screen(tmp_path, [sc])
    reason = frame.iloc[0]["reason"]
    assert frame.iloc[0]["status"] == "quarantined"
    assert "BurnedInAnnotation=YES" in reason and "scanned document" in reason and "OCR matched" in reason
    assert (0, "evidence.json") in evidence
    allowed, _, _ = _screen(tmp_path / "b", [sc], PixelsConfig(allow_scanned_documents=True))
    assert allowed.iloc[0]["status"] == "quarantined"  # allowed, but its text still names the patient
    assert "scanned document" not in allowed.iloc[0]["reason"]


def test_plain_ct_is_not_read_unless_the_collection_ocrs_everything(extras_cache: Path, tmp_path: Path) -> None:
    ct = _find(extras_cache, "_CT_")
    frame, _, _ = _screen(tmp_path, [ct])
    assert frame.iloc[0]["status"] == "ok" and frame.iloc[0]["frames_decoded"] == 0
    everything, _, _ = _screen(tmp_path / "b", [ct], PixelsConfig(ocr=True))
    assert everything.iloc[0]["status"] == "ok" and everything.iloc[0]["frames_decoded"] == 1
    assert everything.iloc[0]["screen_action"] == "ocr-clean"


@pytest.mark.parametrize(
    ("policy", "status", "action"),
    [("drop", "quarantined", "wsi-label"), ("quarantine", "quarantined", "wsi-label"), ("redact", "ok", "redacted")],
)
def test_dicom_wsi_label_follows_the_pathology_policy(
    extras_cache: Path, tmp_path: Path, policy: str, status: str, action: str
) -> None:
    volume, label = _find(extras_cache, "_SM_", "1.dcm"), _find(extras_cache, "_SM_", "2.dcm")
    frame, outputs, _ = _screen(tmp_path, [volume, label], pathology=PathologyConfig(dicom_wsi_label_images=policy))
    assert frame.iloc[0]["status"] == "ok"  # the VOLUME image is no label
    assert frame.iloc[1]["status"] == status and frame.iloc[1]["screen_action"] == action
    assert bool(frame.iloc[1]["policy_rejected"]) is (policy == "drop")
    if policy == "redact":
        assert not pydicom.dcmread(outputs[1]).pixel_array.any()


def test_curators_decisions_override_screening(extras_cache: Path, tmp_path: Path) -> None:
    sc, us = _find(extras_cache, "SCANNED"), _find(extras_cache, "_US_")
    decisions = {0: CuratorDecision("approved", ((0, 0, 512, 256),), "curator"), 1: CuratorDecision("rejected")}
    frame, outputs, _ = _screen(tmp_path, [sc, us], decisions=decisions)
    assert frame.iloc[0]["status"] == "ok" and frame.iloc[0]["screen_action"] == "approved-redacted"
    assert not pydicom.dcmread(outputs[0]).pixel_array.any()
    assert frame.iloc[1]["status"] == "quarantined" and frame.iloc[1]["screen_action"] == "rejected"


def test_without_tesseract_risky_images_are_quarantined(extras_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imaging_ingest.screen import pixels

    monkeypatch.setattr(pixels, "tesseract_available", lambda: False)
    frame, _, _ = _screen(tmp_path, [_find(extras_cache, "_US_")])
    assert frame.iloc[0]["status"] == "quarantined" and "OCR unavailable" in frame.iloc[0]["reason"]
