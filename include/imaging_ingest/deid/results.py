"""What de-identifying one file yields: its new identity, hashes and counts, or a PHI-free error."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from imaging_ingest.deid.elements import codec_of, element_map, string_values
from imaging_ingest.deid.freetext.element import format_counts
from imaging_ingest.deid.review import SeenText

__all__ = [
    "CATALOG_ATTRIBUTES",
    "DeidError",
    "DeidOutput",
    "DeidStats",
    "PatientContext",
    "catalog_attributes",
]


class DeidError(Exception):
    """A file that cannot be de-identified; the message is PHI-free and becomes a quarantine reason."""


@dataclass(frozen=True)
class PatientContext:
    """What the engine needs to know about the patient a file belongs to."""

    pseudonym: str
    date_offset_days: int
    identifiers: tuple[str, ...] = ()


@dataclass
class DeidStats:
    """What was done to one file, counted per kind of action (never values)."""

    removed: int = 0
    emptied: int = 0
    dummied: int = 0
    uids: int = 0
    dates_shifted: int = 0
    scrubbed: int = 0
    descriptors_cleaned: int = 0
    replaced: int = 0
    private_removed: int = 0
    private_kept: int = 0
    #: free text cleaned, per attribute keyword: PHI spans replaced, values left with a suspect span
    freetext_removed: dict[str, int] = field(default_factory=dict)
    freetext_flagged: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int | str]:
        """Counts, and the per-attribute counts as one ``Keyword:n,...`` cell each (counts only)."""
        return {k: format_counts(v) if isinstance(v, dict) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class DeidOutput:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    size: int
    sha256: str
    #: None where the engine was asked for no MD5 (``Deidentifier(md5=False)``)
    md5: str | None
    stats: DeidStats = field(compare=False)
    attributes: dict[str, str | None] = field(default_factory=dict, compare=False)
    #: kept free-text values and what the curators' review did with them (``review.py``); restricted
    texts: tuple[SeenText, ...] = field(default=(), compare=False)


#: De-identified attributes the catalog keeps about each file (read from the output, never the source).
CATALOG_ATTRIBUTES = (
    "StudyDate",
    "StudyDescription",
    "SeriesDescription",
    "Modality",
    "BodyPartExamined",
    "Manufacturer",
    "SeriesNumber",
    "InstanceNumber",
)


CATALOG_TAGS = {keyword: tag_for_keyword(keyword) or 0 for keyword in CATALOG_ATTRIBUTES}


def catalog_attributes(ds: Dataset) -> dict[str, str | None]:
    codec = codec_of(ds)
    out: dict[str, str | None] = {}
    for keyword, tag in CATALOG_TAGS.items():
        values = string_values(ds, tag, codec) if tag in element_map(ds) else []
        out[keyword] = "\\".join(values) or None
    return out
