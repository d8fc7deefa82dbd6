"""Hostile and broken input: each case quarantined with its reason while the rest publishes.

One submission holds every case (``hostile.py``) next to good files. It goes through the
pipeline (``Ingest.run``), through ``imaging-ingest deidentify``, and (marked e2e) through
the collection's DAG; every case is asserted on each path: the reason, that the good files
published, and that every input ended published or quarantined.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from imaging_ingest.catalog import Catalog
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore

from .conftest import SECRET, intake_config, make_settings
from .hostile import TEST_LIMITS, Case, build_hostile_submission

CASE_NAMES = [
    "zero_byte",
    "truncated_dicom",
    "non_dicom",
    "missing_sop_uid",
    "invalid_uid",
    "duplicate_sop_uid",
    "series_mixes_patients",
    "huge_element_value",
    "deeply_nested_sequences",
    "name_newline",
    "name_control",
    "name_invalid_utf8",
    "symlink",
    "fifo",
    "archive_parent_path",
    "archive_absolute_path",
    "archive_symlink_outside",
    "zip_bomb_ratio",
    "archive_device_file",
    "tar_symlink_outside",
    "archive_too_many_members",
    "archive_too_large",
]


@dataclass
class Outcome:
    """Where each source path ended: status and reason, from one run."""

    rows: dict[str, dict[str, Any]]
    cases: dict[str, Case]
    good: list[str]
    files_in: int
    published: int
    quarantined: int


@pytest.fixture(scope="module")
def hostile_drop(tmp_path_factory: pytest.TempPathFactory, synth_cache: Path) -> tuple[Path, dict[str, Case], list[str]]:
    drop = tmp_path_factory.mktemp("hostile-drop")
    cases, good = build_hostile_submission(drop / "site-x", synth_cache)
    (drop / "site-x" / "READY").write_text("complete\n")
    return drop, cases, good


@pytest.fixture(scope="module")
def pipeline(
    hostile_drop: tuple[Path, dict[str, Case], list[str]], tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> Iterator[tuple[Outcome, Ingest]]:
    drop, cases, good = hostile_drop
    settings = make_settings(tmp_path_factory.mktemp("hostile-home"), s3_endpoint)
    catalog = Catalog.from_url(settings.catalog_url)
    ingest = Ingest(intake_config(drop.as_uri(), archives=TEST_LIMITS), settings, secret=SECRET, catalog=catalog)
    summary = ingest.run()
    assert summary is not None
    frame = ingest.manifests(summary["submission_id"]).read("published")
    rows = {r["source_path"]: {"status": "published" if r["status"] == "ok" else r["status"], "reason": r["reason"]}
            for r in frame.to_dict("records")}
    yield Outcome(rows, cases, good, summary["files_in"], summary["published"], summary["quarantined"]), ingest
    catalog.dispose()


@pytest.fixture(scope="module")
def cli(hostile_drop: tuple[Path, dict[str, Case], list[str]], tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    from imaging_ingest.cli import main

    drop, cases, good = hostile_drop
    work = tmp_path_factory.mktemp("hostile-cli")
    (work / "secret").write_bytes(SECRET)
    config = work / "intake.yaml"
    config.write_text(yaml.safe_dump(json.loads(intake_config(drop.as_uri(), archives=TEST_LIMITS).model_dump_json())))
    code = main([
        "deidentify", str(drop / "site-x"), str(work / "out"), "--secret-file", str(work / "secret"),
        "--config", str(config), "--catalog", f"sqlite:///{work / 'catalog.sqlite'}", "--json",
    ])
    assert code == 0
    with open(work / "out" / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = {r["source_path"]: r for r in csv.DictReader(fh)}
    published = sum(r["status"] == "published" for r in rows.values())
    return Outcome(rows, cases, good, len(rows), published, len(rows) - published)


def _assert_case(outcome: Outcome, name: str) -> None:
    case = outcome.cases[name]
    for path in case.paths:
        assert path in outcome.rows, f"{path!r} is missing from the manifest"
        row = outcome.rows[path]
        assert row["status"] == "quarantined", (path, row)
        assert case.reason in row["reason"], (path, row["reason"])
    assert [g for g in outcome.good if outcome.rows.get(g, {}).get("status") != "published"] == []
    assert outcome.published + outcome.quarantined == outcome.files_in == len(outcome.rows)
    expected_quarantined = {p for c in outcome.cases.values() for p in c.paths}
    assert {p for p, r in outcome.rows.items() if r["status"] == "quarantined"} == expected_quarantined


@pytest.mark.parametrize("name", CASE_NAMES)
def test_pipeline_quarantines_with_reason(pipeline: tuple[Outcome, Ingest], name: str) -> None:
    _assert_case(pipeline[0], name)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_deidentify_command_quarantines_with_reason(cli: Outcome, name: str) -> None:
    _assert_case(cli, name)


def test_every_case_is_covered(hostile_drop: tuple[Path, dict[str, Case], list[str]]) -> None:
    assert sorted(hostile_drop[1]) == sorted(CASE_NAMES)


def test_quarantine_tier_keeps_what_was_read_with_its_reason(pipeline: tuple[Outcome, Ingest]) -> None:
    outcome, ingest = pipeline
    store = ingest.store
    items = ingest.catalog.quarantine_items("intake")
    assert len(items) == outcome.quarantined
    by_path = {i.source_path: i for i in items}
    for name in ("name_newline", "truncated_dicom", "huge_element_value", "archive_too_large"):
        item = by_path[outcome.cases[name].paths[0]]
        assert item.object_key is not None, name  # the bytes were read, so a curator can review them
        assert store.head("quarantine", item.object_key) is not None
        reason = store.get_json("quarantine", item.object_key.removesuffix("original") + "reason.json")
        assert reason["reason"] == item.reason
    for name in ("symlink", "fifo", "archive_parent_path", "zip_bomb_ratio"):
        assert by_path[outcome.cases[name].paths[0]].object_key is None, name  # never opened or expanded


def test_archives_are_kept_in_raw(pipeline: tuple[Outcome, Ingest]) -> None:
    _, ingest = pipeline
    sub = ingest.catalog.submissions("intake")[0].id
    staged = ingest.manifests(sub).read("staged")
    members = staged[staged["source_path"].str.startswith(("upload.zip/", "bundle.tar/"))]
    assert len(members) > 0 and members["archive"].notna().all()
    for key in set(members["archive"]):
        assert ingest.store.head("raw", key) is not None


def test_published_release_lists_only_good_files(pipeline: tuple[Outcome, Ingest]) -> None:
    outcome, ingest = pipeline
    version = ingest.catalog.latest_version("intake")
    release = ingest.store.get_json("public", version.release_key)
    assert release["object_count"] == outcome.published == len(outcome.good)
    for obj in release["objects"]:
        assert ingest.store.head("public", obj["key"]).sha256 == obj["sha256"]


@pytest.mark.e2e
def test_hostile_submission_through_the_dag(
    hostile_drop: tuple[Path, dict[str, Case], list[str]],
    tmp_path: Path,
    s3_endpoint: str,
    airflow_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imaging_dags.local import run_dag

    drop, cases, good = hostile_drop
    settings = make_settings(tmp_path / "home", s3_endpoint)
    collections = tmp_path / "collections"
    collections.mkdir()
    config = json.loads(intake_config(drop.as_uri(), archives=TEST_LIMITS).model_dump_json())
    (collections / "intake.yaml").write_text(yaml.safe_dump(config))
    for name, value in {
        "IMAGING_INGEST_COLLECTIONS": str(collections),
        "IMAGING_INGEST_HOME": str(settings.home),
        "IMAGING_INGEST_CATALOG_URL": settings.catalog_url,
        "IMAGING_INGEST_S3_ENDPOINT": s3_endpoint,
        "IMAGING_INGEST_BUCKET_PREFIX": settings.bucket_prefix,
        "IMAGING_INGEST_SECRET": SECRET.decode(),
    }.items():
        monkeypatch.setenv(name, value)
    run = run_dag("ingest__intake")
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    catalog = Catalog.from_url(settings.catalog_url)
    sub = catalog.submissions("intake")[0]
    frame: pd.DataFrame = Ingest(intake_config(drop.as_uri()), settings, secret=SECRET, catalog=catalog).manifests(
        sub.id
    ).read("published")
    rows = {r["source_path"]: {"status": "published" if r["status"] == "ok" else r["status"], "reason": r["reason"]}
            for r in frame.to_dict("records")}
    outcome = Outcome(rows, cases, good, len(rows), sub.published, sub.quarantined)
    for name in CASE_NAMES:
        _assert_case(outcome, name)
    store = ObjectStore(settings)
    release = store.get_json("public", catalog.latest_version("intake").release_key)
    assert release["object_count"] == len(good)
    catalog.dispose()
