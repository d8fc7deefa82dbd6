"""One pass over a text: every rule's spans, merged into non-overlapping spans.

Shape rules (``patterns``) and word rules (``names``) may overlap: a date inside an
address, a name inside an institution. Overlapping ``phi`` spans are merged into their
union (the longest one gives the kind and rule); a ``suspect`` span that touches a ``phi``
span is dropped (it goes anyway). The file's own identifiers (its patient's and staff's
names and IDs) are always ``phi``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from imaging_ingest.deid.freetext.names import word_spans
from imaging_ingest.deid.freetext.patterns import pattern_spans
from imaging_ingest.deid.freetext.spans import Certainty, Kind, Span, TextClass

__all__ = ["detect", "own_identifier_spans"]


@lru_cache(maxsize=1024)
def _identifier_pattern(identifiers: frozenset[str]) -> re.Pattern[str] | None:
    """One alternation of the identifiers, longest first, matched as whole words in any case."""
    words = sorted({i.strip() for i in identifiers if len(i.strip()) >= 2}, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, words)) + r")(?![A-Za-z0-9])", re.IGNORECASE)


def own_identifier_spans(text: str, identifiers: Iterable[str]) -> list[Span]:
    """Where the given identifiers (a file's own names and IDs) occur, as whole words in any case."""
    pattern = _identifier_pattern(frozenset(identifiers))
    if pattern is None:
        return []
    return [
        Span(m.start(), m.end(), Kind.ID if any(c.isdigit() for c in m.group(0)) else Kind.NAME, Certainty.PHI, "own_identifier")
        for m in pattern.finditer(text)
    ]


def _merge(spans: list[Span], text: str) -> list[Span]:
    """Union of overlapping spans (and of same-kind spans with only spaces between: ``[NAME]``,
    not ``[NAME] [NAME]``); the longest member names the kind and the rule."""
    out: list[Span] = []
    group: list[Span] = []
    end = -1
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if group and (span.start < end or (span.kind is group[-1].kind and span.certainty is group[-1].certainty and not text[end : span.start].strip(" "))):
            group.append(span)
            end = max(end, span.end)
            continue
        if group:
            out.append(_union(group, end))
        group, end = [span], span.end
    if group:
        out.append(_union(group, end))
    return out


#: Which kind names a merged span when two rules cover the same text (an SSN is also shaped like a phone number).
_PRIORITY = {Kind.EMAIL: 9, Kind.URL: 8, Kind.DATE: 7, Kind.ADDRESS: 6, Kind.INSTITUTION: 5, Kind.LOCATION: 4, Kind.AGE: 3, Kind.ID: 2, Kind.PHONE: 1, Kind.NAME: 0}


def _union(group: list[Span], end: int) -> Span:
    longest = max(group, key=lambda s: (s.end - s.start, _PRIORITY[s.kind]))
    return Span(group[0].start, end, longest.kind, longest.certainty, longest.rule)


def detect(
    text: str, *, text_class: TextClass | str = TextClass.DESCRIPTOR, identifiers: Iterable[str] = ()
) -> list[Span]:
    """The PHI spans of ``text``, sorted and non-overlapping (see ``docs/deid.md``)."""
    if not text or not text.strip():
        return []
    text_class = TextClass(text_class)
    phi: list[Span] = own_identifier_spans(text, identifiers)
    suspects: list[Span] = []
    for span in (*pattern_spans(text), *word_spans(text, text_class)):
        (phi if span.certainty is Certainty.PHI else suspects).append(span)
    merged = _merge(phi, text)
    if suspects:
        kept = [s for s in suspects if not any(p.start < s.end and s.start < p.end for p in merged)]
        merged = sorted(merged + _merge(kept, text), key=lambda s: s.start)
    return merged
