"""The pipeline's own metrics: what went in, what was published, what was quarantined and why.

The stages run in two shapes, so every sample goes two ways:

- into an in-process prometheus-client registry (``REGISTRY``), which a process that runs
  every stage itself (the CLI, a benchmark, ``dag.test()``) can read or serve;
- as a StatsD datagram (UDP, DogStatsD tags) to a statsd-exporter, when
  ``IMAGING_INGEST_STATSD_HOST`` is set. Each Airflow worker process sends its own
  increments and the exporter adds them up for Prometheus, whichever machine ran the task.
  Sending is fire and forget: a lost datagram loses a sample, never a run.

Labels are PHI-free by construction: a collection id, a stage or gate name and a
quarantine reason's *rule* code (``data/quarantine_reasons.csv``, ``core/reasons.py``), never a reason's text, a
file name or an identifier. ``deploy/statsd/mapping.yml`` turns the StatsD names into the
same Prometheus names the registry exposes (``METRICS`` below is the list of both).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from imaging_ingest.core.reasons import rule_of

__all__ = [
    "METRICS",
    "REGISTRY",
    "MetricHook",
    "MetricSpec",
    "Metrics",
    "StatsdClient",
    "add_hook",
    "metrics",
    "reason_category",
]

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge", "histogram"]

#: Stage durations run from seconds (a small claim) to hours (a large de-identification).
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its StatsD name, its Prometheus name, its labels."""

    key: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ("collection",)

    @property
    def statsd_name(self) -> str:
        return f"imaging_ingest.{self.key}"

    @property
    def prometheus_name(self) -> str:
        """The name a scrape shows (prometheus-client and the exporter mapping agree on it)."""
        base = f"imaging_ingest_{self.key}"
        return f"{base}_total" if self.kind == "counter" else base


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("files_in", "counter", "Files taken from a drop into the raw tier."),
    MetricSpec("bytes_in", "counter", "Bytes taken from a drop into the raw tier."),
    MetricSpec("files_published", "counter", "Files published (or re-confirmed) by a run."),
    MetricSpec(
        "files_quarantined", "counter", "Files a run ended with in quarantine, by reason category.",
        ("collection", "reason"),
    ),
    MetricSpec("phi_hits", "counter", "De-identified files in which verification found a source value."),
    MetricSpec("gate_failures", "counter", "Data-quality gates that stopped a run.", ("collection", "gate")),
    MetricSpec(
        "stage_duration_seconds", "histogram", "Time a stage took, by outcome.", ("collection", "stage", "outcome")
    ),
    MetricSpec("fixity_checked", "counter", "Published objects whose checksum was re-verified."),
    MetricSpec("fixity_failures", "counter", "Published objects whose checksum no longer matches."),
    MetricSpec("task_failures", "counter", "Airflow task instances of an ingest DAG that failed.", ("collection", "task")),
    MetricSpec("submissions_published", "counter", "Submissions published as a collection version."),
    MetricSpec("last_publish_timestamp_seconds", "gauge", "When the collection last published (Unix time)."),
    MetricSpec("collection_version", "gauge", "The collection's latest version number."),
    MetricSpec(
        "quarantine_rate", "gauge",
        "Share of the last published submission's files quarantined, by reason rule (every rule is set).",
        ("collection", "reason"),
    ),
    MetricSpec("quarantine_pending", "gauge", "Quarantined files waiting for a curator's decision."),
    MetricSpec(
        "quarantine_decisions", "counter", "Curator decisions on quarantined files.", ("collection", "decision")
    ),
    MetricSpec(
        "collection_reclassifications", "counter",
        "Collections whose published objects moved between the public and restricted tiers.", ("collection", "to_tier"),
    ),
)

_SPECS = {spec.key: spec for spec in METRICS}

#: The in-process registry every ``Metrics`` writes to (separate from prometheus-client's global one).
REGISTRY = CollectorRegistry(auto_describe=True)


def _build(spec: MetricSpec, registry: CollectorRegistry) -> Counter | Gauge | Histogram:
    name = f"imaging_ingest_{spec.key}"
    if spec.kind == "counter":
        return Counter(name, spec.help, spec.labels, registry=registry)
    if spec.kind == "gauge":
        return Gauge(name, spec.help, spec.labels, registry=registry)
    return Histogram(name, spec.help, spec.labels, registry=registry, buckets=DURATION_BUCKETS)


_COLLECTORS = {spec.key: _build(spec, REGISTRY) for spec in METRICS}

_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


def _label(value: object) -> str:
    """A tag value safe in both StatsD (no ``,:|#``) and Prometheus; long values are cut."""
    return _LABEL_VALUE.sub("_", str(value))[:64] or "none"


