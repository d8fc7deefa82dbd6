"""Quarantine reasons as structure: the rule that fired, the element it is about, and the remedy.

Every stage writes a quarantined file's reason as PHI-free text (it names tags, counts and
rules, never values). That text is what a curator reads; dashboards, the run summary, the
manifest and the site's submission report need more: which *rule* fired (a code from a
short, fixed list, fit for a Prometheus label), which *element* it is about, and what the
submitting site can do about it. ``data/quarantine_reasons.csv`` holds that vocabulary as
data: one row per rule, with the pattern that recognises its texts, the element it is
about when the text names none, and the remedy.

The element is read from the text where the text names one (``(0008,1030)
StudyDescription``; a PHI-leak reason names the source and the output element, and the
output element, where the value was found, is the one reported), else from a DICOM keyword
the text names (``missing PatientID``), else the rule's own.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas only where frames are handled
    import pandas as pd

__all__ = [
    "OTHER",
    "Reason",
    "RuleInfo",
    "classify",
    "needs_curator",
    "rates_by_rule",
    "rule_codes",
    "rule_of",
    "rules",
    "with_reason_fields",
]

#: The rule of a reason no pattern recognises.
OTHER = "other"
_OTHER_REMEDY = "Ask the archive's curators about this file; the reason above says what was found."

_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})\)(?:\s+([A-Z][A-Za-z0-9]*))?")
_WORD = re.compile(r"\b[A-Za-z][A-Za-z0-9]{3,}\b")


@dataclass(frozen=True)
class RuleInfo:
    """One row of ``quarantine_reasons.csv``."""

    rule: str
    pattern: re.Pattern[str]
    element: str
    remedy: str
    #: whether a person must look at the file (False: the reason alone settles it)
    curator: bool = True


@dataclass(frozen=True)
class Reason:
    """A quarantine reason's text with the rule that fired and the element it is about (all PHI-free)."""

    text: str
    rule: str
    element: str
    remedy: str

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.text, "rule": self.rule, "element": self.element, "remedy": self.remedy}


@cache
def rules() -> tuple[RuleInfo, ...]:
    """The vocabulary, in match order (the data file's order)."""
    text = (resources.files("imaging_ingest") / "data" / "quarantine_reasons.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    return tuple(
        RuleInfo(
            row["rule"], re.compile(row["pattern"], re.IGNORECASE), row["element"], row["remedy"], row["curator"] != "no"
        )
        for row in rows
    )


def rule_codes() -> tuple[str, ...]:
    """Every rule code, ``other`` last: the complete label set of the by-reason metrics."""
    return (*(r.rule for r in rules()), OTHER)


@cache
def _keyword_tag(word: str) -> int | None:
    from pydicom.datadict import tag_for_keyword

    return tag_for_keyword(word)


def _element_in(text: str) -> str | None:
    found = list(_TAG.finditer(text))
    if found:
        group, element, keyword = found[-1].groups()  # a leak names source then output: the output is where it is
        tag = f"({group.upper()},{element.upper()})"
        return f"{tag} {keyword}" if keyword else tag
    for word in _WORD.findall(text):
        if word[0].isupper() and any(c.isupper() for c in word[1:]) and (tag_value := _keyword_tag(word)) is not None:
            return f"({tag_value >> 16:04X},{tag_value & 0xFFFF:04X}) {word}"
    return None


def _match(text: str) -> RuleInfo | None:
    return next((info for info in rules() if info.pattern.search(text)), None)


@cache
def classify(text: str | None) -> Reason:
    """The rule and element of a reason text (cached: a submission repeats a few texts many times)."""
    text = text or ""
    info = _match(text) if text else None
    if info is None:
        return Reason(text, OTHER, _element_in(text) or "file", _OTHER_REMEDY)
    return Reason(text, info.rule, _element_in(text) or info.element, info.remedy)


def needs_curator(text: str | None) -> bool:
    """Whether a quarantined file with this reason waits for a person (``curator`` column of the data file).

    An exact duplicate, or the same instance in another encoding, needs nobody: the other copy
    is published. Such files stay quarantined with their reason (conservation), but the queue
    closes them by policy instead of asking a curator. Unknown reasons always need a person.
    """
    info = _match(text) if text else None
    return info is None or info.curator


def rule_of(text: str | None) -> str:
    """The rule code of a reason text (``other`` when none matches)."""
    return classify(text).rule


def rates_by_rule(reasons: Iterable[str | None], files_in: int) -> dict[str, dict[str, float]]:
    """Quarantined files per rule and their share of the submission's files, rules sorted by name."""
    counts = Counter(rule_of(r) for r in reasons)
    return {
        rule: {"files": n, "rate": round(n / files_in, 6) if files_in else 0.0}
        for rule, n in sorted(counts.items())
    }


def with_reason_fields(frame: pd.DataFrame) -> pd.DataFrame:
    """The manifest with ``reason_rule`` and ``reason_element`` beside each quarantined row's ``reason``.

    Published rows get None in both; the columns are as PHI-free as the reason itself.
    """
    quarantined = frame["status"] == "quarantined"
    parsed = [classify(r) if q else None for r, q in zip(frame["reason"], quarantined, strict=True)]
    return frame.assign(
        reason_rule=[p.rule if p else None for p in parsed],
        reason_element=[p.element if p else None for p in parsed],
    )
