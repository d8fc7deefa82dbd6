"""Per-patient date shifting that keeps every interval of one patient's history exact.

All of a patient's dates move by the same whole number of days, derived from the secret
and the patient's original identifier, so a baseline and a follow-up stay the same number
of days apart, times of day stay as they were, and ages (differences of two shifted
dates) do not change.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache

from imaging_ingest.deid.uids import keyed_hash

__all__ = ["date_offset_days", "shift_da", "shift_dt", "shift_date_text"]


def date_offset_days(secret: bytes, patient_key: str, low: int, high: int) -> int:
    """A deterministic offset in [low, high] days (the range excludes 0; see DeidConfig)."""
    span = high - low + 1
    value = int.from_bytes(keyed_hash(secret, "date-shift", patient_key)[:8], "big")
    return low + value % span


def _ymd(d: date) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


@lru_cache(maxsize=4096)
def _shift_one_da(value: str, days: int) -> str:
    value = value.strip()
    if not value:
        return value
    if len(value) == 8 and value.isdigit():
        return _ymd(date(int(value[:4]), int(value[4:6]), int(value[6:])) + timedelta(days=days))
    if len(value) == 10 and value[4] == "." and value[7] == ".":  # ACR-NEMA style, still met in the wild
        return _ymd(date(int(value[:4]), int(value[5:7]), int(value[8:])) + timedelta(days=days))
    raise ValueError("not a DICOM date")


def shift_da(value: str, days: int) -> str:
    """Shift a DA value, including ranges (``A-B``) and multiple values (``A\\B``)."""
    out = []
    for item in value.split("\\"):
        if "-" in item:
            out.append("-".join(_shift_one_da(part, days) if part else "" for part in item.split("-", 1)))
        else:
            out.append(_shift_one_da(item, days))
    return "\\".join(out)


_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")


@lru_cache(maxsize=4096)
def _shift_one_dt(value: str, days: int) -> str:
    value = value.strip()
    if not value:
        return value
    match = _DT_RE.match(value)
    if not match:
        raise ValueError("not a DICOM datetime")
    year, month, day, rest = match.groups()
    if month is None or day is None:  # year or year-month precision: shift the first day, keep precision
        shifted = date(int(year), int(month or 1), 1) + timedelta(days=days)
        return _ymd(shifted)[: 4 + (2 if month else 0)] + rest
    return _ymd(date(int(year), int(month), int(day)) + timedelta(days=days)) + rest


def shift_dt(value: str, days: int) -> str:
    """Shift a DT value's date part; the time of day and UTC offset stay as they are."""
    return "\\".join(_shift_one_dt(item, days) for item in value.split("\\"))


def shift_date_text(value: str, days: int, fmt: str = "%Y-%m-%d") -> str:
    """Shift a date written in a human format (clinical spreadsheets)."""
    return (datetime.strptime(value.strip(), fmt).date() + timedelta(days=days)).strftime(fmt)
