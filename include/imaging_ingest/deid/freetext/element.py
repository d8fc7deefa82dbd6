"""Cleaning the values of one DICOM text element (the engine's Clean action on free text).

The attribute's class (``attribute_classes.csv``) says how its text is written and how it
is treated; the VR says how much room a value has: a kind token (``[NAME]``) is written
where it fits, the span is dropped where it would not (code strings, a short string that
would grow past its VR's length).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

from pydicom.datadict import keyword_for_tag

from imaging_ingest.deid.freetext.classes import attribute_classes
from imaging_ingest.deid.freetext.clean import clean_text
from imaging_ingest.deid.freetext.spans import TextClass

__all__ = ["ElementResult", "clean_element", "count_by_attribute", "format_counts", "parse_counts"]

#: Maximum value length per text VR (PS3.5 Table 6.2-1); None: no practical limit.
_MAX_LENGTH = {"CS": 16, "SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "UC": None, "UT": None}


@dataclass(frozen=True)
class ElementResult:
    """The cleaned values, how many phi spans went, and how many values still hold a suspect span."""

    values: list[str]
    removed: int
    flagged: int


def clean_element(values: Iterable[str], tag: int, vr: str, identifiers: Iterable[str]) -> ElementResult:
    """Clean every value of one element by its attribute's class and treatment."""
    entry = attribute_classes().get(tag)
    text_class = entry.text_class if entry is not None else TextClass.DESCRIPTOR
    treatment = entry.treatment if entry is not None else "clean"
    ids = tuple(identifiers)
    out: list[str] = []
    removed = flagged = 0
    limit = _MAX_LENGTH.get(vr)
    for value in values:
        if treatment == "remove":
            removed += bool(value.strip())
            out.append("")
            continue
        only_own = treatment == "keep"  # only the file's own names and identifiers go
        mode = "remove" if vr == "CS" else "token"
        cleaned = clean_text(value, text_class=text_class, identifiers=ids, replacement=mode, only_identifiers=only_own)
        if limit is not None and len(cleaned.text) > limit:
            cleaned = clean_text(value, text_class=text_class, identifiers=ids, replacement="remove", only_identifiers=only_own)
        out.append(cleaned.text)
        removed += cleaned.n_removed
        flagged += cleaned.flagged
    return ElementResult(out, removed, flagged)


def count_by_attribute(counts: MutableMapping[str, int], tag: int, n: int) -> None:
    """Add ``n`` to the attribute's count (keyed by keyword, or the tag when pydicom has none)."""
    if n:
        key = keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        counts[key] = counts.get(key, 0) + n


def format_counts(counts: MutableMapping[str, int]) -> str:
    """``StudyDescription:2,ImageComments:1`` (sorted): one manifest cell, counts only."""
    return ",".join(f"{k}:{v}" for k, v in sorted(counts.items()))


def parse_counts(cell: object) -> dict[str, int]:
    """The inverse of :func:`format_counts` (empty or missing cells: no counts)."""
    out: dict[str, int] = {}
    if not isinstance(cell, str) or not cell:
        return out
    for part in cell.split(","):
        key, _, value = part.rpartition(":")
        if key and value.isdigit():
            out[key] = out.get(key, 0) + int(value)
    return out
