"""The docs' benchmark tables, generated from ``bench/results/*.json``.

Every table in ``docs/`` that quotes a benchmark sits between two markers::

    <!-- bench:NAME -->
    ...the table, as ``TABLES[NAME]`` renders it from its results file...
    <!-- /bench:NAME -->

``python bench/docs_tables.py`` rewrites those blocks from the results files (``make
bench-docs``); ``--check`` changes nothing and fails when a block differs from what its
results file gives. ``tests/test_bench_results.py`` runs the check, so a re-measured
benchmark and its docs cannot disagree. (The DICOMweb table in ``docs/api.md`` is checked
by ``tests/api/test_dicomweb_docs.py`` against ``bench/api/dicomweb.py``'s own renderer.)

Each renderer reads both the current layout of its results file and, where a file still
predates ``bench/report.py``'s header and spread, its older layout.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs"


def _median(value: Any) -> float:
    """A spread's median, or a single run's number in a file that predates spreads."""
    return float(value["median"]) if isinstance(value, dict) else float(value)


def _count(value: dict[str, Any]) -> int:
    runs = value.get("runs", value.get("values", 1))
    return len(runs) if isinstance(runs, list) else int(runs)


def _range(value: Any, fmt: str) -> str:
    if isinstance(value, dict) and _count(value) > 1:
        return f"{format(value['median'], fmt)} ({format(value['min'], fmt)}–{format(value['max'], fmt)})"
    return format(_median(value), fmt)


def _provenance(result: dict[str, Any], file: str) -> str:
    git = result.get("git") or {"commit": result.get("commit"), "dirty": result.get("dirty")}
    commit = (git.get("commit") or "")[:7] or "not recorded"
    dirty = {True: ", dirty tree", False: ", clean tree"}.get(git.get("dirty"), "")
    runs = result.get("settings", {}).get("runs")
    when = (result.get("created") or result.get("when") or result.get("measured_at") or "")[
        :10
    ] or "date not recorded"
    how = f"median (min–max) of {runs} runs" if runs else "one run (predates bench/report.py)"
    return f"_`bench/results/{file}`: commit {commit}{dirty}, {when}, {how}._"


# -- renderers ----------------------------------------------------------------------------


def load_table(result: dict[str, Any]) -> str:
    """docs/intake.md: the DAG against the CLI on the same files."""
    rows = [
        "| files | GB | DAG seconds | CLI seconds | DAG / CLI | DAG GB/h | CLI GB/h | DAG peak RSS (one process) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if "sizes" not in result:  # the layout before bench/report.py: DAG runs only, no CLI
        for run in result["runs"]:
            rows.append(
                f"| {run['files']:,} | {run['bytes'] / 1e9:.2f} | {run['dag_seconds']:.1f} | not measured | – "
                f"| {run['gb_per_h']:.1f} | – | {run['peak_rss_mb']:.0f} MB |"
            )
        return "\n".join(rows) + "\n\n" + _provenance(result, "load.json")
    for size in result["sizes"]:
        rows.append(
            f"| {size['files']:,} | {size['bytes'] / 1e9:.2f} | {_range(size['dag_seconds'], '.1f')} "
            f"| {_range(size['cli_seconds'], '.1f')} | {_range(size['dag_over_cli'], '.2f')} "
            f"| {_range(size['dag_gb_per_h'], '.1f')} | {_range(size['cli_gb_per_h'], '.1f')} "
            f"| {_median(size['dag_peak_rss_mb']):.0f} MB |"
        )
    for files, why in (result.get("not_run") or {}).items():
        rows.append(f"| {int(files):,} | not run | | | | | | |")
        del why  # the reason is in the results file
    return "\n".join(rows) + "\n\n" + _provenance(result, "load.json")


def load_s3_table(result: dict[str, Any]) -> str:
    """docs/intake.md: what stage_raw and publish measured per object and per byte (medians of the runs)."""
    rows = [
        "| files | stage_raw upload MB/s | ms per upload | publish copies/s | ms per copy |",
        "|---|---|---|---|---|",
    ]
    if "sizes" not in result:
        return "\n".join([*rows, "| – | not measured before these timings existed | | | |"])
    for size in result["sizes"]:
        s3 = size["s3"]

        def cell(name: str, fmt: str, s3: dict[str, Any] = s3) -> str:
            return _range(s3[name], fmt) if s3.get(name) else "–"

        rows.append(
            f"| {size['files']:,} | {cell('stage_raw_upload_mb_per_s', '.1f')} "
            f"| {cell('stage_raw_upload_ms_per_object', '.1f')} | {cell('publish_copy_objects_per_s', '.1f')} "
            f"| {cell('publish_copy_ms_per_object', '.1f')} |"
        )
    cpu = [size for size in result["sizes"] if size.get("cpu_seconds")]  # results measured before: no CPU table
    if cpu:
        rows += [
            "",
            "| files | DAG CPU s (process and workers) | S3 server CPU s | cores "
            "| S3 server CPU s / cores | all CPU s / cores |",
            "|---|---|---|---|---|---|",
        ]
        for size in cpu:
            c = size["cpu_seconds"]
            rows.append(
                f"| {size['files']:,} | {_range(c['dag'], '.1f')} | {_range(c['s3_server'], '.1f')} | {c['cpus']} "
                f"| {_range(c['s3_server_floor_seconds'], '.1f')} | {_range(c['floor_seconds'], '.1f')} |"
            )
    return "\n".join(rows)


def load_tasks_table(result: dict[str, Any]) -> str:
    """docs/intake.md: where the DAG's wall time goes, and each task's RSS (dag.test(): one process)."""
    rows = []
    for size in result.get("sizes", []):
        # the S3 server's CPU seconds per task, where the results file has them (measured since they exist)
        server = (size.get("cpu_seconds") or {}).get("s3_server_by_task") or {}
        rows += [
            f"| task ({size['files']:,} files) | seconds | peak RSS of the process while it ran |"
            + (" S3 server CPU seconds |" if server else ""),
            "|---|---|---|" + ("---|" if server else ""),
        ]
        for task, seconds in size["task_seconds"].items():
            peak = size["peak_rss_mb_by_task"].get(task)
            rss = f"{_median(peak):.0f} MB" if isinstance(peak, dict) else "– (too short to sample)"
            cpu = (f" {_range(server[task], '.1f')} |" if task in server else " – |") if server else ""
            rows.append(f"| {task} | {_range(seconds, '.1f')} | {rss} |{cpu}")
    return "\n".join(rows) if rows else "| not measured before these timings existed |\n|---|"


LOAD_STAGE_NAMES = {"plan": "plan_batches", "deidentify": "deidentify (one batch)"}


def load_stages_table(result: dict[str, Any]) -> str:
    """docs/operations.md: each task's peak RSS in a process of its own."""
    sizes = result.get("sizes") or result["runs"]  # "runs": the layout before bench/report.py
    small, large = sizes[0], sizes[-1]
    growth = result.get("stage_mb_growth_per_1000_files") or {}
    rows = [
        f"| task | {small['files']:,} files | {large['files']:,} files | per 1,000 more files |",
        "|---|---|---|---|",
    ]
    for stage in small["stages"]:
        if stage == "claim":
            continue
        rows.append(
            f"| {LOAD_STAGE_NAMES.get(stage, stage)} | {_median(small['stages'][stage]['peak_mb']):.0f} MB "
            f"| {_median(large['stages'][stage]['peak_mb']):.0f} MB | {growth.get(stage, 0):.1f} MB |"
        )
    return "\n".join(rows) + "\n\n" + _provenance(result, "load-stages.json")


