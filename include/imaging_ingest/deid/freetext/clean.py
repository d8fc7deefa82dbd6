"""Replace what the detector found: ``phi`` spans by a kind token, ``suspect`` spans kept and listed.

The token (``[NAME]``, ``[DATE]``, ``[ADDRESS]``...) tells a reader that something was
there and what kind it was, and is the same for the same input: reruns write identical
files. ``replacement="remove"`` drops the spans instead, for values whose VR or length has
no room for a token (code strings, short strings).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from imaging_ingest.deid.freetext.detector import detect, own_identifier_spans
from imaging_ingest.deid.freetext.spans import Certainty, Cleaned, Span, TextClass

__all__ = ["clean_text", "token_for"]

_SPACES = re.compile(r"[ \t]{2,}")


def token_for(kind: str) -> str:
    """The stand-in written where a span of ``kind`` was."""
    return f"[{kind.upper()}]"


def clean_text(
    text: str,
    *,
    text_class: TextClass | str = TextClass.DESCRIPTOR,
    identifiers: Iterable[str] = (),
    replacement: str = "token",
    only_identifiers: bool = False,
) -> Cleaned:
    """Clean one value; text with no ``phi`` span comes back as it was (the same object).

    ``only_identifiers`` replaces only the given identifiers (the ``keep`` treatment).

    Results are cached per (text, class, identifiers, replacement): the same description is
    written in every file of a series.
    """
    if replacement not in ("token", "remove"):
        raise ValueError(f"replacement must be 'token' or 'remove', not {replacement!r}")
    return _clean(text, TextClass(text_class), frozenset(identifiers), replacement, only_identifiers)


@lru_cache(maxsize=8192)
def _clean(text: str, text_class: TextClass, identifiers: frozenset[str], replacement: str, only_identifiers: bool) -> Cleaned:
    spans = own_identifier_spans(text, identifiers) if only_identifiers else detect(text, text_class=text_class, identifiers=identifiers)
    if not spans:
        return Cleaned(text, {})
    if not any(s.certainty is Certainty.PHI for s in spans):
        return Cleaned(text, {}, tuple(spans))
    removed: Counter[str] = Counter()
    parts: list[str] = []
    suspects: list[Span] = []
    cursor = 0
    length = 0
    for span in spans:
        piece = text[cursor : span.start]
        parts.append(piece)
        length += len(piece)
        if span.certainty is Certainty.PHI:
            stand_in = token_for(span.kind) if replacement == "token" else " "
            parts.append(stand_in)
            length += len(stand_in)
            removed[span.kind.value] += 1
        else:
            kept = text[span.start : span.end]
            suspects.append(Span(length, length + len(kept), span.kind, span.certainty, span.rule))
            parts.append(kept)
            length += len(kept)
        cursor = span.end
    parts.append(text[cursor:])
    out = "".join(parts)
    if replacement == "remove":
        if suspects:  # keep the offsets true: only the ends are trimmed, spaces inside stay
            lead = len(out) - len(out.lstrip(" ,;:-"))
            out = out.strip(" ,;:-")
            suspects = [Span(s.start - lead, s.end - lead, s.kind, s.certainty, s.rule) for s in suspects]
        else:
            out = _SPACES.sub(" ", out).strip(" ,;:-")
    return Cleaned(out, dict(removed), tuple(suspects))
