"""Which free-text class an attribute belongs to, and how each class is treated (data files).

``data/freetext/attribute_classes.csv`` lists the narrative attributes (patient comments,
history, alerts, allergies, occupation, reasons, notes) and the main descriptors; any
other text attribute the profile cleans is a descriptor. ``data/freetext/text_classes.csv``
gives each class's default treatment; ``docs/deid.md`` explains them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from imaging_ingest.deid.freetext.lexicons import data_path
from imaging_ingest.deid.freetext.spans import TextClass

__all__ = ["AttributeClass", "attribute_class", "attribute_classes", "class_treatment"]

TREATMENTS = ("clean", "remove", "keep")


@dataclass(frozen=True)
class AttributeClass:
    """One row of ``attribute_classes.csv`` with its class's default treatment."""

    tag: int
    keyword: str
    text_class: TextClass
    treatment: str


def _read(name: str) -> list[dict[str, str]]:
    import csv

    with data_path(name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


@cache
def class_treatment() -> Mapping[TextClass, str]:
    """The default treatment of each class (``clean``, ``remove`` or ``keep``)."""
    out = {}
    for row in _read("text_classes.csv"):
        treatment = row["treatment"].strip()
        if treatment not in TREATMENTS:
            raise ValueError(f"text_classes.csv: unknown treatment {treatment!r}")
        out[TextClass(row["class"].strip())] = treatment
    return out


@cache
def attribute_classes() -> Mapping[int, AttributeClass]:
    """Tag -> class of every listed attribute."""
    treatments = class_treatment()
    out = {}
    for row in _read("attribute_classes.csv"):
        tag_text = row["tag"].strip().strip("()")
        tag = int(tag_text.replace(",", ""), 16)
        text_class = TextClass(row["class"].strip())
        out[tag] = AttributeClass(tag, row["keyword"].strip(), text_class, treatments[text_class])
    return out


def attribute_class(tag: int) -> TextClass:
    """The class of a text attribute; descriptor when it is not listed."""
    found = attribute_classes().get(tag)
    return found.text_class if found is not None else TextClass.DESCRIPTOR