def freetext_table(result: dict[str, Any]) -> str:
    """docs/deid.md: recall per kind of planted PHI, held-out and development sets."""
    held, dev = result["sets"]["held_out"], result["sets"]["development"]

    def pct(value: float) -> str:
        return f"{value * 100:.2f}%"

    rows = [
        "| kind | planted (held-out) | recall, held-out | recall, development |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, recall in held["recall_by_kind"].items():
        rows.append(
            f"| {kind} | {held['planted_by_kind'][kind]} | {pct(recall)} | {pct(dev['recall_by_kind'][kind])} |"
        )
    rows.append(f"| **all** | {held['planted']} | **{pct(held['recall'])}** | **{pct(dev['recall'])}** |")
    return "\n".join(rows)


DEID_NAMES = {
    "imaging-ingest engine, 1 process": "engine, 1 process (with SHA-256/MD5)",
    "imaging-ingest engine, 2 processes": "engine, 2 processes",
    "imaging-ingest deidentify (CLI, end to end), 1 worker": "`imaging-ingest deidentify` end to end, 1 worker",
    "imaging-ingest deidentify (CLI, end to end), 2 workers": "`imaging-ingest deidentify` end to end, 2 workers",
    "cp -r (I/O floor)": "`cp -r` (I/O floor)",
}


def deid_table(result: dict[str, Any]) -> str:
    """docs/deid.md: each way of processing the corpus against the pydicom floor."""
    corpus = result["corpus"]
    floor = _median(result["floor_files_per_s"])
    peers = result.get("peers_install") or {}
    rows = [
        f"| on {corpus['files']:,} CT/MR files, {corpus['bytes'] / 1e9:.2f} GB | files/s | MB/s | vs. the pydicom floor |",
        "| --- | ---: | ---: | ---: |",
    ]
    for entry in result["results"]:
        name = DEID_NAMES.get(entry["name"], entry["name"])
        if "files_per_s" not in entry:  # a peer that did not install or run: said so, not dropped
            why = str(entry.get("error") or entry.get("note") or "not measured").split(":")[0]
            rows.append(f"| {name.removesuffix(' (peer)')} | ({why}) | | |")
            continue
        if name.endswith(" (peer)"):
            peer = name.removesuffix(" (peer)")
            name = f"{peer} {peers[peer]}" if peers.get(peer) else peer
            if entry["files"] != corpus["files"]:
                name += f" ({entry['files']:,} files in its {entry['seconds']:.0f} s)"
        files_per_s, mb_per_s = _median(entry["files_per_s"]), _median(entry["mb_per_s"])
        rows.append(f"| {name} | {files_per_s:,.0f} | {mb_per_s:,.0f} | {files_per_s / floor:.2f} |")
    return "\n".join(rows) + "\n\n" + _deid_targets(result) + _provenance(result, "deid.json")


def _deid_targets(result: dict[str, Any]) -> str:
    """Issue 17's goals against this run (the results file's ``targets``), as a sentence."""
    goals = result.get("targets") or {}
    workers = result.get("settings", {}).get("workers", 2)
    parts = []
    if "cli_1_worker_x_slower_than_floor" in goals:
        met = "met" if goals["cli_1_worker_within_1_5x_of_floor"] else "not met"
        parts.append(f"one worker {goals['cli_1_worker_x_slower_than_floor']:.2f}x the floor's time (goal 1.5x: {met})")
    if f"cli_{workers}_workers_vs_floor" in goals:
        met = "met" if goals[f"cli_{workers}_workers_no_slower_than_floor"] else "not met"
        parts.append(f"{workers} workers {goals[f'cli_{workers}_workers_vs_floor']:.2f}x the floor's speed (goal 1x: {met})")
    if "cli_1_worker_vs_dicognito" in goals:
        met = "met" if goals["cli_1_worker_at_least_2x_dicognito"] else "not met"
        parts.append(f"one worker {goals['cli_1_worker_vs_dicognito']:.2f}x dicognito's speed (goal 2x: {met})")
    return f"Issue 17's goals in this run: {'; '.join(parts)}.\n\n" if parts else ""


def mirror_table(result: dict[str, Any]) -> str:
    """docs/analysis-centres.md: mirror and download MB/s against their plain-copy floors."""
    mb = result["mb_per_s"]
    rows = ["| | MB/s | plain-copy floor, MB/s | share of the floor |", "|---|---|---|---|"]
    for name in ("mirror", "download"):
        rows.append(
            f"| {name} | {_range(mb[name], '.1f')} | {_range(mb[name + '_floor'], '.1f')} "
            f"| {result['ratio_to_floor'][name]:.2f} |"
        )
    return "\n".join(rows) + "\n\n" + _provenance(result, "mirror.json")


@dataclass(frozen=True)
class Table:
    doc: str
    results: str
    render: Callable[[dict[str, Any]], str]


TABLES: dict[str, Table] = {
    "load": Table("intake.md", "load.json", load_table),
    "load-s3": Table("intake.md", "load.json", load_s3_table),
    "load-tasks": Table("intake.md", "load.json", load_tasks_table),
    "load-stages": Table("operations.md", "load-stages.json", load_stages_table),
    "freetext": Table("deid.md", "freetext.json", freetext_table),
    "deid": Table("deid.md", "deid.json", deid_table),
    "mirror": Table("analysis-centres.md", "mirror.json", mirror_table),
}

BLOCK = re.compile(
    r"^(?P<indent>[ ]*)<!-- bench:(?P<name>[\w-]+) -->\n(?:(?P<body>.*?)\n)?[ ]*<!-- /bench:(?P=name) -->$",
    re.S | re.M,
)


def rendered(name: str, indent: str = "") -> str:
    """A table as its block in the docs holds it (indented like its markers, inside a list item)."""
    table = TABLES[name]
    text = table.render(json.loads((RESULTS / table.results).read_text(encoding="utf-8")))
    return "\n".join(indent + line if line else line for line in text.split("\n"))


def blocks(text: str) -> dict[str, tuple[str, str]]:
    """The generated blocks of one docs page: name -> (indent, body)."""
    return {m["name"]: (m["indent"], m["body"] or "") for m in BLOCK.finditer(text)}


def regenerate(text: str) -> str:
    def block(m: re.Match[str]) -> str:
        indent, name = m["indent"], m["name"]
        return f"{indent}<!-- bench:{name} -->\n{rendered(name, indent)}\n{indent}<!-- /bench:{name} -->"

    return BLOCK.sub(block, text)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for doc in sorted({t.doc for t in TABLES.values()}):
        path = DOCS / doc
        text = path.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            stale.append(doc)
            if not check:
                path.write_text(new, encoding="utf-8")
    verb = "differ from bench/results" if check else "regenerated"
    print(f"{verb}: {', '.join(stale)}" if stale else "docs tables agree with bench/results")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
