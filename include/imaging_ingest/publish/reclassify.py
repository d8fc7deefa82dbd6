"""A collection moved between public and restricted: its published objects follow, loudly.

Before, changing a published collection's config from public to restricted only changed
the catalog row: its objects stayed in the public bucket, readable by anyone, with no
warning. Now the first run (or ``imaging-ingest catalog reclassify``) after the change
withdraws them: every object under the collection's prefix in the public tier is copied to
the restricted tier and deleted from the public one, old object versions included (the
public bucket is versioned); the catalog's instances point at the restricted tier; an
audit event records the move and the ``collection_reclassifications`` metric raises the
``CollectionWithdrawnFromPublic`` alert.

The reverse (restricted to public) releases data: it is never done by a config change
alone. A run whose config makes a restricted collection public refuses to start until a
curator runs ``imaging-ingest catalog reclassify <id> --to public --by <curator>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import update

if TYPE_CHECKING:
    from imaging_ingest.catalog import Catalog
    from imaging_ingest.config import CollectionConfig
    from imaging_ingest.storage.objects import ObjectStore

__all__ = ["ReclassificationRefused", "Reclassified", "reclassify", "reconcile_tier"]

log = logging.getLogger(__name__)

PUBLIC, RESTRICTED = "public", "restricted"


class ReclassificationRefused(RuntimeError):
    """Making a restricted collection public needs a curator's explicit action."""


@dataclass(frozen=True)
class Reclassified:
    collection_id: str
    from_tier: str
    to_tier: str
    moved: int
    by: str


def reconcile_tier(catalog: Catalog, store: ObjectStore, config: CollectionConfig) -> Reclassified | None:
    """Compare the config's tier with the catalog's; withdraw from public, or refuse to publish restricted data.

    Called by the pipeline before it records the config (``Ingest.catalog``); None when
    nothing changed or the collection is new.
    """
    row = catalog.collection(config.id)
    if row is None or row.tier == config.tier:
        return None
    if row.tier == RESTRICTED and config.tier == PUBLIC:
        raise ReclassificationRefused(
            f"collection {config.id} is restricted in the catalog but public in its config: publishing it needs "
            f"a curator: imaging-ingest catalog reclassify {config.id} --to public --by <curator>"
        )
    return reclassify(catalog, store, config.id, RESTRICTED, by="pipeline (config changed)")


def reclassify(catalog: Catalog, store: ObjectStore, collection_id: str, to_tier: str, *, by: str) -> Reclassified:
    """Move every published object of a collection to ``to_tier``'s bucket; audited, alerted.

    Idempotent: a run interrupted half way moves what is left when run again.
    """
    from imaging_ingest.catalog.models import AuditEvent, Collection, Instance
    from imaging_ingest.ops.metrics import metrics

    if to_tier not in (PUBLIC, RESTRICTED):
        raise ValueError(f"a collection is public or restricted, not {to_tier!r}")
    from_tier = PUBLIC if to_tier == RESTRICTED else RESTRICTED
    prefix = f"{collection_id}/"
    moved = 0
    for info in list(store.list(from_tier, prefix)):
        if store.head(to_tier, info.key) is None:
            store.copy(from_tier, info.key, to_tier, info.key, size=info.size)
        moved += 1
    _delete_all_versions(store, from_tier, prefix)
    with catalog.session() as s:
        s.execute(update(Instance).where(Instance.collection_id == collection_id).values(tier=to_tier))
        row = s.get(Collection, collection_id)
        if row is not None:
            row.tier = to_tier
        s.add(AuditEvent(
            event_type="reclassification", agent=by, outcome="withdrawn" if to_tier == RESTRICTED else "released",
            object_id=collection_id, object_type="collection", collection_id=collection_id,
            detail=f"{moved} object(s) moved from the {from_tier} tier to the {to_tier} tier",
        ))
    metrics().inc("collection_reclassifications", collection=collection_id, to_tier=to_tier)
    log.warning("collection %s reclassified %s -> %s by %s: %d object(s) moved",
                collection_id, from_tier, to_tier, by, moved)
    return Reclassified(collection_id, from_tier, to_tier, moved, by)


def _delete_all_versions(store: ObjectStore, tier: str, prefix: str) -> None:
    """Delete every object and every old version under ``prefix`` (a versioned bucket keeps deleted data)."""
    client, bucket = store.client, store.bucket(tier)
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        batch = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                 for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]
        for start in range(0, len(batch), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch[start:start + 1000], "Quiet": True})
    for info in list(store.list(tier, prefix)):  # an unversioned bucket (or a store without versions)
        store.delete(tier, info.key)
