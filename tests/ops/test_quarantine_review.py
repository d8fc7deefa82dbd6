"""Curator decisions on quarantined files: the library the plugin's buttons (and the CLI) call."""

from __future__ import annotations

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import CollectionConfig
from imaging_ingest.curation import quarantine
from imaging_ingest.ops.metrics import REGISTRY


@pytest.fixture
def queue(catalog: Catalog, demo_config: CollectionConfig) -> list[int]:
    catalog.ensure_collection(demo_config)
    catalog.discover("demo", "sub-00000000000000a1", "site-a-DOE_JOHN", "file:///drop/site-a-DOE_JOHN", "f" * 64)
    catalog.add_quarantine(
        "demo",
        "sub-00000000000000a1",
        [
            (3, "DOE_JOHN/sc/1.dcm", "screen", "burned-in text likely: Secondary Capture Image Storage", "k3"),
            (4, "DOE_JOHN/sc/2.dcm", "screen", "burned-in text likely: Secondary Capture Image Storage", "k4"),
            (9, "DOE_JOHN/notes.txt", "inventory", "supporting file of type 'text' is not declared", "k9"),
        ],
    )
    return [item.id for item in quarantine.pending(catalog, "demo")]


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_review_queue_lists_pending_items_without_file_names(catalog: Catalog, queue: list[int]) -> None:
    items = quarantine.pending(catalog, "demo")
    assert [i.file_id for i in items] == [3, 4, 9]
    assert all(i.state == "pending" and i.submission_id == "sub-00000000000000a1" for i in items)
    assert not hasattr(items[0], "source_path")
    assert quarantine.pending_counts(catalog) == {"demo": 3}


def test_approve_and_reject_record_who_when_and_an_audit_event(catalog: Catalog, queue: list[int]) -> None:
    before = _sample("imaging_ingest_quarantine_decisions_total", collection="demo", decision="approved") or 0
    approved = quarantine.approve(catalog, queue[0], "curator-ann", "no text in the pixels")
    rejected = quarantine.reject(catalog, queue[2], "curator-bob")
    assert (approved.state, approved.decided_by) == ("approved", "curator-ann") and approved.decided_at
    assert (rejected.state, rejected.decided_by) == ("rejected", "curator-bob")
    assert [i.id for i in quarantine.pending(catalog, "demo")] == [queue[1]]
    events = [e for e in catalog.audit_events() if e.event_type == "quarantine-review"]
    assert {(e.agent, e.outcome, e.detail) for e in events} == {
        ("curator:curator-ann", "approved", "no text in the pixels"),
        ("curator:curator-bob", "rejected", None),
    }
    assert all(e.object_id.startswith("quarantine/demo/sub-00000000000000a1/") for e in events)
    assert _sample("imaging_ingest_quarantine_decisions_total", collection="demo", decision="approved") == before + 1
    assert _sample("imaging_ingest_quarantine_pending", collection="demo") == 1


def test_decisions_are_final_and_repeating_one_is_a_no_op(catalog: Catalog, queue: list[int]) -> None:
    first = quarantine.approve(catalog, queue[0], "ann")
    again = quarantine.approve(catalog, queue[0], "someone-else")
    assert again.decided_by == "ann" and again.decided_at == first.decided_at
    with pytest.raises(quarantine.QuarantineDecisionError, match="already approved by ann"):
        quarantine.reject(catalog, queue[0], "bob")
    with pytest.raises(quarantine.QuarantineDecisionError, match="no quarantined item"):
        quarantine.approve(catalog, 999_999, "ann")
    with pytest.raises(quarantine.QuarantineDecisionError, match="user name"):
        quarantine.approve(catalog, queue[1], "  ")
    with pytest.raises(quarantine.QuarantineDecisionError, match="decision must be"):
        quarantine.decide(catalog, queue[1], "pending", "ann")
    assert len([e for e in catalog.audit_events() if e.event_type == "quarantine-review"]) == 1
