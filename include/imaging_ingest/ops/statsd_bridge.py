"""A small StatsD-to-Prometheus bridge that reads statsd-exporter's mapping file.

Production runs the real ``prom/statsd-exporter`` (see ``docker-compose.yaml``). Where no
container runs (a single machine, the test suite), this bridge plays its part: it receives
the StatsD datagrams Airflow and the pipeline send, applies the *same*
``deploy/statsd/mapping.yml`` and serves ``/metrics``. So the mapping the dashboards and
alert rules rely on is exercised by tests, not only by production.

It implements the subset of statsd-exporter the mapping uses: glob matches (``*`` is one
dot-separated component) and regex matches, ``$n``/``${n}`` references in names and
labels, ``match_metric_type``, ``action: drop``, ``observer_type: histogram`` with
``histogram_options.buckets`` (and ``defaults``), DogStatsD (``|#k:v``) and InfluxDB
(``name,k=v``) tags, sample rates, relative gauges; ``ms`` timers are exported in seconds.
Timers that are not histograms are exported as summaries without quantiles.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric

__all__ = ["Bridge", "MappingRule", "StatsdMapping", "parse_line"]

log = logging.getLogger(__name__)

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TYPES = {"c": "counter", "g": "gauge", "ms": "timer", "h": "timer", "d": "timer"}
_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_REF = re.compile(r"\$\{(\d+)\}|\$(\d+)")


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str  # counter | gauge | timer
    value: float
    relative: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    statsd_type: str = "c"


def parse_line(line: str) -> list[Sample]:
    """One StatsD line (``name[,k=v]:value|type[|@rate][|#k:v,...]``); malformed lines give nothing."""
    line = line.strip()
    if not line or ":" not in line:
        return []
    name_part, rest = line.split(":", 1)
    tags: dict[str, str] = {}
    if "," in name_part:  # InfluxDB-style tags
        name_part, *pairs = name_part.split(",")
        for pair in pairs:
            if "=" in pair:
                key, tag = pair.split("=", 1)
                tags[key] = tag
    fields = rest.split("|")
    if len(fields) < 2 or fields[1] not in _TYPES:
        return []
    raw, statsd_type = fields[0], fields[1]
    rate = 1.0
    for extra in fields[2:]:
        if extra.startswith("@"):
            try:
                rate = float(extra[1:]) or 1.0
            except ValueError:
                return []
        elif extra.startswith("#"):
            for pair in extra[1:].split(","):
                if ":" in pair:
                    key, tag = pair.split(":", 1)
                    tags[key] = tag
    try:
        value = float(raw)
    except ValueError:
        return []
    kind = _TYPES[statsd_type]
    relative = kind == "gauge" and raw[:1] in "+-"
    if kind == "counter":
        value /= rate
    if statsd_type == "ms":
        value /= 1000.0
    return [Sample(name_part, kind, value, relative, tags, statsd_type)]


@dataclass
class MappingRule:
    match: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    match_type: str = "glob"
    match_metric_type: str | None = None
    action: str = "map"
    observer_type: str | None = None
    buckets: tuple[float, ...] | None = None
    help: str | None = None

    def __post_init__(self) -> None:
        if self.match_type == "regex":
            self._regex = re.compile(self.match)
        else:
            parts = [re.escape(p).replace(r"\*", "([^.]*)") for p in self.match.split(".")]
            self._regex = re.compile(r"\.".join(parts))

    def apply(self, sample: Sample) -> tuple[str, dict[str, str]] | None:
        if self.match_metric_type and self.match_metric_type != sample.kind:
            return None
        found = self._regex.fullmatch(sample.name)
        if not found:
            return None
        groups = found.groups()

        def expand(template: str) -> str:
            return _REF.sub(lambda m: groups[int(m.group(1) or m.group(2)) - 1] or "", template)

        return expand(self.name), {k: expand(v) for k, v in self.labels.items()}


class StatsdMapping:
    """statsd-exporter's mapping file (the subset described in the module docstring)."""

    def __init__(self, rules: list[MappingRule], observer_type: str = "summary", buckets: tuple[float, ...] = DEFAULT_BUCKETS):
        self.rules = rules
        self.observer_type = observer_type
        self.buckets = buckets

    @classmethod
    def load(cls, path: str | Path) -> StatsdMapping:
        return cls.from_dict(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> StatsdMapping:
        defaults = document.get("defaults") or {}
        default_buckets = tuple((defaults.get("histogram_options") or {}).get("buckets") or DEFAULT_BUCKETS)
        rules = []
        for item in document.get("mappings") or []:
            options = item.get("histogram_options") or {}
            rules.append(
                MappingRule(
                    match=str(item["match"]),
                    name=str(item.get("name", "")),
                    labels={str(k): str(v) for k, v in (item.get("labels") or {}).items()},
                    match_type=item.get("match_type", defaults.get("match_type", "glob")),
                    match_metric_type=item.get("match_metric_type"),
                    action=item.get("action", "map"),
                    observer_type=item.get("observer_type"),
                    buckets=tuple(options["buckets"]) if options.get("buckets") else None,
                    help=item.get("help"),
                )
            )
        return cls(rules, defaults.get("observer_type", "summary"), default_buckets)

    def resolve(self, sample: Sample) -> tuple[str, dict[str, str], MappingRule | None] | None:
        """The Prometheus name and labels of a sample (tags included), or None when dropped."""
        for rule in self.rules:
            mapped = rule.apply(sample)
            if mapped is None:
                continue
            if rule.action == "drop":
                return None
            name, labels = mapped
            return _INVALID.sub("_", name), {**_clean(sample.tags), **labels}, rule
        return _INVALID.sub("_", sample.name), _clean(sample.tags), None


def _clean(tags: dict[str, str]) -> dict[str, str]:
    return {_INVALID.sub("_", k): v for k, v in tags.items()}


@dataclass
class _Series:
    kind: str
    help: str
    value: float = 0.0
    buckets: tuple[float, ...] = ()
    bucket_counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0


class Bridge:
    """Receive StatsD over UDP, aggregate, and expose the result in Prometheus format."""

    def __init__(self, mapping: StatsdMapping) -> None:
        self.mapping = mapping
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], _Series] = {}
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._http: Any = None
        self._stopping = threading.Event()

    # -- aggregation ----------------------------------------------------------------------

    def handle(self, datagram: str) -> None:
        for line in datagram.splitlines():
            for sample in parse_line(line):
                self._add(sample)

    def _add(self, sample: Sample) -> None:
        resolved = self.mapping.resolve(sample)
        if resolved is None:
            return
        name, labels, rule = resolved
        key = (name, tuple(sorted(labels.items())))
        helptext = (rule.help if rule and rule.help else None) or f"Metric autogenerated from StatsD {sample.name}."
        with self._lock:
            series = self._series.get(key)
            if series is None:
                kind = sample.kind
                buckets: tuple[float, ...] = ()
                if kind == "timer":
                    observer = (rule.observer_type if rule and rule.observer_type else None) or self.mapping.observer_type
                    kind = "histogram" if observer == "histogram" else "summary"
                    if kind == "histogram":
                        buckets = tuple(sorted((rule.buckets if rule and rule.buckets else None) or self.mapping.buckets))
                series = self._series[key] = _Series(kind, helptext, buckets=buckets, bucket_counts=[0] * len(buckets))
            if series.kind == "counter":
                if sample.value >= 0:
                    series.value += sample.value
            elif series.kind == "gauge":
                series.value = series.value + sample.value if sample.relative else sample.value
            else:
                series.total += sample.value
                series.count += 1
                for i, bound in enumerate(series.buckets):
                    if sample.value <= bound:
                        series.bucket_counts[i] += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            items = sorted(self._series.items())
        families: dict[str, Metric] = {}
        for (name, labels), series in items:
            label_dict = dict(labels)
            family_name = name.removesuffix("_total") if series.kind == "counter" else name
            family = families.get(family_name)
            if family is None:
                family = families[family_name] = Metric(family_name, series.help, series.kind)
            if series.kind == "counter":
                family.add_sample(f"{family_name}_total", label_dict, series.value)
            elif series.kind == "gauge":
                family.add_sample(name, label_dict, series.value)
            elif series.kind == "histogram":
                # Each observation was counted in every bucket whose bound it is under: already cumulative.
                for bound, count in zip(series.buckets, series.bucket_counts, strict=True):
                    family.add_sample(f"{name}_bucket", {**label_dict, "le": _le(bound)}, count)
                family.add_sample(f"{name}_bucket", {**label_dict, "le": "+Inf"}, series.count)
                family.add_sample(f"{name}_count", label_dict, series.count)
                family.add_sample(f"{name}_sum", label_dict, series.total)
            else:
                family.add_sample(f"{name}_count", label_dict, series.count)
                family.add_sample(f"{name}_sum", label_dict, series.total)
        yield from families.values()

    # -- serving --------------------------------------------------------------------------

    def start(self, statsd: tuple[str, int] = ("127.0.0.1", 9125), http: tuple[str, int] = ("127.0.0.1", 9102)) -> tuple[int, int]:
        """Listen for StatsD on UDP and serve ``/metrics``; returns the two ports (0 picks free ones)."""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(statsd)
        self._socket.settimeout(0.5)
        udp_port = self._socket.getsockname()[1]
        server, thread = start_http_server(http[1], addr=http[0], registry=self.registry)
        self._http = server
        self._threads.append(thread)
        receiver = threading.Thread(target=self._receive, name="statsd-bridge", daemon=True)
        receiver.start()
        self._threads.append(receiver)
        log.info("statsd bridge: UDP %s:%d -> http://%s:%d/metrics", statsd[0], udp_port, http[0], server.server_port)
        return udp_port, int(server.server_port)

    def _receive(self) -> None:
        assert self._socket is not None
        while not self._stopping.is_set():
            try:
                data = self._socket.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.handle(data.decode("utf-8", errors="replace"))

    def stop(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._socket is not None:
            self._socket.close()
        for thread in self._threads:
            thread.join(timeout=2)


def _le(bound: float) -> str:
    if math.isinf(bound):
        return "+Inf"
    return repr(float(bound))
