"""Immutable, citable collection versions: publication, replacement, withdrawal, diffs, bags.

A version is exactly its ``{collection}/versions/{N}/release.json``: the full list of the
objects (key, size, SHA-256, MD5 and their patient/study/series/SOP identifiers) of the
collection at that version. Beside it: ``datacite.json`` (citation metadata),
``citation.txt`` and the BagIt tag files (``bag.py``). Those are written first and
``release.json`` last, so a publication killed half-way leaves no visible version, and
its rerun completes it (same listing, same keys) without copying anything twice.

Objects are written once and never overwritten. A new version lists the previous one's
objects plus the new ones; unchanged objects are not copied. Replacement: a submission
carrying a published series with different bytes for any of its SOP Instance UIDs (same
de-identified UIDs, different content) replaces that series as a whole in the next
version: the series' earlier objects are dropped from the listing (they stay, under
their keys, in the versions that listed them) and the resubmitted instances are listed,
changed bytes under a key with a content discriminator (``catalog.replacement_key``).
Withdrawal makes a version without a series. Both record why, in the catalog.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import PurePosixPath
from typing import Any

from imaging_ingest import __version__
from imaging_ingest.analysis.sources import source_dois
from imaging_ingest.catalog import Catalog
from imaging_ingest.catalog.models import VersionKind
from imaging_ingest.catalog.store import CatalogOutOfSync
from imaging_ingest.config import CollectionConfig
from imaging_ingest.core.records import iter_records
from imaging_ingest.publish.bag import BagInfo, bag_files
from imaging_ingest.publish.citation import (
    VersionFacts,
    citation_line,
    datacite_record,
    validated,
    version_doi,
)
from imaging_ingest.publish.fixity import stored_sha256
from imaging_ingest.publish.index import write_release_index
from imaging_ingest.storage.objects import ObjectInfo, ObjectStore
from imaging_ingest.storage.transfers import Transfers, TransferStats

__all__ = [
    "PUBLISH_COLUMNS",
    "Archive",
    "PublishOutcome",
    "merge_submission",
    "open_release",
    "publish_submission",
    "release_key",
    "release_objects",
    "withdraw_series",
]

log = logging.getLogger(__name__)

RELEASE = "release.json"
DATACITE = "datacite.json"
CITATION = "citation.txt"

#: Fields of each object in a release (the first four are the original format's).
OBJECT_FIELDS = ("key", "size", "sha256", "md5", "patient", "study_uid", "series_uid", "sop_uid")

Listing = dict[str, dict[str, Any]]


def version_prefix(collection_id: str, number: int) -> str:
    return f"{collection_id}/versions/{number}"


def release_key(collection_id: str, number: int) -> str:
    return f"{version_prefix(collection_id, number)}/{RELEASE}"


@dataclass(frozen=True)
class Archive:
    """What publication works on: one collection, its tier, the store and the catalog."""

    config: CollectionConfig
    store: ObjectStore
    catalog: Catalog
    tier: str

    @property
    def collection_id(self) -> str:
        return self.config.id


@dataclass(frozen=True)
class PublishOutcome:
    """What a publication or withdrawal did (PHI-free)."""

    version: int | None
    release_key: str | None
    created: bool
    added: int = 0
    dropped: int = 0
    changed_series: tuple[str, ...] = ()
    published_keys: tuple[str, ...] = ()
    #: per object and per byte: the server-side copies into the tier, the version's metadata uploads
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)


# -- reading releases ---------------------------------------------------------------------


def release_objects(release: Mapping[str, Any]) -> Listing:
    """A release's objects by key; identifiers a release does not list are read from the key."""
    listing: Listing = {}
    for entry in release["objects"]:
        item = dict(entry)
        if "sop_uid" not in item:  # a release from before identifiers were listed
            parts = PurePosixPath(item["key"]).parts
            item.setdefault("study_uid", parts[-3] if len(parts) >= 4 else "")
            item.setdefault("series_uid", parts[-2] if len(parts) >= 3 else "")
            item["sop_uid"] = parts[-1].split(".dcm")[0]
            item.setdefault("patient", "")
        listing[item["key"]] = item
    return listing


