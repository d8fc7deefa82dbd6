"""Row helpers for whole-submission stages: same rows as ``to_dict("records")``, bounded at a time."""

import pandas as pd
import pytest

from imaging_ingest.core.records import chunks, frame_from_records, iter_records


def test_iter_records_matches_to_dict_records() -> None:
    frame = pd.DataFrame({"file_id": [3, 1, 2], "status": ["ok", "quarantined", "ok"], "size": [10, None, 7]})
    frame = frame[frame["status"] == "ok"]  # a filtered frame keeps its gaps in the index
    assert list(iter_records(frame)) == frame.to_dict("records")


def test_iter_records_is_lazy() -> None:
    frame = pd.DataFrame({"a": range(1000)})
    rows = iter_records(frame)
    assert next(rows) == {"a": 0}
    assert next(rows) == {"a": 1}


def test_chunks_cover_everything_in_order_and_never_exceed_the_size() -> None:
    parts = list(chunks(range(10), 4))
    assert parts == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(chunks([], 4)) == []


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(chunks([1], 0))


def test_frame_from_records_matches_a_frame_built_at_once() -> None:
    rows = [{"file_id": i, "reason": None if i % 3 else "bad", "size": i * 2} for i in range(10)]
    rows[7]["extra"] = "late column"
    built = frame_from_records(iter(rows), size=3)
    expected = pd.DataFrame(rows)
    assert list(built.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(built, expected, check_dtype=False)
    assert frame_from_records(iter([])).empty