class StatsdClient:
    """A minimal StatsD sender (UDP, DogStatsD ``|#tag:value`` tags, as statsd-exporter reads them)."""

    def __init__(self, host: str, port: int = 9125) -> None:
        self.address = (host, port)
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    def _send(self, line: str) -> None:
        try:
            with self._lock:
                if self._socket is None:
                    family = socket.getaddrinfo(*self.address, type=socket.SOCK_DGRAM)[0][0]
                    self._socket = socket.socket(family, socket.SOCK_DGRAM)
                self._socket.sendto(line.encode("ascii"), self.address)
        except OSError as exc:  # fire and forget: metrics never fail a run
            log.debug("statsd send to %s failed: %s", self.address, exc)

    @staticmethod
    def format(name: str, value: float, kind: str, tags: Mapping[str, str]) -> str:
        number = repr(int(value)) if float(value).is_integer() else repr(float(value))
        line = f"{name}:{number}|{kind}"
        if tags:
            line += "|#" + ",".join(f"{k}:{v}" for k, v in sorted(tags.items()))
        return line

    def count(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        self._send(self.format(name, value, "c", tags))

    def gauge(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        # A negative gauge value would read as a decrement in StatsD: none of ours are negative.
        self._send(self.format(name, max(value, 0), "g", tags))

    def timing(self, name: str, seconds: float, tags: Mapping[str, str]) -> None:
        self._send(self.format(name, round(seconds * 1000.0, 3), "ms", tags))

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


#: A hook sees every sample: the metric key (``fixity_failures``), the value and the labels.
MetricHook = Callable[[str, float, dict[str, str]], None]
_hooks: list[MetricHook] = []


def add_hook(hook: MetricHook) -> Callable[[], None]:
    """Also send every sample to ``hook`` (tests, another backend); returns a function that removes it."""
    _hooks.append(hook)

    def remove() -> None:
        if hook in _hooks:
            _hooks.remove(hook)

    return remove


def _notify(key: str, value: float, tags: dict[str, str]) -> None:
    for hook in list(_hooks):
        try:
            hook(key, value, dict(tags))
        except Exception:  # noqa: BLE001 - metrics must never break the pipeline
            log.warning("metrics hook %r failed for %s", hook, key, exc_info=True)


class Metrics:
    """Record samples into the in-process registry and, when configured, to StatsD."""

    def __init__(self, statsd: StatsdClient | None = None) -> None:
        self.statsd = statsd

    def _labels(self, key: str, labels: Mapping[str, object]) -> tuple[MetricSpec, dict[str, str]]:
        spec = _SPECS[key]
        if set(labels) != set(spec.labels):
            raise ValueError(f"metric {key} takes labels {spec.labels}, got {tuple(labels)}")
        return spec, {k: _label(v) for k, v in labels.items()}

    def inc(self, key: str, value: float = 1, **labels: object) -> None:
        spec, tags = self._labels(key, labels)
        _notify(key, value, tags)
        if value < 0:
            return
        # zero is sent too: the series then exists before the first failure, so increase() in an
        # alert rule sees that failure (a counter first scraped at 1 shows no increase)
        _COLLECTORS[key].labels(**tags).inc(value)  # type: ignore[union-attr]
        if self.statsd:
            self.statsd.count(spec.statsd_name, value, tags)

    def set(self, key: str, value: float, **labels: object) -> None:
        spec, tags = self._labels(key, labels)
        _COLLECTORS[key].labels(**tags).set(value)  # type: ignore[union-attr]
        if self.statsd:
            self.statsd.gauge(spec.statsd_name, value, tags)

    def observe(self, key: str, seconds: float, **labels: object) -> None:
        spec, tags = self._labels(key, labels)
        _COLLECTORS[key].labels(**tags).observe(seconds)  # type: ignore[union-attr]
        if self.statsd:
            self.statsd.timing(spec.statsd_name, seconds, tags)


_current: tuple[tuple[str, int] | None, Metrics] | None = None
_current_lock = threading.Lock()


def metrics(environ: Mapping[str, str] | None = None) -> Metrics:
    """The process's ``Metrics``, sending to ``IMAGING_INGEST_STATSD_HOST``:``_PORT`` (9125) if set.

    The environment is read on every call so that a changed setting (a test, a worker that
    was configured late) takes effect without a restart; the client is rebuilt only then.
    """
    global _current
    env = os.environ if environ is None else environ
    host = env.get("IMAGING_INGEST_STATSD_HOST") or None
    target = (host, int(env.get("IMAGING_INGEST_STATSD_PORT") or 9125)) if host else None
    with _current_lock:
        if _current is None or _current[0] != target:
            if _current is not None and _current[1].statsd is not None:
                _current[1].statsd.close()
            _current = (target, Metrics(StatsdClient(*target) if target else None))
        return _current[1]


def reason_category(reason: str | None) -> str:
    """The rule code of a quarantine reason (``core/reasons.py``: a fixed, short vocabulary); ``other`` when none matches."""
    return rule_of(reason)
