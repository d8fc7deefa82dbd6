"""Each published instance's header as DICOM JSON, read once and cached for good.

WADO-RS metadata and QIDO's instance attributes (InstanceNumber, Rows, Columns, ...) need
each instance's own header, which the catalog does not keep. It is read the first time a
request needs it: a ranged GET of the object's first 64 KiB, parsed up to the pixel data
and never into it (the whole object only when its header is longer). Published objects
never change (a key is written once), so the DICOM JSON is kept in a small SQLite file
beside the header cache, keyed by object key (``jsoncache.py``, as the header cache), and a
restart reads nothing again.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag

from imaging_ingest.api.dicomweb.dicom_json import dataset_json
from imaging_ingest.api.headers import Fetch
from imaging_ingest.api.jsoncache import KeyedJsonCache

__all__ = ["MetadataCache", "read_metadata"]

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


class MetadataCache(KeyedJsonCache):
    """DICOM JSON by object key: in memory (bounded) and in the ``dicom_json`` table of a SQLite file."""

    def __init__(self, path: Path | None, fetch: Fetch, workers: int = 8, memory_items: int = 20_000) -> None:
        super().__init__(path, "dicom_json", "document", lambda tier, key, size: read_metadata(fetch, tier, key, size),
                         what="DICOM header", workers=workers, memory_items=memory_items)