def _listing_of(archive: Archive, number: int | None) -> Listing:
    if number is None:
        return {}
    return release_objects(archive.store.get_json(archive.tier, release_key(archive.collection_id, number)))


def _fingerprint(listing: Listing) -> dict[str, str]:
    return {key: entry["sha256"] for key, entry in listing.items()}


def open_release(
    store: ObjectStore, catalog: Catalog, collection_id: str, number: int
) -> tuple[str, dict[str, Any]]:
    """The tier and ``release.json`` document of a recorded version."""
    collection = catalog.collection(collection_id)
    version = catalog.version(collection_id, number)
    if collection is None or version is None:
        raise KeyError(f"collection {collection_id} has no version {number}")
    return collection.tier, store.get_json(collection.tier, version.release_key)


# -- building a new listing ---------------------------------------------------------------


def merge_submission(previous: Listing, objects: Listing) -> tuple[Listing, list[str]]:
    """The next version's listing: the previous one with a submission's objects; and the replaced series.

    A series is replaced when the submission carries different bytes for a SOP Instance
    UID the previous version lists: all the series' previous objects are then dropped
    and the submission's instances of it listed instead.
    """
    previous_by_sop = {e["sop_uid"]: e for e in previous.values() if is_dicom_entry(e)}
    replaced: set[str] = set()
    for entry in objects.values():
        if not is_dicom_entry(entry):
            continue
        before = previous_by_sop.get(entry["sop_uid"])
        if before is not None and before["sha256"] != entry["sha256"]:
            replaced |= {entry["series_uid"], before["series_uid"]}
    submitted_sops = {e["sop_uid"] for e in objects.values() if is_dicom_entry(e)}
    kept = {
        key: entry
        for key, entry in previous.items()
        if not is_dicom_entry(entry)
        or (entry["series_uid"] not in replaced and entry["sop_uid"] not in submitted_sops)
    }
    return kept | objects, sorted(replaced)


def _is_dicom_row(row: Mapping[str, Any]) -> bool:
    kind = row.get("kind")
    return not isinstance(kind, str) or kind == "dicom"


def is_dicom_entry(entry: Mapping[str, Any]) -> bool:
    """A release entry for a DICOM instance (supporting files, slides and tables, carry a ``kind``)."""
    return entry.get("kind", "dicom") == "dicom"


def _submission_objects(archive: Archive, frame: Any) -> Listing:
    """The objects a verified manifest publishes, under the keys the register stage chose.

    DICOM instances are listed with their patient, study, series and SOP UIDs; supporting
    files (clinical tables, pathology slides) with their kind and patient pseudonym.
    """
    ok = frame[frame["status"] == "ok"]
    registered = archive.catalog.registered_objects(
        archive.collection_id, [r["deid_sop_uid"] for r in iter_records(ok) if _is_dicom_row(r)]
    )
    objects: Listing = {}
    for row in iter_records(ok):
        if not _is_dicom_row(row):
            key = f"{archive.collection_id}/{row['deid_key']}"
            pseudonym = row.get("pseudo_patient_id")
            objects[key] = {
                "key": key,
                "size": int(row["size_out"]),
                "sha256": row["sha256"],
                "md5": row["md5"],
                "kind": str(row["kind"]),
                "patient": pseudonym if isinstance(pseudonym, str) else None,
                "study_uid": None,
                "series_uid": None,
                "sop_uid": None,
                "_source": row["_staging_key"],
            }
            continue
        sop_uid = row["deid_sop_uid"]
        match = [o for o in registered.get(sop_uid, []) if o.sha256 == row["sha256"] and o.live]
        if not match:
            raise CatalogOutOfSync(
                f"file {row['file_id']}: its de-identified instance is not registered in the catalog; "
                "run the register stage before publishing"
            )
        entry = {
            "key": match[0].object_key,
            "size": int(row["size_out"]),
            "sha256": row["sha256"],
            "md5": row["md5"],
            "patient": row["pseudo_patient_id"],
            "study_uid": row["deid_study_uid"],
            "series_uid": row["deid_series_uid"],
            "sop_uid": sop_uid,
            "_source": row["_staging_key"],
        }
        objects[entry["key"]] = entry
    return objects


