"""``imaging-ingest download``: fetch published data by collection version, series, index query or manifest."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from imaging_ingest.cli import CommandFactory, UsageError, print_table, settings_from_env


def _source(args: argparse.Namespace) -> object:
    from imaging_ingest.download.transfer import S3Source

    settings = settings_from_env()
    bucket = args.bucket or settings.bucket(args.tier)
    endpoint = args.endpoint if args.endpoint is not None else settings.s3_endpoint
    anonymous = args.tier == "public" and not args.signed
    return S3Source(bucket, endpoint or None, settings.s3_region, anonymous=anonymous)


def cmd_download(args: argparse.Namespace) -> int:
    from imaging_ingest.download.selection import (
        from_index,
        from_manifest,
        write_citation,
        write_tool_manifests,
    )
    from imaging_ingest.download.transfer import ApiSource, download

    if bool(args.manifest) == bool(args.collection):
        raise UsageError("name a COLLECTION (with --version, --series, --where) or a --manifest FILE, not both")
    if args.manifest and (args.series or args.where or args.version is not None):
        raise UsageError("--series, --where and --version select from a collection's index, not from a manifest")
    source = _source(args)
    series = list(args.series or [])
    if args.series_file:
        series += [s.strip() for s in Path(args.series_file).read_text(encoding="utf-8").split() if s.strip()]
    if args.manifest:
        selection = from_manifest(source, Path(args.manifest).read_text(encoding="utf-8"))  # type: ignore[arg-type]
    else:
        selection = from_index(source, args.collection, args.version, series=series, where=args.where)  # type: ignore[arg-type]
    if not selection.items:
        raise UsageError("the selection is empty: no object matches")
    destination = Path(args.dest)
    manifests = write_tool_manifests(selection, destination, getattr(source, "endpoint", None),
                                     getattr(source, "anonymous", True))
    citation = write_citation(selection, destination)
    if args.manifests_only:
        report = {"objects": len(selection.items), "bytes": selection.total_bytes,
                  "manifests": [str(p) for p in manifests], "citation": str(citation)}
    else:
        byte_source = ApiSource(args.api, args.token or os.environ.get("IMAGING_INGEST_API_TOKEN")) if args.api else source
        result = download(selection, byte_source, destination, workers=args.workers,  # type: ignore[arg-type]
                          progress=False if args.no_progress else None, max_rate=args.max_rate)
        report = result.as_dict() | {"bytes": selection.total_bytes, "citation": str(citation)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table([{"what": k, "value": v} for k, v in report.items()], ["what", "value"])
    return 0


def cmd_release_index(args: argparse.Namespace) -> int:
    from imaging_ingest.cli import catalog_for
    from imaging_ingest.publish.backfill import backfill_index
    from imaging_ingest.storage.objects import ObjectStore

    catalog = catalog_for()
    try:
        done = backfill_index(ObjectStore(settings_from_env()), catalog, args.collection, args.version or None)
    finally:
        catalog.dispose()
    print_table([{"collection": args.collection, "indexed_versions": ", ".join(map(str, done)) or "none missing"}],
                ["collection", "indexed_versions"], args.json)
    return 0


def register(command: CommandFactory) -> None:
    backfill = command("release-index", cmd_release_index,
                       "write the release index of versions published before indexes existed (never rewrites)")
    backfill.add_argument("collection")
    backfill.add_argument("--version", type=int, nargs="+", help="only these versions (default: every one lacking it)")
    sub = command(
        "download",
        cmd_download,
        "download published objects (a collection version, series, an index query or a manifest), "
        "verified against the release index and resumable",
    )
    sub.add_argument("collection", nargs="?", help="collection id (select from its release index)")
    sub.add_argument("--version", type=int, help="collection version (default: the newest)")
    sub.add_argument("--series", nargs="+", metavar="UID", help="only these SeriesInstanceUIDs")
    sub.add_argument("--series-file", help="a file of SeriesInstanceUIDs, one per line")
    sub.add_argument("--where", help="DuckDB SQL condition over the series index, e.g. \"modality = 'CT'\"")
    sub.add_argument("--manifest", help="an s5cmd or AWS CLI manifest (cp s3://... lines, or s3:// URLs)")
    sub.add_argument("--dest", required=True, help="download folder (re-run the same command to resume)")
    sub.add_argument("--workers", type=int, default=8, help="parallel transfers (default 8)")
    sub.add_argument("--tier", choices=["public", "restricted"], default="public",
                     help="the tier to read (public: anonymous requests)")
    sub.add_argument("--bucket", help="bucket to read (default: the tier's bucket; a mirror's bucket)")
    sub.add_argument("--endpoint", help="S3 endpoint URL (default IMAGING_INGEST_S3_ENDPOINT; a mirror's)")
    sub.add_argument("--signed", action="store_true", help="sign requests even for the public tier")
    sub.add_argument("--api", help="fetch the bytes through the archive's API at this base URL instead")
    sub.add_argument("--token", help="API bearer token (default IMAGING_INGEST_API_TOKEN)")
    sub.add_argument("--max-rate", type=int, help="bandwidth limit, bytes per second")
    sub.add_argument("--manifests-only", action="store_true",
                     help="write manifest.s5cmd, manifest-aws.sh and CITATION.txt without downloading")
    sub.add_argument("--no-progress", action="store_true", help="no progress bar")
