"""End to end: submission 1 makes version 1; submission 2 adds a patient and replaces a series (version 2).

Runs on SQLite and PostgreSQL (module-scoped archive per backend). The tests that change
the archive (withdrawal) come last in this file.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import bagit
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from imaging_ingest.catalog import SubmissionState
from imaging_ingest.catalog.store import replacement_key
from imaging_ingest.cli import main
from imaging_ingest.publish.citation import datacite_errors
from imaging_ingest.publish.diff import diff_versions
from imaging_ingest.publish.export import fetch_version
from imaging_ingest.publish.versions import release_objects

from .conftest import DEMO_CONFIG, REPLACED_SERIES_FOLDER, TwoVersions, object_versions


def _release(archive: TwoVersions, number: int) -> dict:
    return archive.store.get_json("public", f"demo/versions/{number}/release.json")


def _published(archive: TwoVersions, summary: dict) -> pd.DataFrame:
    frame = archive.ingest().manifests(summary["submission_id"]).read("published")
    return frame[frame["status"] == "ok"]


def _replaced_rows(archive: TwoVersions) -> pd.DataFrame:
    """Submission 2's rows of the series it resends (the one under a patient of submission 1)."""
    frame = _published(archive, archive.second)
    study, series = REPLACED_SERIES_FOLDER
    first_patients = {e["patient"] for e in _release(archive, 1)["objects"]}
    mask = frame["source_path"].str.contains(f"_{study}/{series}/", regex=False) & frame["pseudo_patient_id"].isin(
        first_patients
    )
    assert mask.sum() == 6
    return frame[mask]


def _changed_sop(archive: TwoVersions) -> str:
    rows = _replaced_rows(archive).sort_values("source_path")
    return rows.iloc[0]["deid_sop_uid"]  # the fixture changed the first file of the series


