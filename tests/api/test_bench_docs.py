"""docs/api.md quotes bench/results/api.json: its table must be the measured numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.api

REPO = Path(__file__).resolve().parents[2]


def test_the_benchmark_table_in_the_docs_is_the_benchmarks() -> None:
    sys.path[:0] = [str(REPO / "bench" / "api"), str(REPO / "bench")]
    try:
        from run import docs_table
    finally:
        del sys.path[:2]
    result = json.loads((REPO / "bench" / "results" / "api.json").read_text(encoding="utf-8"))
    assert docs_table(result) in (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert result["settings"]["runs"] >= 3 and result["git"]["commit"] and result["git"]["dirty"] is False
    assert result["cold_first_query_s"]["max"] < 1.0  # issue 18: both APIs answer within 1 s of starting
