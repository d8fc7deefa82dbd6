"""The release index: Parquet tables beside release.json that DuckDB and pandas read as they are."""

from __future__ import annotations

import io
import json

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from imaging_ingest.publish.index import INDEX_TABLES, arrow_schema, index_key, table_schema

pytestmark = pytest.mark.mirror


def _local_index(archive, tmp_path, number: int) -> dict[str, str]:
    paths = {}
    for table in INDEX_TABLES:
        path = tmp_path / f"v{number}-{table}.parquet"
        path.write_bytes(archive.store.get_bytes("public", index_key("demo", number, table)))
        paths[table] = str(path)
    return paths


def test_release_json_names_the_index_and_the_schemas_are_stored_beside_it(archive) -> None:
    release = archive.store.get_json("public", "demo/versions/2/release.json")
    assert release["index"] == {t: f"demo/versions/2/index/{t}.parquet" for t in INDEX_TABLES}
    for table in INDEX_TABLES:
        stored = json.loads(archive.store.get_bytes("public", f"demo/versions/2/index/{table}.schema.json"))
        assert stored == table_schema(table)
        frame = pq.read_table(io.BytesIO(archive.store.get_bytes("public", index_key("demo", 2, table))))
        assert frame.schema.names == list(stored["properties"]) == arrow_schema(table).names


def test_duckdb_over_the_index_returns_the_catalogs_counts(archive, tmp_path) -> None:
    paths = _local_index(archive, tmp_path, 2)
    members = list(archive.catalog.members("demo", 2))
    con = duckdb.connect()
    series, instances, patients, studies, size = con.execute(
        "SELECT count(*), sum(instance_count), count(DISTINCT patient_id), count(DISTINCT study_uid), "
        "sum(series_size_bytes) FROM read_parquet(?)", [paths["series"]]
    ).fetchone()
    assert series == len({m.series_uid for m in members})
    assert instances == len(members)
    assert patients == len({m.patient for m in members})
    assert studies == len({m.study_uid for m in members})
    assert size == sum(m.size for m in members)
    by_modality = dict(con.execute(
        "SELECT modality, sum(instance_count) FROM read_parquet(?) GROUP BY 1", [paths["series"]]).fetchall())
    expected: dict[str, int] = {}
    for m in members:
        expected[m.modality] = expected.get(m.modality, 0) + 1
    assert by_modality == expected
    (count,) = con.execute("SELECT count(*) FROM read_parquet(?) WHERE kind = 'dicom'", [paths["instances"]]).fetchone()
    assert count == len(members)
    version = archive.catalog.version("demo", 2)
    row = con.execute("SELECT instances, total_bytes, doi FROM read_parquet(?)", [paths["collections"]]).fetchone()
    assert row[0] == len(members) and row[2] == version.doi and row[1] == version.bytes
    # the study date is a DATE, shifted (the catalog's value)
    (kind,) = con.execute("SELECT typeof(study_date) FROM read_parquet(?) LIMIT 1", [paths["series"]]).fetchone()
    assert kind == "DATE"


def test_pandas_reads_it_and_the_changes_table_says_what_changed(archive, tmp_path) -> None:
    paths = _local_index(archive, tmp_path, 2)
    changes = pd.read_parquet(paths["changes"])
    replaced = changes[changes["change"] == "replaced"]
    assert len(replaced) == 1
    assert replaced.iloc[0]["old_series_hash"] != replaced.iloc[0]["new_series_hash"]
    release = archive.store.get_json("public", "demo/versions/2/release.json")
    assert list(replaced["series_uid"]) == release["changes"]["replaced_series"]
    added = changes[changes["change"] == "added"]
    v1 = pd.read_parquet(_local_index(archive, tmp_path, 1)["series"])
    v2 = pd.read_parquet(paths["series"])
    assert set(added["series_uid"]) == set(v2["series_uid"]) - set(v1["series_uid"])
    assert len(added) > 0
    first = pd.read_parquet(_local_index(archive, tmp_path, 1)["changes"])
    assert set(first["change"]) == {"added"} and len(first) == len(v1)


def test_an_older_version_without_an_index_gets_one_later(archive, monkeypatch) -> None:
    """``imaging-ingest release-index`` writes the missing index beside an unchanged release.json."""
    from imaging_ingest.cli import main

    store, tier = archive.store, "public"
    before = store.get_bytes(tier, "demo/versions/2/release.json")
    expected = {t: store.get_bytes(tier, index_key("demo", 2, t)) for t in INDEX_TABLES}
    for table in INDEX_TABLES:
        store.delete(tier, index_key("demo", 2, table))
    for name, value in {"IMAGING_INGEST_CATALOG_URL": archive.settings.catalog_url,
                        "IMAGING_INGEST_S3_ENDPOINT": archive.settings.s3_endpoint,
                        "IMAGING_INGEST_BUCKET_PREFIX": archive.settings.bucket_prefix}.items():
        monkeypatch.setenv(name, value)
    assert main(["release-index", "demo"]) == 0
    assert store.get_bytes(tier, "demo/versions/2/release.json") == before
    for table in INDEX_TABLES:
        rebuilt = pq.read_table(io.BytesIO(store.get_bytes(tier, index_key("demo", 2, table))))
        assert rebuilt.equals(pq.read_table(io.BytesIO(expected[table]))), table
