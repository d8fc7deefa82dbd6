"""A version's files and manifests for people outside the archive: fetched copies, CSV/Parquet manifests."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imaging_ingest.catalog import Catalog
from imaging_ingest.catalog.store import CatalogOutOfSync
from imaging_ingest.core.csvsafe import neutralise_frame
from imaging_ingest.publish.bag import BAG_TAG_FILES, payload_path
from imaging_ingest.publish.versions import (
    CITATION,
    DATACITE,
    RELEASE,
    open_release,
    release_objects,
    version_prefix,
)
from imaging_ingest.storage.objects import ObjectStore

__all__ = ["MANIFEST_COLUMNS", "export_manifest", "fetch_version", "manifest_frame"]


def fetch_version(
    store: ObjectStore,
    catalog: Catalog,
    collection_id: str,
    number: int,
    destination: Path,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> Path:
    """Download a version as a BagIt bag: its tag files, metadata and every object under ``data/``.

    ``bagit.Bag(destination).validate()`` then checks every byte against the checksums
    recorded when the version was published.
    """
    tier, release = open_release(store, catalog, collection_id, number)
    prefix = version_prefix(collection_id, number)
    destination.mkdir(parents=True, exist_ok=True)
    for name in (*BAG_TAG_FILES, DATACITE, CITATION, RELEASE):
        if store.head(tier, f"{prefix}/{name}") is not None:
            store.download(tier, f"{prefix}/{name}", destination / name)
    if not (destination / "bagit.txt").exists():
        raise FileNotFoundError(
            f"{collection_id} version {number} has no BagIt manifest (published before bags)"
        )
    objects = release["objects"]
    tick = progress(f"{collection_id} v{number}", len(objects)) if progress else None
    for entry in objects:
        store.download(tier, entry["key"], destination / payload_path(collection_id, entry["key"]))
        if tick:
            tick()
    return destination


MANIFEST_COLUMNS = (
    "collection",
    "version",
    "patient",
    "study_uid",
    "series_uid",
    "sop_uid",
    "modality",
    "sop_class_uid",
    "key",
    "size",
    "sha256",
    "md5",
    "tier",
)


def manifest_frame(store: ObjectStore, catalog: Catalog, collection_id: str, number: int) -> Any:
    """One row per object of a version: the release's listing with the catalog's modality and SOP class."""
    import pandas as pd

    tier, release = open_release(store, catalog, collection_id, number)
    listing = release_objects(release)
    members = {m.key: m for m in catalog.members(collection_id, number)}
    if set(members) != set(listing):
        raise CatalogOutOfSync(
            f"{collection_id} version {number}: the catalog lists {len(members)} objects, release.json {len(listing)}"
        )
    rows = [
        {
            "collection": collection_id,
            "version": number,
            "patient": entry.get("patient") or members[key].patient,
            "study_uid": entry["study_uid"],
            "series_uid": entry["series_uid"],
            "sop_uid": entry["sop_uid"],
            "modality": members[key].modality,
            "sop_class_uid": members[key].sop_class_uid,
            "key": key,
            "size": int(entry["size"]),
            "sha256": entry["sha256"],
            "md5": entry["md5"],
            "tier": tier,
        }
        for key, entry in sorted(listing.items())
    ]
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def export_manifest(
    store: ObjectStore, catalog: Catalog, collection_id: str, number: int, path: Path | None, fmt: str
) -> bytes | None:
    """Write a version's manifest as CSV or Parquet to ``path`` (or return the bytes when None)."""
    frame = manifest_frame(store, catalog, collection_id, number)
    buffer = io.BytesIO()
    if fmt == "csv":
        neutralise_frame(frame).to_csv(buffer, index=False)  # header values: no spreadsheet formulas
    elif fmt == "parquet":
        frame.to_parquet(buffer, index=False)
    else:
        raise ValueError(f"unknown manifest format {fmt!r}: use csv or parquet")
    if path is None:
        return buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return None
