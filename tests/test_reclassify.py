"""Reclassifying a published collection: public to restricted withdraws it, the reverse needs a curator.

Before, changing a config from public to restricted left every published object in the
public bucket. Now the next run moves them (old object versions included, the bucket is
versioned), points the catalog at the restricted tier, audits the move and raises the
alert's metric; a config that makes a restricted collection public stops the run until a
curator runs ``imaging-ingest reclassify --to public``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.cli import main
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.ops.metrics import REGISTRY
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.publish.reclassify import ReclassificationRefused
from imaging_ingest.storage.objects import ObjectStore

pytestmark = pytest.mark.security


def _everything(store: ObjectStore, tier: str, prefix: str) -> list[str]:
    """Every object *and every old version or delete marker* under ``prefix``."""
    pages = store.client.get_paginator("list_object_versions").paginate(Bucket=store.bucket(tier), Prefix=prefix)
    return [v["Key"] for page in pages for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]


def test_public_to_restricted_leaves_nothing_in_the_public_tier(
    demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog, store: ObjectStore,
    submission: Path, ingest_env: Settings, capsys: pytest.CaptureFixture[str],
) -> None:
    summary = Ingest(demo_config, settings, secret=secret, catalog=catalog).run()
    assert summary is not None and summary["published"] > 0
    public_before = sorted(o.key for o in store.list("public", "demo/"))
    assert public_before
    alerts_before = REGISTRY.get_sample_value(
        "imaging_ingest_collection_reclassifications_total", {"collection": "demo", "to_tier": "restricted"}) or 0

    restricted = demo_config.model_copy(update={"tier": "restricted"})
    Ingest(restricted, settings, secret=secret, catalog=catalog).catalog  # noqa: B018 - the run's first step

    assert _everything(store, "public", "demo/") == [], "no object (nor old version) of it is left in the public tier"
    assert sorted(o.key for o in store.list("restricted", "demo/")) == public_before
    assert {i.tier for i in catalog.instances("demo")} == {"restricted"}
    assert catalog.collection("demo").tier == "restricted"
    events = [e for e in catalog.audit_events() if e.event_type == "reclassification"]
    assert [(e.outcome, e.object_id) for e in events] == [("withdrawn", "demo")]
    assert f"{len(public_before)} object(s) moved" in (events[0].detail or "")
    assert REGISTRY.get_sample_value(
        "imaging_ingest_collection_reclassifications_total", {"collection": "demo", "to_tier": "restricted"}
    ) == alerts_before + 1

    with pytest.raises(ReclassificationRefused, match="needs a curator"):
        Ingest(demo_config, settings, secret=secret, catalog=catalog).catalog  # noqa: B018
    assert _everything(store, "public", "demo/") == []

    with pytest.raises(SystemExit):
        main(["reclassify", "demo", "--to", "public", "--by", "operator"])
    assert "only curators" in capsys.readouterr().err
    assert main(["reclassify", "demo", "--to", "public", "--by", "curator-a"]) == 0
    assert sorted(o.key for o in store.list("public", "demo/")) == public_before
    assert catalog.collection("demo").tier == "public"
    released = [e for e in catalog.audit_events() if e.event_type == "reclassification" and e.outcome == "released"]
    assert [e.agent for e in released] == ["curator:curator-a"]
