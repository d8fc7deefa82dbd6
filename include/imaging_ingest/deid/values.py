"""What each profile action does to one element's value: remove, empty, dummy, clean, shift, replace, hash, remap.

``ValueActions`` is the half of the ``Deidentifier`` (``engine.py``) that changes values; the
engine walks data sets, sequences and private blocks and hands each element to ``_apply``
with its action. Values are rewritten on their raw bytes where the VR is ASCII (UIDs, dates);
only text to clean is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging_ingest.deid.dates import shift_da, shift_dt
from imaging_ingest.deid.elements import (
    LazyIdentifiers,
    ascii_values,
    element_map,
    has_value,
    text_values,
    vr_of,
)
from imaging_ingest.deid.freetext.element import clean_element, count_by_attribute
from imaging_ingest.deid.profile import Action, ResolvedProfile
from imaging_ingest.deid.results import DeidStats
from imaging_ingest.deid.review import TextReview
from imaging_ingest.deid.uids import keyed_hash, remap_uid

__all__ = ["CleanedValues", "FileRun", "ValueActions"]

#: Dummy values for action D, by VR: valid for the VR, and say nothing.
_DUMMY: dict[str, Any] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UR": "urn:anonymized",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
    "AT": 0,
}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: Free text (and codes) the scrubber may clean.
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT", "CS"})
_NUMERIC_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT"})


@dataclass(frozen=True)
class FileRun:
    """What the element handlers need to know about the file at hand."""

    offset: int
    lazy_identifiers: LazyIdentifiers
    path: list[int] = field(default_factory=list)  # the sequence tags around the item being cleaned

    def identifiers(self) -> tuple[str, ...]:
        return self.lazy_identifiers.get()


class ValueActions:
    """The value half of the ``Deidentifier``: set up by its ``__init__``; ``_sequence`` is its walk."""

    profile: ResolvedProfile
    secret: bytes
    keep_uids: frozenset[str]
    _review: TextReview | None
    _shift_dates: bool
    _full_dates: bool
    _cleaned: CleanedValues

    def _sequence(self, ds: Dataset, tag: int, run: FileRun, stats: DeidStats, depth: int) -> None:
        raise NotImplementedError  # the engine walks sequences

    def _apply(
        self,
        ds: Dataset,
        tag: int,
        elem: RawDataElement | DataElement,
        action: Action,
        run: FileRun,
        stats: DeidStats,
        depth: int,
    ) -> None:
        vr = vr_of(tag, elem)
        if action is Action.EMPTY:
            self._empty(ds, tag, elem, vr, stats)
            return
        if vr == "SQ":
            if action in (Action.REPLACE, Action.HASH, Action.SHIFT):
                self._remove(ds, tag, stats)
            else:  # D, C, U on a sequence: keep the structure, de-identify every item
                self._sequence(ds, tag, run, stats, depth)
            return
        if vr == "UI":
            if action is Action.REPLACE:
                self._replace(ds, tag, vr, stats)
            elif action is Action.SHIFT:
                self._remove(ds, tag, stats)
            else:  # U, D, C, hash: a UID's only safe stand-in is its keyed remapping
                self._remap(ds, tag, elem, stats)
            return
        if action is Action.DUMMY:
            self._dummy(ds, tag, elem, vr, run, stats)
        elif action is Action.CLEAN:
            self._clean_value(ds, tag, elem, vr, run, stats)
        elif action is Action.SHIFT:
            self._shift_or_drop(ds, tag, elem, vr, run, stats)
        elif action is Action.REPLACE:
            self._replace(ds, tag, vr, stats)
        elif action is Action.HASH:
            self._hash(ds, tag, elem, vr, run, stats)
        else:  # U on something that is neither a UID nor a sequence
            self._remove(ds, tag, stats)

    def _remove(self, ds: Dataset, tag: int, stats: DeidStats) -> None:
        del element_map(ds)[tag]
        stats.removed += 1

    def _empty(
        self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, vr: str, stats: DeidStats
    ) -> None:
        if type(elem) is RawDataElement and vr != "SQ":
            element_map(ds)[tag] = elem._replace(value=b"", length=0)
        else:
            element_map(ds)[tag] = DataElement(tag, vr, Sequence() if vr == "SQ" else None)
        stats.emptied += 1

    def _set_ascii(
        self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, vr: str, values: list[str]
    ) -> None:
        """Store new values of an ASCII VR, as raw bytes when the element was raw."""
        if type(elem) is RawDataElement:
            data = "\\".join(values).encode("latin-1")
            if len(data) % 2:
                data += b"\x00" if vr == "UI" else b" "
            element_map(ds)[tag] = elem._replace(value=data, length=len(data))
        else:
            element_map(ds)[tag] = DataElement(tag, vr, values[0] if len(values) == 1 else values)

    def _remap(self, ds: Dataset, tag: int, elem: RawDataElement | DataElement, stats: DeidStats) -> None:
        values = ascii_values(elem)
        new = [v if v in self.keep_uids else remap_uid(self.secret, v) for v in values]
        if new != values:
            self._set_ascii(ds, tag, elem, "UI", new)
            stats.uids += 1

    def _dummy(
        self,
        ds: Dataset,
        tag: int,
        elem: RawDataElement | DataElement,
        vr: str,
        run: FileRun,
        stats: DeidStats,
    ) -> None:
        if (elem.length == 0) if type(elem) is RawDataElement else not has_value(cast(DataElement, elem)):
            return  # nothing to replace
        if vr in ("DA", "DT") and (self._shift_dates or self._full_dates):
            self._shift(ds, tag, elem, vr, run, stats)
            return
        if vr in _BINARY_VRS:
            element_map(ds)[tag] = DataElement(tag, "OB" if vr == "UN" else vr, b"\x00\x00")
        else:
            element_map(ds)[tag] = DataElement(tag, vr, _DUMMY.get(vr, "ANONYMIZED"))
        stats.dummied += 1

    def _clean_value(
        self,
        ds: Dataset,
        tag: int,
        elem: RawDataElement | DataElement,
        vr: str,
        run: FileRun,
        stats: DeidStats,
    ) -> None:
        """Action C: keep what the value means, minus what identifies."""
        if 0x5000 <= tag >> 16 <= 0x60FF and (tag >> 24) in (0x50, 0x60):
            # Clean Graphics on curves and overlays: a header engine cannot clean a bitmap, and
            # an overlay without its data is invalid, so each of their elements goes
            self._remove(ds, tag, stats)
        elif vr in ("DA", "DT"):
            if not self._full_dates:
                self._shift(ds, tag, elem, vr, run, stats)
        elif vr in ("TM", "AS") or vr in _NUMERIC_VRS:
            return  # times of day, ages and numbers survive: dates around them are shifted
        elif vr in _TEXT_VRS:
            self._scrub(ds, tag, vr, run, stats)
            if self._review is not None:
                self._review.apply(ds[tag], tag, vr)
        elif vr == "AE":  # device identity retained as a stable keyed pseudonym, not the real name
            values = ascii_values(elem)
            self._set_ascii(
                ds,
                tag,
                elem,
                vr,
                [("AE" + keyed_hash(self.secret, "ae", v).hex()[:14]).upper() for v in values],
            )
            stats.replaced += 1
        elif vr == "PN":
            self._empty(ds, tag, elem, vr, stats)
        else:  # binary graphics (overlay data, curves), URLs, unknown VRs: nothing can clean them
            self._remove(ds, tag, stats)

    def _scrub(self, ds: Dataset, tag: int, vr: str, run: FileRun, stats: DeidStats) -> None:
        elem = ds[tag]  # text needs the character set: let pydicom decode it
        values, removed, flagged = self._cleaned(tuple(text_values(elem)), tag, vr, run.identifiers())
        count_by_attribute(stats.freetext_flagged, tag, flagged)
        if removed:
            stats.scrubbed += removed
            stats.descriptors_cleaned += 1
            count_by_attribute(stats.freetext_removed, tag, removed)
            elem.value = values[0] if len(values) == 1 else list(values)


    def _shift(
        self,
        ds: Dataset,
        tag: int,
        elem: RawDataElement | DataElement,
        vr: str,
        run: FileRun,
        stats: DeidStats,
    ) -> None:
        values = ascii_values(elem)
        if not any(values):
            return
        text = "\\".join(values)
        try:
            shifted = shift_da(text, run.offset) if vr == "DA" else shift_dt(text, run.offset)
        except (ValueError, OverflowError):
            # An unparseable date cannot be shifted, so it cannot be kept.
            self._empty(ds, tag, elem, vr, stats)
            return
        self._set_ascii(ds, tag, elem, vr, shifted.split("\\"))
        stats.dates_shifted += 1

    def _shift_or_drop(
        self,
        ds: Dataset,
        tag: int,
        elem: RawDataElement | DataElement,
        vr: str,
        run: FileRun,
        stats: DeidStats,
    ) -> None:
        if vr in ("DA", "DT"):
            self._shift(ds, tag, elem, vr, run, stats)
        elif vr != "TM":  # a time of day is kept as it is; anything else cannot be shifted
            self._remove(ds, tag, stats)

    def _replace(self, ds: Dataset, tag: int, vr: str, stats: DeidStats) -> None:
        value = self.profile.replacements[tag]
        if vr in _BINARY_VRS:
            data = value.encode("utf-8")
            element_map(ds)[tag] = DataElement(
                tag, "OB" if vr == "UN" else vr, data + b"\x00" * (len(data) % 2)
            )
        else:
            element_map(ds)[tag] = DataElement(tag, vr, value)
        stats.replaced += 1

    def _hash(
        self,
        ds: Dataset,
        tag: int,
        elem: RawDataElement | DataElement,
        vr: str,
        run: FileRun,
        stats: DeidStats,
    ) -> None:
        """A stable keyed pseudonym of the value: equal inputs stay equal, nothing else is kept."""
        if vr in ("DA", "DT"):
            self._shift(ds, tag, elem, vr, run, stats)
            return
        if vr not in _TEXT_VRS and vr not in ("PN", "AE"):
            self._remove(ds, tag, stats)  # numbers, times, binary: no meaningful pseudonym
            return
        converted = ds[tag]
        values = [
            keyed_hash(self.secret, "override-hash", v).hex()[:16].upper() for v in text_values(converted)
        ]
        if values:
            converted.value = values[0] if len(values) == 1 else values
            stats.replaced += 1



class CleanedValues:
    """``clean_element``'s results, remembered by one engine: a series repeats its descriptions in every file.

    The detector is a pure function of its arguments (the values, the attribute, its VR and the
    patient's own identifiers; its word lists are fixed data), so a value seen before is cleaned
    the same way without running it again. It lives as long as its engine, in memory only, like
    the values themselves, and forgets everything when it holds ``size`` results.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._results: dict[tuple[tuple[str, ...], int, str, tuple[str, ...]], tuple[tuple[str, ...], int, int]] = {}

    def __call__(
        self, values: tuple[str, ...], tag: int, vr: str, identifiers: tuple[str, ...]
    ) -> tuple[tuple[str, ...], int, int]:
        key = (values, tag, vr, identifiers)
        found = self._results.get(key)
        if found is None:
            if len(self._results) >= self._size:
                self._results.clear()
            result = clean_element(values, tag, vr, identifiers)
            found = self._results[key] = (tuple(result.values), result.removed, result.flagged)
        return found
