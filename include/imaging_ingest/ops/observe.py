"""What each stage of an ingest tells the metrics: one decorator on each ``Ingest`` stage method.

``@observed("verify")`` times the stage (labelled with its outcome) and, from the stage's
``StageResult``, counts what it says: files and bytes in (stage_raw), PHI hits caught
(verify), files published and quarantined by reason rule, and the quarantine rate per rule
(publish). A failed gate
counts as a gate failure. The numbers published and quarantined are the ones the run's
summary reports, so a dashboard adds up to what curators see.

Recording a metric never changes the stage's outcome: any error in here is logged and
swallowed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from imaging_ingest.core.reasons import rule_codes
from imaging_ingest.ops.metrics import metrics, reason_category

__all__ = ["observed", "record_published"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def observed(stage: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Time and count one stage method of ``Ingest`` (its first argument is the ``Ingest``)."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            ingest: Any = args[0]
            started = time.perf_counter()
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                _safely(_failed, ingest, stage, exc, time.perf_counter() - started)
                raise
            _safely(_succeeded, ingest, stage, result, time.perf_counter() - started)
            return result

        return wrapper

    return decorate


def _safely(record: Callable[..., None], *args: Any) -> None:
    try:
        record(*args)
    except Exception:  # noqa: BLE001 - metrics must never fail a stage
        log.warning("recording metrics failed", exc_info=True)


def _failed(ingest: Any, stage: str, exc: Exception, seconds: float) -> None:
    from imaging_ingest.core.gates import GateFailed

    collection = ingest.config.id
    sink = metrics()
    sink.observe("stage_duration_seconds", seconds, collection=collection, stage=stage, outcome="failure")
    if isinstance(exc, GateFailed):
        sink.inc("gate_failures", collection=collection, gate=exc.result.name)


def _succeeded(ingest: Any, stage: str, result: Any, seconds: float) -> None:
    collection = ingest.config.id
    sink = metrics()
    sink.observe("stage_duration_seconds", seconds, collection=collection, stage=stage, outcome="success")
    counts: dict[str, int] = getattr(result, "counts", None) or {}
    if stage == "stage_raw":
        sink.inc("files_in", counts.get("files", 0), collection=collection)
        sink.inc("bytes_in", counts.get("bytes", 0), collection=collection)
    elif stage == "verify":
        sink.inc("phi_hits", counts.get("leaks_caught", 0), collection=collection)
    elif stage == "publish":
        record_published(ingest, result.submission_id)


def record_published(ingest: Any, submission_id: str) -> None:
    """Count a publication as its summary reports it, and refresh the collection's gauges."""
    collection = ingest.config.id
    summary = ingest.summary(submission_id)
    sink = metrics()
    sink.inc("files_published", summary["published"], collection=collection)
    categories: Counter[str] = Counter()
    for reason, files in summary["quarantine_reasons"].items():
        categories[reason_category(reason)] += files
    for category, files in sorted(categories.items()):
        sink.inc("files_quarantined", files, collection=collection, reason=category)
    rates = summary.get("quarantine_by_rule") or {}
    for rule in rule_codes():  # every rule, so that a rule absent this time reads 0, not its last value
        sink.set("quarantine_rate", float(rates.get(rule, {}).get("rate", 0.0)), collection=collection, reason=rule)
    sink.inc("submissions_published", collection=collection)
    sink.set("last_publish_timestamp_seconds", time.time(), collection=collection)
    if summary.get("version") is not None:
        sink.set("collection_version", summary["version"], collection=collection)
    pending = len(ingest.catalog.quarantine_items(collection, state="pending"))
    sink.set("quarantine_pending", pending, collection=collection)
