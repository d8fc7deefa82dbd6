"""Helpers for the tests of the raw readers: the synthetic corpus's Part 10 files, a data set re-encoded."""

from __future__ import annotations

import io
from pathlib import Path

from pydicom.dataset import Dataset


def part10_files(root: Path) -> list[Path]:
    """Every file under ``root`` with a Part 10 preamble (``DICM`` at byte 128), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.read_bytes()[128:132] == b"DICM")


def saved_as(ds: Dataset, syntax: str) -> bytes:
    """``ds`` written as a Part 10 file in the transfer syntax ``syntax`` (the data set is not changed)."""
    ds = ds.copy()
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