def _ensure_objects(archive: Archive, entries: Iterable[Mapping[str, Any]]) -> TransferStats:
    """Copy the objects a version adds into the tier (once, concurrently); refuse to overwrite different bytes.

    One listing tells which keys exist (instead of a HEAD per key); a copy's own response
    carries the SHA-256 the server computed, so a fresh copy needs no second request. The
    copies run on a bounded pool (``Transfers``); large objects go as a multipart copy.
    Returns the copies' timings (objects, bytes, seconds).
    """
    store, tier = archive.store, archive.tier
    entries = list(entries)
    present = store.sizes(tier, f"{archive.collection_id}/") if entries else {}

    def check(key: str, size: int, sha256: str, info: ObjectInfo) -> None:
        stored = stored_sha256(store, tier, key, info.sha256)
        if stored != sha256 or info.size != size:
            raise CatalogOutOfSync(
                f"object {key} in the {tier} tier does not hold the bytes the catalog registered "
                "(objects are written once; refusing to overwrite)"
            )

    def ensure(key: str, size: int, sha256: str) -> None:
        info = store.head(tier, key)
        if info is None:
            raise CatalogOutOfSync(f"object {key} is listed for publication but missing from the {tier} tier")
        check(key, size, sha256, info)

    def copy(source: str, key: str, size: int, sha256: str) -> None:
        check(key, size, sha256, store.copy("staging", source, tier, key, size=size))

    with Transfers() as pool:
        for entry in entries:
            key, size, sha256 = entry["key"], int(entry["size"]), str(entry["sha256"])
            if key in present:
                pool.submit(partial(ensure, key, size, sha256), counted=False)
                continue
            source = entry.get("_source")
            if not source:
                raise CatalogOutOfSync(
                    f"object {key} is listed for publication but missing from the {tier} tier"
                )
            pool.submit(partial(copy, source, key, size, sha256), size)
    return pool.stats  # the copies only: a check of an object already there (a rerun) moves no bytes


# -- writing a version --------------------------------------------------------------------


def _public(entry: Mapping[str, Any]) -> dict[str, Any]:
    public = {name: entry[name] for name in OBJECT_FIELDS}
    if not is_dicom_entry(entry):
        public["kind"] = entry["kind"]
    return public


def _write_version(
    archive: Archive,
    number: int,
    listing: Listing,
    *,
    previous: int | None,
    submission_id: str | None,
    kind: str,
    changes: dict[str, list[str]],
    previous_listing: Listing,
) -> TransferStats:
    """Write a version's metadata, bag, citation and release index, then its ``release.json`` (last).

    The metadata objects go up concurrently on a bounded pool; ``release.json`` only once
    they are all stored. Returns their timings.
    """
    config, store, tier = archive.config, archive.store, archive.tier
    created = datetime.now(UTC).replace(microsecond=0)
    objects = [_public(listing[key]) for key in sorted(listing)]
    total = sum(int(o["size"]) for o in objects)
    facts = VersionFacts(
        number=number,
        created=created,
        object_count=len(objects),
        total_bytes=total,
        patients=len({o["patient"] for o in objects if o["patient"]}),
        studies=len({o["study_uid"] for o in objects if is_dicom_entry(o)}),
        series=len({o["series_uid"] for o in objects if is_dicom_entry(o)}),
        derived_from=source_dois(
            archive.catalog, config.derived_from, {o["study_uid"] for o in objects if o["study_uid"]}
        ),
    )
    doi = version_doi(config, number)
    citation = citation_line(config, facts)
    derived = "".join(f"Derived from: https://doi.org/{doi}\n" for doi in facts.derived_from)
    side = {
        DATACITE: json.dumps(validated(datacite_record(config, facts)), indent=2, sort_keys=True).encode()
        + b"\n",
        CITATION: (citation + "\n" + derived).encode(),
    }
    info = BagInfo(
        source_organization=config.citation.publisher,
        external_identifier=f"https://doi.org/{doi}",
        external_description=f"{config.title}, version {number}",
        bagging_date=created.date().isoformat(),
        group_identifier=config.id,
        internal_sender_identifier=version_prefix(config.id, number),
        software_agent=f"imaging-ingest {__version__}",
    )
    bucket = store.bucket(tier)
    files = side | bag_files(config.id, objects, info, lambda key: f"s3://{bucket}/{key}", side)
    prefix = version_prefix(config.id, number)
    uploads = Transfers()
    with uploads:
        for name, data in files.items():
            content_type = "application/json" if name.endswith(".json") else "text/plain; charset=utf-8"
            uploads.submit(partial(store.put_bytes, tier, f"{prefix}/{name}", data, content_type), len(data))
        release = _release_document(
            archive,
            number,
            files,
            objects,
            previous=previous,
            submission_id=submission_id,
            kind=kind,
            changes=changes,
            doi=doi,
            citation=citation,
            created=created,
        )
        release["index"] = write_release_index(
            store, archive.catalog, tier, release, listing, previous_listing, uploads
        )
    store.put_json(tier, release_key(config.id, number), release)  # LAST: this makes the version
    return uploads.stats


