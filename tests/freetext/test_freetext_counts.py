"""What the free-text detector removes, counted per attribute: in ``imaging-ingest deidentify``'s
manifest.csv and JSON summary, and in the de-identify stage's report (``StageResult.extra``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.cli import main
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.deid.batch import freetext_counts
from imaging_ingest.deid.freetext.element import parse_counts
from imaging_ingest.pipeline.ingest import Ingest

from .test_freetext_e2e import SECRET_WORDS, _run

pytestmark = pytest.mark.freetext

#: PLANTED's spans: [NAME] [ADDRESS] [LOCATION]; [INSTITUTION]; [NAME]; [NAME]
EXPECTED = {"AdditionalPatientHistory": 3, "ImageComments": 1, "PatientComments": 1, "StudyDescription": 1}


def test_the_manifest_counts_removals_per_attribute(
    tmp_path: Path, secret: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (row,) = _run(tmp_path, secret, monkeypatch)
    assert row["status"] == "published", row["reason"]
    assert parse_counts(row["freetext_removed"]) == EXPECTED
    assert row["freetext_removed"] == "AdditionalPatientHistory:3,ImageComments:1,PatientComments:1,StudyDescription:1"
    assert row["freetext_flagged"] == ""
    capsys.readouterr()
    key = tmp_path / "secret.key"
    dst = tmp_path / "dst-json"
    assert main(["deidentify", str(tmp_path / "src"), str(dst), "--secret-file", str(key), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["freetext_removed"] == EXPECTED and summary["freetext_flagged"] == {}
    text = (dst / "manifest.csv").read_text() + json.dumps(summary)
    assert not [w for w in SECRET_WORDS if w.lower() in text.lower()]  # counts, never values


def test_batch_totals_sum_the_rows_and_skip_rows_without_counts() -> None:
    frame = pd.DataFrame(
        {
            "n_freetext_removed": ["StudyDescription:2,ImageComments:1", None, "StudyDescription:1", ""],
            "n_freetext_flagged": ["", None, "PatientComments:1", "PatientComments:2"],
        }
    )
    assert freetext_counts(frame) == {
        "freetext_removed": {"ImageComments": 1, "StudyDescription": 3},
        "freetext_flagged": {"PatientComments": 3},
    }
    assert freetext_counts(pd.DataFrame({"status": ["quarantined"]})) == {"freetext_removed": {}, "freetext_flagged": {}}


def test_the_deidentify_stage_reports_the_batch_counts(
    demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog, submission: Path
) -> None:
    ingest = Ingest(demo_config, settings, secret=secret, catalog=catalog)
    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    ingest.inventory(sub)
    results = [ingest.deidentify(sub, key) for key in ingest.plan(sub)]
    removed: dict[str, int] = {}
    for result in results:
        assert set(result.extra) == {"freetext_removed", "freetext_flagged", "timings"}  # timings: the uploads'
        json.dumps(result.as_dict())  # the stage's XCom
        if result.manifest:
            frame = ingest.manifests(sub).read_key(result.manifest)
            assert {k: v for k, v in result.extra.items() if k != "timings"} == freetext_counts(frame)
        for attribute, n in result.extra["freetext_removed"].items():
            removed[attribute] = removed.get(attribute, 0) + n
    assert removed and all(n > 0 for n in removed.values())
