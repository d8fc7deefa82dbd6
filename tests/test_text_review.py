"""Review of distinct free-text values, once: decisions stored per collection and applied on reruns and later submissions.

The detector here is a small fake injected through the interface (``Ingest.text_detector``:
``(text, tag) -> flagged``): it flags any value containing ``STAGING`` (the synthetic
Protocol Names), so the flow is tested apart from the real detector's judgement.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient

from imaging_ingest.catalog import Catalog
from imaging_ingest.cli import main
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.deid.review import TextPolicy, TextReview, normalise, value_hash
from imaging_ingest.pipeline import text_review
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

pytestmark = pytest.mark.freetext


def flags_staging(text: str, tag: int) -> bool:
    """The fake detector: a value with STAGING in it has a suspect span."""
    return "STAGING" in text.upper()


def _ingest(config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog) -> Ingest:
    ingest = Ingest(config, settings, secret=secret, catalog=catalog)
    ingest.text_detector = flags_staging
    return ingest


@pytest.fixture
def ingest(demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog) -> Ingest:
    return _ingest(demo_config, settings, secret, catalog)


def _published_values(ingest: Ingest, store: ObjectStore, keyword: str) -> list[str]:
    """The keyword's value in every object of the collection's latest version that has the element."""
    found = []
    for instance in ingest.catalog.instances(ingest.config.id):
        if instance.published_version is None or instance.retired_version is not None:
            continue
        ds = pydicom.dcmread(io.BytesIO(store.get_bytes(instance.tier, instance.object_key)), stop_before_pixels=True)
        if keyword in ds:
            found.append(str(ds.data_element(keyword).value))
    return found


def _value(catalog: Catalog, collection: str, text: str) -> text_review.ValueRow:
    return next(r for r in text_review.values(catalog, collection, state=None) if r.text == text)


def test_engine_review_unsafe_safe_undecided_and_quarantine_mode() -> None:
    secret = b"k" * 32
    ds = pydicom.Dataset()
    ds.StudyDescription = "CT CHEST STAGING"
    policy = TextPolicy({}, "remove", flags_staging)
    review = TextReview(policy, secret)
    review.begin()
    review.apply(ds["StudyDescription"], 0x00081030, "LO")
    (seen,) = review.take()
    assert (seen.flagged, seen.action, ds.StudyDescription) == (True, "removed", "")
    assert seen.value_hash == value_hash(secret, "ct  chest\tstaging ") != value_hash(b"x" * 32, "CT CHEST STAGING")
    assert normalise("  CT\u00a0Chest ") == "ct chest"

    for decision, expected in (("safe", "CT CHEST STAGING"), ("unsafe", "")):
        ds.StudyDescription = "CT CHEST STAGING"
        review = TextReview(TextPolicy({seen.value_hash: decision}, "remove", flags_staging), secret)
        review.begin()
        review.apply(ds["StudyDescription"], 0x00081030, "LO")
        assert ds.StudyDescription == expected, decision
    ds.SeriesDescription = "AXIAL 5MM"  # not flagged, undecided: kept; decided unsafe: removed
    review = TextReview(TextPolicy({value_hash(secret, "axial 5mm"): "unsafe"}, "remove", flags_staging), secret)
    review.begin()
    review.apply(ds["SeriesDescription"], 0x0008103E, "LO")
    assert ds.SeriesDescription == ""

    ds.StudyDescription = "CT CHEST STAGING"
    review = TextReview(TextPolicy({}, "quarantine", flags_staging), secret)
    review.begin()
    review.apply(ds["StudyDescription"], 0x00081030, "LO")
    with pytest.raises(Exception, match=r"free text flagged for review in \(0008,1030\) StudyDescription") as held:
        review.take()
    assert "STAGING" not in str(held.value) and held.value.texts[0].action == "held"  # type: ignore[attr-defined]
    assert ds.StudyDescription == "CT CHEST STAGING", "the file is held back whole, nothing published"


def test_decisions_apply_on_rerun_and_to_a_later_submission_audited(
    ingest: Ingest, submission: Path, drop_root: Path, store: ObjectStore, catalog: Catalog,
    demo_config: CollectionConfig, settings: Settings, secret: bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    summary = ingest.run()
    assert summary is not None
    sub = summary["submission_id"]
    report = text_review.submission_report(catalog, sub)
    assert report and all(r.collection_id == "demo" and r.count >= 1 and r.attributes for r in report)
    staging = [r for r in report if "STAGING" in r.text]
    assert staging and all(r.flagged and r.action == "removed" and r.state == "pending" for r in staging)
    assert any(not r.flagged and r.action == "kept" for r in report)
    protocols = _published_values(ingest, store, "ProtocolName")
    assert protocols and not any("STAGING" in p for p in protocols), "flagged, undecided: removed, file published"
    assert summary["quarantined"] == 0 or "free text" not in json.dumps(summary["quarantine_reasons"])

    # a curator decides: one flagged value safe, one unflagged value unsafe
    chest = _value(catalog, "demo", "CHEST STAGING")
    kept = next(r for r in report if not r.flagged and r.attributes.get("SeriesDescription"))
    text_review.decide(catalog, chest.id, "safe", "curator-a", "a protocol name, not a person")
    text_review.decide(catalog, kept.id, "unsafe", "curator-b")
    text_review.decide(catalog, kept.id, "unsafe", "curator-b")  # the same again: no second audit row
    events = [e for e in catalog.audit_events() if e.event_type == "freetext-review"]
    assert sorted((e.agent, e.outcome) for e in events) == [("curator:curator-a", "safe"), ("curator:curator-b", "unsafe")]
    assert all(e.object_type == "freetext" and "STAGING" not in (e.detail or "") + e.object_id for e in events
               if e.outcome == "unsafe")
    assert set(text_review.load_decisions(catalog, "demo").values()) == {"safe", "unsafe"}

    # a rerun of the same submission applies them
    again = ingest.run(sub, force=True)
    assert again is not None
    assert "CHEST STAGING" in _published_values(ingest, store, "ProtocolName")
    assert kept.text not in _published_values(ingest, store, "SeriesDescription")
    report = {r.id: r for r in text_review.submission_report(catalog, sub)}
    assert (report[chest.id].state, report[chest.id].action) == ("safe", "kept")
    assert (report[kept.id].state, report[kept.id].action) == ("unsafe", "removed")

    # a later submission with the same texts: decided already, nothing to review twice
    later = drop_root / "site-a-batch-2"
    shutil.copytree(submission, later)
    second = ingest.run()
    assert second is not None and second["submission_id"] != sub
    rows = {r.id: r for r in text_review.submission_report(catalog, second["submission_id"])}
    assert rows[chest.id].state == "safe" and rows[chest.id].action == "kept"
    assert rows[kept.id].action == "removed"
    assert not [r for r in text_review.values(catalog, "demo") if r.id in (chest.id, kept.id)], "not pending again"
    # never a value in the logs
    assert "CHEST STAGING" not in caplog.text and kept.text not in caplog.text


def test_quarantine_mode_holds_the_file_until_a_curator_decides(
    demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog, submission: Path,
    store: ObjectStore,
) -> None:
    config = demo_config.model_copy(update={"free_text_flags": "quarantine"})
    ingest = _ingest(config, settings, secret, catalog)
    summary = ingest.run()
    assert summary is not None and summary["quarantined"] >= 1
    held = {r: n for r, n in summary["quarantine_reasons"].items() if r.startswith("free text flagged")}
    assert held and all("STAGING" not in r for r in held)
    assert summary["quarantine_by_rule"]["freetext_flagged"]["files"] == sum(held.values())
    chest = _value(catalog, "demo", "CHEST STAGING")
    assert chest.flagged and chest.state == "pending" and chest.action == "held"
    for row in text_review.values(catalog, "demo", flagged_only=True):
        text_review.decide(catalog, row.id, "safe", "curator-a")
    again = ingest.run(summary["submission_id"], force=True)
    assert again is not None and not any(r.startswith("free text flagged") for r in again["quarantine_reasons"])
    assert "CHEST STAGING" in _published_values(ingest, store, "ProtocolName")


def test_policy_is_plain_data_loaded_once_and_the_config_field_is_validated(
    catalog: Catalog, demo_config: CollectionConfig,
) -> None:
    from pydantic import ValidationError

    catalog.ensure_collection(demo_config)
    policy = text_review.load_policy(catalog, demo_config, flags_staging)
    assert policy.decisions == {} and policy.flags == "remove" and policy.detector is flags_staging
    assert demo_config.free_text_flags == "remove"
    with pytest.raises(ValidationError, match="free_text_flags"):
        CollectionConfig.model_validate(demo_config.model_dump() | {"free_text_flags": "ignore"})


def test_the_policy_a_worker_receives_imports_neither_pandas_nor_the_catalog_there() -> None:
    """Each batch's workers unpickle the policy with its detector: the detector's module must stay light.

    A detector defined beside the catalog code cost each worker of each batch over a second of
    imports (pandas, SQLAlchemy) before its first file.
    """
    import pickle
    import subprocess

    policy = TextPolicy(detector=text_review.default_detector())
    assert policy.detector is not None and policy.detector("Seen by Dr Quist", 0x00081030) in (True, False)
    code = (
        "import json, pickle, sys; policy = pickle.loads(sys.stdin.buffer.read()); "
        "policy.detector('Seen by Dr Quist', 0x00081030); "
        "print(json.dumps(sorted(m for m in ('pandas', 'sqlalchemy', 'imaging_ingest.catalog', "
        "'imaging_ingest.pipeline.text_review') if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(policy),
        env=os.environ | {"PYTHONPATH": str(ROOT / "include")},
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout.decode().strip().splitlines()[-1]) == []


def _seed(catalog: Catalog, demo_config: CollectionConfig) -> dict[str, int]:
    """Two values of one submission in the catalog, as the screen stage records them."""
    import pandas as pd

    catalog.ensure_collection(demo_config)
    catalog.discover("demo", "sub-00000000000000f1", "site-a", "file:///drop/site-a", "f" * 64)
    frame = pd.DataFrame(
        [
            {"file_id": 1, "tag": 0x00081030, "attribute": "StudyDescription", "value_hash": "a" * 64,
             "text": "Seen by Dr Quist", "flagged": True, "action": "removed"},
            {"file_id": 2, "tag": 0x00081030, "attribute": "StudyDescription", "value_hash": "a" * 64,
             "text": "Seen by Dr Quist", "flagged": True, "action": "removed"},
            {"file_id": 1, "tag": 0x0008103E, "attribute": "SeriesDescription", "value_hash": "b" * 64,
             "text": "AXIAL 5MM", "flagged": False, "action": "kept"},
        ]
    )
    counts = text_review.record_texts(catalog, "demo", "sub-00000000000000f1", [frame])
    assert counts == {"values": 2, "flagged": 1, "removed": 2, "held": 0, "pending": 2, "pending_flagged": 1}
    return {r.text: r.id for r in text_review.values(catalog, "demo", state=None)}


def test_cli_lists_shows_and_decides_only_for_curators(
    catalog: Catalog, demo_config: CollectionConfig, ingest_env: Settings, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = _seed(catalog, demo_config)
    assert main(["text-review", "report", "sub-00000000000000f1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {(r["text"], r["count"], r["flagged"]) for r in report} == {("Seen by Dr Quist", 2, True),
                                                                        ("AXIAL 5MM", 1, False)}
    assert main(["text-review", "list", "--collection", "demo", "--flagged", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [ids["Seen by Dr Quist"]]
    monkeypatch.setenv("IMAGING_INGEST_CURATORS", "curator-a")
    with pytest.raises(SystemExit) as refused:
        main(["text-review", "unsafe", str(ids["Seen by Dr Quist"]), "--by", "eve"])
    assert refused.value.code == 2 and "only curators" in capsys.readouterr().err
    assert main(["text-review", "unsafe", str(ids["Seen by Dr Quist"]), "--by", "curator-a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "unsafe"
    with pytest.raises(SystemExit):
        main(["text-review", "safe", "999999", "--by", "curator-a"])
    assert "no free-text value" in capsys.readouterr().err
    assert main(["text-review", "show", str(ids["AXIAL 5MM"])]) == 0
    assert "AXIAL 5MM" in capsys.readouterr().out
    assert text_review.load_decisions(catalog, "demo") == {"a" * 64: "unsafe"}


@dataclass
class User:
    """An Airflow user as the plugin sees it (curators come from IMAGING_INGEST_CURATORS here)."""

    username: str

    def get_name(self) -> str:
        return self.username


def _plugin(settings: Settings, monkeypatch: pytest.MonkeyPatch, user: Any) -> TestClient:
    from archive_ui import app as plugin

    monkeypatch.setenv("IMAGING_INGEST_CATALOG_URL", settings.catalog_url)
    monkeypatch.setattr(plugin, "_can", lambda *args, **kwargs: True)
    application = plugin.create_app()
    application.dependency_overrides[plugin.current_user] = lambda: user
    return TestClient(application)


def test_plugin_page_shows_values_to_curators_and_records_their_decisions(
    settings: Settings, catalog: Catalog, demo_config: CollectionConfig, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    ids = _seed(catalog, demo_config)
    monkeypatch.setenv("IMAGING_INGEST_CURATORS", "ann")
    viewer = _plugin(settings, monkeypatch, User("viewer"))
    assert viewer.get("/freetext").status_code == 403, "values may be PHI: curators only"
    assert viewer.post(f"/api/freetext/{ids['AXIAL 5MM']}/safe", json={}).status_code == 403
    ann = _plugin(settings, monkeypatch, User("ann"))
    page = ann.get("/freetext?collection=demo")
    assert page.status_code == 200 and "Seen by Dr Quist" in page.text and 'data-testid="freetext"' in page.text
    listed = ann.get("/api/freetext?collection=demo&flagged=true").json()
    assert [v["id"] for v in listed] == [ids["Seen by Dr Quist"]]
    decided = ann.post(f"/api/freetext/{ids['Seen by Dr Quist']}/unsafe", json={"note": "a person"})
    assert decided.status_code == 200 and (decided.json()["state"], decided.json()["decided_by"]) == ("unsafe", "ann")
    assert ann.post(f"/api/freetext/{ids['AXIAL 5MM']}/maybe", json={}).status_code == 404
    assert ann.post("/api/freetext/999999/safe", json={}).status_code == 404
    assert ann.post(f"/api/freetext/{ids['AXIAL 5MM']}/safe", content=b"x",
                    headers={"content-type": "text/plain"}).status_code == 415
    events = [e for e in catalog.audit_events() if e.event_type == "freetext-review"]
    assert [(e.agent, e.outcome) for e in events] == [("curator:ann", "unsafe")]
    assert "Quist" not in caplog.text
