"""Issue 17's acceptance numbers for ``bench/results/deid.json`` (its ``targets``).

The docs table itself is rendered by ``bench/docs_tables.py`` (``deid``), like every benchmark's.
"""

from __future__ import annotations

from typing import Any

__all__ = ["targets"]

CLI = "imaging-ingest deidentify (CLI, end to end), "


def _rate(rows: list[dict[str, Any]], name: str) -> float | None:
    row = next((r for r in rows if r["name"] == name and "files_per_s" in r), None)
    return row["files_per_s"] if row else None


def targets(rows: list[dict[str, Any]], floor: float, workers: int) -> dict[str, Any]:
    """How far the command is from the pydicom floor and from dicognito, in the same run."""
    one = _rate(rows, CLI + "1 worker")
    many = _rate(rows, CLI + f"{workers} workers")
    dicognito = _rate(rows, "dicognito (peer)")
    out: dict[str, Any] = {}
    if one:
        out["cli_1_worker_x_slower_than_floor"] = round(floor / one, 2)
        out["cli_1_worker_within_1_5x_of_floor"] = floor / one <= 1.5
    if many:
        out[f"cli_{workers}_workers_vs_floor"] = round(many / floor, 2)
        out[f"cli_{workers}_workers_no_slower_than_floor"] = many >= floor
    if one and dicognito:
        out["cli_1_worker_vs_dicognito"] = round(one / dicognito, 2)
        out["cli_1_worker_at_least_2x_dicognito"] = one >= 2 * dicognito
    return out
