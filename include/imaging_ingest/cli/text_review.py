"""``imaging-ingest text-review list|report|show|safe|unsafe``: curators review distinct free-text values.

Each submission's kept free-text values (after cleaning) are counted per attribute in the
catalog, with the detector's flag. A curator marks a value ``safe`` (kept from now on) or
``unsafe`` (removed from now on) for the whole collection, once; reruns and later
submissions apply the decision. The text is shown here because curators decide on it:
this command reads the restricted catalog, and prints values to the curator's terminal
only (never to a log).
"""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from imaging_ingest.cli import CommandFactory, UsageError, catalog_for, print_table

COLUMNS = ["id", "state", "flagged", "count", "attributes", "action", "text"]


def _curator(args: argparse.Namespace) -> str:
    return str(args.by or os.environ.get("IMAGING_INGEST_CURATOR") or getpass.getuser())


def _table(rows: list[Any], as_json: bool) -> None:
    out = []
    for row in rows:
        record = row.as_dict()
        if not as_json:
            record["attributes"] = ",".join(f"{k}:{v}" for k, v in sorted(record["attributes"].items()))
        out.append(record)
    print_table(out, [*COLUMNS, "decided_by"] if as_json else COLUMNS, as_json)


def cmd_list(args: argparse.Namespace) -> int:
    from imaging_ingest.pipeline import text_review

    state = None if args.state == "all" else args.state
    _table(text_review.values(catalog_for(), args.collection, state=state, flagged_only=args.flagged), args.json)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from imaging_ingest.pipeline import text_review

    _table(text_review.submission_report(catalog_for(), args.submission), args.json)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from imaging_ingest.pipeline import text_review

    try:
        _table([text_review.value(catalog_for(), args.value)], args.json)
    except text_review.TextDecisionError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _decide(args: argparse.Namespace, decision: str) -> int:
    """Only curators decide (``curators.require_curator``)."""
    from imaging_ingest.curation.curators import NotCurator, require_curator
    from imaging_ingest.pipeline import text_review

    try:
        curator = require_curator(_curator(args))
    except NotCurator as exc:
        raise UsageError(str(exc).replace("approve or reject quarantined files", "decide on free-text values")) from None
    try:
        row = text_review.decide(catalog_for(), args.value, decision, curator, args.note)
    except text_review.TextDecisionError as exc:
        raise UsageError(str(exc)) from None
    _table([row], args.json)
    return 0


def cmd_text_review(args: argparse.Namespace) -> int:
    handlers = {
        "list": cmd_list,
        "report": cmd_report,
        "show": cmd_show,
        "safe": lambda a: _decide(a, "safe"),
        "unsafe": lambda a: _decide(a, "unsafe"),
    }
    return int(handlers[args.action](args))


def register(command: CommandFactory) -> None:
    review = command(
        "text-review", cmd_text_review,
        "review distinct free-text values once per collection: list, report, show, safe, unsafe",
    )
    actions = review.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        return sub

    listing = action("list", "a collection's values waiting for review (flagged first, most frequent first)")
    listing.add_argument("--collection", metavar="COLLECTION", required=True)
    listing.add_argument("--state", choices=["pending", "safe", "unsafe", "all"], default="pending")
    listing.add_argument("--flagged", action="store_true", help="only values the detector flagged")

    report = action("report", "a submission's distinct values: per attribute counts, flag, what was done, decision")
    report.add_argument("submission", metavar="SUBMISSION_ID")

    show = action("show", "one value")
    show.add_argument("value", type=int, metavar="ID")

    for name, help_text in (
        ("safe", "mark a value safe: kept in this collection's files from now on"),
        ("unsafe", "mark a value unsafe: removed from this collection's files from now on"),
    ):
        decide = action(name, help_text)
        decide.add_argument("value", type=int, metavar="ID")
        decide.add_argument("--by", metavar="NAME", help="curator (default: $IMAGING_INGEST_CURATOR or the login name)")
        decide.add_argument("--note", metavar="TEXT")
