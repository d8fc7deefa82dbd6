"""Each published instance's header as DICOM JSON, read once and cached for good.

WADO-RS metadata and QIDO's instance attributes (InstanceNumber, Rows, Columns, ...) need
each instance's own header, which the catalog does not keep. It is read the first time a
request needs it: a ranged GET of the object's first 64 KiB, parsed up to the pixel data
and never into it (the whole object only when its header is longer). Published objects
never change (a key is written once), so the DICOM JSON is kept in a small SQLite file
beside the header cache, keyed by object key, and a restart reads nothing again.
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import threading
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag

from imaging_ingest.api.dicomweb.dicom_json import dataset_json
from imaging_ingest.api.headers import Fetch

__all__ = ["MetadataCache", "read_metadata"]

log = logging.getLogger(__name__)

_HEAD_BYTES = 64 * 1024
_PIXEL_DATA = 0x7FE00010


def _parse(data: bytes, complete: bool) -> tuple[Dataset, str | None] | None:
    """The header before the pixel data, and the pixel data's VR when there is pixel data."""
    stopped: list[str | None] = []

    def stop_when(tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag >= _PIXEL_DATA and not stopped:
            stopped.append((vr or "OW") if tag == _PIXEL_DATA else None)
        return bool(stopped)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_partial(io.BytesIO(data), stop_when=stop_when, force=True)
    except Exception:  # a truncated element: read the whole object instead
        return None
    if "SOPInstanceUID" not in ds or not (stopped or complete):
        return None
    return ds, (stopped[0] if stopped else None)


def read_metadata(fetch: Fetch, tier: str, key: str, size: int) -> dict[str, Any]:
    """One object's header as DICOM JSON (bulk data as bare tags), fetching as little as possible."""
    head = fetch(tier, key, _HEAD_BYTES if size > _HEAD_BYTES else None)
    parsed = _parse(head, complete=len(head) >= size)
    if parsed is None:
        parsed = _parse(fetch(tier, key, None), complete=True)
    if parsed is None:
        raise ValueError(f"the object {key} has no readable DICOM header")
    ds, pixel_vr = parsed
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
    document = dataset_json(ds, syntax)
    if pixel_vr is not None:
        document["7FE00010"] = {"vr": pixel_vr, "BulkDataURI": "7FE00010"}
    return document


class MetadataCache:
    """DICOM JSON by object key: in memory (bounded) and in a SQLite file when one is given."""

    def __init__(self, path: Path | None, fetch: Fetch, workers: int = 8, memory_items: int = 20_000) -> None:
        self._fetch = fetch
        self._workers = workers
        self._memory: dict[str, dict[str, Any]] = {}
        self._memory_items = memory_items
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS dicom_json (object_key TEXT PRIMARY KEY, document TEXT NOT NULL)")
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def get_many(self, objects: Iterable[tuple[str, str, int]]) -> dict[str, dict[str, Any]]:
        """DICOM JSON for each ``(tier, key, size)``; missing ones read in parallel and stored.

        An object that cannot be read gives an empty document (and a log line naming its key).
        """
        wanted = {key: (tier, size) for tier, key, size in objects}
        with self._lock:
            found = {k: self._memory[k] for k in wanted if k in self._memory}
        missing = [k for k in wanted if k not in found]
        if missing and self._db is not None:
            found.update(self._load(missing))
            missing = [k for k in missing if k not in found]
        fresh: dict[str, dict[str, Any]] = {}
        if missing:

            def read(key: str) -> tuple[str, dict[str, Any] | None]:
                tier, size = wanted[key]
                try:
                    return key, read_metadata(self._fetch, tier, key, size)
                except Exception as exc:  # one unreadable object must not fail a whole answer
                    log.warning("cannot read the DICOM header of %s: %s", key, type(exc).__name__)
                    return key, None

            with ThreadPoolExecutor(max_workers=min(self._workers, len(missing))) as pool:
                results = list(pool.map(read, missing))
            fresh = {key: doc for key, doc in results if doc is not None}
            self._store(fresh)
            found.update(fresh)
            found.update({key: {} for key, doc in results if doc is None})
        with self._lock:
            if len(self._memory) + len(found) > self._memory_items:
                self._memory.clear()
            self._memory.update({k: v for k, v in found.items() if v})
        return found

    def _load(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        loaded: dict[str, dict[str, Any]] = {}
        assert self._db is not None
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, document in self._db.execute(
                    f"SELECT object_key, document FROM dicom_json WHERE object_key IN ({marks})", chunk
                ):
                    loaded[key] = json.loads(document)
        return loaded

    def _store(self, documents: dict[str, dict[str, Any]]) -> None:
        if self._db is None or not documents:
            return
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO dicom_json (object_key, document) VALUES (?, ?)",
                [(k, json.dumps(v, separators=(",", ":"))) for k, v in documents.items()],
            )
            self._db.commit()
