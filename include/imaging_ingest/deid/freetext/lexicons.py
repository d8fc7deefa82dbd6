"""The detector's word lists, read once from ``data/freetext/`` into frozensets.

Each list is data with its provenance (``data/freetext/README.md``): census name tables,
a common-English word list, clinical words from DICOM PS3.16 code meanings, hand-curated
protocol words and cues. They are loaded lazily and cached per process: a set lookup per
token is what keeps the detector fast enough to run on every text value of every file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

__all__ = ["Lexicons", "data_path", "lexicons"]


def data_path(name: str) -> Path:
    """A file of ``imaging_ingest/data/freetext/``."""
    return Path(str(resources.files("imaging_ingest") / "data" / "freetext" / name))


def _words(name: str) -> frozenset[str]:
    with data_path(name).open(encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip() and not line.startswith("#"))


def _rows(name: str) -> list[dict[str, str]]:
    with data_path(name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


@dataclass(frozen=True)
class Lexicons:
    """Every list the detector consults, lower-cased.

    ``clinical`` is the allow-list (PS3.16 words plus the hand-curated protocol words);
    ``common`` is everyday English. A word in neither and not a cue is *unknown*: in
    narrative text an unknown capitalised word is a suspect name.
    """

    first_names: frozenset[str]
    last_names: frozenset[str]
    common: frozenset[str]
    clinical: frozenset[str]
    protocol: frozenset[str]
    titles: frozenset[str]
    relations: frozenset[str]
    phrases: frozenset[str]
    location_cues: frozenset[str]
    stop: frozenset[str]
    particles: frozenset[str]
    institution_heads: frozenset[str]
    institution_leads: frozenset[str]
    institution_parts: frozenset[str]
    street_suffixes: frozenset[str]
    state_codes: frozenset[str]
    state_names: frozenset[str]

    def is_name_word(self, word: str) -> bool:
        """In a name table (either)."""
        return word in self.first_names or word in self.last_names

    def is_vocabulary(self, word: str) -> bool:
        """A word with a meaning of its own: clinical, protocol or common English."""
        return word in self.clinical or word in self.common


@cache
def lexicons() -> Lexicons:
    """The lists, loaded once per process."""
    cues = _rows("cues.csv")
    inst = _rows("institution_words.csv")
    states = _rows("us_states.csv")
    protocol = _words("protocol_terms.txt")

    def by(rows: list[dict[str, str]], column: str, value: str, key: str) -> frozenset[str]:
        return frozenset(r[key].strip().lower() for r in rows if r[column].strip() == value)

    return Lexicons(
        first_names=_words("first_names.txt"),
        last_names=_words("last_names.txt"),
        common=_words("common_words.txt"),
        clinical=_words("clinical_terms.txt") | protocol,
        protocol=protocol,
        titles=by(cues, "kind", "title", "cue"),
        relations=by(cues, "kind", "relation", "cue"),
        phrases=by(cues, "kind", "phrase", "cue"),
        location_cues=by(cues, "kind", "location", "cue"),
        stop=by(cues, "kind", "stop", "cue"),
        particles=by(cues, "kind", "particle", "cue"),
        institution_heads=by(inst, "role", "head", "word"),
        institution_leads=by(inst, "role", "lead", "word"),
        institution_parts=by(inst, "role", "part", "word"),
        street_suffixes=_words("street_suffixes.txt"),
        state_codes=frozenset(r["code"].strip() for r in states),
        state_names=frozenset(r["name"].strip().lower() for r in states),
    )
