"""The monitoring stack with the real Prometheus and promtool (Debian's ``prometheus``).

* ``promtool check rules`` on the shipped alert rules, and ``promtool test rules`` with one
  unit test file per alert (``tests/ops/promtool/<Alert>.yml``): the failure it must catch and
  the quiet case it must not page for.
* A demo ingest through Airflow (``dag.test()``), a failing run and a fixity audit send their
  metrics over StatsD to the exporter (``imaging-ingest metrics-exporter``'s bridge, with the
  shipped statsd-exporter mapping); Prometheus, started with the shipped config (targets
  moved to loopback), scrapes it. Its HTTP query API must return the run's numbers, load and
  evaluate every alert rule without error, accept every Grafana panel's query, and return
  every metric name those queries select.

Airflow's own ``airflow_*`` metrics come from Airflow's scheduler and workers, which
``dag.test()`` does not run: the CeleryExecutor test (``test_celery.py``) asks its
Prometheus for those.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_support import MAPPING, demo_config_text, run_demo, task_states, xcom
from prometheus_support import (
    ALERTS,
    Prometheus,
    alert_rules,
    grafana_queries,
    mapped,
    prometheus,
)

pytestmark = pytest.mark.prometheus

PROMTOOL_TESTS = Path(__file__).parent / "promtool"
SECRET = "a0428891d49e4c6d1e6f00ec8cab827874ee32119f98b492ddb63e88dee74f2a"  # a test key: 64 hex characters, as check_secret requires
#: Metrics no run here produces, and why; every other name a panel selects must be in Prometheus.
NOT_PRODUCED_HERE = {
    "imaging_ingest_gate_failures_total": "only a gate that stops a run sends it (tests/test_ingest.py fails one)",
    "imaging_ingest_collection_reclassifications_total": "only a collection moved between tiers sends it",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def test_promtool_check_rules_accepts_the_alert_rules() -> None:
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alert_rules()])
def test_promtool_unit_test_of_the_alert_rule_passes(alert: str) -> None:
    """Each alert has its own promtool test with a case where it fires and one where it must stay quiet."""
    path = PROMTOOL_TESTS / f"{alert}.yml"
    assert path.exists(), f"no promtool unit test for {alert}: write tests/ops/promtool/{path.name}"
    document = yaml.safe_load(path.read_text())
    cases = [case for test in document["tests"] for case in test["alert_rule_test"]]
    assert {case["alertname"] for case in cases} == {alert}, f"{path.name} tests other alerts"
    assert any(case["exp_alerts"] for case in cases), f"{path.name} never expects {alert} to fire"
    assert any(not case["exp_alerts"] for case in cases), f"{path.name} has no case where {alert} stays quiet"
    result = _promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests have teeth: the same tests against rules whose thresholds are off fail."""
    broken = ALERTS.read_text().replace(") > 0", ") > 1000").replace("> 7 * 86400", "> 70 * 86400")
    (tmp_path / "alerts.yml").write_text(broken)
    for path in sorted(PROMTOOL_TESTS.glob("*.yml")):
        document = yaml.safe_load(path.read_text())
        document["rule_files"] = [str(tmp_path / "alerts.yml")]
        (tmp_path / path.name).write_text(yaml.safe_dump(document))
    names = ["IngestRunFailed", "IngestTasksFailing", "IngestGateFailures", "FixityMismatch",
             "PHICaughtByVerification", "NoIngestForDays", "CollectionWithdrawnFromPublic"]
    for name in names:
        result = _promtool("test", "rules", str(tmp_path / f"{name}.yml"))
        assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr, (name, result.stdout)


@dataclass
class ScrapedArchive:
    """Prometheus after a demo ingest, a failed run and a fixity audit: what they reported."""

    prometheus: Prometheus
    summary: dict[str, Any]
    fixity_checked: int


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, synth_cache: Path,
            airflow_db: Path) -> Iterator[ScrapedArchive]:
    """The exporter and Prometheus on loopback; the demo DAG's runs and an audit report to them."""
    import shutil

    from imaging_ingest.catalog import Catalog
    from imaging_ingest.config import FixityConfig
    from imaging_ingest.config.settings import Settings
    from imaging_ingest.ops.statsd_bridge import Bridge, StatsdMapping
    from imaging_ingest.publish.fixity import audit_collection, select_targets
    from imaging_ingest.storage.objects import ObjectStore

    root = tmp_path_factory.mktemp("prometheus")
    home = root / "home"
    settings = Settings(home=home, catalog_url=f"sqlite:///{home / 'catalog.sqlite'}", s3_endpoint=s3_endpoint,
                        bucket_prefix=f"p{uuid.uuid4().hex[:10]}")
    ObjectStore(settings).ensure_buckets()
    drop = root / "drop"
    shutil.copytree(synth_cache, drop / "site-a-batch-1")
    (drop / "site-a-batch-1" / "READY").write_text("complete\n")
    collections = root / "collections"
    collections.mkdir()
    (collections / "demo.yaml").write_text(demo_config_text(drop))

    bridge = Bridge(StatsdMapping.load(MAPPING))
    udp_port, http_port = bridge.start(("127.0.0.1", 0), ("127.0.0.1", 0))
    try:
        with prometheus(root / "prometheus", f"127.0.0.1:{http_port}") as server, pytest.MonkeyPatch.context() as env:
            for name, value in {
                "IMAGING_INGEST_HOME": str(home), "IMAGING_INGEST_CATALOG_URL": settings.catalog_url,
                "IMAGING_INGEST_S3_ENDPOINT": s3_endpoint, "IMAGING_INGEST_BUCKET_PREFIX": settings.bucket_prefix,
                "IMAGING_INGEST_SECRET": SECRET, "IMAGING_INGEST_COLLECTIONS": str(collections),
                "IMAGING_INGEST_STATSD_HOST": "127.0.0.1", "IMAGING_INGEST_STATSD_PORT": str(udp_port),
            }.items():
                env.setenv(name, value)
            run = run_demo()
            assert str(run.state) == "success", task_states(run)
            summary = xcom(run, "announce")
            failed = run_demo({"submission": "sub-00000000000000ff"})  # an unknown submission: discover fails
            assert str(failed.state) == "failed", task_states(failed)
            catalog = Catalog.from_url(settings.catalog_url)
            try:
                report = audit_collection(catalog, ObjectStore(settings), "demo",
                                          select_targets(catalog, "demo", FixityConfig(), mode="all"))
            finally:
                catalog.dispose()
            assert report.checked > 0 and not report.failures
            server.wait_for('imaging_ingest_fixity_checked_total{collection="demo"}', report.checked)
            yield ScrapedArchive(server, summary, report.checked)
    finally:
        bridge.stop()


