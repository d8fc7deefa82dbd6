"""The verifier's own look at free text: PHI that no structured attribute of the source repeats.

``find_leaks`` searches the output for values the source states elsewhere; a name that is
only ever written in a comment ("Discussed with Dr. Anselm Quist") is invisible to that.
This module reads every text value of the output (every element at every sequence depth
whose VR holds text) and applies a small set of strict rules of its own. It shares the
word lists of ``data/freetext/`` (census names, common English) with the de-identifier's
free-text detector, and nothing else: no code, no patterns, so a gap in the detector does
not blind this check.

What it reports is certain (``phi``): a finding quarantines the file, naming the element
and the rule, never the value. Uncertain text (an unknown capitalised word) is not
reported here: the de-identifier already flagged such values for the curators' review of
distinct values, and repeating each one per file would flood them (``docs/deid.md``).

Kind tokens the de-identifier writes (``[NAME]``, ``[DATE]``...) are not findings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging_ingest.core.raw_elements import RawFile
from imaging_ingest.verify.raw_walk import raw_strings, walk
from imaging_ingest.verify.values import element_strings

__all__ = ["TextFinding", "findings_in_elements", "raw_text_findings", "text_findings"]

_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT", "PN"})
#: Attributes whose text is technical, never about a person: versions and vendor strings carry
#: build dates and model names that look like findings and are not.
_TECHNICAL = frozenset(
    {
        "SoftwareVersions",
        "Manufacturer",
        "ManufacturerModelName",
        "DeviceSerialNumber",
        "CodingSchemeVersion",
        "ContextGroupVersion",
        "MappingResourceName",
        "ContextGroupExtensionCreatorUID",
        "DeidentificationMethod",
        "PrivateCreator",
    }
)
#: Kept on purpose under Retain Institution Identity (CID 7050 113112): not a finding then.
_INSTITUTION_KEYWORDS = frozenset({"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName"})
_MAX_DEPTH = 64

_NAME = r"[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?"
_MONTHS = r"(?:January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?"
_STREET = (
    r"(?:Street|Avenue|Road|Lane|Drive|Boulevard|Court|Place|Terrace|Parkway|Highway|Circle|Square|Trail|Way|"
    r"Crossing|Summit|Ridge|Plains|Heights|Harbor|Harbour|Grove|Gardens|Crescent|Close|Alley|Plaza|Pike|Loop)"
)

#: (rule, kind, pattern, needs a name-table check on group "n")
_RULES: tuple[tuple[str, str, re.Pattern[str], bool], ...] = tuple(
    (rule, kind, re.compile(pattern), check)
    for rule, kind, pattern, check in (
        ("title_and_name", "name", rf"\b(?:Dr|Mr|Mrs|Ms|Miss|Prof|Doctor|Professor)\.?\s+(?P<n>{_NAME})\b", False),
        ("title_and_name", "name", r"\b(?:DR|MRS|PROF|DOCTOR)\.\s+(?P<n>[A-Z]{2,}(?:[-'][A-Z]+)?)\b", True),
        (
            "relation_and_name",
            "name",
            rf"\b(?:[Nn]eighbou?r|[Dd]aughter|[Ss]on|[Ww]ife|[Hh]usband|[Mm]other|[Ff]ather|[Bb]rother|[Ss]ister|[Ff]riend|[Pp]artner|[Cc]aregiver)\s+(?P<n>{_NAME})\b",
            False,
        ),
        (
            "cue_and_name",
            "name",
            rf"\b(?:[Dd]iscussed with|[Ss]een by|[Rr]eferred by|[Ss]poke (?:with|to)|[Rr]ead by|[Dd]ictated by|[Ss]igned by|[Pp]er)\s+(?P<n>{_NAME})\b",
            True,
        ),
        ("first_and_last_name", "name", rf"\b(?P<f>{_NAME})\s+(?P<n>{_NAME})\b", True),
        ("institution", "institution", r"\b(?:[A-Z][\w'.-]+\s+){1,4}(?:Hospital|Clinic|Medical Cent(?:er|re)|Infirmary|Institute|University|Health System)\b", False),
        ("institution", "institution", r"\b(?:University|Hospital) of (?:[A-Z][\w'.-]+\s?){1,3}", False),
        ("street_address", "address", rf"\b\d{{1,6}}\s+(?:[A-Z][\w'.-]+\s+){{1,3}}{_STREET}\b", False),
        ("po_box", "address", r"\b[Pp]\.?\s?[Oo]\.?\s*[Bb][Oo][Xx]\s+\d+\b", False),
        ("city_state_zip", "location", r"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)?,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?\b", False),
        ("phone", "phone", r"(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b", False),
        ("email", "email", r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b", False),
        ("url", "url", r"\b(?:https?://|www\.)[^\s\\]+", False),
        ("ssn", "id", r"\b\d{3}-\d{2}-\d{4}\b", False),
        ("labelled_id", "id", r"\b(?:MRN|[Mm]edical [Rr]ecord(?: [Nn]umber)?|SSN)\s*[:#]?\s*[A-Z]?\d{4,}\b", False),
        ("date", "date", rf"\b\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?\s+{_MONTHS},?\s+(?:19|20)\d\d\b", False),
        ("date", "date", rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d\d\b", False),
        ("date", "date", r"\b(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/(?:19|20)\d\d\b", False),
        ("date", "date", r"\b(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b", False),
        ("age_over_89", "age", r"\b(?:9\d|1[0-4]\d)[- ](?:year|yr)s?[- ]old\b|\b[Aa]ged?\s+(?:9\d|1[0-4]\d)\b", False),
    )
)

#: Every rule's pattern in one alternation (groups unnamed): a value it does not match anywhere
#: matches no rule, so most values cost one scan instead of one per rule. Exact: a rule that
#: matches somewhere is an alternative that matches there.
_ANY_RULE = re.compile("|".join(f"(?:{p.pattern.replace('(?P<n>', '(?:').replace('(?P<f>', '(?:')})" for _, _, p, _ in _RULES))


@dataclass(frozen=True)
class TextFinding:
    """PHI found in the output's text: where (element) and by which rule; never the value."""

    element: str
    rule: str
    kind: str

    @property
    def reason(self) -> str:
        return f"PHI leak: free text ({self.kind}, rule {self.rule}) in output {self.element}"


