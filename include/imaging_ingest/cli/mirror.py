"""``imaging-ingest mirror``: sync, verify or audit a mirror target from a shell (what the mirror DAG runs)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from imaging_ingest.cli import CommandFactory, UsageError, catalog_for, print_table, settings_from_env


def cmd_mirror(args: argparse.Namespace) -> int:
    from imaging_ingest.mirror.audit import audit_mirror
    from imaging_ingest.mirror.config import MirrorConfigError, load_mirror_target
    from imaging_ingest.mirror.sync import (
        MirrorStore,
        plan_collections,
        sync_collection,
        verify_collection,
        withdraw_collection,
    )
    from imaging_ingest.storage.objects import ObjectStore

    path = Path(args.target)
    if not path.suffix:
        path = Path(args.folder or os.environ.get("IMAGING_INGEST_MIRRORS", "dags/mirrors")) / f"{args.target}.yaml"
    try:
        target = load_mirror_target(path)
    except MirrorConfigError as exc:
        raise UsageError(str(exc)) from None
    catalog = catalog_for()
    rows, failed = [], False
    try:
        covered, refused = plan_collections(catalog, target, args.collection or [])
        mirror = MirrorStore(target)
        primary = ObjectStore(settings_from_env())
        if not args.verify_only:
            mirror.ensure_bucket()
        for collection_id in covered:
            if args.verify_only:
                report = verify_collection(primary, catalog, mirror, collection_id, workers=target.workers)
            else:
                report = sync_collection(primary, catalog, mirror, collection_id, workers=target.workers,
                                         repair=args.repair)
            row = report.as_dict()
            if args.audit:
                fixity = audit_mirror(catalog, mirror, collection_id, workers=target.workers)
                row["fixity_failed"] = len(fixity.failures)
                failed |= bool(fixity.failures)
            failed |= not report.ok
            rows.append(row)
        for collection_id in refused:
            withdrawn = 0 if args.verify_only else withdraw_collection(mirror, collection_id)
            rows.append({"target": target.id, "collection": collection_id,
                         "skipped": f"restricted: the target is not ({withdrawn} object versions withdrawn)"})
    finally:
        catalog.dispose()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, ["collection", "copied", "in_sync", "missing_count", "differs_count", "fixity_failed", "skipped"])
    return 1 if failed else 0


def register(command: CommandFactory) -> None:
    sub = command("mirror", cmd_mirror,
                  "copy published versions to a mirror target (incremental, verified) and report; exit 1 if it differs")
    sub.add_argument("target", help="target id (a YAML in the mirrors folder) or a target YAML file")
    sub.add_argument("--folder", help="mirrors folder (default IMAGING_INGEST_MIRRORS or dags/mirrors)")
    sub.add_argument("--collection", nargs="+", help="only these collections")
    sub.add_argument("--verify-only", action="store_true", help="report what is in sync and what differs; copy nothing")
    sub.add_argument("--audit", action="store_true", help="also re-hash every published object on the mirror (fixity)")
    sub.add_argument("--repair", action="store_true", help="re-copy objects that differ (otherwise only reported)")
