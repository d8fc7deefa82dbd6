"""Manifests in the staging tier: whole, by column, and streamed part by part."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from imaging_ingest.pipeline import manifest
from imaging_ingest.pipeline.manifest import ManifestStore, rows_with_file_ids, rows_with_ids
from imaging_ingest.storage.objects import ObjectStore


@pytest.fixture
def manifests(store: ObjectStore) -> ManifestStore:
    store.ensure_buckets()
    return ManifestStore(store, "coll", "sub-0001")


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    ids = list(range(start, start + n))
    return pd.DataFrame({"file_id": ids, "status": ["ok"] * n, "size": [i * 10 for i in ids]})


def test_parts_are_written_as_one_manifest_whose_schema_covers_them_all(manifests: ManifestStore) -> None:
    first = _frame(2).assign(reason=[None, None])  # all None here ...
    second = _frame(2, start=2).assign(reason=[None, "truncated"], leaks=[0, 1])  # ... text here, a new column
    manifests.write_frames("verified", [first, second])
    frame = manifests.read("verified")
    assert frame["file_id"].tolist() == [0, 1, 2, 3]
    assert frame["reason"].isna().tolist() == [True, True, True, False]
    assert frame["reason"].iloc[3] == "truncated"
    assert frame["leaks"].isna().tolist() == [True, True, False, False]
    assert list(frame.columns) == ["file_id", "status", "size", "reason", "leaks"]


def test_a_column_without_values_in_a_part_takes_its_type_from_the_others(manifests: ManifestStore) -> None:
    first = _frame(2).assign(deid_key=[float("nan")] * 2, never=[None, None])  # NaN: pandas says float
    second = _frame(2, start=2).assign(deid_key=["a/b.dcm", None], never=[None, None])
    manifests.write_frames("screened", [first, second])
    frame = manifests.read("screened")
    assert frame["deid_key"].isna().tolist() == [True, True, False, True]
    assert frame["deid_key"].iloc[2] == "a/b.dcm"
    assert frame["never"].isna().all()


def test_writing_no_parts_is_refused(manifests: ManifestStore) -> None:
    with pytest.raises(ValueError, match="verified: no parts"):
        manifests.write_frames("verified", iter([]))


def test_streamed_parts_hold_a_bounded_number_of_rows_and_add_up_to_the_manifest(
    manifests: ManifestStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manifest, "ROWS_PER_GROUP", 4)
    manifests.write("inventory", _frame(10))
    parts = list(manifests.iter_frames("inventory"))
    assert [len(p) for p in parts] == [4, 4, 2]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), manifests.read("inventory"))


def test_columns_are_read_by_name_and_missing_ones_are_skipped(manifests: ManifestStore) -> None:
    manifests.write("inventory", _frame(3))
    assert list(manifests.read("inventory", columns=["status", "file_id", "no_such_column"]).columns) == [
        "status",
        "file_id",
    ]
    assert [list(p.columns) for p in manifests.iter_frames("inventory", columns=["size"])] == [["size"]]


def test_an_empty_manifest_streams_as_one_empty_frame_with_its_columns(manifests: ManifestStore) -> None:
    manifests.write("inventory", _frame(0))
    parts = list(manifests.iter_frames("inventory"))
    assert len(parts) == 1 and parts[0].empty
    assert list(parts[0].columns) == ["file_id", "status", "size"]


def test_rows_with_ids_keeps_the_tables_order() -> None:
    table = pa.table({"file_id": [5, 3, 9, 1], "value": ["a", "b", "c", "d"]})
    assert rows_with_ids(table, [1, 5, 7])["value"].tolist() == ["a", "d"]
    assert rows_with_ids(table, []).empty


def test_rows_are_picked_by_file_id_from_the_row_groups_that_can_hold_them(
    manifests: ManifestStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manifest, "ROWS_PER_GROUP", 4)
    manifests.write("inventory", _frame(12).iloc[::-1])  # any order: groups are chosen by their file_id range
    parquet = manifests.parquet("inventory")
    assert parquet.num_row_groups == 3
    picked = rows_with_file_ids(parquet, [10, 1, 2, 99])
    assert picked["file_id"].tolist() == [10, 2, 1]  # the manifest's order
    assert picked["size"].tolist() == [100, 20, 10]
    assert rows_with_file_ids(parquet, []).empty
    assert list(rows_with_file_ids(parquet, [50]).columns) == ["file_id", "status", "size"]
