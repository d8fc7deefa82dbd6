"""Clean Descriptors: keep free-text descriptions, minus what identifies.

A description such as "CT CHEST for DOE JOHN MRN123456 2019-03-02" is useful research
context once the patient's own names and identifiers, dates, and identifier-like numbers
are gone. The scrubber is conservative: anything that merely looks like an identifier
goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["scrub_text"]

_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",  # 2019-03-02
        r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",  # 03/02/2019, 2.3.19
        r"\b(?:19|20)\d{6}\b",  # 20190302
        r"\(?\+?\d[\d\s().-]{7,}\d",  # phone numbers
        r"\b(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{4,}\b",  # MRN123456, 12345, A-1234-5
        r"\b(?:MRN|DOB|SSN|ACC(?:ESSION)?)\b[:#]?",  # labels left behind
        r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b",  # e-mail addresses
    )
)
_SPACES = re.compile(r"\s{2,}")


def scrub_text(text: str, identifiers: Iterable[str] = ()) -> tuple[str, int]:
    """Return the cleaned text and how many pieces were removed."""
    removed = 0
    for ident in sorted({i.strip() for i in identifiers if len(i.strip()) >= 2}, key=len, reverse=True):
        text, n = re.subn(rf"(?<![A-Za-z0-9]){re.escape(ident)}(?![A-Za-z0-9])", " ", text, flags=re.IGNORECASE)
        removed += n
    for pattern in _PATTERNS:
        text, n = pattern.subn(" ", text)
        removed += n
    return _SPACES.sub(" ", text).strip(" ,;:-"), removed
