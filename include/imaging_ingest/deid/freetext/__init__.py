"""Free-text PHI detection: names, places, institutions, contacts, identifiers, dates, ages.

``detect`` finds spans, ``clean_text`` replaces the certain ones by a kind token and lists
the uncertain ones for review; ``attribute_class`` says how an attribute's text is written.
The word lists are data (``data/freetext/``, provenance in its README).
"""

from imaging_ingest.deid.freetext.classes import (
    AttributeClass,
    attribute_class,
    attribute_classes,
    class_treatment,
)
from imaging_ingest.deid.freetext.clean import clean_text, token_for
from imaging_ingest.deid.freetext.detector import detect
from imaging_ingest.deid.freetext.spans import Certainty, Cleaned, Kind, Span, TextClass

__all__ = [
    "AttributeClass",
    "Certainty",
    "Cleaned",
    "Kind",
    "Span",
    "TextClass",
    "attribute_class",
    "attribute_classes",
    "class_treatment",
    "clean_text",
    "detect",
    "token_for",
]
