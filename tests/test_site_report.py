"""Quarantine reasons name their rule and element; the run's rates by rule; the site's submission report."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.core.reasons import classify, rule_codes, rules
from imaging_ingest.intake.drops import REPORTS_DIR
from imaging_ingest.ops.metrics import REGISTRY
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.pipeline.site_report import CSV_NAME, JSON_NAME
from imaging_ingest.storage.objects import ObjectStore

#: Reason texts as the stages write them (one of each kind), with their rule and element.
REASONS = [
    ("symbolic link (never followed)", "not_regular_file", "file"),
    ("file name contains a newline", "unsafe_name", "file name"),
    ("archive member path escapes the archive (../)", "archive_unsafe", "archive member"),
    ("archive member compression ratio 900:1 is over the limit of 100:1", "archive_unsafe", "archive member"),
    ("truncated or corrupt DICOM header (InvalidDicomError)", "unreadable", "file"),
    ("missing PatientID", "invalid_header", "(0010,0020) PatientID"),
    ("no SOPInstanceUID", "invalid_header", "(0008,0018) SOPInstanceUID"),
    ("modality XA is not accepted by this collection", "modality_not_accepted", "(0008,0060) Modality"),
    ("SOPInstanceUID shared by 2 files with different content", "uid_conflict", "(0008,0018) SOPInstanceUID"),
    ("exact duplicate of file 3", "duplicate", "file"),
    ("series mixes 2 patients", "mixed_patients", "(0010,0020) PatientID"),
    ("PHI leak: a value of source (0010,0010) PatientName found in output (0008,1030) StudyDescription",
     "phi_leak", "(0008,1030) StudyDescription"),
    ("burned-in annotation declared (BurnedInAnnotation=YES)", "burned_in_pixels", "(0028,0301) BurnedInAnnotation"),
    ("burned-in text likely: Secondary Capture Image Storage", "burned_in_pixels", "(7FE0,0010) PixelData"),
    ("element (0009,1001) is 99999999 bytes, over the limit", "deid_failed", "(0009,1001)"),
    ("de-identification failed (KeyError)", "deid_failed", "file"),
    ("supporting file of type 'text' is not declared", "undeclared_supporting_file", "file"),
    ("zero-byte file", "unreadable", "file"),
    ("pixel data truncated: 10 of 500 bytes present", "unreadable", "file"),
    ("not a DICOM file (no DICM prefix) and not a supported supporting-data type", "unreadable", "file"),
    ("invalid SOPInstanceUID (not a valid UID)", "invalid_header", "(0008,0018) SOPInstanceUID"),
    ("not a regular file (device, pipe or socket)", "not_regular_file", "file"),
    ("archive has 90000 members, over the limit of 50000", "archive_unsafe", "archive member"),
    ("sequences nested deeper than 32 levels", "deid_failed", "file"),
    ("free text flagged for review in (0008,1030) StudyDescription", "freetext_flagged", "(0008,1030) StudyDescription"),
    ("something nobody has seen before", "other", "file"),
]


@pytest.mark.parametrize(("text", "rule", "element"), REASONS)
def test_every_reason_names_its_rule_and_element(text: str, rule: str, element: str) -> None:
    reason = classify(text)
    assert (reason.rule, reason.element) == (rule, element)
    assert reason.remedy and reason.as_dict()["reason"] == text


def test_every_rule_has_a_remedy_and_a_label_safe_code() -> None:
    assert len(rule_codes()) == len(set(rule_codes())) and rule_codes()[-1] == "other"
    for info in rules():
        assert info.rule.isidentifier() and info.rule.islower(), info.rule
        assert len(info.remedy) > 20 and info.element


@pytest.fixture
def ingest(demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog) -> Ingest:
    return Ingest(demo_config, settings, secret=secret, catalog=catalog)


def _planted(submission: Path) -> None:
    """A broken file and a non-DICOM file beside the synthetic series: two held back."""
    first = next(iter(sorted(submission.rglob("*.dcm"))))
    (first.parent / "broken.dcm").write_bytes(first.read_bytes()[:300])
    (submission / "notes.txt").write_text("hello\n")
    (submission / "=cmd.dcm").write_bytes(b"")


def test_run_summary_manifest_and_metric_give_the_rate_by_rule_and_the_site_gets_its_report(
    ingest: Ingest, submission: Path, drop_root: Path, store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    _planted(submission)
    caplog.set_level(logging.INFO)
    summary = ingest.run()
    assert summary is not None and summary["quarantined"] >= 2
    by_rule = summary["quarantine_by_rule"]
    assert sum(v["files"] for v in by_rule.values()) == summary["quarantined"]
    for rule, value in by_rule.items():
        assert rule in rule_codes()
        assert value["rate"] == pytest.approx(value["files"] / summary["files_in"], abs=1e-6)
        gauge = REGISTRY.get_sample_value("imaging_ingest_quarantine_rate", {"collection": "demo", "reason": rule})
        assert gauge == pytest.approx(value["rate"], abs=1e-6)
    labels = {s.labels["reason"] for m in REGISTRY.collect() if m.name == "imaging_ingest_quarantine_rate"
              for s in m.samples if s.labels.get("collection") == "demo"}
    assert labels == set(rule_codes()), "every rule is set, nothing else: low cardinality"
    assert summary["site_report"] == {"written": True, "files": summary["files_in"], "held_back": summary["quarantined"]}

    manifest = ingest.manifests(summary["submission_id"]).read("published")
    held = manifest[manifest["status"] == "quarantined"]
    assert held["reason_rule"].notna().all() and held["reason_element"].notna().all()
    assert manifest.loc[manifest["status"] == "ok", "reason_rule"].isna().all()
    item = ingest.catalog.quarantine_items("demo")[0]
    reason = store.get_json("quarantine", f"demo/{item.submission_id}/{item.file_id:06d}/reason.json")
    assert {"rule", "element", "remedy", "reason"} <= set(reason)

    folder = drop_root / REPORTS_DIR / submission.name
    report = json.loads((folder / JSON_NAME).read_text())
    assert (report["received"], report["published"], report["held_back"]) == (
        summary["files_in"], summary["published"], summary["quarantined"])
    paths = {f["path"] for f in report["files"]}
    assert "notes.txt" in paths and any(p.endswith("broken.dcm") for p in paths)
    broken = next(f for f in report["files"] if f["path"].endswith("broken.dcm"))
    assert broken["status"] == "held back" and broken["rule"] in ("unreadable", "invalid_header") and broken["remedy"]
    assert "resubmission" in broken["review"]
    assert set(report["held_back_by_rule"]) == set(by_rule)
    rows = list(csv.DictReader(io.StringIO((folder / CSV_NAME).read_text())))
    assert "'=cmd.dcm" in {r["path"] for r in rows}, "a name a spreadsheet would evaluate is neutralised"
    assert len(rows) == summary["files_in"] and {r["status"] for r in rows} == {"published", "held back"}
    # the report folder is the archive's output: never discovered as a submission
    assert all(r["submission_id"] != "reports" for r in ingest.discover())
    assert REPORTS_DIR not in ingest.drop.submission_names()
    # the site's paths are in its report only: never in a log, never in the summary (an XCom)
    assert "broken.dcm" not in caplog.text and "notes.txt" not in caplog.text
    assert submission.name not in json.dumps(summary)


def test_site_report_on_an_s3_drop(
    settings: Settings, catalog: Catalog, store: ObjectStore, synth_cache: Path, demo_config: CollectionConfig,
    secret: bytes, tmp_path: Path,
) -> None:
    local = tmp_path / "sub"
    shutil.copytree(synth_cache, local)
    (local / "notes.txt").write_text("hello\n")
    for path in sorted(local.rglob("*")):
        if path.is_file():
            store.put_file("staging", f"drop/site-s3/{path.relative_to(local)}", path)
    store.put_bytes("staging", "drop/site-s3/READY", b"")
    url = f"s3://{settings.bucket('staging')}/drop"
    config = demo_config.model_copy(update={"drop": demo_config.drop.model_copy(update={"url": url})})
    ingest = Ingest(config, settings, secret=secret, catalog=catalog)
    summary = ingest.run()
    assert summary is not None and summary["site_report"]["written"]
    report = json.loads(store.get_bytes("staging", f"drop/{REPORTS_DIR}/site-s3/{JSON_NAME}"))
    assert report["submission"] == "site-s3" and report["held_back"] == summary["quarantined"] >= 1
    notes = next(f for f in report["files"] if f["path"] == "notes.txt")
    assert notes["status"] == "held back" and notes["rule"] != "other" and notes["remedy"]
    assert store.get_bytes("staging", f"drop/{REPORTS_DIR}/site-s3/{CSV_NAME}").startswith(b"path,status,rule")
    assert [s.name for s in ingest.drop.submissions()] == ["site-s3"], "reports/ is not a submission"
    assert ingest.run() is None, "nothing new: the report did not make a new submission"
