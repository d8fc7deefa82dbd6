"""Clean Descriptors: keep free-text descriptions, minus what identifies.

``scrub_text`` is the short form of :func:`imaging_ingest.deid.freetext.clean_text` for
callers that only need the text and a count: the free-text detector
(``deid/freetext/``, see ``docs/deid.md``) finds names, addresses, places, institutions,
phone numbers, e-mail addresses, URLs, identifiers, dates and ages over 89, plus the
file's own names and identifiers given here, and each one found is replaced by a token
of its kind (``[NAME]``, ``[DATE]``...). Text with none of these comes back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from imaging_ingest.deid.freetext import TextClass, clean_text

__all__ = ["scrub_text"]


def scrub_text(
    text: str, identifiers: Iterable[str] = (), *, text_class: TextClass | str = TextClass.DESCRIPTOR
) -> tuple[str, int]:
    """Return the cleaned text and how many pieces were replaced (0: the text is returned as it was)."""
    cleaned = clean_text(text, text_class=text_class, identifiers=identifiers)
    return cleaned.text, cleaned.n_removed
