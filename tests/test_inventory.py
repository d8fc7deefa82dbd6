"""Inventory: header reads and the submission-wide rules, on generated files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pydicom

from imaging_ingest.inventory.scan import check_submission, inventory_frame, read_header


def _ct(synth_cache: Path) -> Path:
    return sorted(synth_cache.rglob("*CT*/*.dcm"))[0]


def test_header_read_of_a_ct(synth_cache: Path) -> None:
    header = read_header(_ct(synth_cache), "x.dcm")
    assert header.reason is None and header.kind == "dicom"
    assert header.values["modality"] == "CT" and header.values["rows"] > 0


def test_bad_files_get_reasons(tmp_path: Path, synth_cache: Path) -> None:
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "text.dcm").write_text("hello")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    ds = pydicom.dcmread(_ct(synth_cache))
    del ds.SOPInstanceUID
    ds.save_as(tmp_path / "nouid.dcm", enforce_file_format=False)
    ds = pydicom.dcmread(_ct(synth_cache))
    ds.SeriesInstanceUID = "1.2.abc"
    ds.save_as(tmp_path / "baduid.dcm")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(_ct(synth_cache).read_bytes()[:300])
    reasons = {p.name: read_header(p, p.name).reason for p in tmp_path.iterdir()}
    assert reasons["empty.dcm"] == "zero-byte file"
    assert reasons["text.dcm"].startswith("not a DICOM file")
    assert reasons["table.csv"] is None and read_header(tmp_path / "table.csv", "table.csv").kind == "clinical"
    assert reasons["nouid.dcm"] == "missing SOPInstanceUID"
    assert reasons["baduid.dcm"] == "invalid SeriesInstanceUID (not a valid UID)"
    assert reasons["truncated.dcm"] is not None


def test_duplicates_and_mixed_patients(tmp_path: Path, synth_cache: Path) -> None:
    series = sorted(synth_cache.rglob("*CT*/*.dcm"))[:3]
    paths = []
    for i, src in enumerate(series):
        dst = tmp_path / f"{i}.dcm"
        shutil.copy(src, dst)
        paths.append(dst)
    shutil.copy(series[0], tmp_path / "dup.dcm")  # identical duplicate
    ds = pydicom.dcmread(series[1])
    ds.ImageComments = "changed"
    ds.save_as(tmp_path / "conflict.dcm")  # same SOP UID, different bytes
    records = [
        {"file_id": i, "source_path": p.name, "sha256_source": __import__("hashlib").sha256(p.read_bytes()).hexdigest(),
         "status": "ok", "reason": None, "path": str(p)}
        for i, p in enumerate([*paths, tmp_path / "dup.dcm", tmp_path / "conflict.dcm"])
    ]
    frame = inventory_frame(records, lambda r: Path(r["path"]), ["CT"])
    reasons = dict(zip(frame["source_path"], frame["reason"], strict=True))
    assert reasons["0.dcm"] is None
    assert reasons["dup.dcm"] == "exact duplicate of file 0"
    assert "different content" in reasons["1.dcm"] and "different content" in reasons["conflict.dcm"]

    mixed = frame.copy()
    mixed.loc[mixed["source_path"] == "2.dcm", "patient_id"] = "SOMEONE-ELSE"
    mixed.loc[mixed["source_path"] == "0.dcm", "status"] = "ok"
    out = check_submission(mixed)
    assert set(out.loc[out["source_path"].isin(["0.dcm", "2.dcm"]), "reason"]) == {"series mixes 2 patients"}
    assert mixed.loc[mixed["source_path"] == "0.dcm", "reason"].isna().all()  # the caller's frame is left as it was
    assert check_submission(mixed, copy=False) is mixed  # unless the caller hands it over
    assert set(mixed.loc[mixed["source_path"].isin(["0.dcm", "2.dcm"]), "reason"]) == {"series mixes 2 patients"}


def test_unaccepted_modality_is_quarantined(synth_cache: Path) -> None:
    path = _ct(synth_cache)
    records = [{"file_id": 0, "source_path": "a.dcm", "sha256_source": "x", "status": "ok", "reason": None}]
    frame = inventory_frame(records, lambda r: path, ["MR"])
    assert frame.loc[0, "reason"] == "modality CT is not accepted by this collection"
    assert isinstance(frame, pd.DataFrame)
