"""Every benchmark result file says what was measured where, and the docs quote them exactly.

Each ``bench/results/*.json`` records the git commit and a dirty flag, the machine, and the
median and spread of at least 3 runs (``bench/report.py``), unless it is listed in
``PREDATES`` with why it was not measured again; every docs table that quotes a benchmark
is generated from its results file (``bench/docs_tables.py``) and must equal what that file
gives now.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "bench"))

import docs_tables  # noqa: E402

#: result files measured before bench/report.py; their scripts now write the header and spread.
#: Each stays here until it is measured again (a new file must comply).
PREDATES = {
    "catalog.json": "needs PostgreSQL and about 5 minutes of loading 5 million instances before 3 runs of the steps",
    "pixels.json": "3 runs of OCR screening and of a generated 1 GB slide did not fit beside the load benchmark",
}


def _spreads(value: Any) -> list[dict[str, Any]]:
    """Every median-and-spread summary anywhere in a result."""
    found = []
    if isinstance(value, dict):
        if {"median", "min", "max"} <= set(value):
            found.append(value)
        for item in value.values():
            found += _spreads(item)
    elif isinstance(value, list):
        for item in value:
            found += _spreads(item)
    return found


def _runs(summary: dict[str, Any], default: int = 0) -> int:
    """How many runs a median is of (a summary without its own count: the file's runs/rounds setting)."""
    if isinstance(summary.get("runs"), int):
        return int(summary["runs"])
    for name in ("runs", "values"):
        if isinstance(summary.get(name), list):
            return len(summary[name])
    return default


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_each_result_records_commit_dirty_flag_machine_and_spread_of_three_runs(path: Path) -> None:
    result = json.loads(path.read_text(encoding="utf-8"))
    if path.name in PREDATES:
        pytest.skip(f"{path.name} predates bench/report.py: {PREDATES[path.name]}")
    git = result.get("git") or {"commit": result.get("commit"), "dirty": result.get("dirty")}
    assert re.fullmatch(r"[0-9a-f]{40}", git.get("commit") or ""), "the git commit is recorded"
    assert isinstance(git.get("dirty"), bool), "whether the work tree was dirty is recorded"
    machine = result.get("machine") or {}
    assert machine.get("cpus") and machine.get("platform") and machine.get("python"), (
        "the machine is recorded"
    )
    spreads = _spreads(result)
    assert spreads, "medians and spreads of repeated runs are recorded"
    settings = result.get("settings") or {}
    default = int(settings.get("runs") or settings.get("rounds") or 0)
    assert all(_runs(s, default) >= 3 for s in spreads), "every median is of at least 3 runs"


def test_every_predating_file_exists_and_names_its_reason() -> None:
    for name, why in PREDATES.items():
        assert (RESULTS / name).exists(), name
        assert why


def test_each_benchmark_script_writes_the_common_header_and_spread() -> None:
    """The scripts of the files above are right even where their numbers are older."""
    scripts = {
        "bench/pipeline/run.py",
        "bench/pixels/run.py",
        "bench/catalog/run.py",
        "bench/load/run.py",
        "bench/load/stages.py",
        "bench/freetext/run.py",
    }
    for script in scripts:
        text = (REPO / script).read_text(encoding="utf-8")
        assert "from report import header, " in text and "spread(" in text, script


def test_every_docs_table_is_generated_from_its_results_file_and_agrees_with_it() -> None:
    seen = set()
    for doc in sorted({t.doc for t in docs_tables.TABLES.values()}):
        text = (REPO / "docs" / doc).read_text(encoding="utf-8")
        for name, (indent, body) in docs_tables.blocks(text).items():
            assert name in docs_tables.TABLES, f"{doc}: unknown generated table {name}"
            assert docs_tables.TABLES[name].doc == doc, f"{name} belongs in {docs_tables.TABLES[name].doc}"
            assert body == docs_tables.rendered(name, indent), (
                f"docs/{doc}: table {name} differs from bench/results/{docs_tables.TABLES[name].results}; "
                "run make bench-docs"
            )
            seen.add(name)
    assert seen == set(docs_tables.TABLES), f"tables missing from the docs: {set(docs_tables.TABLES) - seen}"


def test_a_table_that_disagrees_with_its_results_file_is_caught() -> None:
    text = (REPO / "docs" / "deid.md").read_text(encoding="utf-8")
    indent, body = docs_tables.blocks(text)["freetext"]
    tampered = body.replace("%", "0%", 1)
    assert tampered != docs_tables.rendered("freetext", indent)
    assert docs_tables.regenerate(text.replace(body, tampered)) == text


def test_no_docs_table_quotes_a_benchmark_outside_a_generated_block() -> None:
    """A table under a paragraph naming a results file must be one of the generated blocks."""
    for doc in sorted((REPO / "docs").glob("*.md")):
        text = doc.read_text(encoding="utf-8")
        outside = docs_tables.BLOCK.sub("", text)
        for match in re.finditer(r"bench/results/([\w-]+\.json)", outside):
            after = outside[match.end() : match.end() + 600]
            table = re.search(r"\n\s*\|[^\n]*\|\n\s*\|[ :|-]+\|\n", after)
            if table and "<!-- bench:" not in after[: table.start()] and doc.name != "api.md":
                # api.md's DICOMweb table is checked by tests/api/test_dicomweb_docs.py
                pytest.fail(f"{doc.name}: a table after {match.group(0)} is not generated from it")
