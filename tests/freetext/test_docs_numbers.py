"""docs/deid.md quotes bench/results/freetext.json: the numbers must be the measured ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.freetext

REPO = Path(__file__).resolve().parents[2]


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def test_the_recall_table_and_clinical_share_in_the_docs_are_the_benchmarks() -> None:
    result = json.loads((REPO / "bench" / "results" / "freetext.json").read_text(encoding="utf-8"))
    docs = (REPO / "docs" / "deid.md").read_text(encoding="utf-8")
    held, dev = result["sets"]["held_out"], result["sets"]["development"]
    for kind, recall in held["recall_by_kind"].items():
        row = re.search(rf"^\| {kind} \| (\d+) \| ([\d.]+%) \| ([\d.]+%) \|$", docs, re.MULTILINE)
        assert row, kind
        assert row.groups() == (str(held["planted_by_kind"][kind]), _pct(recall), _pct(dev["recall_by_kind"][kind])), kind
    assert f"| **all** | {held['planted']} | **{_pct(held['recall'])}** | **{_pct(dev['recall'])}** |" in docs
    assert f"Clinical words kept: {_pct(held['clinical_words_kept'])} held-out, {_pct(dev['clinical_words_kept'])} development" in docs
    assert f"{held['values_per_s']['median']:,.0f} values/s held-out" in docs
    assert held["recall"] >= 0.995 and held["clinical_words_kept"] >= 0.95
    assert held["values_per_s"]["runs"] >= 3 and result["git"]["commit"]
