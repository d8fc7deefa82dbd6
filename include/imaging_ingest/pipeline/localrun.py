"""De-identify a folder tree without Airflow, through the same stage functions as the DAG.

``imaging-ingest deidentify SRC DST`` runs inventory, patient assignment, de-identification,
screening and verification exactly as the DAG's tasks do, on local paths instead of the
object store. Slides and clinical tables the collection config declares go through the
same functions as in the DAG (same pseudonyms, same date offsets, same published names).
DST receives verified de-identified files only; every input file gets a row in
``DST/manifest.csv`` (published or quarantined, with the reason, and what the free-text
detector removed and flagged per attribute: ``StudyDescription:2,ImageComments:1``). With
``--quarantine-dir``, quarantined originals and the screening evidence of images go there.
"""

from __future__ import annotations

import csv
import itertools
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.core.checksum import file_sha256
from imaging_ingest.core.csvsafe import neutralise
from imaging_ingest.deid import Profile
from imaging_ingest.deid.batch import FREETEXT_COUNTS, deidentify_frame, freetext_counts
from imaging_ingest.deid.patients import assign_patients
from imaging_ingest.intake.drops import DropEntry, is_archive_name
from imaging_ingest.intake.local import open_local, walk_tree
from imaging_ingest.intake.staging import stage_entries
from imaging_ingest.inventory.scan import inventory_frame
from imaging_ingest.pipeline.onepass import known_verdicts, leak_check_of, leak_scan, with_verdicts
from imaging_ingest.pipeline.supporting import (
    SUPPORTING_KINDS,
    SupportingEnv,
    accept_supporting,
    deidentify_supporting,
    merge_all,
    verify_all,
)
from imaging_ingest.pipeline.text_review import load_policy
from imaging_ingest.screen.pixels import ScreenContext, screen_images

__all__ = ["LocalRunSummary", "deidentify_tree"]

MANIFEST_COLUMNS = ("source_path", "status", "reason", "output_path", "sha256", *FREETEXT_COUNTS)


@dataclass(frozen=True)
class LocalRunSummary:
    files_in: int
    published: int
    quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)
    manifest: Path | None = None
    #: the free-text detector's counts over the published files, per attribute (``deid.batch.freetext_counts``)
    freetext: dict[str, dict[str, int]] = field(default_factory=dict)


