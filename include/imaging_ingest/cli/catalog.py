"""The curator commands on the catalog and versions: versions, audit, export-manifest, fixity, catalog.

    imaging-ingest versions COLLECTION                       list published versions
    imaging-ingest versions show COLLECTION N                DOI, citation and counts of one version
    imaging-ingest versions diff COLLECTION A B              patients/studies/series/instances changed
    imaging-ingest versions withdraw COLLECTION SERIES_UID... --reason TEXT
    imaging-ingest versions fetch COLLECTION N DEST          download a version as a BagIt bag, validated
    imaging-ingest audit OBJECT_KEY|SOP_UID|SERIES_UID       the PREMIS events of an object or series
    imaging-ingest export-manifest COLLECTION N --format csv|parquet [--output FILE]
    imaging-ingest fixity [COLLECTION] [--mode policy|all|sample]
    imaging-ingest catalog upgrade|downgrade|current|stamp [REVISION]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from imaging_ingest.cli import (
    CommandFactory,
    UsageError,
    catalog_for,
    print_table,
    progress_bar,
    settings_from_env,
)

VERSIONS_USAGE = (
    "imaging-ingest versions [--json] COLLECTION\n"
    "       imaging-ingest versions [--json] show COLLECTION VERSION\n"
    "       imaging-ingest versions [--json] diff COLLECTION A B\n"
    "       imaging-ingest versions [--json] withdraw COLLECTION SERIES_UID [SERIES_UID ...] --reason TEXT\n"
    "       imaging-ingest versions [--json] fetch COLLECTION VERSION DEST [--no-validate]"
)


def _collections_folder(args: argparse.Namespace) -> Path:
    return Path(args.folder or os.environ.get("IMAGING_INGEST_COLLECTIONS") or "dags/collections")


def _config(args: argparse.Namespace, collection_id: str) -> Any:
    from imaging_ingest.config import load_collections

    loaded = load_collections(_collections_folder(args))
    for config in loaded.configs:
        if config.id == collection_id:
            return config
    raise UsageError(f"no valid config for collection {collection_id!r} in {_collections_folder(args)}")


def _store() -> Any:
    from imaging_ingest.storage.objects import ObjectStore

    return ObjectStore(settings_from_env())


def _number(text: str, what: str) -> int:
    try:
        value = int(text.removeprefix("v"))
    except ValueError:
        raise UsageError(f"{what} must be a version number, not {text!r}") from None
    if value < 1:
        raise UsageError(f"{what} must be 1 or more")
    return value


def _expect(words: list[str], count: int, usage: str) -> list[str]:
    if len(words) != count:
        raise UsageError(f"usage: imaging-ingest versions {usage}")
    return words


# -- versions -----------------------------------------------------------------------------


def cmd_versions(args: argparse.Namespace) -> int:
    words = list(args.words)
    action = words[0]
    if action == "diff":
        return _versions_diff(args, *_expect(words[1:], 3, "diff COLLECTION A B"))
    if action == "withdraw":
        return _versions_withdraw(args, words[1:])
    if action == "fetch":
        return _versions_fetch(args, *_expect(words[1:], 3, "fetch COLLECTION VERSION DEST"))
    if action == "show":
        return _versions_show(args, *_expect(words[1:], 2, "show COLLECTION VERSION"))
    (collection,) = _expect(words, 1, "COLLECTION")
    rows = [
        {
            "version": v.number,
            "kind": v.kind,
            "objects": v.objects,
            "bytes": v.bytes,
            "doi": v.doi,
            "release": v.release_key,
            "created": v.created_at.isoformat(timespec="seconds"),
        }
        for v in catalog_for().versions(collection)
    ]
    print_table(rows, ["version", "kind", "objects", "bytes", "doi", "release", "created"], args.json)
    return 0


def _versions_show(args: argparse.Namespace, collection: str, number: str) -> int:
    from imaging_ingest.publish.versions import open_release

    catalog = catalog_for()
    n = _number(number, "VERSION")
    version = catalog.version(collection, n)
    if version is None:
        raise UsageError(f"collection {collection} has no version {n}")
    tier, release = open_release(_store(), catalog, collection, n)
    info = {
        "collection": collection,
        "version": n,
        "kind": version.kind,
        "doi": release.get("doi"),
        "objects": release["object_count"],
        "bytes": release["total_bytes"],
        "tier": tier,
        "created": release["created"],
        "changes": release.get("changes") or {},
        "citation": release.get("citation"),
        "reason": version.reason,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print_table([{k: info[k] for k in ("collection", "version", "kind", "doi", "objects", "bytes", "tier", "created")}],
                ["collection", "version", "kind", "doi", "objects", "bytes", "tier", "created"])
    for name, uids in info["changes"].items():
        print(f"\n{name.replace('_', ' ')}: {', '.join(uids)}")
    if info["reason"]:
        print(f"\nreason (restricted): {info['reason']}")
    if info["citation"]:
        print(f"\ncite as: {info['citation']}")
    return 0


def _versions_diff(args: argparse.Namespace, collection: str, a: str, b: str) -> int:
    from imaging_ingest.publish.diff import diff_versions

    diff = diff_versions(_store(), catalog_for(), collection, _number(a, "A"), _number(b, "B"))
    if args.json:
        print(json.dumps(diff.as_dict(), indent=2))
        return 0
    counts = diff.counts()
    print_table(
        [{"level": level, **{c: counts[level].get(c, 0) for c in ("added", "removed", "replaced", "changed")}}
         for level in counts],
        ["level", "added", "removed", "replaced", "changed"],
    )
    if diff.changes:
        print()
        print_table([{"level": c.level, "change": c.change, "uid": c.id} for c in diff.changes], ["level", "change", "uid"])
    return 0


def _versions_withdraw(args: argparse.Namespace, words: list[str]) -> int:
    from imaging_ingest.publish.versions import Archive, withdraw_series

    if len(words) < 2:
        raise UsageError("usage: imaging-ingest versions withdraw COLLECTION SERIES_UID [SERIES_UID ...] --reason TEXT")
    if not args.reason or not args.reason.strip():
        raise UsageError("a withdrawal needs --reason (kept in the restricted catalog)")
    collection, series = words[0], words[1:]
    config = _config(args, collection)
    catalog = catalog_for()
    catalog.ensure_collection(config)
    outcome = withdraw_series(
        Archive(config, _store(), catalog, config.tier), series, args.reason, agent=f"curator:{args.agent}"
    )
    print_table(
        [{"collection": collection, "version": outcome.version, "withdrawn_series": len(outcome.changed_series),
          "objects_dropped": outcome.dropped, "release": outcome.release_key}],
        ["collection", "version", "withdrawn_series", "objects_dropped", "release"],
        args.json,
    )
    return 0


def _versions_fetch(args: argparse.Namespace, collection: str, number: str, dest: str) -> int:
    from imaging_ingest.publish.export import fetch_version

    n = _number(number, "VERSION")
    path = fetch_version(_store(), catalog_for(), collection, n, Path(dest), progress_bar(not args.json))
    valid = None
    if not args.no_validate:
        import bagit

        try:
            bagit.Bag(str(path)).validate()
            valid = True
        except bagit.BagError as exc:
            print(f"imaging-ingest: error: {path} is not a valid bag: {exc}", file=sys.stderr)
            valid = False
    print_table([{"collection": collection, "version": n, "bag": str(path), "valid": valid}],
                ["collection", "version", "bag", "valid"], args.json)
    return 0 if valid is not False else 1


# -- audit, export, fixity ----------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> int:
    events = catalog_for().audit_trail(args.target, args.collection)
    rows = [
        {
            "at": e.at.isoformat(timespec="seconds"),
            "event": e.event_type,
            "outcome": e.outcome,
            "agent": e.agent,
            "type": e.object_type,
            "object": e.object_id,
            "detail": e.detail,
        }
        for e in events
    ]
    print_table(rows, ["at", "event", "outcome", "agent", "type", "object", "detail"], args.json)
    if not rows:
        print(f"no events for {args.target}", file=sys.stderr)
    return 0 if rows else 1


def cmd_export_manifest(args: argparse.Namespace) -> int:
    from imaging_ingest.core.csvsafe import neutralise_frame
    from imaging_ingest.publish.export import export_manifest, manifest_frame

    n = _number(args.version, "VERSION")
    store, catalog = _store(), catalog_for()
    if args.output == "-":
        if args.format != "csv":
            raise UsageError("only --format csv can be written to standard output")
        neutralise_frame(manifest_frame(store, catalog, args.collection, n)).to_csv(sys.stdout, index=False)
        return 0
    output = Path(args.output or f"{args.collection}-v{n}.{args.format}")
    export_manifest(store, catalog, args.collection, n, output, args.format)
    rows = catalog.version(args.collection, n)
    print_table([{"collection": args.collection, "version": n, "objects": rows.objects if rows else None,
                  "format": args.format, "file": str(output)}],
                ["collection", "version", "objects", "format", "file"], args.json)
    return 0


def cmd_fixity(args: argparse.Namespace) -> int:
    from imaging_ingest.config import FixityConfig, load_collections
    from imaging_ingest.publish.fixity import audit_collection, raise_on_mismatch, select_targets

    catalog, store = catalog_for(), _store()
    policies = {c.id: c.fixity for c in load_collections(_collections_folder(args)).configs}
    collections = [args.collection] if args.collection else [c.id for c in catalog.collections()]
    reports = []
    for collection_id in collections:
        targets = select_targets(catalog, collection_id, policies.get(collection_id, FixityConfig()), mode=args.mode)
        reports.append(audit_collection(catalog, store, collection_id, targets, progress=progress_bar(not args.json)))
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        print_table([{"collection": r.collection_id, "checked": r.checked, "passed": r.passed, "failed": len(r.failures)}
                     for r in reports], ["collection", "checked", "passed", "failed"])
        failures = [{"collection": r.collection_id, "object": f.key, "problems": "; ".join(f.problems)}
                    for r in reports for f in r.failures]
        if failures:
            print()
            print_table(failures, ["collection", "object", "problems"])
    raise_on_mismatch(reports)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from imaging_ingest.catalog import Catalog
    from imaging_ingest.catalog.migrate import head_revision, stamp

    catalog = Catalog.from_url(args.url or settings_from_env().catalog_url, create=False)
    try:
        if args.action == "upgrade":
            catalog.upgrade(args.revision or "head")
        elif args.action == "downgrade":
            if not args.revision:
                raise UsageError("downgrade needs a REVISION (base drops every catalog table)")
            catalog.downgrade(args.revision)
        elif args.action == "stamp":
            if not args.revision:
                raise UsageError("stamp needs a REVISION")
            stamp(catalog.engine, args.revision)
        print_table([{"catalog": catalog.engine.url.render_as_string(hide_password=True),
                      "revision": catalog.schema_revision(), "head": head_revision()}],
                    ["catalog", "revision", "head"], args.json)
    finally:
        catalog.dispose()
    return 0


def cmd_reclassify(args: argparse.Namespace) -> int:
    """Move a collection's published objects between the public and restricted tiers (audited, alerted).

    Withdrawing (``--to restricted``) is what a run does by itself after a config change;
    releasing (``--to public``) is never automatic and needs a curator (``--by``).
    """
    from imaging_ingest.curation.curators import NotCurator, require_curator
    from imaging_ingest.publish.reclassify import reclassify
    from imaging_ingest.storage.objects import ObjectStore

    by = args.by or os.environ.get("USER", "unknown")
    if args.to == "public":
        try:
            by = require_curator(by)
        except NotCurator as exc:
            raise UsageError(f"making a collection public releases its data: {exc}") from None
    catalog = catalog_for()
    if catalog.collection(args.collection) is None:
        raise UsageError(f"no collection {args.collection} in the catalog")
    done = reclassify(catalog, ObjectStore(settings_from_env()), args.collection, args.to, by=f"curator:{by}"
                      if args.to == "public" else by)
    print_table([{"collection": done.collection_id, "from": done.from_tier, "to": done.to_tier, "moved": done.moved}],
                ["collection", "from", "to", "moved"], args.json)
    return 0


def register(command: CommandFactory) -> None:
    reclassify = command("reclassify", cmd_reclassify,
                         "move a collection's published objects to the public or restricted tier (public needs a curator)")
    reclassify.add_argument("collection")
    reclassify.add_argument("--to", required=True, choices=["public", "restricted"])
    reclassify.add_argument("--by", metavar="NAME", help="who decides (a curator for --to public; default: $USER)")

    versions = command("versions", cmd_versions, "list a collection's versions; show, diff, withdraw or fetch one")
    versions.usage = VERSIONS_USAGE
    versions.add_argument("words", nargs="+", metavar="ARGS", help="see usage")
    versions.add_argument("--reason", help="withdraw: why (kept in the restricted catalog, not in the public release)")
    versions.add_argument("--agent", default=os.environ.get("USER", "unknown"), help="withdraw: who (default: $USER)")
    versions.add_argument("--no-validate", action="store_true", help="fetch: do not validate the bag")
    versions.add_argument("--folder", help="collection configs folder (default: $IMAGING_INGEST_COLLECTIONS or dags/collections)")

    audit = command("audit", cmd_audit, "the PREMIS events of an object (key or SOP Instance UID) or a series")
    audit.add_argument("target", metavar="OBJECT_OR_SERIES")
    audit.add_argument("--collection", help="only events of this collection")

    export = command("export-manifest", cmd_export_manifest, "write a version's object manifest as CSV or Parquet")
    export.add_argument("collection", metavar="COLLECTION")
    export.add_argument("version", metavar="VERSION")
    export.add_argument("--format", choices=["csv", "parquet"], default="csv")
    export.add_argument("--output", metavar="FILE", help="default: COLLECTION-vN.FORMAT; '-' writes CSV to stdout")

    fixity = command("fixity", cmd_fixity, "re-verify published objects against their recorded checksums")
    fixity.add_argument("collection", metavar="COLLECTION", nargs="?", help="default: every collection")
    fixity.add_argument("--mode", choices=["policy", "all", "sample"], default="policy",
                        help="policy: each collection's fixity config (default)")
    fixity.add_argument("--folder", help="collection configs folder (for fixity policies)")

    catalog = command("catalog", cmd_catalog, "catalog schema migrations (Alembic)")
    catalog.add_argument("action", choices=["upgrade", "downgrade", "current", "stamp"])
    catalog.add_argument("revision", nargs="?", metavar="REVISION", help="default for upgrade: head")
    catalog.add_argument("--url", help="catalog URL (default: IMAGING_INGEST_CATALOG_URL)")
