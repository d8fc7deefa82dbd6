"""Helpers of the operations tests (fixtures are in ``conftest.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "deploy" / "statsd" / "mapping.yml"


def demo_config_text(drop: Path, **overrides: Any) -> str:
    """The shipped demo collection config with its drop at ``drop`` (and any top-level overrides)."""
    import yaml

    document = yaml.safe_load((ROOT / "dags/collections/demo.yaml").read_text())
    document["drop"]["url"] = drop.resolve().as_uri()
    document.update(overrides)
    return yaml.safe_dump(document, sort_keys=False)


def run_demo(conf: dict[str, Any] | None = None) -> Any:
    from imaging_dags.local import run_dag

    return run_dag("ingest__demo", conf or {})


def task_states(run: Any) -> dict[str, str]:
    states: dict[str, str] = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, str(ti.state))
    return states


def xcom(run: Any, task_id: str, map_index: int = -1) -> Any:
    for ti in run.get_task_instances():
        if ti.task_id == task_id and ti.map_index == map_index:
            return ti.xcom_pull(task_ids=task_id, map_indexes=map_index)
    raise KeyError(task_id)


@dataclass
class Capture:
    """A webhook on loopback that records what is POSTed to it."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def wait_for(self, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.requests)


@dataclass
class Exporter:
    statsd_port: int
    url: str

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return scrape(self.url)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A Prometheus endpoint's samples, keyed by (sample name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))
