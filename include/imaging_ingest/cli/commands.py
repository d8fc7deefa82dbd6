"""The ingest commands: synth, deidentify, storage, collections, submissions, status (versions: ``catalog.py``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from imaging_ingest.cli import (
    CommandFactory,
    UsageError,
    catalog_for,
    long_lived_imports,
    print_table,
    progress_bar,
    settings_from_env,
)


def cmd_synth(args: argparse.Namespace) -> int:
    from imaging_ingest.synth.generate import generate_submission, summary_as_dict

    summary = generate_submission(Path(args.out_dir), patients=args.patients, seed=args.seed, extras=args.extras)
    if args.marker:
        (Path(args.out_dir) / "READY").write_text("complete\n", encoding="utf-8")
    if args.truth:
        Path(args.truth).write_text(json.dumps(summary_as_dict(summary), indent=2), encoding="utf-8")
    print_table(
        [{"kind": k, "files": v} for k, v in sorted(summary.by_kind.items())], ["kind", "files"], args.json
    )
    return 0


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask, a container's cpuset), not the machine's count."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return max(1, counter() or 1)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def cmd_deidentify(args: argparse.Namespace) -> int:
    if (args.workers or (1 if args.config else available_cores())) > 1:  # (a config's own count is known later)
        from imaging_ingest.core.pool import start_server

        start_server()  # the workers' server imports pydicom on another core while this process imports the rest
    with long_lived_imports():  # the pipeline's libraries: ~0.3 s of collector work spared (see there)
        from imaging_ingest.config import CollectionConfig, DropConfig, License, load_collection_config
        from imaging_ingest.core.secret import read_secret_file
        from imaging_ingest.pipeline.localrun import deidentify_tree

    src, dst = Path(args.src_dir), Path(args.dst_dir)
    if not src.is_dir():
        raise UsageError(f"SRC_DIR {src} is not a directory")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise UsageError("DST_DIR must not be SRC_DIR or inside it")
    if args.quarantine_dir and dst.resolve() in [
        Path(args.quarantine_dir).resolve(),
        *Path(args.quarantine_dir).resolve().parents,
    ]:
        raise UsageError(
            "--quarantine-dir must be outside DST_DIR: DST_DIR receives de-identified files only"
        )
    secret = read_secret_file(args.secret_file)
    if args.config:
        config = load_collection_config(args.config)
    else:
        config = CollectionConfig(
            id="adhoc",
            title="Ad hoc de-identification",
            license=License.CC_BY_4_0,
            drop=DropConfig(url=src.resolve().as_uri()),
        )
    summary = deidentify_tree(
        src,
        dst,
        secret=secret,
        config=config,
        catalog=catalog_for(args.catalog),
        workers=args.workers or (config.workers if "workers" in config.model_fields_set else available_cores()),
        quarantine_dir=Path(args.quarantine_dir) if args.quarantine_dir else None,
        progress=progress_bar(not args.json),
    )
    result = {
        "files_in": summary.files_in,
        "published": summary.published,
        "quarantined": summary.quarantined,
        "manifest": str(summary.manifest),
    }
    if args.json:
        print(json.dumps(result | {"quarantine_reasons": summary.reasons} | summary.freetext, indent=2))
    else:
        print_table([result], list(result))
        if summary.reasons:
            print()
            print_table([{"reason": r, "files": n} for r, n in summary.reasons.items()], ["reason", "files"])
    return 0


def cmd_storage_init(args: argparse.Namespace) -> int:
    """Create the tier buckets and bring versioning, lifecycle and access in line with the policy."""
    from imaging_ingest.storage.objects import ObjectStore
    from imaging_ingest.storage.tiers import init_storage

    changes = init_storage(ObjectStore(settings_from_env()))
    print_table([c.as_dict() for c in changes], ["tier", "bucket", "what", "state"], args.json)
    return 0


def cmd_collections(args: argparse.Namespace) -> int:
    from imaging_ingest.config import load_collections

    loaded = load_collections(Path(args.folder))
    catalog = catalog_for()
    rows = []
    for config in loaded.configs:
        latest = catalog.latest_version(config.id)
        rows.append(
            {
                "collection": config.id,
                "title": config.title,
                "license": config.license.value,
                "tier": config.tier,
                "latest_version": latest.number if latest else None,
                "objects": latest.objects if latest else 0,
            }
        )
    print_table(rows, ["collection", "title", "license", "tier", "latest_version", "objects"], args.json)
    for error in loaded.errors:
        print(f"invalid config: {error}", file=sys.stderr)
    return 1 if loaded.errors else 0


def cmd_submissions(args: argparse.Namespace) -> int:
    rows = [
        {
            "submission": s.id,
            "state": s.state,
            "files_in": s.files_in,
            "published": s.published,
            "quarantined": s.quarantined,
            "version": s.version,
            "updated": s.updated_at.isoformat(timespec="seconds"),
        }
        for s in catalog_for().submissions(args.collection)
    ]
    print_table(
        rows, ["submission", "state", "files_in", "published", "quarantined", "version", "updated"], args.json
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    catalog = catalog_for()
    row = catalog.submission(args.submission)
    if row is None:
        raise UsageError(f"unknown submission {args.submission}")
    info = {
        "submission": row.id,
        "collection": row.collection_id,
        "state": row.state,
        "files_in": row.files_in,
        "published": row.published,
        "quarantined": row.quarantined,
        "version": row.version,
        "error": row.error,
    }
    reasons: dict[str, int] = {}
    for item in catalog.quarantine_items(row.collection_id):
        if item.submission_id == row.id:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
    timestamps = {state: at.isoformat(timespec="seconds") for state, at in row.timestamps().items() if at}
    if args.json:
        print(json.dumps(info | {"timestamps": timestamps, "quarantine_reasons": reasons}, indent=2))
        return 0
    print_table([info], list(info))
    if timestamps:
        print()
        print_table([{"state": s, "at": at} for s, at in sorted(timestamps.items(), key=lambda i: i[1])], ["state", "at"])
    if reasons:
        print()
        print_table([{"reason": r, "files": n} for r, n in sorted(reasons.items())], ["reason", "files"])
    return 0


def register(command: CommandFactory) -> None:
    synth = command("synth", cmd_synth, "write a realistic synthetic submission with planted PHI")
    synth.add_argument("out_dir", metavar="OUT_DIR")
    synth.add_argument("--patients", type=int, default=2)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--marker", action="store_true", help="write the READY completion marker")
    synth.add_argument("--truth", metavar="FILE", help="write the planted PHI (for tests) to FILE as JSON")
    synth.add_argument("--extras", action="store_true",
                       help="add an ultrasound frame, a DICOM WSI, an SVS slide and an XLSX (PHI beyond headers)")

    deid = command("deidentify", cmd_deidentify, "de-identify a folder tree without Airflow")
    deid.add_argument("src_dir", metavar="SRC_DIR")
    deid.add_argument("dst_dir", metavar="DST_DIR")
    deid.add_argument(
        "--secret-file", required=True, metavar="F", help="file holding the pseudonymisation secret"
    )
    deid.add_argument(
        "--config", metavar="COLLECTION.yaml", help="collection config (options, overrides, prefix)"
    )
    deid.add_argument(
        "--workers", type=int, default=0, help="processes (default: the config's workers, else the cores available)"
    )
    deid.add_argument(
        "--quarantine-dir", metavar="DIR", help="copy quarantined originals here (outside DST_DIR)"
    )
    deid.add_argument(
        "--catalog", metavar="URL", help="catalog URL for pseudonyms (default: IMAGING_INGEST_CATALOG_URL)"
    )

    storage = command("storage", cmd_storage_init, "object storage set-up")
    storage.add_argument("action", choices=["init"])

    collections = command("collections", cmd_collections, "list collections and their latest versions")
    collections.add_argument("--folder", default="dags/collections", help="collection configs folder")

    submissions = command("submissions", cmd_submissions, "list a collection's submissions")
    submissions.add_argument("collection", metavar="COLLECTION")

    status = command("status", cmd_status, "show one submission's state and quarantine reasons")
    status.add_argument("submission", metavar="SUBMISSION")