def _release_document(
    archive: Archive,
    number: int,
    files: Mapping[str, bytes],
    objects: list[dict[str, Any]],
    *,
    previous: int | None,
    submission_id: str | None,
    kind: str,
    changes: dict[str, list[str]],
    doi: str,
    citation: str,
    created: datetime,
) -> dict[str, Any]:
    config = archive.config
    total = sum(int(o["size"]) for o in objects)
    release: dict[str, Any] = {
        "collection": config.id,
        "title": config.title,
        "license": config.license.value,
        "version": number,
        "previous_version": previous,
        "kind": kind,
        "submission": submission_id,
        "changes": changes,
        "doi": doi,
        "citation": citation,
        "created": created.isoformat(timespec="seconds"),
        "generator": f"imaging-ingest {__version__}",
        "metadata": sorted(files),
        "object_count": len(objects),
        "total_bytes": total,
        "objects": objects,
    }
    return release


def _adopt(archive: Archive, number: int, release: Mapping[str, Any]) -> None:
    """Record in the catalog a version whose release.json was written but never recorded."""
    listing = release_objects(release)
    changes = release.get("changes") or {}
    log.warning(
        "%s: recording version %d found in storage (an interrupted publication)",
        archive.collection_id,
        number,
    )
    archive.catalog.apply_release(
        archive.collection_id,
        number,
        release_key(archive.collection_id, number),
        listing,
        total_bytes=int(release.get("total_bytes", sum(int(e["size"]) for e in listing.values()))),
        submission_id=release.get("submission"),
        kind=release.get("kind", VersionKind.SUBMISSION),
        reason="recorded from its release.json after an interrupted publication",
        doi=release.get("doi"),
        changed_series=[*changes.get("replaced_series", []), *changes.get("withdrawn_series", [])],
        agent="recover",
    )


