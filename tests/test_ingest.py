"""The stages called directly, in one process, on a synthetic submission (no Airflow)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from imaging_ingest.catalog import Catalog, SubmissionState
from imaging_ingest.config import CollectionConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.core.gates import GateFailed
from imaging_ingest.pipeline.ingest import Ingest, NothingToDo
from imaging_ingest.storage.objects import ObjectStore, PublicTierViolation


@pytest.fixture
def ingest(demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog) -> Ingest:
    return Ingest(demo_config, settings, secret=secret, catalog=catalog)


def _dicom_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.dcm")]


def _fresh_archive(config: CollectionConfig, secret: bytes, home: Path, s3_endpoint: str) -> tuple[Ingest, ObjectStore]:
    """An ingest into an empty catalog and empty buckets of its own (named after ``home``)."""
    settings = Settings(
        home=home,
        catalog_url=f"sqlite:///{home / 'c.sqlite'}",
        s3_endpoint=s3_endpoint,
        bucket_prefix=f"{home.name}-{home.parent.name[-8:].lower().replace('_', '-')}",
    )
    store = ObjectStore(settings)
    store.ensure_buckets()
    return Ingest(config, settings, secret=secret), store


def test_discover_sees_only_complete_submissions(ingest: Ingest, submission: Path, drop_root: Path) -> None:
    (drop_root / "still-uploading").mkdir()
    (drop_root / "still-uploading" / "a.dcm").write_bytes(b"x")
    found = ingest.discover()
    assert len(found) == 1
    assert found[0]["submission_id"].startswith("sub-")
    assert "site-a" not in str(found)  # drop folder names stay out of task results


def test_nothing_to_do_without_a_complete_submission(ingest: Ingest, drop_root: Path) -> None:
    with pytest.raises(NothingToDo):
        ingest.claim()


def test_claim_twice_is_a_no_op(ingest: Ingest, submission: Path) -> None:
    first = ingest.claim()
    second = ingest.claim(first.submission_id)
    assert first.submission_id == second.submission_id
    assert second.extra["state"] == SubmissionState.CLAIMED
    assert ingest.catalog.submission(first.submission_id).state == SubmissionState.CLAIMED


def test_stage_raw_keeps_originals_content_addressed(ingest: Ingest, submission: Path, store: ObjectStore) -> None:
    sub = ingest.claim().submission_id
    result = ingest.stage_raw(sub)
    staged = ingest.manifests(sub).read("staged")
    assert result.counts["files"] == len([p for p in submission.rglob("*") if p.is_file() and p.name != "READY"])
    for row in staged.itertuples():
        info = store.head("raw", row.raw_key)
        assert info is not None and info.sha256 == row.sha256_source
        assert row.raw_key.endswith(row.sha256_source)
    # each distinct content uploaded once (on the bounded pool), timed per object and per byte
    assert result.counts["uploaded_objects"] == staged["raw_key"].dropna().nunique()
    assert result.counts["uploaded_bytes"] == sum(store.sizes("raw", f"demo/{sub}/").values())
    timings = result.extra["timings"]
    assert timings["upload"]["objects"] == result.counts["uploaded_objects"]
    assert timings["read"]["objects"] >= result.counts["uploaded_objects"]
    assert timings["upload"]["ms_per_object"] > 0 and timings["upload"]["mb_per_s"] > 0
    again = ingest.stage_raw(sub)  # everything is there: nothing is uploaded again
    assert again.counts["uploaded_objects"] == 0


def test_inventory_reads_headers_and_assigns_pseudonyms(ingest: Ingest, submission: Path) -> None:
    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    ingest.inventory(sub)
    frame = ingest.manifests(sub).read("inventory")
    dicom = frame[frame["kind"] == "dicom"]
    assert set(dicom["modality"]) == {"CT", "MR", "RTSTRUCT", "OT"}
    ok = frame[(frame["status"] == "ok") & (frame["kind"] == "dicom")]
    assert ok["pseudo_patient_id"].str.match(r"^DEMO-\d{4}$").all()
    assert ok.groupby("patient_id")["pseudo_patient_id"].nunique().eq(1).all()
    assert ok.groupby("patient_id")["date_offset_days"].nunique().eq(1).all()
    csv_row = frame[frame["source_path"] == "clinical.csv"].iloc[0]
    assert csv_row["kind"] == "clinical" and csv_row["status"] == "ok"  # declared by the demo collection


def test_plan_batches_whole_series(ingest: Ingest, submission: Path) -> None:
    ingest = Ingest(ingest.config.model_copy(update={"batch_size": 10}), ingest.settings, secret=ingest.secret,
                    catalog=ingest.catalog)
    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    ingest.inventory(sub)
    keys = ingest.plan(sub)
    batches = [ingest.manifests(sub).read_key(k) for k in keys]
    assert len(keys) > 1
    assert all(len(b) <= 10 for b in batches)
    seen = pd.concat(batches)
    assert seen["file_id"].is_unique
    inventory = ingest.manifests(sub).read("inventory")
    assert set(seen["file_id"]) == set(inventory.loc[inventory["status"] == "ok", "file_id"])
    for series, group in seen.groupby("series_uid"):
        if len(group) <= 10:  # a series that fits in a batch is never split
            assert sum(series in set(b["series_uid"]) for b in batches) == 1


def test_deidentify_queues_each_upload_as_its_file_is_written_and_a_failed_upload_fails_the_batch(
    ingest: Ingest, submission: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imaging_ingest.pipeline.stages import deidentify as stage
    from imaging_ingest.storage.transfers import Transfers

    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    ingest.inventory(sub)
    keys = ingest.plan(sub)
    key = next(k for k in keys if (ingest.manifests(sub).read_key(k)["kind"] == "dicom").all())
    name = "deid/" + key.rsplit("/", 1)[-1].removesuffix(".parquet")
    queued: list[int] = []

    class Spy(Transfers):
        def submit(self, fn, nbytes=0, *, counted=True):  # type: ignore[no-untyped-def]
            queued.append(nbytes)
            return super().submit(fn, nbytes, counted=counted)

    real = stage.deidentify_frame
    when_written: list[int] = []

    def frame_then_count(*args, **kwargs):  # type: ignore[no-untyped-def]
        frame = real(*args, **kwargs)
        when_written.append(len(queued))  # uploads queued before the last file's outcome was handed back
        return frame

    monkeypatch.setattr(stage, "Transfers", Spy)
    monkeypatch.setattr(stage, "deidentify_frame", frame_then_count)
    result = ingest.deidentify(sub, key)
    frame = ingest.manifests(sub).read(name)
    ok = frame[frame["status"] == "ok"]
    assert len(ok) > 1 and when_written == [len(ok)] == [len(queued)]  # overlapped, one upload per output
    assert result.counts["uploaded_objects"] == len(ok) and result.counts["uploaded_bytes"] == ok["size_out"].sum()
    upload = result.extra["timings"]["upload"]
    assert upload["objects"] == len(ok) and upload["bytes"] == sum(queued) and upload["ms_per_object"] > 0
    for row in ok.itertuples():
        assert store.head("staging", f"demo/{sub}/deid/{row.deid_key}").sha256 == row.sha256

    # an upload that fails fails the task, and the batch leaves no manifest behind
    store.delete("staging", ingest.manifests(sub).key(name))
    put_file = ingest.store.put_file
    calls: list[str] = []

    def refuse_the_second(tier: str, object_key: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if tier == "staging" and "/deid/" in object_key:
            calls.append(object_key)
            if len(calls) == 2:
                raise OSError("upload refused")
        return put_file(tier, object_key, *args, **kwargs)

    monkeypatch.setattr(ingest.store, "put_file", refuse_the_second)
    with pytest.raises(OSError, match="upload refused"):
        ingest.deidentify(sub, key)
    assert not ingest.manifests(sub).exists(name)


def test_full_run_publishes_deidentified_objects_and_a_release(
    ingest: Ingest, submission: Path, store: ObjectStore, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = []
    publish = ingest.publish
    monkeypatch.setattr(ingest, "publish", lambda sub: results.append(publish(sub)) or results[-1])
    summary = ingest.run()
    assert summary is not None
    # the copies into the tier ran on the bounded pool, timed per object and per byte
    (published,) = results
    copy = published.extra["timings"]["copy"]
    assert copy["objects"] == published.counts["copied_objects"] == published.counts["added_objects"]
    assert copy["bytes"] == published.counts["copied_bytes"] > 0 and copy["ms_per_object"] > 0
    assert published.extra["timings"]["metadata"]["objects"] >= 5  # bag, citation, index tables
    dicom_in = len(_dicom_files(submission))
    sc_files = len([p for p in _dicom_files(submission) if "SCANNED" in p.parent.name])
    assert summary["files_in"] == dicom_in + 1  # the clinical CSV
    assert summary["published"] == dicom_in - sc_files + 1  # the clinical CSV, declared by the demo collection
    assert summary["published"] + summary["quarantined"] == summary["files_in"]
    assert any("BurnedInAnnotation" in r for r in summary["quarantine_reasons"])
    release = store.get_json("public", summary["release_key"])
    listed = {o["key"]: o for o in release["objects"]}
    published = {o.key for o in store.list("public", "demo/") if not o.key.startswith("demo/versions/")}
    assert set(listed) == published
    instances = {i.object_key: i for i in catalog.instances("demo")}
    assert set(instances) == {k for k in published if k.endswith(".dcm")}
    for key, obj in listed.items():
        if not key.endswith(".dcm"):
            continue
        assert store.head("public", key).sha256 == obj["sha256"] == instances[key].sha256
        ds = pydicom.dcmread(io.BytesIO(store.get_bytes("public", key)))
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientName).startswith("DEMO-")
        assert key == f"demo/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"


def test_rerun_publishes_nothing_twice(ingest: Ingest, submission: Path, store: ObjectStore, catalog: Catalog) -> None:
    first = ingest.run()
    assert ingest.run() is None  # nothing new in the drop
    again = ingest.run(first["submission_id"], force=True)
    assert again["version"] == first["version"] == 1
    assert len(catalog.versions("demo")) == 1
    assert again["published"] == first["published"]


def test_rerun_into_a_fresh_archive_gives_identical_bytes_and_keys(
    demo_config: CollectionConfig, submission: Path, secret: bytes, tmp_path: Path, s3_endpoint: str
) -> None:
    def run_into(name: str) -> dict[str, str]:
        ingest, store = _fresh_archive(demo_config, secret, tmp_path / f"fresh-{name}", s3_endpoint)
        ingest.run()
        return {o.key: store.head("public", o.key).sha256 for o in store.list("public", "demo/") if o.key.endswith(".dcm")}

    assert run_into("one") == run_into("two")


def test_gate_failure_stops_the_stage_and_names_the_expectation(
    ingest: Ingest, submission: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = Ingest(ingest.config.model_copy(update={"modalities": ["CT"]}), ingest.settings, secret=ingest.secret,
                    catalog=ingest.catalog)
    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    from imaging_ingest.pipeline.stages import intake as ingest_module

    real = ingest_module.inventory_frame
    monkeypatch.setattr(ingest_module, "inventory_frame", lambda records, path_of, modalities, **kw: real(records, path_of, ["CT", "MR", "RTSTRUCT", "OT"], **kw))
    with pytest.raises(GateFailed) as failure:
        ingest.inventory(sub)
    assert "expect_column_values_to_be_in_set(modality)" in str(failure.value)
    report = ingest.settings.reports_dir / "demo" / sub / "inventory.html"
    assert report.exists() and "<html" in report.read_text().lower()


def test_restricted_collection_never_publishes_publicly(ingest: Ingest) -> None:
    config = ingest.config.model_copy(update={"license": "restricted", "tier": "public"})
    with pytest.raises(PublicTierViolation):
        _ = Ingest(config, ingest.settings, secret=ingest.secret).publish_tier


def test_restricted_collection_publishes_to_restricted_tier(
    demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog, submission: Path, store: ObjectStore
) -> None:
    from imaging_ingest.config import License

    config = demo_config.model_copy(update={"license": License.RESTRICTED, "tier": "restricted"})
    summary = Ingest(config, settings, secret=secret, catalog=catalog).run()
    assert summary["tier"] == "restricted"
    assert list(store.list("public")) == []
    assert store.head("restricted", summary["release_key"]) is not None


def test_quarantined_originals_are_kept_with_reasons(ingest: Ingest, submission: Path, store: ObjectStore) -> None:
    summary = ingest.run()
    items = ingest.catalog.quarantine_items("demo")
    assert len(items) == summary["quarantined"]
    for item in items:
        assert item.reason and item.state == "pending"
        reason = store.get_json("quarantine", f"demo/{item.submission_id}/{item.file_id:06d}/reason.json")
        assert reason["reason"] == item.reason
        assert store.head("quarantine", item.object_key) is not None


def test_run_refuses_to_start_without_a_secret(
    demo_config: CollectionConfig, settings: Settings, submission: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imaging_ingest.core.secret import SecretMissing

    monkeypatch.delenv("IMAGING_INGEST_SECRET", raising=False)
    monkeypatch.delenv("IMAGING_INGEST_SECRET_FILE", raising=False)
    ingest = Ingest(demo_config, settings)
    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    with pytest.raises(SecretMissing):
        ingest.inventory(sub)


def test_stages_streamed_in_small_parts_give_the_same_manifests_and_release(
    demo_config: CollectionConfig, submission: Path, secret: bytes, tmp_path: Path, s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whole-submission stages work part by part (bounded memory); the part size changes nothing."""
    from imaging_ingest.pipeline import manifest

    def run_into(name: str) -> tuple[dict[str, pd.DataFrame], list[dict[str, str]]]:
        ingest, store = _fresh_archive(demo_config, secret, tmp_path / f"parts-{name}", s3_endpoint)
        summary = ingest.run()
        manifests = ingest.manifests(summary["submission_id"])
        frames = {n: manifests.read(n) for n in ("inventory", "screened", "verified", "published")}
        release = store.get_json("public", summary["release_key"])
        return frames, sorted(({k: str(v) for k, v in o.items()} for o in release["objects"]), key=str)

    whole = run_into("whole")
    monkeypatch.setattr(manifest, "ROWS_PER_GROUP", 3)
    parts = run_into("parts")
    assert len(whole[0]["verified"]) > 3 * 3  # several parts per stage
    assert parts[1] == whole[1]
    for name, frame in whole[0].items():
        pd.testing.assert_frame_equal(parts[0][name], frame, check_dtype=False, obj=name)


