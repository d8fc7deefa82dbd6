"""Curators' decisions on free-text values, applied inside the engine (the engine's half of the review flow).

Clean Descriptors keeps descriptions, labels and comments through the free-text cleaner;
what the cleaner is unsure of (a *suspect* span: a capitalised word pair that may be a
name, a place it does not know) stays in the text and the value is *flagged*. Curators
review each distinct value once per collection (``pipeline/text_review.py``, the CLI's
``imaging-ingest text-review``, the plugin's page) and mark it ``safe`` or ``unsafe``.

Here, for every kept free-text value of a file, after cleaning:

- a value a curator marked ``unsafe`` is removed from the element;
- a value marked ``safe`` is kept as it is;
- a flagged value without a decision is removed (the file is still published), or, with
  the collection's ``free_text_flags: quarantine``, the whole file is held back
  (``FreeTextHeld``, reason ``free text flagged for review in (gggg,eeee) Keyword``);
- any other value is kept.

Every value is recorded (``SeenText``) so that the submission's review report lists each
distinct value with its count, flag and what was done. Decisions are keyed by a keyed
hash (HMAC with the collection's secret) of the normalised value, never by the text, and
reach the engine as plain data (``TextPolicy``), loaded once per batch. Nothing here logs,
and no exception message holds a value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import keyword_for_tag

from imaging_ingest.deid.profile import describe_tag
from imaging_ingest.deid.uids import keyed_hash

__all__ = [
    "ACTION_HELD",
    "ACTION_KEPT",
    "ACTION_REMOVED",
    "REVIEWED_VRS",
    "SAFE",
    "UNSAFE",
    "Detector",
    "FreeTextHeld",
    "SeenText",
    "TextPolicy",
    "TextReview",
    "normalise",
    "suspect_flagged",
    "value_hash",
]

SAFE = "safe"
UNSAFE = "unsafe"
ACTION_KEPT = "kept"
ACTION_REMOVED = "removed"
ACTION_HELD = "held"
#: Free-text VRs whose kept values are reviewed (CS, a coded string, is not free text).
REVIEWED_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})

#: ``detector(text, tag)``: True when the cleaned text still holds a span to review (suspect).
Detector = Callable[[str, int], bool]

_SPACE = re.compile(r"\s+")


def suspect_flagged(text: str, tag: int) -> bool:
    """The free-text detector's verdict on a cleaned value: does a suspect span remain? (a ``Detector``)"""
    from imaging_ingest.deid.freetext import Certainty, attribute_class, detect

    return any(span.certainty == Certainty.SUSPECT for span in detect(text, text_class=attribute_class(tag)))


def normalise(text: str) -> str:
    """What makes two values "the same text": NFKC, case-folded, runs of white space as one space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def value_hash(secret: bytes, text: str) -> str:
    """The key of a value's decision: a keyed hash of its normalised form (hex), never the text."""
    return keyed_hash(secret, "freetext-review", normalise(text)).hex()


@dataclass(frozen=True)
class TextPolicy:
    """A collection's decisions and mode, as plain data the de-identification workers receive.

    ``decisions`` maps a value hash to ``safe`` or ``unsafe``; ``flags`` is the
    collection's ``free_text_flags`` (``remove`` or ``quarantine``); ``detector`` says
    whether a cleaned value is flagged (None: nothing is flagged, decisions still apply).
    """

    decisions: Mapping[str, str] = field(default_factory=dict)
    flags: str = "remove"
    detector: Detector | None = None


@dataclass(frozen=True)
class SeenText:
    """One kept free-text value of one file, after cleaning, and what the review did with it."""

    tag: int
    keyword: str
    text: str
    value_hash: str
    flagged: bool
    action: str


class FreeTextHeld(Exception):
    """A file held back under ``free_text_flags: quarantine``; the message names the element only."""

    def __init__(self, tag: int, texts: tuple[SeenText, ...]) -> None:
        super().__init__(f"free text flagged for review in {describe_tag(tag)}")
        self.texts = texts


class TextReview:
    """The engine's per-process review state: the policy, a flag cache, the current file's values."""

    def __init__(self, policy: TextPolicy, secret: bytes) -> None:
        self.policy = policy
        self.secret = secret
        self._flags: dict[tuple[str, int], bool] = {}
        self._seen: list[SeenText] = []
        self._held: int | None = None

    def begin(self) -> None:
        """A new file: forget the previous file's values."""
        self._seen, self._held = [], None

    def take(self) -> tuple[SeenText, ...]:
        """The current file's values; raises ``FreeTextHeld`` when one holds the file back."""
        seen = tuple(self._seen)
        if self._held is not None:
            raise FreeTextHeld(self._held, seen)
        return seen

    def _flagged(self, text: str, tag: int) -> bool:
        if self.policy.detector is None:
            return False
        key = (text, tag)
        if key not in self._flags:
            if len(self._flags) > 50_000:  # distinct values of a batch are few; a bound all the same
                self._flags.clear()
            self._flags[key] = bool(self.policy.detector(text, tag))
        return self._flags[key]

    def apply(self, elem: Any, tag: int, vr: str) -> None:
        """Review the (already cleaned) values of one element; remove those that must go."""
        if vr not in REVIEWED_VRS or elem.value in (None, "", b""):
            return
        values = [str(v) for v in (elem.value if elem.VM > 1 else [elem.value])]
        keyword = keyword_for_tag(tag) or describe_tag(tag)
        kept: list[str] = []
        changed = False
        for text in values:
            if not text.strip():
                kept.append(text)
                continue
            digest = value_hash(self.secret, text)
            decision = self.policy.decisions.get(digest)
            flagged = self._flagged(text, tag)
            if decision == UNSAFE or (decision is None and flagged and self.policy.flags != "quarantine"):
                action, changed = ACTION_REMOVED, True
            elif decision is None and flagged:
                action = ACTION_HELD
                if self._held is None:
                    self._held = tag
                kept.append(text)
            else:
                action = ACTION_KEPT
                kept.append(text)
            self._seen.append(SeenText(tag, keyword, text, digest, flagged, action))
        if changed:
            elem.value = kept[0] if len(kept) == 1 else (kept or "")
