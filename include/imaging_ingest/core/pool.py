"""Process pools for the per-file stages: workers forked from a server that has imported pydicom once.

A stage's workers fork from a forkserver rather than from the caller (which may run threads:
an Airflow task, a test), and that server imports the heavy third-party modules once, before
forking, instead of each worker importing them on start (seconds per worker on a busy machine).
Our own modules are imported by each worker after it has taken the caller's ``sys.path``
(Python 3.11's forkserver imports its preload list before applying it), so they are kept light:
no pandas in a module a worker needs.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from multiprocessing.context import BaseContext
from typing import Any

__all__ = ["PRELOAD", "process_pool", "start_server"]

PRELOAD = ["pydicom", "pydicom.dataset", "pydicom.filereader", "pydicom.filewriter", "pydantic"]


def start_server() -> None:
    """Start the forkserver now: it imports ``PRELOAD`` in its own process while the caller goes on.

    A command that will need a pool calls this before importing its own heavy modules (pandas,
    SQLAlchemy), so that both import at once on two cores instead of one after the other.
    Without it, the server starts with the first pool.
    """
    _context()
    forkserver.ensure_running()


def process_pool(
    workers: int, *, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes from the forkserver (use it as a context manager)."""
    return ProcessPoolExecutor(workers, mp_context=_context(), initializer=initializer, initargs=initargs)


def _context() -> BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context
