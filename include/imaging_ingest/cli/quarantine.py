"""``imaging-ingest quarantine list|show|approve|reject``: curators decide on quarantined files.

An approval takes effect on the collection's next DAG run, which publishes the approved
file (redacted with the given regions, if any) in a new version; a rejection is final.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path
from typing import Any

from imaging_ingest.cli import CommandFactory, UsageError, catalog_for, print_table, settings_from_env


def _region(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y,width,height in pixels, got {text!r}") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"region {text!r} needs x, y >= 0 and width, height > 0")
    return (x, y, w, h)


def _curator(args: argparse.Namespace) -> str:
    return str(args.by or os.environ.get("IMAGING_INGEST_CURATOR") or getpass.getuser())


def _item(catalog: Any, item_id: int) -> Any:
    items = [i for i in catalog.quarantine_items() if i.id == item_id]
    if not items:
        raise UsageError(f"no quarantine item {item_id}")
    return items[0]


def cmd_list(args: argparse.Namespace) -> int:
    catalog = catalog_for()
    state = None if args.state == "all" else args.state
    rows = [
        {
            "id": i.id,
            "collection": i.collection_id,
            "submission": i.submission_id,
            "file_id": i.file_id,
            "stage": i.stage,
            "state": i.state,
            "reason": i.reason,
        }
        for i in catalog.quarantine_items(args.collection, state)
    ]
    print_table(rows, ["id", "collection", "submission", "file_id", "stage", "state", "reason"], args.json)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from imaging_ingest.curation.quarantine import APPROVABLE_STAGES, evidence_keys
    from imaging_ingest.storage.objects import ObjectStore

    catalog = catalog_for()
    item = _item(catalog, args.item)
    store = ObjectStore(settings_from_env())
    keys = evidence_keys(item.collection_id, item.submission_id, item.file_id)
    present = {name: key for name, key in keys.items() if store.head("quarantine", key) is not None}
    info: dict[str, Any] = {
        "id": item.id,
        "collection": item.collection_id,
        "submission": item.submission_id,
        "file_id": item.file_id,
        "source_path": item.source_path,
        "stage": item.stage,
        "reason": item.reason,
        "state": item.state,
        "decided_by": item.decided_by,
        "decided_at": item.decided_at.isoformat(timespec="seconds") if item.decided_at else None,
        "approvable": item.state == "pending" and item.stage in APPROVABLE_STAGES,
        "evidence": sorted(present),
    }
    hits: list[dict[str, Any]] = []
    if "evidence.json" in present:
        evidence = store.get_json("quarantine", present["evidence.json"])
        hits = [
            {"match": h["match"], "box": [h["left"], h["top"], h["width"], h["height"]], "confidence": h["confidence"]}
            | ({"text": h["text"]} if args.words else {})
            for h in evidence.get("hits", [])
        ]
        info["ocr_words"] = len(evidence.get("words", []))
        info["ocr_hits"] = len(hits)
    if args.download:
        target = Path(args.download)
        target.mkdir(parents=True, exist_ok=True)
        for name, key in present.items():
            store.download("quarantine", key, target / f"{item.id:06d}.{name}")
        info["downloaded_to"] = str(target)
    if args.json:
        print(json.dumps(info | {"hits": hits}, indent=2, default=str))
        return 0
    print_table([{"field": k, "value": v} for k, v in info.items()], ["field", "value"])
    if hits:
        print()
        print_table(hits, ["match", "box", "confidence", *(["text"] if args.words else [])])
    return 0


def _decide(args: argparse.Namespace, state: str) -> int:
    """Only curators decide (``curators.require_curator``); the collection's ``release_approvals`` applies."""
    from imaging_ingest.curation.curators import NotCurator, release_approvals, require_curator
    from imaging_ingest.curation.quarantine import DecisionError, decide

    try:
        curator = require_curator(_curator(args))
    except NotCurator as exc:
        raise UsageError(str(exc)) from None
    catalog = catalog_for()
    regions = getattr(args, "redact", None) or []
    needed = release_approvals(_item(catalog, args.item).collection_id)
    try:
        item = decide(catalog, args.item, state, curator, regions=regions, note=args.note, approvals_required=needed)
    except DecisionError as exc:
        raise UsageError(str(exc)) from None
    result = {"id": item.id, "state": item.state, "decided_by": item.decided_by, "regions": len(regions)}
    if state == "approved" and item.state == "pending":
        result["next"] = f"recorded; {needed} different curators must approve before it is released"
    elif state == "approved":
        result["next"] = f"published by the next run of ingest__{item.collection_id}"
    print_table([result], list(result), args.json)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approved")


def cmd_reject(args: argparse.Namespace) -> int:
    return _decide(args, "rejected")


def cmd_quarantine(args: argparse.Namespace) -> int:
    handlers = {"list": cmd_list, "show": cmd_show, "approve": cmd_approve, "reject": cmd_reject}
    return int(handlers[args.action](args))


def register(command: CommandFactory) -> None:
    quarantine = command("quarantine", cmd_quarantine, "review quarantined files: list, show, approve, reject")
    actions = quarantine.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        return sub

    listing = action("list", "list quarantined items")
    listing.add_argument("--collection", metavar="COLLECTION")
    listing.add_argument("--state", choices=["pending", "approved", "rejected", "all"], default="pending")

    show = action("show", "one item: reason, state, evidence (OCR hits and boxes)")
    show.add_argument("item", type=int, metavar="ID")
    show.add_argument("--words", action="store_true", help="also print the text OCR read (PHI: restricted use)")
    show.add_argument("--download", metavar="DIR", help="download the original and the evidence into DIR")

    approve = action("approve", "approve an item: the next DAG run publishes it")
    approve.add_argument("item", type=int, metavar="ID")
    approve.add_argument("--redact", type=_region, action="append", metavar="X,Y,W,H",
                         help="blank this region (pixels) in every frame before publishing; repeatable")
    approve.add_argument("--by", metavar="NAME", help="curator (default: $IMAGING_INGEST_CURATOR or the login name)")
    approve.add_argument("--note", metavar="TEXT")

    reject = action("reject", "reject an item: it is never published")
    reject.add_argument("item", type=int, metavar="ID")
    reject.add_argument("--by", metavar="NAME")
    reject.add_argument("--note", metavar="TEXT")
