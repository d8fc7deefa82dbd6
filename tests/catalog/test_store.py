"""The catalog's operations on SQLite and PostgreSQL: states, registration, versions as spans, audit."""

from __future__ import annotations

import hashlib

import pytest

from imaging_ingest.catalog import Catalog, InstanceRecord, SubmissionState
from imaging_ingest.catalog.store import CatalogOutOfSync, InvalidTransition, replacement_key
from imaging_ingest.config import CollectionConfig, DropConfig, License

COLLECTION = "cat"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def cat(catalog: Catalog) -> Catalog:
    catalog.ensure_collection(
        CollectionConfig(id=COLLECTION, title="Catalog test", license=License.CC_BY_4_0, drop=DropConfig(url="file:///x"))
    )
    for name in ("s1", "s2", "s3"):
        catalog.discover(COLLECTION, name, f"batch-{name}", f"file:///drop/{name}", _sha(name))
    return catalog


def _record(catalog: Catalog, sop: str, content: str, series: str = "1.2.3", study: str = "1.2", patient: str = "h1") -> InstanceRecord:
    catalog.assign_pseudonyms(COLLECTION, "CAT", [patient])
    return InstanceRecord(
        pseudonym="", id_hash=patient, study_uid=study, study_date="20200101", study_description=None,
        series_uid=series, modality="CT", body_part=None, manufacturer=None, series_description=None,
        sop_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.2", object_key=f"{COLLECTION}/{study}/{series}/{sop}.dcm",
        tier="public", size=len(content), sha256=_sha(content), md5=hashlib.md5(content.encode()).hexdigest(),
    )


def _live_keys(catalog: Catalog, sops: list[str]) -> list[str]:
    rows = catalog.registered_objects(COLLECTION, sops)
    return sorted(o.object_key for objs in rows.values() for o in objs if o.live)


def _release(catalog: Catalog, number: int, keys: list[str], **kwargs: object) -> bool:
    return catalog.apply_release(COLLECTION, number, f"{COLLECTION}/versions/{number}/release.json", keys,
                                 total_bytes=0, **kwargs)  # type: ignore[arg-type]


def test_a_submission_walks_the_states_with_timestamps(cat: Catalog) -> None:
    assert cat.claim("s1").created
    assert not cat.claim("s1").created  # a second claim is a no-op
    for state in SubmissionState.ORDER[2:]:
        cat.set_state("s1", state)
    row = cat.submission("s1")
    assert row.state == SubmissionState.PUBLISHED
    stamps = row.timestamps()
    assert all(stamps[s] for s in SubmissionState.ORDER) and stamps["failed"] is None
    assert [stamps[s] for s in SubmissionState.ORDER] == sorted(stamps[s] for s in SubmissionState.ORDER)


def test_only_a_registered_submission_can_be_published(cat: Catalog) -> None:
    cat.claim("s1")
    cat.set_state("s1", SubmissionState.VERIFIED)
    with pytest.raises(InvalidTransition, match="only a registered submission"):
        cat.set_state("s1", SubmissionState.PUBLISHED)
    with pytest.raises(InvalidTransition, match="unknown submission state"):
        cat.set_state("s1", "staged-ish")
    assert cat.submission("s1").state == SubmissionState.VERIFIED


def test_failure_resume_and_rerun_are_recorded(cat: Catalog) -> None:
    cat.claim("s1")
    cat.set_state("s1", SubmissionState.STAGED)
    cat.set_state("s1", SubmissionState.FAILED, error="inventory: gate 1 failed")
    assert cat.submission("s1").failed_at is not None
    assert cat.claim("s1").created  # a failed submission can be claimed again
    cat.set_state("s1", SubmissionState.REGISTERED)
    cat.set_state("s1", SubmissionState.INVENTORIED)  # a curator reruns from the inventory
    events = [e for e in cat.audit_trail("s1") if e.object_type == "submission"]
    assert [(e.event_type, e.outcome) for e in events if e.agent.endswith("failed")] == [("ingestion", "failure")]
    assert events[-1].detail == "rerun: was registered"
    assert cat.submission("s1").error is None


def test_pseudonyms_are_stable_and_numbered_by_hash(cat: Catalog) -> None:
    first = cat.assign_pseudonyms(COLLECTION, "CAT", ["bb", "aa"])
    assert first == {"aa": "CAT-0001", "bb": "CAT-0002"}
    assert cat.assign_pseudonyms(COLLECTION, "CAT", ["cc", "aa"]) == {"aa": "CAT-0001", "cc": "CAT-0003"}


