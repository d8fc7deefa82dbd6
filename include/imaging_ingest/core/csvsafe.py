"""CSV cells that a spreadsheet would run as formulas, neutralised.

Header values (series descriptions, institution names, body parts) and file names come
from sites; written into a CSV that a researcher or curator opens in a spreadsheet, a
value starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) is read as a
formula (CSV injection: ``=HYPERLINK(...)``, ``=cmd|...``). Such a cell gets a leading
apostrophe, which spreadsheets show as text and other readers keep as a visible mark.
Numbers, including DICOM's backslash-separated numeric values (``-125.5\\-80``), are left
alone: they are data, not formulas.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

__all__ = ["neutralise", "neutralise_frame"]

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMERIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(\\[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)*$")


def neutralise(value: Any) -> Any:
    """The value, with a leading apostrophe when it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(_TRIGGERS) and not _NUMERIC.match(value):
        return "'" + value
    return value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text columns are neutralised (numeric columns untouched)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(neutralise)
    return out