def _make_version(
    archive: Archive,
    next_listing: Callable[[Listing], tuple[Listing, list[str]]],
    *,
    submission_id: str | None,
    kind: VersionKind,
    reason: Callable[[list[str]], str | None],
    agent: str,
) -> PublishOutcome:
    """The publication protocol shared by submissions and withdrawals.

    1. Compute the next listing from the latest version the catalog records.
    2. If storage already holds that version's release.json (a crash after writing it),
       finish recording it when it is this listing, else record it as it is and start over.
    3. Copy the added objects, write the metadata and release.json last, record the version.
    """
    collection_id = archive.collection_id
    while True:
        latest = archive.catalog.latest_version(collection_id)
        previous_number = latest.number if latest else None
        previous = _listing_of(archive, previous_number)
        listing, changed = next_listing(previous)
        number = (previous_number or 0) + 1
        key = release_key(collection_id, number)
        stored = archive.store.get_json(archive.tier, key) if archive.store.head(archive.tier, key) else None
        if stored is not None and _fingerprint(release_objects(stored)) != _fingerprint(listing):
            _adopt(archive, number, stored)
            continue
        if stored is None and _fingerprint(listing) == _fingerprint(previous):
            return PublishOutcome(
                previous_number,
                latest.release_key if latest else None,
                created=False,
                published_keys=tuple(listing),
            )
        added = [entry for k, entry in listing.items() if k not in previous]
        copies = _ensure_objects(archive, added)
        metadata = TransferStats()
        if stored is None:
            change_name = "withdrawn_series" if kind == VersionKind.WITHDRAWAL else "replaced_series"
            metadata = _write_version(
                archive,
                number,
                listing,
                previous=previous_number,
                submission_id=submission_id,
                kind=kind.value,
                changes={change_name: changed} if changed else {},
                previous_listing=previous,
            )
        archive.catalog.apply_release(
            collection_id,
            number,
            key,
            [k for k, entry in listing.items() if is_dicom_entry(entry)],  # supporting files: their own table
            total_bytes=sum(int(e["size"]) for e in listing.values()),
            submission_id=submission_id,
            kind=kind,
            reason=reason(changed),
            doi=version_doi(archive.config, number),
            changed_series=changed,
            agent=agent,
        )
        dropped = len(set(previous) - set(listing))
        log.info(
            "%s version %d: %d objects (%d added, %d dropped); copied %s; metadata %s",
            collection_id,
            number,
            len(listing),
            len(added),
            dropped,
            copies.describe(),
            metadata.describe(),
        )
        return PublishOutcome(
            number,
            key,
            created=True,
            added=len(added),
            dropped=dropped,
            changed_series=tuple(changed),
            published_keys=tuple(listing),
            timings={"copy": copies.summary(), "metadata": metadata.summary()},
        )


#: The verified manifest's columns ``publish_submission`` reads.
PUBLISH_COLUMNS = (
    "file_id",
    "status",
    "kind",
    "deid_key",
    "size_out",
    "sha256",
    "md5",
    "pseudo_patient_id",
    "deid_study_uid",
    "deid_series_uid",
    "deid_sop_uid",
)


def publish_submission(
    archive: Archive, submission_id: str, frame: Any, staging_key_of: Callable[[Mapping[str, Any]], str]
) -> PublishOutcome:
    """Publish a submission's verified, registered objects as the collection's next version.

    ``frame`` is the verified manifest; ``staging_key_of(row)`` names a row's de-identified
    object in the staging tier. Idempotent: a rerun after a crash completes the same
    version; a rerun after success makes no new version.
    """
    frame = frame.assign(
        _staging_key=[staging_key_of(r) if r["status"] == "ok" else None for r in iter_records(frame)]
    )
    objects = _submission_objects(archive, frame)
    return _make_version(
        archive,
        lambda previous: merge_submission(previous, objects),
        submission_id=submission_id,
        kind=VersionKind.SUBMISSION,
        reason=lambda changed: (
            f"series resubmitted with different content by submission {submission_id}" if changed else None
        ),
        agent="publish",
    )


def withdraw_series(
    archive: Archive, series_uids: Iterable[str], reason: str, *, agent: str = "curator"
) -> PublishOutcome:
    """Make a new version without these series (e.g. after a PHI incident), recording why.

    The reason stays in the restricted catalog (a curator's words may name what leaked);
    the public release lists only which series were withdrawn.
    """
    wanted = sorted(set(series_uids))
    if not wanted:
        raise ValueError("name at least one series to withdraw")
    if not reason.strip():
        raise ValueError("a withdrawal needs a reason")

    def without(previous: Listing) -> tuple[Listing, list[str]]:
        listed = {e["series_uid"] for e in previous.values()}
        missing = [uid for uid in wanted if uid not in listed]
        if missing:
            raise ValueError(
                f"series {missing[0]} is not listed in the latest version of {archive.collection_id} "
                "(unknown, or already withdrawn)"
            )
        return {k: e for k, e in previous.items() if e["series_uid"] not in wanted}, wanted

    return _make_version(
        archive,
        without,
        submission_id=None,
        kind=VersionKind.WITHDRAWAL,
        reason=lambda _: reason.strip(),
        agent=agent,
    )


# -- comparing versions -------------------------------------------------------------------
