"""The submission report written back to the site's drop: what was received, published and held back.

At the end of a run (the DAG's ``announce`` task, ``Ingest.run``) the submitting site gets,
beside its submissions in the drop, ``reports/<submission>/submission-report.json`` and
``submission-report.csv``: every file it sent, by its path in the submission, published or
held back, and for a held-back file the rule that held it, the element it is about, the
reason's text and what the site can do about it (the remedy of the rule,
``data/quarantine_reasons.csv``), and where a curator's review stands.

PHI: reason texts, rules and elements are PHI-free by construction. The paths are the
site's own folder and file names: the site already has them, so they may appear in the
report it receives, in its own drop, but never in a public place, an XCom or a log; what
this module returns and logs is counts only. Curator-facing text (free-text values, OCR
words) is never in the report.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from typing import Any

import pandas as pd

from imaging_ingest.core.csvsafe import neutralise
from imaging_ingest.core.reasons import classify
from imaging_ingest.curation.quarantine import APPROVABLE_STAGES

__all__ = ["CSV_NAME", "JSON_NAME", "build_site_report", "site_report_csv", "write_site_report"]

log = logging.getLogger(__name__)

JSON_NAME = "submission-report.json"
CSV_NAME = "submission-report.csv"
CSV_COLUMNS = ("path", "status", "rule", "element", "review", "reason", "remedy")

#: What a held-back file's review state means for the site.
REVIEW_STATES = {
    "pending": "waiting for a curator's review",
    "approved": "approved by a curator: published in a later version",
    "rejected": "rejected by a curator: not published",
}
_NO_REVIEW = "not reviewable: a corrected resubmission is needed"


def build_site_report(
    summary: dict[str, Any], frame: pd.DataFrame, review_states: dict[int, str], submission_name: str
) -> dict[str, Any]:
    """The report as a document: counts, held-back files per rule (with remedies), then every file.

    ``frame`` is the published manifest (``file_id``, ``status``, ``reason``, ``source_path``);
    ``review_states`` the quarantine items' states by file id (items a curator may decide on).
    """
    files: list[dict[str, Any]] = []
    held: Counter[str] = Counter()
    remedies: dict[str, str] = {}
    columns = [c for c in ("file_id", "status", "reason", "source_path") if c in frame.columns]
    for record in frame[columns].sort_values("file_id").to_dict("records"):
        path = str(record.get("source_path") or f"file {int(record['file_id'])}")
        if record["status"] == "ok":
            files.append({"path": path, "status": "published"})
            continue
        reason = classify(record.get("reason"))
        held[reason.rule] += 1
        remedies[reason.rule] = reason.remedy
        state = review_states.get(int(record["file_id"]))
        files.append(
            {
                "path": path,
                "status": "held back",
                "rule": reason.rule,
                "element": reason.element,
                "review": REVIEW_STATES.get(state or "", _NO_REVIEW),
                "reason": reason.text,
                "remedy": reason.remedy,
            }
        )
    received = len(files)
    return {
        "report": "imaging-ingest submission report",
        "collection": summary["collection"],
        "submission": submission_name,
        "submission_id": summary["submission_id"],
        "version": summary.get("version"),
        "received": received,
        "published": received - sum(held.values()),
        "held_back": sum(held.values()),
        "held_back_by_rule": {
            rule: {"files": n, "share": round(n / received, 6) if received else 0.0, "remedy": remedies[rule]}
            for rule, n in sorted(held.items())
        },
        "files": files,
    }


def site_report_csv(report: dict[str, Any]) -> str:
    """One row per file: path, status and, for a held-back file, rule, element, review, reason, remedy.

    A file name is the site's own text: a cell a spreadsheet would run as a formula is neutralised.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: neutralise(v) for k, v in row.items()} for row in report["files"])  # the site's names
    return buffer.getvalue()


def write_site_report(ingest: Any, submission_id: str, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the report of a published submission and write it to the site's drop; PHI-free counts back.

    A drop that cannot be written (read-only, unreachable) does not fail the run: the
    archive's copy of the outcome is the catalog and the manifests; the result says so.
    """
    summary = summary or ingest.summary(submission_id)
    row = ingest.catalog.submission(submission_id)
    frame = ingest.manifests(submission_id).read("published", columns=["file_id", "status", "reason", "source_path"])
    states = {
        item.file_id: item.state
        for item in ingest.catalog.quarantine_items(ingest.config.id)
        if item.submission_id == submission_id and item.stage in APPROVABLE_STAGES
    }
    report = build_site_report(summary, frame, states, row.name)
    document = json.dumps(report, indent=2, ensure_ascii=False, default=str).encode("utf-8")
    try:
        ingest.drop.write_report(row.name, JSON_NAME, document)
        ingest.drop.write_report(row.name, CSV_NAME, site_report_csv(report).encode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - OS, S3 and SFTP errors alike: the run is published, the report is not
        log.warning("site report for %s not written to the drop (%s)", submission_id, type(exc).__name__)
        return {"written": False, "files": report["received"], "held_back": report["held_back"]}
    log.info("site report for %s written to the drop: %d files, %d held back", submission_id,
             report["received"], report["held_back"])
    return {"written": True, "files": report["received"], "held_back": report["held_back"]}
