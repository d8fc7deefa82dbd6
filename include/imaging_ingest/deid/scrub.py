"""Clean Descriptors: keep free-text descriptions, minus what identifies.

A description such as "CT CHEST for DOE JOHN MRN123456 2019-03-02" is useful research
context once the patient's own names and identifiers, dates, and identifier-like numbers
are gone. The scrubber is conservative: anything that merely looks like an identifier
goes. What it removes:

- the file's own names and identifiers (the patient's, the staff's, the institution's),
  as whole words, whatever the case;
- dates in DICOM (``20190302``, with or without a time) and human spellings
  (``2019-03-02``, ``03/02/2019``, ``2.3.19``, ``2 March 2019``, ``Mar 2, 2019``) and
  bare years (``2019``: once dates are shifted, a true year would reveal the shift);
- tokens with five or more digits (record numbers, accession numbers, social security
  numbers), phone numbers, e-mail addresses;
- a title followed by a name (``Dr Smith``), and labels left behind (``MRN:``, ``DOB``).

Text that contains none of these comes back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["scrub_text"]

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_PATTERN = re.compile(
    "|".join(
        f"(?:{p})"
        for p in (
            r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",  # 2019-03-02
            r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",  # 03/02/2019, 2.3.19
            r"\b\d{1,2}[ -]" + _MONTH + r"[ -,]*\d{2,4}\b",  # 2 March 2019, 02-MAR-2019
            _MONTH + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}\b",  # Mar 2, 2019
            r"\b(?:19|20)\d{6}(?:\d{2,6}(?:\.\d{1,6})?)?\b",  # 20190302, 20190302120000.5
            r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b",  # (614) 555-0123
            r"\b(?=(?:[a-z_-]*\d){5})[a-z0-9][a-z0-9_-]{4,}\b",  # MRN123456, A12345678, 123-45-6789
            r"\b(?:19|20)\d{2}\b",  # a bare year
            r"\b(?:MRN|DOB|SSN|ACC(?:ESSION)?|D\.O\.B\.)(?:\b|(?<=\.))[:#]?",  # labels left behind
            r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b",  # e-mail addresses
        )
    ),
    re.IGNORECASE,
)
_TITLED_NAME = re.compile(r"\b(?:Dr|Drs|Mr|Mrs|Ms|Miss|Prof|DR|MR|MRS|MS|PROF)\.?\s+[A-Z][A-Za-z'-]+(?:\s+[A-Z][A-Za-z'-]+)?")
_SPACES = re.compile(r"\s{2,}")


@lru_cache(maxsize=1024)
def _identifier_pattern(identifiers: frozenset[str]) -> re.Pattern[str] | None:
    """One alternation of the identifiers, longest first, matched as whole words."""
    words = sorted({i.strip() for i in identifiers if len(i.strip()) >= 2}, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, words)) + r")(?![A-Za-z0-9])", re.IGNORECASE)


def scrub_text(text: str, identifiers: Iterable[str] = ()) -> tuple[str, int]:
    """Return the cleaned text and how many pieces were removed (0: the text is returned as it was)."""
    removed = 0
    pattern = _identifier_pattern(frozenset(identifiers))
    if pattern is not None:
        text, n = pattern.subn(" ", text)
        removed += n
    text, n = _TITLED_NAME.subn(" ", text)
    removed += n
    text, n = _PATTERN.subn(" ", text)
    removed += n
    if not removed:
        return text, 0
    return _SPACES.sub(" ", text).strip(" ,;:-"), removed