@pytest.fixture
def cli_env(two_versions: TwoVersions, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    settings = two_versions.settings
    collections = tmp_path / "collections"
    collections.mkdir()
    (collections / "demo.yaml").write_text(DEMO_CONFIG.read_text())
    monkeypatch.setenv("IMAGING_INGEST_HOME", str(settings.home))
    monkeypatch.setenv("IMAGING_INGEST_CATALOG_URL", settings.catalog_url)
    monkeypatch.setenv("IMAGING_INGEST_S3_ENDPOINT", settings.s3_endpoint or "")
    monkeypatch.setenv("IMAGING_INGEST_BUCKET_PREFIX", settings.bucket_prefix)
    monkeypatch.setenv("IMAGING_INGEST_COLLECTIONS", str(collections))
    return collections


def test_two_submissions_make_two_versions(two_versions: TwoVersions) -> None:
    assert two_versions.first["version"] == 1
    assert two_versions.second["version"] == 2
    assert [v.number for v in two_versions.catalog.versions("demo")] == [1, 2]
    sub2 = two_versions.catalog.submission(two_versions.second["submission_id"])
    assert sub2.state == SubmissionState.PUBLISHED and sub2.version == 2


def test_version_2_lists_the_union_minus_the_replaced_series(two_versions: TwoVersions) -> None:
    v1 = release_objects(_release(two_versions, 1))
    v2 = release_objects(_release(two_versions, 2))
    replaced = _replaced_rows(two_versions)
    series_uid = replaced.iloc[0]["deid_series_uid"]
    assert _release(two_versions, 2)["changes"] == {"replaced_series": [series_uid]}

    sub2 = _published(two_versions, two_versions.second)
    sub2_keys = {e["key"] for e in v2.values() if e["sop_uid"] in set(sub2["deid_sop_uid"])}
    kept = {k for k, e in v1.items() if e["series_uid"] != series_uid}
    assert set(v2) == kept | sub2_keys
    assert len(sub2_keys) == len(sub2)
    assert {e["sop_uid"] for e in v2.values()} == {e["sop_uid"] for e in v1.values()} | set(sub2["deid_sop_uid"])
    for key in kept:
        assert v2[key] == v1[key]
    # The replaced series in version 2 is exactly what submission 2 sent.
    assert {e["sop_uid"] for e in v2.values() if e["series_uid"] == series_uid} == set(replaced["deid_sop_uid"])
    release = _release(two_versions, 2)
    assert release["object_count"] == len(v2) and release["total_bytes"] == sum(e["size"] for e in v2.values())
    assert release["previous_version"] == 1 and release["kind"] == "submission"


def test_a_replaced_instance_gets_a_new_key_and_unchanged_ones_keep_theirs(two_versions: TwoVersions) -> None:
    v1 = {e["sop_uid"]: e for e in release_objects(_release(two_versions, 1)).values()}
    v2 = {e["sop_uid"]: e for e in release_objects(_release(two_versions, 2)).values()}
    changed = _changed_sop(two_versions)
    assert v1[changed]["sha256"] != v2[changed]["sha256"]
    assert v2[changed]["key"] == replacement_key(v1[changed]["key"], v2[changed]["sha256"])
    assert v2[changed]["key"] != v1[changed]["key"]
    unchanged = set(_replaced_rows(two_versions)["deid_sop_uid"]) - {changed}
    assert unchanged
    for sop in unchanged:
        assert v2[sop] == v1[sop]  # same bytes, same key: not copied again
    assert two_versions.store.get_bytes("public", v2[changed]["key"]) != two_versions.v1_snapshot[v1[changed]["key"]]


def test_version_1_is_unchanged_byte_for_byte(two_versions: TwoVersions) -> None:
    store = two_versions.store
    v1 = _release(two_versions, 1)
    assert len(v1["objects"]) == two_versions.first["published"]
    for key, data in two_versions.v1_snapshot.items():
        assert store.get_bytes("public", key) == data, key
    for entry in v1["objects"]:
        assert entry["key"] in two_versions.v1_snapshot
    # No object was written twice (bucket versioning keeps every write): nothing was copied again.
    after = object_versions(store, "public", "demo/")
    for key, version_id in two_versions.v1_object_versions.items():
        assert after[key] == version_id, key


def test_versions_diff_shows_exactly_the_change(two_versions: TwoVersions) -> None:
    diff = diff_versions(two_versions.store, two_versions.catalog, "demo", 1, 2)
    sub2 = _published(two_versions, two_versions.second)
    replaced = _replaced_rows(two_versions)
    new_patient = sub2[~sub2.index.isin(replaced.index)]
    v1 = release_objects(_release(two_versions, 1))
    old_patient = {e["patient"] for e in v1.values() if e["series_uid"] == replaced.iloc[0]["deid_series_uid"]}

    assert diff.ids("patient", "added") == sorted(set(new_patient["pseudo_patient_id"]))
    assert diff.ids("patient", "changed") == sorted(old_patient)
    assert diff.ids("study", "added") == sorted(set(new_patient["deid_study_uid"]))
    assert diff.ids("study", "changed") == sorted(set(replaced["deid_study_uid"]))
    assert diff.ids("series", "added") == sorted(set(new_patient["deid_series_uid"]))
    assert diff.ids("series", "replaced") == sorted(set(replaced["deid_series_uid"]))
    assert diff.ids("instance", "added") == sorted(set(new_patient["deid_sop_uid"]))
    assert diff.ids("instance", "replaced") == [_changed_sop(two_versions)]
    assert not [c for c in diff.changes if c.change == "removed"]
    assert len(diff.changes) == sum(
        len(diff.ids(level, change)) for level in ("patient", "study", "series", "instance")
        for change in ("added", "replaced", "changed")
    )


def test_versions_diff_on_the_command_line(two_versions: TwoVersions, cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["versions", "diff", "demo", "1", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = diff_versions(two_versions.store, two_versions.catalog, "demo", 1, 2).as_dict()
    assert printed == expected
    assert printed["counts"]["series"]["replaced"] == 1
    assert set(printed["counts"]["series"]) == {"added", "replaced"}
    assert main(["versions", "diff", "demo", "1", "2"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^series\s+\d+\s+0\s+1\s+0$", table, re.MULTILINE), table


def test_datacite_metadata_of_both_versions_validates(two_versions: TwoVersions) -> None:
    for number in (1, 2):
        record = two_versions.store.get_json("public", f"demo/versions/{number}/datacite.json")
        assert datacite_errors(record) == []
        assert record["doi"] == f"10.5072/imaging.demo.v{number}"
        assert record["version"] == str(number)
        assert record["types"]["resourceTypeGeneral"] == "Dataset"
        assert record["rightsList"][0]["rightsIdentifier"] == "cc-by-4.0"
        assert record["publisher"] == {"name": "Imaging Archive"}
        assert record["creators"][0]["name"] == "Archive Staff"
        release = _release(two_versions, number)
        assert f"{release['object_count']} files" in record["sizes"]
        assert record["doi"] == release["doi"]
        assert release["citation"].endswith(f"https://doi.org/{record['doi']}")
        citation = two_versions.store.get_bytes("public", f"demo/versions/{number}/citation.txt").decode()
        assert citation.strip() == release["citation"]
        assert f"(Version {number})" in citation
    v2 = two_versions.store.get_json("public", "demo/versions/2/datacite.json")
    assert {"relatedIdentifier": "10.5072/imaging.demo.v1", "relatedIdentifierType": "DOI",
            "relationType": "IsNewVersionOf"} in v2["relatedIdentifiers"]
    assert two_versions.catalog.version("demo", 2).doi == "10.5072/imaging.demo.v2"


def test_each_version_fetches_as_a_valid_bag(two_versions: TwoVersions, tmp_path: Path) -> None:
    for number in (1, 2):
        bag_dir = fetch_version(two_versions.store, two_versions.catalog, "demo", number, tmp_path / f"v{number}")
        bag = bagit.Bag(str(bag_dir))
        bag.validate()
        assert set(bag.algorithms) == {"sha256", "md5"}
        assert len(list(bag.payload_files())) == _release(two_versions, number)["object_count"]
    # The bag really checks the bytes: one flipped byte makes it invalid.
    victim = next((tmp_path / "v2" / "data").rglob("*.dcm"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(bagit.BagValidationError):
        bagit.Bag(str(tmp_path / "v2")).validate()


def test_catalog_spans_match_the_releases(two_versions: TwoVersions) -> None:
    for number in (1, 2):
        members = {m.key: m for m in two_versions.catalog.members("demo", number)}
        listing = release_objects(_release(two_versions, number))
        assert set(members) == set(listing)
        for key, entry in listing.items():
            assert (members[key].sha256, members[key].series_uid, members[key].patient) == (
                entry["sha256"], entry["series_uid"], entry["patient"])


def test_the_replacement_is_audited_with_its_reason(two_versions: TwoVersions) -> None:
    series_uid = _replaced_rows(two_versions).iloc[0]["deid_series_uid"]
    events = two_versions.catalog.audit_trail(series_uid)
    series_events = [e for e in events if e.object_type == "series"]
    assert [e.event_type for e in series_events] == ["replacement"]
    assert two_versions.second["submission_id"] in series_events[0].detail
    assert two_versions.catalog.version("demo", 2).reason == series_events[0].detail
    changed = _changed_sop(two_versions)
    v1_key = next(e["key"] for e in _release(two_versions, 1)["objects"] if e["sop_uid"] == changed)
    old = two_versions.catalog.audit_trail(v1_key)
    assert [e.event_type for e in old] == ["de-identification", "ingestion", "publication", "replacement"]
    assert "version 2" in old[-1].detail
    new = two_versions.catalog.audit_trail(changed)  # by SOP Instance UID: both objects
    assert {e.object_id for e in new} == {v1_key, replacement_key(v1_key, next(
        e["sha256"] for e in _release(two_versions, 2)["objects"] if e["sop_uid"] == changed))}


def test_submission_states_carry_timestamps(two_versions: TwoVersions) -> None:
    row = two_versions.catalog.submission(two_versions.first["submission_id"])
    stamps = row.timestamps()
    assert stamps["failed"] is None
    reached = [stamps[s] for s in SubmissionState.ORDER]
    assert all(reached), stamps
    assert reached == sorted(reached)
    events = [e for e in two_versions.catalog.audit_trail(row.id) if e.object_type == "submission"]
    assert [e.agent.split(":")[1] for e in events] == ["discover", "claim", *SubmissionState.ORDER[2:]]


def test_original_patient_ids_are_never_stored_in_clear(two_versions: TwoVersions, synth_cache: Path, second_submission: Path) -> None:
    mrns = {m for p in [*synth_cache.iterdir(), *second_submission.iterdir()] for m in re.findall(r"MRN\d+", p.name)}
    assert len(mrns) == 3
    with two_versions.catalog.engine.connect() as connection:
        for table in ("patients", "studies", "series", "instances", "collection_versions", "audit_events"):
            dump = repr(connection.execute(text(f"SELECT * FROM {table}")).all())
            assert not any(m in dump for m in mrns), table
            assert not any(m[3:] in dump for m in mrns), table
    for key in two_versions.store.list("public", "demo/versions/"):
        data = two_versions.store.get_bytes("public", key.key)
        # the release index's Parquet tables are checked by their values
        body = repr(pq.read_table(io.BytesIO(data)).to_pylist()) if key.key.endswith(".parquet") else data.decode()
        assert not any(m[3:] in body for m in mrns), key.key


def test_publishing_again_makes_no_new_version(two_versions: TwoVersions) -> None:
    before = object_versions(two_versions.store, "public", "demo/")
    result = two_versions.ingest().publish(two_versions.second["submission_id"])
    assert result.counts["version"] == 2 and result.counts["added_objects"] == 0
    assert [v.number for v in two_versions.catalog.versions("demo")] == [1, 2]
    assert object_versions(two_versions.store, "public", "demo/") == before


def test_curator_commands(two_versions: TwoVersions, cli_env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["versions", "demo", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed] == [1, 2] and listed[1]["doi"] == "10.5072/imaging.demo.v2"

    assert main(["versions", "show", "demo", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["citation"] == _release(two_versions, 2)["citation"]

    assert main(["status", two_versions.second["submission_id"], "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert set(SubmissionState.ORDER) <= set(status["timestamps"])

    series_uid = _replaced_rows(two_versions).iloc[0]["deid_series_uid"]
    assert main(["audit", series_uid, "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)
    assert "replacement" in {e["event"] for e in trail}
    assert main(["audit", "no-such-object"]) == 1
    capsys.readouterr()

    csv_path, parquet_path = tmp_path / "v2.csv", tmp_path / "v2.parquet"
    assert main(["export-manifest", "demo", "2", "--format", "csv", "--output", str(csv_path)]) == 0
    assert main(["export-manifest", "demo", "2", "--format", "parquet", "--output", str(parquet_path)]) == 0
    from_csv = pd.read_csv(csv_path)
    from_parquet = pd.read_parquet(parquet_path)
    release = _release(two_versions, 2)
    assert len(from_csv) == len(from_parquet) == release["object_count"]
    assert set(from_parquet["key"]) == {o["key"] for o in release["objects"]}
    assert set(from_parquet["modality"]) == {"CT", "MR", "RTSTRUCT"}
    assert (from_parquet["version"] == 2).all()
    assert list(from_csv.columns) == list(from_parquet.columns)
    capsys.readouterr()
    assert main(["export-manifest", "demo", "1", "--output", "-"]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == _release(two_versions, 1)["object_count"]

    bag_dir = tmp_path / "bag"
    assert main(["versions", "fetch", "demo", "1", str(bag_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["valid"] is True


# -- changes to the archive: keep these last ----------------------------------------------------


def test_withdrawing_a_series_makes_a_new_version_and_records_why(
    two_versions: TwoVersions, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = release_objects(_release(two_versions, 2))
    v2_bytes = two_versions.store.get_bytes("public", "demo/versions/2/release.json")
    series_uid = sorted({e["series_uid"] for e in v2.values()})[0]
    reason = "PHI incident: burned-in text found in series on review"
    assert main(["versions", "withdraw", "demo", series_uid, "--reason", reason, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert result["version"] == 3

    v3_release = _release(two_versions, 3)
    v3 = release_objects(v3_release)
    assert set(v3) == {k for k, e in v2.items() if e["series_uid"] != series_uid}
    assert v3_release["kind"] == "withdrawal" and v3_release["changes"] == {"withdrawn_series": [series_uid]}
    assert reason not in json.dumps(v3_release)
    assert reason not in two_versions.store.get_bytes("public", "demo/versions/3/datacite.json").decode()
    assert two_versions.catalog.version("demo", 3).reason == reason
    withdrawal = [e for e in two_versions.catalog.audit_trail(series_uid) if e.event_type == "withdrawal"]
    assert {e.object_type for e in withdrawal} == {"series", "object"}
    assert next(e for e in withdrawal if e.object_type == "series").detail == reason
    assert two_versions.store.get_bytes("public", "demo/versions/2/release.json") == v2_bytes
    for key in v2:
        assert two_versions.store.head("public", key) is not None  # still downloadable as version 2

    diff = diff_versions(two_versions.store, two_versions.catalog, "demo", 2, 3)
    assert diff.ids("series", "removed") == [series_uid]
    assert set(diff.ids("instance", "removed")) == {e["sop_uid"] for e in v2.values() if e["series_uid"] == series_uid}
    assert not diff.ids("instance", "added")

    assert main(["versions", "withdraw", "demo", series_uid, "--reason", reason]) == 1  # already withdrawn
    assert "not listed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["versions", "withdraw", "demo", series_uid])  # no reason: a usage error
