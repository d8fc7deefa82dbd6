"""What the API reads once from a published object, kept for good: JSON by object key, in SQLite.

Published objects never change (a key is written once), so what is derived from one (NBIA's
header fields, an instance's DICOM JSON, where its frames lie) never goes stale. A
``KeyedJsonCache`` keeps such values in memory (optionally bounded) and in one table of a
small SQLite file, keyed by object key, so that a restart reads nothing again; values
missing from both are read, in parallel, by the function it was given. ``HeaderCache``
(``headers.py``), ``MetadataCache`` (``dicomweb/metadata.py``) and the frame index
(``dicomweb/frames.py``) are such caches, one table each.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["KeyedJsonCache", "Reader"]

log = logging.getLogger(__name__)

Reader = Callable[[str, str, int], dict[str, Any]]
"""``read(tier, key, size)``: the value of one object (raises when it cannot be read)."""

_NAME = re.compile(r"^[a-z_]+$")
#: Keys per ``IN (...)`` list (SQLite's parameter limit is far above; the statement stays small).
_CHUNK = 500


class KeyedJsonCache:
    """JSON values by object key: in memory (``memory_items`` bounds it; None: unbounded) and in
    ``table`` (``object_key``, ``column``) of a SQLite file when ``path`` is given."""

    def __init__(
        self,
        path: Path | None,
        table: str,
        column: str,
        read: Reader | None = None,
        *,
        what: str = "values",
        workers: int = 8,
        memory_items: int | None = None,
    ) -> None:
        if not _NAME.match(table) or not _NAME.match(column):
            raise ValueError(f"table and column must be plain names, not {table!r}, {column!r}")
        self._table, self._column = table, column
        self._read, self._what = read, what
        self._workers = workers
        self._memory: dict[str, dict[str, Any]] = {}
        self._memory_items = memory_items
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (object_key TEXT PRIMARY KEY, {column} TEXT NOT NULL)"
            )
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def lookup(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The values already known (in memory or in the file), by key; the others are left out."""
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            found = {k: self._memory[k] for k in wanted if k in self._memory}
        missing = [k for k in wanted if k not in found]
        if missing and self._db is not None:
            loaded = self._load(missing)
            self._remember(loaded)
            found.update(loaded)
        return found

    def put(self, values: dict[str, dict[str, Any]]) -> None:
        """Keep these values, in memory and in the file."""
        if not values:
            return
        self._remember(values)
        if self._db is None:
            return
        rows = [(k, json.dumps(v, separators=(",", ":"), sort_keys=True)) for k, v in values.items()]
        with self._lock:
            self._db.executemany(
                f"INSERT OR REPLACE INTO {self._table} (object_key, {self._column}) VALUES (?, ?)", rows
            )
            self._db.commit()

    def get_many(self, objects: Iterable[tuple[str, str, int]]) -> dict[str, dict[str, Any]]:
        """The value of each ``(tier, key, size)``; missing ones are read in parallel and kept.

        An object that cannot be read gives an empty value (and a log line naming its key, never
        its content): one unreadable object must not fail a whole answer.
        """
        wanted = {key: (tier, size) for tier, key, size in objects}
        found = self.lookup(wanted)
        missing = [k for k in wanted if k not in found]
        if missing and self._read is not None:
            read = self._read
            log.info("reading the %s of %d published objects", self._what, len(missing))

            def one(key: str) -> tuple[str, dict[str, Any] | None]:
                tier, size = wanted[key]
                try:
                    return key, read(tier, key, size)
                except Exception as exc:
                    log.warning("cannot read the %s of %s: %s", self._what, key, type(exc).__name__)
                    return key, None

            with ThreadPoolExecutor(max_workers=min(self._workers, len(missing))) as pool:
                results = list(pool.map(one, missing))
            self.put({key: value for key, value in results if value is not None})
            found.update({key: value if value is not None else {} for key, value in results})
        return found

    def _remember(self, values: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            if self._memory_items is not None and len(self._memory) + len(values) > self._memory_items:
                self._memory.clear()
            self._memory.update({k: v for k, v in values.items() if v})

    def _load(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        loaded: dict[str, dict[str, Any]] = {}
        assert self._db is not None
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT object_key, {self._column} FROM {self._table} WHERE object_key IN ({marks})"
                for key, value in self._db.execute(query, chunk):
                    loaded[key] = json.loads(value)
        return loaded