def _staged_records(src: Path, work: Path, config: CollectionConfig) -> list[dict[str, Any]]:
    """The same rows the pipeline's stage-raw step makes (``intake.stage_entries``), on local paths.

    A file the inventory will read is not hashed: this command publishes no source checksum,
    and the inventory's duplicate rule hashes the few files that share a SOP Instance UID
    (``check_submission``). Archives (whose digest names their members' container) and files
    staged only to be quarantined are hashed here, as the pipeline's staging hashes everything.
    """
    members = work / "members"
    members.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count()

    def stage_entry(entry: DropEntry) -> dict[str, Any]:
        locator = entry.locator
        if entry.name_problem:  # a name that cannot be stored as text: work on a numbered copy
            locator = str(members / f"{next(numbers):06d}")
            with open_local(entry) as src, open(locator, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        if entry.name_problem or is_archive_name(entry.path):
            sha256, size = file_sha256(locator)  # the source's MD5 is never used: not computed
        else:
            sha256, size = None, os.path.getsize(locator)
        return {"sha256_source": sha256, "size": size, "local": locator, "locator": locator}

    def stage_file(path: Path) -> dict[str, Any]:
        kept = members / f"{next(numbers):06d}"
        path.replace(kept)
        return {"sha256_source": None, "size": kept.stat().st_size, "locator": str(kept)}

    entries = [e for e in walk_tree(src) if e.path != config.drop.marker]  # a completion marker is not data
    rows = [{"locator": ""} | row for row in stage_entries(entries, stage_entry, stage_file, config.drop.archives, work / "archives")]
    for row in rows:  # staged, but quarantined before the inventory (an archive member's reason): hashed here
        if row["locator"] and row["sha256_source"] is None and row["status"] != "ok":
            row["sha256_source"], _ = file_sha256(row["locator"])
    return rows


def deidentify_tree(
    src: Path,
    dst: Path,
    *,
    secret: bytes,
    config: CollectionConfig,
    catalog: Catalog,
    workers: int = 1,
    quarantine_dir: Path | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
    one_pass: bool = True,
) -> LocalRunSummary:
    """De-identify ``src`` into ``dst``; never raises for bad input files, only for system errors.

    ``one_pass``: leak-scan each output in the worker that wrote it, on the bytes in memory
    (``pipeline.onepass``); False runs the scan as a stage of its own, reading every file
    again, as the DAG's verify task does (same verdicts: a test compares the two).
    """
    src, dst = src.resolve(), dst.resolve()
    dst.mkdir(parents=True, exist_ok=True)
    catalog.ensure_collection(config)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        records = _staged_records(src, work / "staged", config)
        profile = Profile.load().resolve(config.deid)
        frame = inventory_frame(
            records,
            lambda r: Path(r["locator"]),
            config.modalities,
            accept_supporting(config),
            remapped_uids=profile.remapped_instance_uids(),
            workers=workers,  # no source SHA-256: this command publishes none (check_submission hashes duplicates)
        )
        frame = assign_patients(frame, secret, catalog, config, copy=False)
        ok = frame[frame["status"] == "ok"]
        supporting = ok["kind"].isin(SUPPORTING_KINDS)
        tick = progress("de-identifying", len(ok)) if progress else None
        results = deidentify_frame(
            ok[~supporting],
            profile,
            secret,
            source_of=lambda r: Path(r["locator"]),
            destination_of=lambda key: work / key,
            workers=workers,
            progress=tick,
            review=load_policy(catalog, config),  # the catalog's free-text decisions; flagged, undecided: removed
            follow_up=leak_scan if one_pass else None,  # the leak scan on the bytes just written: no re-read
            check_of=leak_check_of(config.deid.options) if one_pass else None,
            md5=False,  # the manifest carries the SHA-256; an MD5 is for the archive's listings only
        )
        results = with_verdicts(results)
        env = SupportingEnv(
            config=config,
            secret=secret,
            catalog=catalog,
            submission_id="local",
            inventory=frame,
            source_of=lambda r: Path(r["locator"]),
            destination_of=lambda key: work / key,
        )
        if supporting.any():
            results = pd.concat([results, deidentify_supporting(ok[supporting], env)], ignore_index=True)
        frame = screen_images(merge_all(frame, results), _screen_context(config, work, quarantine_dir))
        frame, _ = verify_all(
            frame,
            lambda r: Path(r["locator"]),
            lambda r: work / r["deid_key"],
            env,
            options=config.deid.options,
            workers=workers,
            known=known_verdicts(frame),
        )
        freetext = freetext_counts(frame[frame["status"] == "ok"])
        rows = _finish(frame, work, dst, quarantine_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest = dst / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows({k: neutralise(v) for k, v in row.items()} for row in rows)  # file names are the site's
    reasons = Counter(r["reason"] for r in rows if r["status"] == "quarantined")
    published = sum(1 for r in rows if r["status"] == "published")
    return LocalRunSummary(
        len(rows), published, len(rows) - published, dict(sorted(reasons.items())), manifest, freetext
    )


def _screen_context(config: CollectionConfig, work: Path, quarantine_dir: Path | None) -> ScreenContext:
    def evidence(record: dict[str, Any], name: str, data: bytes, _content_type: str) -> None:
        if quarantine_dir is not None:
            quarantine_dir.mkdir(parents=True, exist_ok=True)
            (quarantine_dir / f"{int(record['file_id']):06d}.{name}").write_bytes(data)

    return ScreenContext(
        pixels=config.pixels,
        pathology=config.pathology,
        source_of=lambda r: Path(r["locator"]),
        output_of=lambda r: work / r["deid_key"],
        on_evidence=evidence,
    )


def _finish(frame: pd.DataFrame, work: Path, dst: Path, quarantine_dir: Path | None) -> list[dict[str, Any]]:
    rows = []
    for record in frame.sort_values("file_id").to_dict("records"):
        row = {"source_path": record["source_path"], "status": "quarantined", "reason": record["reason"],
               "output_path": "", "sha256": "", **dict.fromkeys(FREETEXT_COUNTS, "")}
        if record["status"] == "ok":
            target = dst / record["deid_key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(work / record["deid_key"], target)
            row.update(status="published", reason="", output_path=record["deid_key"], sha256=record["sha256"])
            row.update({name: _cell(record.get(f"n_{name}")) for name in FREETEXT_COUNTS})
        elif quarantine_dir is not None and record["locator"] and os.path.isfile(record["locator"]) and not os.path.islink(record["locator"]):
            quarantine_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(record["locator"], quarantine_dir / f"{int(record['file_id']):06d}.original")
            row["output_path"] = str(quarantine_dir / f"{int(record['file_id']):06d}.original")
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    """A manifest cell of counts (``Keyword:n,...``); empty where nothing was counted."""
    return value if isinstance(value, str) else ""
