"""The pipeline's own counters, sent wherever the deployment points them.

The library emits counters through :func:`incr` and knows nothing of where they go; a
deployment adds hooks (the Airflow tasks add one that forwards to Airflow's StatsD
client, a service may add a Prometheus one). Without hooks a counter is only logged at
debug level, so library code can always emit without checking for a metrics backend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["MetricHook", "add_hook", "incr"]

log = logging.getLogger(__name__)

#: A hook receives the counter name (dotted, e.g. ``fixity.mismatch``), the increment and tags.
MetricHook = Callable[[str, float, dict[str, str]], None]

_hooks: list[MetricHook] = []


def add_hook(hook: MetricHook) -> Callable[[], None]:
    """Send counters to ``hook`` too; returns a function that removes it again."""
    _hooks.append(hook)

    def remove() -> None:
        if hook in _hooks:
            _hooks.remove(hook)

    return remove


def incr(name: str, value: float = 1, **tags: str) -> None:
    """Add ``value`` to the counter ``name``; a failing hook is logged, never raised."""
    log.debug("metric %s +%s %s", name, value, tags)
    for hook in list(_hooks):
        try:
            hook(name, value, dict(tags))
        except Exception:  # noqa: BLE001 - metrics must never break the pipeline
            log.warning("metrics hook %r failed for %s", hook, name, exc_info=True)