def test_registration_is_idempotent(cat: Catalog) -> None:
    records = [_record(cat, f"1.2.3.{i}", f"bytes {i}") for i in range(3)]
    assert cat.register(COLLECTION, "s1", records) == 3
    assert cat.register(COLLECTION, "s1", records) == 0
    assert cat.register(COLLECTION, "s2", records) == 0  # the same bytes from another submission
    assert len(cat.instances(COLLECTION)) == 3


def test_versions_are_spans_and_a_replacement_gets_its_own_key(cat: Catalog) -> None:
    a, b = _record(cat, "1.2.3.1", "a"), _record(cat, "1.2.3.2", "b")
    cat.register(COLLECTION, "s1", [a, b])
    assert _release(cat, 1, [a.object_key, b.object_key], submission_id="s1")
    assert not _release(cat, 1, [a.object_key, b.object_key])  # already recorded

    a2 = _record(cat, "1.2.3.1", "a, corrected")
    assert cat.register(COLLECTION, "s2", [a2]) == 1
    new_key = replacement_key(a.object_key, a2.sha256)
    assert new_key == f"{COLLECTION}/1.2/1.2.3/1.2.3.1.{a2.sha256[:16]}.dcm"
    assert _live_keys(cat, ["1.2.3.1"]) == sorted([a.object_key, new_key])  # listed + pending
    _release(cat, 2, [new_key, b.object_key], submission_id="s2", changed_series=["1.2.3"], reason="resubmitted")

    assert sorted(m.key for m in cat.members(COLLECTION, 1)) == sorted([a.object_key, b.object_key])
    assert sorted(m.key for m in cat.members(COLLECTION, 2)) == sorted([new_key, b.object_key])
    old = next(i for i in cat.instances(COLLECTION) if i.object_key == a.object_key)
    assert (old.published_version, old.retired_version) == (1, 2)
    assert [e.event_type for e in cat.audit_trail(a.object_key)][-1] == "replacement"
    series_events = [e for e in cat.audit_trail("1.2.3") if e.object_type == "series"]
    assert [(e.event_type, e.detail) for e in series_events] == [("replacement", "resubmitted")]

    # The old bytes come back in a later submission: the same object (key) is listed again.
    a3 = _record(cat, "1.2.3.1", "a")
    assert cat.register(COLLECTION, "s3", [a3]) == 1
    _release(cat, 3, [a.object_key, b.object_key], submission_id="s3")
    assert sorted(m.key for m in cat.members(COLLECTION, 3)) == sorted([a.object_key, b.object_key])
    assert sorted(m.key for m in cat.members(COLLECTION, 2)) == sorted([new_key, b.object_key])  # unchanged
    assert cat.published_object_count(COLLECTION) == 3


def test_a_rerun_with_new_bytes_replaces_its_own_pending_row(cat: Catalog) -> None:
    cat.register(COLLECTION, "s1", [_record(cat, "1.2.3.1", "first try")])
    cat.register(COLLECTION, "s1", [_record(cat, "1.2.3.1", "second try")])
    rows = cat.instances(COLLECTION)
    assert [r.sha256 for r in rows] == [_sha("second try")]


def test_a_release_the_catalog_cannot_account_for_is_refused(cat: Catalog) -> None:
    a = _record(cat, "1.2.3.1", "a")
    cat.register(COLLECTION, "s1", [a])
    with pytest.raises(CatalogOutOfSync, match="not registered"):
        _release(cat, 1, [a.object_key, "cat/9/9/9.dcm"])
    assert _release(cat, 1, [a.object_key])
    with pytest.raises(CatalogOutOfSync, match="cannot follow"):
        _release(cat, 3, [a.object_key])
    assert [v.number for v in cat.versions(COLLECTION)] == [1]


def test_fixity_targets_oldest_checked_first(cat: Catalog) -> None:
    records = [_record(cat, f"1.2.3.{i}", f"bytes {i}") for i in range(5)]
    cat.register(COLLECTION, "s1", records)
    assert cat.fixity_targets(COLLECTION) == []  # nothing published yet
    _release(cat, 1, [r.object_key for r in records])
    first = cat.fixity_targets(COLLECTION, limit=2)
    assert len(first) == 2
    cat.record_fixity(COLLECTION, [(t.key, True, "ok") for t in first])
    second = cat.fixity_targets(COLLECTION, limit=3)
    assert {t.key for t in second}.isdisjoint({t.key for t in first})
    cat.record_fixity(COLLECTION, [(t.key, t.key != second[0].key, "checked") for t in second])
    assert {t.key for t in cat.fixity_targets(COLLECTION, version=1)} == {r.object_key for r in records}
    outcomes = [e.outcome for e in cat.audit_trail(second[0].key) if e.event_type == "fixity check"]
    assert outcomes == ["failure"]
