"""The production stack's files: docker-compose.yaml (validated by Debian's docker-compose, since no
container engine runs here), the Dockerfile's pattern, the init scripts, and how the alert rules
and the Grafana dashboard are wired into the stack.

Whether Prometheus accepts the rules and the dashboard's queries, and whether the metrics they
select exist, is checked by the real Prometheus and promtool in ``test_prometheus.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_support import ROOT

from imaging_ingest.config.settings import TIERS

COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "imaging-archive.json"

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
SERVICES = AIRFLOW_SERVICES | {
    "postgres",
    "redis",
    "minio",
    "minio-init",
    "sftp",
    "statsd-exporter",
    "prometheus",
    "grafana",
    "api",
    "proxy",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


@cache
def compose_config() -> dict[str, Any]:
    """``docker-compose config`` of the shipped file with the example environment (interpolated, merged)."""
    out = subprocess.run(
        ["docker-compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    config: dict[str, Any] = yaml.safe_load(out.stdout)
    return config


@pytest.mark.compose
def test_compose_config_accepts_the_file_with_the_example_env() -> None:
    out = subprocess.run(
        ["docker-compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.compose
def test_compose_config_refuses_an_env_without_the_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    out = subprocess.run(
        ["docker-compose", "--env-file", str(empty), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert out.returncode != 0 and "in .env" in out.stderr


@pytest.mark.compose
def test_compose_services_are_wired_for_celery_postgres_redis_and_statsd() -> None:
    services = compose_config()["services"]
    assert set(services) == SERVICES
    assert services["airflow-worker"]["deploy"]["replicas"] == 2
    assert services["airflow-worker"]["command"] == ["celery", "worker"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379"), name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter" and env["IMAGING_INGEST_STATSD_HOST"] == "statsd-exporter"
        assert env["IMAGING_INGEST_CATALOG_URL"].startswith("postgresql+psycopg://"), name
        if "AIRFLOW_CONN_IMAGING_S3" in env:
            assert json.loads(env["AIRFLOW_CONN_IMAGING_S3"])["extra"]["endpoint_url"] == "http://minio:9000"
        # The secret and the read-write storage keys only where tasks run (and the init checks them).
        task_runner = name in ("airflow-worker", "airflow-init")
        assert bool(env.get("AIRFLOW_VAR_IMAGING_INGEST_SECRET")) == task_runner, name
        assert ("AIRFLOW_CONN_IMAGING_S3" in env) == task_runner, name
        mounts = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in service["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/include", "/opt/airflow/plugins"} <= mounts, name
        if name != "airflow-init":
            assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
            assert "healthcheck" in service, name
        assert service["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert "imaging-ingest api --host 0.0.0.0 --port 8088" in services["api"]["command"][-1]
    images = {name: s.get("image", "") for name, s in services.items()}
    assert all(image and not image.endswith(":latest") and ":" in image for image in images.values()), images


@pytest.mark.compose
def test_dockerfile_starts_from_airflow_3_3_2_and_installs_with_the_constraints() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", dockerfile, re.MULTILINE)
    assert "--require-hashes --no-deps -r requirements-image.txt" in dockerfile and "--no-deps ." in dockerfile
    assert compose_config()["services"]["airflow-scheduler"]["build"]["dockerfile"] == "Dockerfile"


def test_env_example_sets_every_required_variable() -> None:
    text = COMPOSE.read_text()
    required = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+):\?", text))
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    assert required and required <= {k for k, v in example.items() if v}
    optional = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)(?::-[^}]*)?\}", text))
    assert optional <= set(example) | {"IMAGING_INGEST_IMAGE", "IMAGING_SFTP_IMAGE"}, optional - set(example)


def test_init_scripts_name_every_tier_bucket_and_the_catalog_database() -> None:
    script = (ROOT / "deploy" / "minio" / "init-buckets.sh").read_text()
    assert "for tier in " + " ".join(TIERS) + "; do" in script
    assert 'mc anonymous set download "archive/${prefix}-public"' in script
    init_db = (ROOT / "deploy" / "postgres" / "init-databases.sh").read_text()
    assert "CREATE DATABASE ${CATALOG_DB_NAME}" in init_db


def test_alert_rules_include_the_required_alerts_with_severity_and_annotations() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    names = {r["alert"] for r in rules}
    assert {"IngestRunFailed", "QuarantineGrowing", "FixityMismatch", "NoIngestForDays"} <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    by_name = {r["alert"]: r["expr"] for r in rules}
    assert 'state="failed"' in by_name["IngestRunFailed"] and "imaging_ingest_fixity_failures_total" in by_name["FixityMismatch"]
    assert "imaging_ingest_last_publish_timestamp_seconds" in by_name["NoIngestForDays"]


@pytest.mark.compose
def test_prometheus_config_targets_the_exporter_and_compose_mounts_its_rule_files() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert "statsd-exporter:9102" in targets
    prometheus = compose_config()["services"]["prometheus"]
    mounted = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in prometheus["volumes"]}
    assert set(config["rule_files"]) <= mounted
    exporter = compose_config()["services"]["statsd-exporter"]
    assert "--statsd.mapping-config=/etc/statsd/mapping.yml" in exporter["command"]


@pytest.mark.compose
def test_grafana_dashboard_and_its_datasource_are_provisioned_and_mounted() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "imaging-archive"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert {p["datasource"]["uid"] for p in panels} == {datasource["datasources"][0]["uid"]}
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/imaging-archive.yml").read_text())
    grafana = compose_config()["services"]["grafana"]
    mounts = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in grafana["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounts
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.security
@pytest.mark.compose
def test_least_privilege_in_the_stack() -> None:
    """Only HTTPS (the proxy) and SFTP are published; the API reads with read-only credentials."""
    services = compose_config()["services"]
    published = {  # "host_ip:published:target" (docker-compose v1 writes strings, v2 mappings)
        name: [f"{p.get('host_ip', '')}:{p.get('published', '')}:{p.get('target')}" if isinstance(p, dict) else str(p)
               for p in service.get("ports", [])]
        for name, service in services.items() if service.get("ports")
    }
    assert set(published) == {"proxy", "sftp", "grafana"}, published
    assert all(p.startswith("127.0.0.1:") for p in published["grafana"]), "Grafana on the host's loopback only"
    for name in ("postgres", "redis", "minio", "prometheus", "statsd-exporter"):
        assert "ports" not in services[name] and set(services[name]["networks"]) == {"internal"}, name
    assert compose_config()["networks"]["internal"]["internal"] is True
    api = services["api"]["environment"]
    assert api["IMAGING_INGEST_CATALOG_URL"].startswith("postgresql+psycopg://catalog_reader:")
    assert api["AWS_ACCESS_KEY_ID"] == "imaging-api" and "IMAGING_INGEST_API_PUBLIC_URL" in api
    assert not any("SECRET" in k and "IMAGING_INGEST_SECRET" in k for k in api)
    assert "AIRFLOW_VAR_IMAGING_INGEST_SECRET" not in services["airflow-apiserver"]["environment"]
    init_buckets = (ROOT / "deploy" / "minio" / "init-buckets.sh").read_text()
    policy = init_buckets[init_buckets.index("imaging-api-read.json <<JSON"):init_buckets.index("\nJSON\n")]
    assert '"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"]' in policy and "Put" not in policy
    assert "-public" in policy and "-restricted" in policy and "-raw" not in policy and "-quarantine" not in policy
    init_db = (ROOT / "deploy" / "postgres" / "init-databases.sh").read_text()
    assert "GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${CATALOG_READER_USER}" in init_db
    assert "ALTER DEFAULT PRIVILEGES FOR ROLE ${CATALOG_DB_USER}" in init_db
    proxy = (ROOT / "deploy" / "proxy" / "default.conf.template").read_text()
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in proxy and "proxy_pass http://api:8088;" in proxy
    sshd = (ROOT / "deploy" / "sftp" / "sshd_config").read_text()
    assert "ForceCommand internal-sftp -P symlink,hardlink" in sshd and "PasswordAuthentication no" in sshd


@pytest.mark.security
def test_the_image_installs_hashed_pins_and_no_test_tools() -> None:
    """requirements-image.txt: every package pinned as in constraints.txt, with hashes; no test tools."""
    constraints = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in (line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                              if "==" in line and not line.startswith("#"))
    }
    lock = [line for line in (ROOT / "requirements-image.txt").read_text().splitlines() if not line.startswith("#")]
    pins = {}
    for line in lock:
        requirement, *hashes = line.split()
        name, version = requirement.split("==")
        assert hashes and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), line
        pins[name] = version
    assert {"apache-airflow", "pydicom", "fastapi", "apache-airflow-providers-fab"} <= set(pins)
    assert {n: v for n, v in pins.items() if n in constraints and constraints[n] != v} == {}
    assert not {"moto", "pytest", "hypothesis", "schemathesis", "ruff", "mypy", "playwright"} & set(pins)
    runtime = (ROOT / "requirements.txt").read_text().split("# tests and checks")[0]
    named = {
        re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ]", line.split("#")[0].strip())[0]).lower()
        for line in runtime.splitlines()
        if line.split("#")[0].strip()
    }
    assert named - set(pins) == set(), "requirements.txt names a runtime package the image lock lacks: rerun scripts/lock_image_requirements.sh"
    assert "moto" not in runtime, "moto is a test tool: it stays out of the production image"