def test_prometheus_scrapes_the_exporter_with_the_shipped_config(scraped: ScrapedArchive) -> None:
    targets = scraped.prometheus.api("targets")["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {"statsd-exporter": "up", "prometheus": "up"}
    assert scraped.prometheus.value('up{job="statsd-exporter"}') == 1
    assert scraped.prometheus.api("status/config")["yaml"].count("scrape_interval: 15s") >= 1


def test_prometheus_returns_the_demo_ingests_numbers(scraped: ScrapedArchive) -> None:
    """What the query API answers is what the run's summary says."""
    p, summary = scraped.prometheus, scraped.summary
    assert p.value('imaging_ingest_files_in_total{collection="demo"}') == summary["files_in"]
    assert p.value('imaging_ingest_files_published_total{collection="demo"}') == summary["published"]
    assert p.value('sum(imaging_ingest_files_quarantined_total{collection="demo"})') == summary["quarantined"]
    assert p.value('imaging_ingest_quarantine_pending{collection="demo"}') == summary["quarantined"]
    assert p.value('imaging_ingest_collection_version{collection="demo"}') == summary["version"] == 1
    assert p.value('imaging_ingest_submissions_published_total{collection="demo"}') == 1
    published_at = p.value('imaging_ingest_last_publish_timestamp_seconds{collection="demo"}')
    assert published_at is not None and abs(published_at - time.time()) < 3600
    stages = {r["metric"]["stage"] for r in p.query(
        'imaging_ingest_stage_duration_seconds_count{collection="demo", outcome="success"}')}
    assert {"stage_raw", "inventory", "deidentify", "screen", "verify", "register", "publish"} <= stages
    assert p.value('imaging_ingest_task_failures_total{collection="demo", task="discover"}') == 1
    assert p.value('imaging_ingest_fixity_failures_total{collection="demo"}') == 0


def test_prometheus_loads_every_alert_rule_and_evaluates_it_without_error(scraped: ScrapedArchive) -> None:
    deadline = time.monotonic() + 90  # the shipped evaluation_interval is 30 s
    while True:
        groups = scraped.prometheus.api("rules")["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        if all(not rule["lastEvaluation"].startswith("0001") for rule in rules.values()):
            break
        assert time.monotonic() < deadline, "Prometheus did not evaluate every rule within 90 s"
        time.sleep(2)
    assert set(rules) == {rule["alert"] for rule in alert_rules()}
    assert {name: (rule["health"], rule.get("lastError")) for name, rule in rules.items()} == {
        name: ("ok", None) for name in rules
    }


@pytest.mark.parametrize(("title", "expr"), grafana_queries(), ids=[t for t, _ in grafana_queries()])
def test_grafana_panel_query_is_accepted_by_prometheus(scraped: ScrapedArchive, title: str, expr: str) -> None:
    """Prometheus parses and evaluates the panel's query (Grafana's variables filled in as it would)."""
    scraped.prometheus.api("query", query=expr)


def test_every_metric_the_dashboard_and_alerts_select_is_one_prometheus_returns(scraped: ScrapedArchive) -> None:
    """Names are read from Prometheus' own formatting of each query, and looked up in what it scraped.

    Airflow's ``airflow_*`` names come from the scheduler and workers (``test_celery.py`` asks its
    Prometheus for them); here they, like the failure-only counters, must be names the mapping makes.
    """
    p = scraped.prometheus
    returned = set(p.api("label/__name__/values"))
    selected = p.selected_names()
    pipeline = {name for name in selected if name.startswith("imaging_ingest_")} - set(NOT_PRODUCED_HERE)
    assert pipeline <= returned, sorted(pipeline - returned)
    elsewhere = selected - pipeline
    assert all(mapped(name) for name in elsewhere), sorted(n for n in elsewhere if not mapped(n))
    wanted = {"files_in_total", "files_published_total", "files_quarantined_total", "phi_hits_total",
              "stage_duration_seconds_bucket", "fixity_failures_total", "quarantine_pending", "task_failures_total",
              "gate_failures_total"}
    assert {f"imaging_ingest_{name}" for name in wanted} | {"airflow_dagrun_duration_seconds_count"} <= selected


def test_a_name_no_rule_makes_is_caught() -> None:
    assert not mapped("imaging_ingest_made_up_total") and not mapped("airflow_made_up_total_x")
    assert mapped("airflow_executor_open_slots") and mapped("imaging_ingest_stage_duration_seconds_bucket")
