"""Manifest rows as dicts, a bounded number at a time.

Whole-submission stages (screen, verify, register, publish) see every file of a
submission. ``DataFrame.to_dict("records")`` would build a dict per row all at once: at
20,000 files that transient alone is tens of MB, and the allocator keeps most of it after
it is freed. These helpers hand rows over one at a time, or in chunks of a fixed size,
so a stage's memory depends on the chunk size rather than on the file count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # the catalog uses ``chunks`` without paying for pandas
    import pandas as pd

__all__ = ["ROWS_PER_CHUNK", "chunks", "frame_from_records", "iter_records"]

#: Rows a whole-submission stage holds as Python objects at once.
ROWS_PER_CHUNK = 256

T = TypeVar("T")


def iter_records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The rows of a frame as dicts, one at a time, in the frame's order."""
    columns = list(frame.columns)
    for values in frame.itertuples(index=False, name=None):
        yield dict(zip(columns, values, strict=True))


def chunks(items: Iterable[T], size: int = ROWS_PER_CHUNK) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def frame_from_records(records: Iterable[dict[str, Any]], size: int = ROWS_PER_CHUNK) -> pd.DataFrame:
    """``pd.DataFrame(list(records))`` without holding a dict for every row at once.

    Rows become a frame a chunk at a time; the chunks are concatenated (columns in the
    order they first appear). A stage that produces one dict per file builds its
    manifest with this, so its Python objects stay bounded by ``size``.
    """
    import pandas as pd

    parts = [pd.DataFrame(chunk) for chunk in chunks(records, size)]
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