def _words(name: str) -> frozenset[str]:
    path = resources.files("imaging_ingest") / "data" / "freetext" / name
    return frozenset(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#"))


@cache
def _lists() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """First names, last names, everyday English plus clinical words (shared data, read here on its own)."""
    return _words("first_names.txt"), _words("last_names.txt"), _words("common_words.txt") | _words("clinical_terms.txt") | _words("protocol_terms.txt")


def _is_name(word: str, first: bool = False) -> bool:
    firsts, lasts, vocabulary = _lists()
    low = word.lower()
    return (low in firsts if first else (low in firsts or low in lasts)) and low not in vocabulary


def _findings_in(text: str) -> Iterator[tuple[str, str]]:
    if _ANY_RULE.search(text) is None:
        return
    for rule, kind, pattern, check in _RULES:
        for match in pattern.finditer(text):
            if check:
                if rule == "first_and_last_name":
                    if not (_is_name(match.group("f"), first=True) and (_is_name(match.group("n")) or match.group("n").lower() in _lists()[1])):
                        continue
                elif not _is_name(match.group("n")):
                    continue
            yield rule, kind
            break


@lru_cache(maxsize=16384)
def _findings_of(text: str) -> tuple[tuple[str, str], ...]:
    """``_findings_in`` of a value, remembered: outputs repeat most values (descriptions, code
    meanings, the pseudonym) file after file, and the rules are a pure function of the text."""
    return tuple(_findings_in(text))


def _vr(tag: int, elem: Any) -> str:
    vr = elem.VR
    if vr and vr != "UN":
        return str(vr)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _walk(ds: Dataset, depth: int = 0) -> Iterator[tuple[int, Any, str]]:
    if depth > _MAX_DEPTH:
        return
    for tag, elem in list(ds._dict.items()):
        vr = _vr(tag, elem)
        if vr == "SQ":
            try:
                items = ds[tag].value
            except Exception:  # noqa: BLE001 - an unparseable sequence is the byte search's business
                continue
            if isinstance(items, Sequence):
                for item in items:
                    yield from _walk(item, depth + 1)
            continue
        if vr in _TEXT_VRS and not (tag >> 16) & 1:
            yield tag, elem, vr


@cache
def _named(tag: int) -> tuple[str, str]:
    """(keyword, element as reported) of a tag: the same in every file, so looked up once."""
    keyword = keyword_for_tag(tag)
    return keyword, f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword or 'unknown'}"


def findings_in_elements(
    elements: Iterable[tuple[int, Any, str]], strings: Callable[[Any], list[str]], *, institution_retained: bool = False
) -> list[TextFinding]:
    """The rules over (tag, element, VR) of the text elements of a walk, values read by ``strings``.

    One body for both readings of an output: a pydicom data set (``text_findings``) and its
    raw elements (``raw_text_findings``). An element's values are read only when its keyword
    is not excused.
    """
    found: list[TextFinding] = []
    seen: set[tuple[str, str]] = set()
    for tag, elem, vr in elements:
        keyword, where = _named(tag)
        if keyword in _TECHNICAL or (institution_retained and keyword in _INSTITUTION_KEYWORDS):
            continue
        for value in strings(elem):
            if not value or len(value) < 4:
                continue
            text = value.replace("^", " ") if vr == "PN" else value
            for rule, kind in _findings_of(text):
                if (where, rule) not in seen:
                    seen.add((where, rule))
                    found.append(TextFinding(where, rule, kind))
    return found


def text_findings(ds: Dataset, *, institution_retained: bool = False) -> list[TextFinding]:
    """Every certain PHI finding in the text values of a de-identified data set (one per element and rule)."""
    return findings_in_elements(_walk(ds), element_strings, institution_retained=institution_retained)


def raw_text_findings(raw: RawFile, *, institution_retained: bool = False) -> list[TextFinding]:
    """``text_findings`` of a file read as raw elements (``raw_walk``): the same findings, no pydicom parse.

    Raises ``raw_walk.RawFallback`` where the two readings could differ.
    """
    elements = (
        (tag, elem, vr) for _item, tag, elem, vr in walk(raw.dataset, raw.implicit, _TEXT_VRS)
        if not (tag >> 16) & 1
    )
    return findings_in_elements(elements, raw_strings, institution_retained=institution_retained)
