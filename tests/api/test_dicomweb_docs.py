"""docs/api.md quotes bench/results/api-dicomweb.json: its table must be the measured numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dicomweb

REPO = Path(__file__).resolve().parents[2]


def test_the_orthanc_comparison_table_in_the_docs_is_the_benchmarks() -> None:
    sys.path[:0] = [str(REPO / "bench" / "api"), str(REPO / "bench")]
    try:
        from dicomweb import docs_table
    finally:
        del sys.path[:2]
    result = json.loads((REPO / "bench" / "results" / "api-dicomweb.json").read_text(encoding="utf-8"))
    docs = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert docs_table(result) in docs
    assert f"Our first answer after start: {result['ours_first_answer_after_start_s']} s" in docs
    assert result["settings"]["rounds"] >= 3 and result["git"]["commit"] and result["git"]["dirty"] is False
    assert result["archive"]["instances"] >= 20_000
