"""A real Prometheus (Debian's ``prometheus``) on loopback, configured from the shipped config.

``loopback_config`` changes only what cannot hold outside the compose stack: the scrape targets
(the exporter and Prometheus itself on free loopback ports instead of ``statsd-exporter:9102``
and ``localhost:9090``) and the rule file's path (the repository's instead of the container's
mount). Intervals, jobs, labels and rules are the production ones.
"""

from __future__ import annotations

import functools
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from airflow_stack import free_port
from ops_support import MAPPING, ROOT

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "imaging-archive.json"
#: What Grafana puts in place of the dashboard's variables before it sends a query.
GRAFANA_VARIABLES = {"$collection": ".*", "$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}


def loopback_config(exporter: str, prometheus: str) -> dict[str, Any]:
    """The shipped Prometheus config with loopback targets and the repository's rule file."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {"statsd-exporter:9102": exporter, "localhost:9090": prometheus}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            unknown = set(static["targets"]) - set(targets)
            assert not unknown, f"a target the test cannot map to loopback: {unknown}"
            static["targets"] = [targets[t] for t in static["targets"]]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"], config["rule_files"]
    config["rule_files"] = [str(ALERTS)]
    return config


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def grafana_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of the dashboard, with Grafana's variables filled in."""
    import json

    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"a Grafana variable the test does not know in {panel['title']!r}: {expr}"
            queries.append((panel["title"], expr))
    return queries


def dashboard_and_alert_exprs() -> list[str]:
    """Every query of the Grafana dashboard (variables filled in) and every alert rule's expression."""
    return [expr for _, expr in grafana_queries()] + [rule["expr"] for rule in alert_rules()]


def metric_names(expr: str) -> set[str]:
    """The archive's metric names (``imaging_ingest_*``, ``airflow_*``) a query selects.

    ``expr`` is what Prometheus' own formatter returned (``/api/v1/format_query``): it parsed
    it, so this only has to pick the names out, not understand PromQL.
    """
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_groupings = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels)
    return set(re.findall(r"\b(?:imaging_ingest|airflow)_[a-z0-9_]+\b", without_groupings))


HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@functools.cache
def mapped_names() -> tuple[re.Pattern[str], ...]:
    """Names statsd-exporter makes with the shipped mapping: the pipeline's metrics and Airflow's rules.

    For the names no run in this suite's Prometheus test produces (Airflow's, and the pipeline's
    failure-only counters): they must at least be names the mapping can make.
    """
    from imaging_ingest.ops.metrics import METRICS

    names = set()
    for spec in METRICS:
        names.add(re.escape(spec.prometheus_name))
        if spec.kind == "histogram":
            names.update(re.escape(spec.prometheus_name + s) for s in HISTOGRAM_SUFFIXES)
    for rule in yaml.safe_load(MAPPING.read_text())["mappings"]:
        name = re.escape(rule["name"]).replace(r"\$\{1\}", "[a-z_]+")
        names.add(name)
        if rule.get("match_metric_type") == "timer" or rule.get("observer_type"):
            names.update(name + s for s in HISTOGRAM_SUFFIXES)
    return tuple(re.compile(n) for n in names)


def mapped(name: str) -> bool:
    return any(pattern.fullmatch(name) for pattern in mapped_names())


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; fails with Prometheus' own error message when it refuses."""
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = answer.json()
        assert body.get("status") == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def selected_names(self) -> set[str]:
        """The archive's metric names the dashboard and the alert rules select, as Prometheus parses them."""
        return set().union(*(metric_names(self.api("format_query", query=e)) for e in dashboard_and_alert_exprs()))

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, expected: float, timeout: float = 60) -> None:
        """Until ``expr`` has ``expected`` (a scrape every 15 s, as in production)."""
        deadline = time.monotonic() + timeout
        while (got := self.value(expr)) != expected:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{expr} is {got}, not {expected}, after {timeout:.0f} s"
            time.sleep(1)


@contextmanager
def prometheus(folder: Path, exporter: str) -> Iterator[Prometheus]:
    """Prometheus scraping ``exporter`` (host:port) with the shipped config; stopped afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(loopback_config(exporter, f"127.0.0.1:{port}"), sort_keys=False))
    checked = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log = folder / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"prometheus did not get ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
