"""Metrics: the pipeline's counters reach Prometheus through StatsD and the shipped mapping, with
the values of the run's summary."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from ops_support import MAPPING, Exporter, run_demo, task_states, value, xcom

from imaging_ingest.config.settings import Settings
from imaging_ingest.ops.metrics import METRICS, Metrics, StatsdClient, reason_category
from imaging_ingest.ops.statsd_bridge import Bridge, Sample, StatsdMapping, parse_line


def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_every_pipeline_metric_maps_to_the_name_the_registry_exposes() -> None:
    mapping = StatsdMapping.load(MAPPING)
    kinds = {"counter": "counter", "gauge": "gauge", "histogram": "timer"}
    for spec in METRICS:
        resolved = mapping.resolve(Sample(spec.statsd_name, kinds[spec.kind], 1.0, tags={"collection": "c"}))
        assert resolved is not None, spec.key
        name, labels, rule = resolved
        assert rule is not None, f"{spec.statsd_name} has no mapping rule"
        assert name == spec.prometheus_name
        assert labels == {"collection": "c"}


def test_samples_sent_over_statsd_are_served_with_their_labels(exporter: Exporter) -> None:
    sink = Metrics(StatsdClient("127.0.0.1", exporter.statsd_port))
    sink.inc("files_in", 7, collection="demo")
    sink.inc("files_in", 5, collection="demo")
    sink.inc("files_quarantined", 2, collection="demo", reason="burned_in_pixels")
    sink.set("quarantine_pending", 3, collection="demo")
    sink.observe("stage_duration_seconds", 42.0, collection="demo", stage="verify", outcome="success")

    def arrived() -> bool:
        return value(exporter.scrape(), "imaging_ingest_stage_duration_seconds_count",
                     collection="demo", stage="verify", outcome="success") == 1

    _until(arrived)
    samples = exporter.scrape()
    assert value(samples, "imaging_ingest_files_in_total", collection="demo") == 12
    assert value(samples, "imaging_ingest_files_quarantined_total", collection="demo", reason="burned_in_pixels") == 2
    assert value(samples, "imaging_ingest_quarantine_pending", collection="demo") == 3
    labels = {"collection": "demo", "stage": "verify", "outcome": "success"}
    assert value(samples, "imaging_ingest_stage_duration_seconds_sum", **labels) == pytest.approx(42.0)
    assert value(samples, "imaging_ingest_stage_duration_seconds_bucket", le="60.0", **labels) == 1
    assert value(samples, "imaging_ingest_stage_duration_seconds_bucket", le="30.0", **labels) == 0


def test_label_values_cannot_inject_statsd_syntax() -> None:
    line = StatsdClient.format("imaging_ingest.files_in", 1, "c", {"collection": "demo"})
    assert line == "imaging_ingest.files_in:1|c|#collection:demo"
    sink = Metrics()
    with pytest.raises(ValueError, match="takes labels"):
        sink.inc("files_in", collection="demo", patient="x")
    from imaging_ingest.ops.metrics import _label

    assert _label("a,b:c|d#e f") == "a_b_c_d_e_f"


def test_airflow_metrics_with_influxdb_tags_are_mapped() -> None:
    bridge = Bridge(StatsdMapping.load(MAPPING))
    bridge.handle("airflow.ti.finish,dag_id=ingest__demo,task_id=publish,state=success:1|c")
    bridge.handle("airflow.ti.finish,dag_id=ingest__demo,task_id=publish,state=success:1|c")
    bridge.handle("airflow.dagrun.duration.failed,dag_id=ingest__demo:61000|ms")
    bridge.handle("airflow.executor.open_slots,executor_class_name=CeleryExecutor:4|g")
    samples = {
        (s.name, frozenset(s.labels.items())): s.value for family in bridge.collect() for s in family.samples
    }
    assert value(samples, "airflow_ti_finish_total", dag_id="ingest__demo", task_id="publish", state="success") == 2
    assert value(samples, "airflow_dagrun_duration_seconds_count", dag_id="ingest__demo", state="failed") == 1
    assert value(samples, "airflow_dagrun_duration_seconds_sum", dag_id="ingest__demo", state="failed") == 61.0
    assert value(samples, "airflow_executor_open_slots", executor_class_name="CeleryExecutor") == 4


def test_statsd_parsing_handles_rates_relative_gauges_and_garbage() -> None:
    (sample,) = parse_line("x.y:3|c|@0.5|#a:b")
    assert (sample.value, sample.tags) == (6.0, {"a": "b"})
    (gauge,) = parse_line("x.g:-2|g")
    assert gauge.relative and gauge.value == -2
    for bad in ("", "nocolon", "x:1|zz", "x:abc|c", "x:1|c|@nan_rate"):
        assert parse_line(bad) == []


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("symbolic link (never followed)", "not_regular_file"),
        ("truncated or corrupt DICOM header (InvalidDicomError)", "unreadable"),
        ("missing PatientID", "invalid_header"),
        ("modality XA is not accepted by this collection", "modality_not_accepted"),
        ("exact duplicate of file 3", "duplicate"),
        ("series mixes 2 patients", "mixed_patients"),
        ("PHI leak: a value of source PatientName found in output (0008,1030)", "phi_leak"),
        ("burned-in text likely: Secondary Capture Image Storage", "burned_in_pixels"),
        ("burned-in annotation declared (BurnedInAnnotation=YES)", "burned_in_pixels"),
        ("de-identification failed (KeyError)", "deid_failed"),
        ("something nobody has seen before", "other"),
        (None, "other"),
    ],
)
def test_reason_categories(reason: str | None, category: str) -> None:
    assert reason_category(reason) == category


@pytest.mark.e2e
def test_exporter_serves_the_demo_runs_metrics_equal_to_its_summary(
    demo_env: Settings, exporter: Exporter, monkeypatch: pytest.MonkeyPatch, submission: Path
) -> None:
    """Run the demo DAG, then read the exporter's /metrics page: files in, published and quarantined by reason match its summary."""
    monkeypatch.setenv("IMAGING_INGEST_STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("IMAGING_INGEST_STATSD_PORT", str(exporter.statsd_port))
    run = run_demo()
    assert str(run.state) == "success", task_states(run)
    summary = xcom(run, "announce")
    staged = xcom(run, "stage_raw")

    def complete() -> bool:
        return value(exporter.scrape(), "imaging_ingest_submissions_published_total", collection="demo") == 1

    _until(complete)
    samples = exporter.scrape()
    files_on_disk = [p for p in submission.rglob("*") if p.is_file() and p.name != "READY"]
    assert value(samples, "imaging_ingest_files_in_total", collection="demo") == summary["files_in"] == len(files_on_disk)
    assert value(samples, "imaging_ingest_bytes_in_total", collection="demo") == staged["counts"]["bytes"]
    assert value(samples, "imaging_ingest_files_published_total", collection="demo") == summary["published"]
    expected = Counter()
    for reason, files in summary["quarantine_reasons"].items():
        expected[reason_category(reason)] += files
    assert expected, "the demo submission plants files that must be quarantined"
    for category, files in expected.items():
        assert value(samples, "imaging_ingest_files_quarantined_total", collection="demo", reason=category) == files
    quarantined_total = sum(
        v for (name, labels), v in samples.items() if name == "imaging_ingest_files_quarantined_total"
    )
    assert quarantined_total == summary["quarantined"]
    assert summary["files_in"] == summary["published"] + summary["quarantined"]
    assert value(samples, "imaging_ingest_phi_hits_total", collection="demo") in (None, 0.0)
    assert value(samples, "imaging_ingest_collection_version", collection="demo") == summary["version"] == 1
    assert value(samples, "imaging_ingest_quarantine_pending", collection="demo") == summary["quarantined"]
    published_at = value(samples, "imaging_ingest_last_publish_timestamp_seconds", collection="demo")
    assert published_at is not None and abs(published_at - time.time()) < 3600
    for stage in ("stage_raw", "inventory", "plan_batches", "deidentify", "screen", "verify", "register", "publish"):
        count = value(samples, "imaging_ingest_stage_duration_seconds_count", collection="demo", stage=stage,
                      outcome="success")
        assert count and count >= 1, stage
