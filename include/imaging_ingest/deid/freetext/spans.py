"""What the detector reports: spans of text with a kind and a certainty.

These types are the contract with the review flow and the manifest (see
``docs/deid.md``): a span says *where* and *what kind*, and its ``rule`` names the rule
that fired; none of them carries the text itself, so any of them can be logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Certainty", "Cleaned", "Kind", "Span", "TextClass"]


class Kind(StrEnum):
    """What a span is."""

    NAME = "name"
    ADDRESS = "address"
    LOCATION = "location"
    INSTITUTION = "institution"
    PHONE = "phone"
    EMAIL = "email"
    URL = "url"
    ID = "id"
    DATE = "date"
    AGE = "age"


class Certainty(StrEnum):
    """``phi``: removed automatically; ``suspect``: kept in the text and flagged for a curator."""

    PHI = "phi"
    SUSPECT = "suspect"


class TextClass(StrEnum):
    """How a text is written, which decides how much the detector suspects.

    Narrative (comments, history, notes) is written in sentences about people, so an
    unknown capitalised word there is a suspect name; descriptors (descriptions, protocol
    names, labels) are technical words, often all in capitals, where only cues count.
    """

    NARRATIVE = "narrative"
    DESCRIPTOR = "descriptor"


@dataclass(frozen=True, slots=True)
class Span:
    """``text[start:end]`` is PHI (``phi``) or may be (``suspect``); ``rule`` names why (PHI-free)."""

    start: int
    end: int
    kind: Kind
    certainty: Certainty
    rule: str


@dataclass(frozen=True, slots=True)
class Cleaned:
    """A cleaned text: phi spans replaced, suspect spans kept and listed (offsets into ``text``)."""

    text: str
    removed: Mapping[str, int]
    suspects: tuple[Span, ...] = ()

    @property
    def n_removed(self) -> int:
        """How many phi spans were replaced."""
        return sum(self.removed.values())

    @property
    def flagged(self) -> bool:
        """Does the cleaned text still hold something a curator should look at?"""
        return bool(self.suspects)

    @property
    def changed(self) -> bool:
        return self.n_removed > 0
