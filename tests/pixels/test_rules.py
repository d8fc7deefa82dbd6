"""Redaction rules as data: the starter set, files (YAML, CSV) relative to the collection YAML, inline rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from imaging_ingest.config import ConfigError, load_collection_config
from imaging_ingest.config.sections import RedactionRule, load_redaction_rules

BASE = """id: rules_demo
title: Rules demo
license: CC-BY-4.0
drop: {url: "file:///srv/drop/x"}
"""


def test_the_starter_set_loads_with_unique_ids() -> None:
    rules = load_redaction_rules("starter")
    assert len(rules) >= 5
    assert len({r.id for r in rules}) == len(rules)
    assert all(r.regions for r in rules)


def test_rules_match_like_ctp_signatures() -> None:
    rule = RedactionRule(id="r", manufacturer="ACME", model="SonoView", rows=480, columns=640, regions=[(0, 0, 640, 48)])
    assert rule.matches("Acme Ultrasound", "SONOVIEW 5", "US", None, 480, 640)
    assert not rule.matches("Acme Ultrasound", "SonoView 5", "US", None, 600, 800)
    assert not rule.matches("Other", "SonoView 5", "US", None, 480, 640)
    assert not rule.matches(None, "SonoView 5", "US", None, 480, 640)


def test_rule_files_are_read_relative_to_the_collection_yaml(tmp_path: Path) -> None:
    (tmp_path / "redaction").mkdir()
    (tmp_path / "redaction" / "ours.yaml").write_text(
        "rules:\n  - {id: a, model: X1, regions: [[0, 0, 10, 10]]}\n"
    )
    (tmp_path / "redaction" / "more.csv").write_text(
        "# our CSV rules\nid,manufacturer,model,modality,rows,columns,regions\nb,ACME,,US,480,640,\"0,0,640,48;600,440,40,40\"\n"
    )
    (tmp_path / "rules_demo.yaml").write_text(
        BASE + "pixels:\n  redaction_rules: [starter, redaction/ours.yaml, redaction/more.csv,"
        " {id: c, rows: 10, regions: [[1, 1, 2, 2]]}]\n"
    )
    config = load_collection_config(tmp_path / "rules_demo.yaml", environ={})
    ids = [r.id for r in config.pixels.redaction_rules]
    assert ids[-3:] == ["a", "b", "c"] and len(ids) > 3
    csv_rule = config.pixels.redaction_rules[-2]
    assert csv_rule.regions == [(0, 0, 640, 48), (600, 440, 40, 40)] and csv_rule.rows == 480


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("[missing.yaml]", "cannot read redaction rules"),
        ("[nosuchset]", "no packaged redaction rule set"),
        ("[{id: a, regions: [[0, 0, 1, 1]]}]", "matches every image"),
        ("[{id: a, rows: 1, regions: [[0, 0, 0, 1]]}]", "width, height > 0"),
        ("[{id: a, rows: 1, regions: [[0, 0, 1, 1]]}, {id: a, rows: 2, regions: [[0, 0, 1, 1]]}]", "used twice"),
    ],
)
def test_bad_rules_fail_the_config_naming_the_file(tmp_path: Path, rules: str, message: str) -> None:
    (tmp_path / "rules_demo.yaml").write_text(BASE + f"pixels:\n  redaction_rules: {rules}\n")
    with pytest.raises(ConfigError) as error:
        load_collection_config(tmp_path / "rules_demo.yaml", environ={})
    assert "rules_demo.yaml" in str(error.value) and message in str(error.value)
    assert "field 'pixels.redaction_rules" in str(error.value)


def test_a_collection_without_the_new_sections_loads_with_defaults(tmp_path: Path) -> None:
    (tmp_path / "rules_demo.yaml").write_text(BASE)
    config = load_collection_config(tmp_path / "rules_demo.yaml", environ={})
    assert config.pixels.redaction_rules == [] and not config.pixels.allow_scanned_documents
    assert config.clinical.tables == [] and not config.pathology.enabled


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("clinical: {tables: [{name: t, pattern: '*.csv', columns: {a: keep}}]}", "exactly one column with role patient_id"),
        ("clinical: {tables: [{name: t, pattern: '*.csv', columns: {a: patient_id, b: secret}}]}", "clinical.tables.0.columns.b"),
        ("pathology: {patient_id_from_path: '([^/]+)/'}", "named group"),
        ("pathology: {dicom_wsi_label_images: keep}", "pathology.dicom_wsi_label_images"),
    ],
)
def test_bad_supporting_sections_are_rejected(tmp_path: Path, section: str, message: str) -> None:
    (tmp_path / "rules_demo.yaml").write_text(BASE + section + "\n")
    with pytest.raises(ConfigError) as error:
        load_collection_config(tmp_path / "rules_demo.yaml", environ={})
    assert message in str(error.value)
