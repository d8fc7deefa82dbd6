"""Release indexes for versions published before indexes existed (``imaging-ingest release-index``).

A version's ``release.json`` and the catalog hold everything the index says, so the index
of an older version can be written later, beside its unchanged ``release.json``: only new
keys are written (``index/`` and content-addressed series manifests), nothing is replaced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imaging_ingest.publish.index import index_key, write_release_index
from imaging_ingest.publish.versions import open_release, release_objects

if TYPE_CHECKING:
    from imaging_ingest.catalog import Catalog
    from imaging_ingest.storage.objects import ObjectStore

__all__ = ["backfill_index"]


def backfill_index(store: ObjectStore, catalog: Catalog, collection_id: str, numbers: list[int] | None = None) -> list[int]:
    """Write the index of each recorded version that lacks one; returns the versions indexed."""
    done = []
    versions = [v.number for v in catalog.versions(collection_id)]
    for number in numbers or versions:
        tier, release = open_release(store, catalog, collection_id, number)
        if store.head(tier, index_key(collection_id, number, "changes")) is not None:
            continue
        previous: dict[str, Any] = {}
        if release.get("previous_version"):
            previous = release_objects(open_release(store, catalog, collection_id, int(release["previous_version"]))[1])
        version = catalog.version(collection_id, number)
        document = {
            "collection": collection_id, "version": number, "license": release.get("license", ""),
            "doi": release.get("doi") or (version.doi if version else "") or "",
            "created": release.get("created") or (version.created_at.isoformat() if version else ""),
        } | {k: v for k, v in release.items() if k not in {"objects"} and v is not None}
        write_release_index(store, catalog, tier, document, release_objects(release), previous)
        done.append(number)
    return done