def test_an_ingest_closes_what_it_opened_and_leaves_what_it_was_given(
    demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    disposed: list[Catalog] = []
    monkeypatch.setattr(Catalog, "dispose", lambda self: disposed.append(self))
    with Ingest(demo_config, settings, secret=secret) as own:
        opened = own.catalog  # opened by the ingest itself
    assert disposed == [opened]
    with Ingest(demo_config, settings, secret=secret, catalog=catalog) as given:
        assert given.catalog is catalog
    assert disposed == [opened]  # the caller's catalog stays open


def test_an_exact_duplicate_is_quarantined_with_its_reason_but_never_waits_for_a_curator(
    ingest: Ingest, submission: Path
) -> None:
    import shutil

    first = sorted(submission.rglob("*.dcm"))[0]
    shutil.copy(first, submission / "again.dcm")
    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    ingest.inventory(sub)
    items = {i.source_path: i for i in ingest.catalog.quarantine_items("demo") if i.submission_id == sub}
    duplicate = next(i for path, i in items.items() if path.endswith("again.dcm") or "duplicate" in i.reason)
    assert "duplicate" in duplicate.reason  # conservation: quarantined, with its reason
    assert (duplicate.state, duplicate.decided_by) == ("rejected", "policy")  # closed by policy, not queued
    assert all(i.state == "pending" for i in items.values() if "duplicate" not in i.reason)


def test_the_verify_stage_takes_the_deidentify_tasks_verdicts_and_still_quarantines_leaks(
    demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog, submission: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imaging_ingest.config import DeidConfig, TagOverride
    from imaging_ingest.verify import leaks

    deid = DeidConfig(options=demo_config.deid.options, overrides={"InstitutionName": TagOverride(action="keep")})
    config = demo_config.model_copy(update={"workers": 1, "deid": deid})  # one process: the scans can be counted
    scanned_again: list[str] = []
    scan = leaks._scan
    monkeypatch.setattr(leaks, "_scan", lambda pair: scanned_again.append(pair[1]) or scan(pair))
    summary = Ingest(config, settings, secret=secret, catalog=catalog).run()
    assert summary is not None
    leaked = {r: n for r, n in summary["quarantine_reasons"].items() if r.startswith("PHI leak")}
    assert sum(leaked.values()) > 10, "the kept InstitutionName is a leak in (nearly) every file"
    # verdicts reached where the outputs were written: the verify task read no file again but the
    # outputs screening rewrote (redacted), if any
    assert len(scanned_again) < sum(leaked.values()) // 2
