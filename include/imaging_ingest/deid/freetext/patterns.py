"""The shape-defined kinds of PHI: dates, ages over 89, phones, e-mail, URLs, identifiers,
street addresses and city/state/ZIP.

Each rule is one precompiled regular expression with a name (the span's ``rule``); a few
take a look at the matched words afterwards (a street or city made only of clinical words,
such as ``2 LUNG CT`` or ``CHEST, PA``, is no address). Everything is compiled once, at
import: the detector runs on every text value of every file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

from imaging_ingest.deid.freetext.lexicons import Lexicons, lexicons
from imaging_ingest.deid.freetext.spans import Certainty, Kind, Span

__all__ = ["pattern_spans"]

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_ORD = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]\d\d|20\d\d|'\d\d)"
_SEP = r"[\s,.\-/]*"

#: (rule, kind, pattern); order matters only for readability: overlaps are merged later.
_RULES: tuple[tuple[str, Kind, str], ...] = (
    ("email", Kind.EMAIL, r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    ("url", Kind.URL, r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"'\\]+"),
    ("url.domain", Kind.URL, r"\b[a-z0-9][\w-]*(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|io|info|biz|us|uk|nl|de|fr|ca|au)\b(?:/[^\s<>\"'\\]*)?"),
    ("date.iso", Kind.DATE, r"\b(?:1[89]|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:[12]\d|3[01]|0?[1-9])(?:[T ]\d{1,2}:\d\d(?::\d\d(?:\.\d+)?)?)?\b"),
    ("date.numeric", Kind.DATE, r"\b\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})\b(?![.-]\d)"),
    ("date.day_month", Kind.DATE, rf"\b(?:the\s+)?{_ORD}(?:\s+of)?{_SEP}{_MONTH}(?:{_SEP}{_YEAR})?(?![\w'])"),
    ("date.month_day", Kind.DATE, rf"\b{_MONTH}{_SEP}(?:the\s+)?{_ORD}(?:,?\s*{_YEAR})?(?![\w'/:]|\.\d)"),
    ("date.month_year", Kind.DATE, rf"\b{_MONTH}{_SEP}{_YEAR}\b"),
    ("date.month_slash_year", Kind.DATE, r"\b(?:0?[1-9]|1[0-2])[/-](?:19|20)\d\d\b"),
    ("date.dicom", Kind.DATE, r"\b(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:\d{2,6}(?:\.\d{1,6})?)?(?:[+-]\d{4})?\b"),
    ("date.year", Kind.DATE, r"(?<![\d.])(?<!T[REI] )(?<!T[REI]=)(?<!JPEG )(?<!JPEG-)(?<!JPEG)\b(?:19|20)\d\d\b(?![.,:]\d)(?!\s*(?:ms|mm|mg|ml|hu|cc|s|sec|kv|kvp|ma|mas|cgy|gy|iu|units?|hz|khz)\b)"),
    ("age.years", Kind.AGE, r"\b(?:9\d|1[0-4]\d)\s*-?\s*(?:years?|yrs?|yo|y/o|y\.o\.?|y)(?:[\s-]*old)?(?![\w/])"),
    ("age.label", Kind.AGE, r"\b(?:age[ds]?|aged)\s*:?\s*(?:9\d|1[0-4]\d)\b"),
    ("age.sex", Kind.AGE, r"\b(?:9\d|1[0-4]\d)\s?(?:M|F|male|female)\b"),
    ("age.decade", Kind.AGE, r"\b(?:in\s+(?:his|her|their)\s+)?(?:(?:19|20)?(?:90|10[0-9])'?s|nineties|ninety(?:[\s-]\w+)?\s*(?:-?\s*years?(?:[\s-]old)?)|centenarian)\b"),
    ("phone.nanp", Kind.PHONE, r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)[\s-]?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:\s*(?:x|ext\.?)\s*\d{1,5})?\b"),
    ("phone.digits", Kind.PHONE, r"(?<![\w.+])(?:\+|00)?\(?\d{1,5}\)?(?:[\s.-]{1,2}\(?\d{1,8}\)?|\(\d{1,5}\)|(?<=\))\d{3,8}){1,5}(?:\s*(?:x|ext\.?)\s*\d{1,5})?\b(?![.,]\d)"),
    ("phone.international", Kind.PHONE, r"\+\d{1,3}(?:[\s.-]?\(?\d{1,5}\)?){2,5}\b"),
    ("phone.label", Kind.PHONE, r"(?i:\b(?:tel|phone|ph|fax|pager|cell|mobile|beeper|ext|telephone)\b\.?)\s*(?:no\.?|#)?\s*:?\s*(\+?\d[\d\s().-]{2,16}\d)"),
    ("id.ssn", Kind.ID, r"\b\d{3}-\d{2}-\d{4}\b"),
    (
        "id.label",
        Kind.ID,
        r"(?i:\b(?:mrn|mr\s*#|med(?:ical)?\s+rec(?:ord)?s?|rec(?:ord)?|acc(?:ession)?|acct|account|ssn|social\s+security|"
        r"(?:patient|pt|study|subject|case|chart|visit|encounter|order|specimen|sample|requisition|serial|ref(?:erence)?|"
        r"badge|employee|member|policy|insurance|license|licence|device|unit|bed|room)\s*(?:id|no|num(?:ber)?|#)|id)\b\.?)"
        r"\s*(?:no\.?|num(?:ber)?|#)?\s*[:#=]?\s*((?=[A-Za-z-]*\d)[A-Za-z0-9][A-Za-z0-9-]{1,19})\b",
    ),
    ("id.digits", Kind.ID, r"(?<![.,])\b(?![0-9]+[xX][0-9]+\b)(?=(?:[A-Za-z_-]*\d){5})[A-Za-z0-9][A-Za-z0-9_-]{4,}\b"),
    ("address.po_box", Kind.ADDRESS, r"(?i:\bp\.?\s?o\.?\s*box\s+\d+\b)"),
    ("address.unit", Kind.ADDRESS, r"(?i:\b(?:apt|apartment|suite|ste|unit|flat)\b\.?)\s*#?\s*\d+[A-Za-z]?\b"),
)

_ZIP = r"\d{5}(?:-\d{4})?"


@cache
def _compiled() -> tuple[tuple[str, Kind, re.Pattern[str]], ...]:
    """The rules above plus those built from the word lists (street suffixes, states)."""
    lex = lexicons()
    suffixes = "|".join(sorted((re.escape(s) for s in lex.street_suffixes), key=len, reverse=True))
    states = "|".join(sorted(lex.state_codes))
    state_names = "|".join(sorted((re.escape(n).replace(r"\ ", r"\s+") for n in lex.state_names), key=len, reverse=True))
    word = r"(?:[A-Z][\w'’.-]*|\d+(?:st|nd|rd|th))"
    street = (
        rf"\b\d{{1,6}}[A-Za-z]?(?:-\d+)?\s+(?:(?i:n|s|e|w|ne|nw|se|sw|north|south|east|west)\.?\s+)?"
        rf"((?:{word}\s+){{0,3}}{word})\s+(?i:(?:{suffixes}))\b\.?"
        rf"(?:,?\s*(?i:apt|apartment|suite|ste|unit|flat|#)\.?\s*#?\s*[A-Za-z0-9-]+)?"
    )
    city = rf"((?:[A-Z][\w'’.-]+\s+){{0,2}}[A-Z][\w'’.-]+),\s*(?:(?:{states})\b|(?i:{state_names})\b)(?:\.?,?\s*{_ZIP})?"
    extra: tuple[tuple[str, Kind, str], ...] = (
        ("address.street", Kind.ADDRESS, street),
        ("location.city_state", Kind.LOCATION, city),
        ("location.state_zip", Kind.LOCATION, rf"\b(?:{states})\s+{_ZIP}\b"),
        ("location.zip_label", Kind.LOCATION, rf"(?i:\bzip(?:\s*code)?\b)\s*:?\s*{_ZIP}\b"),
    )
    return tuple((rule, kind, re.compile(p, re.IGNORECASE if rule.startswith(("date", "age.years", "age.decade", "age.label", "email", "url")) else 0)) for rule, kind, p in _RULES + extra)


#: Street suffixes that are also protocol abbreviations (CT, DR, ST, PT...): a "street" of only
#: clinical words before one of them is a description, not an address.
_AMBIGUOUS_SUFFIX_WORDS = frozenset({"ct", "dr", "st", "pt", "pl", "sq", "ter", "run", "ln", "cir", "way", "walk", "loop", "row", "hl", "cv", "av"})
_WORD_RE = re.compile(r"[^\W\d_]+")


def _all_clinical(text: str, lex: Lexicons, upper: bool) -> bool:
    """Only clinical words (in mixed case, a word from a name table is taken for a name)."""
    words = [w.lower() for w in _WORD_RE.findall(text)]
    if not upper:
        words_ok = all(w in lex.clinical and w not in lex.first_names and w not in lex.last_names for w in words)
    else:
        words_ok = all(w in lex.clinical for w in words)
    return bool(words) and words_ok


def _upper(text: str) -> bool:
    return not any(c.islower() for c in text)


def _keep(rule: str, match: re.Match[str], lex: Lexicons) -> bool:
    """Second looks that a regular expression cannot take."""
    if rule == "address.street":
        words = [w.lower() for w in _WORD_RE.findall(match.group(1))]
        if any(w in lex.stop or w in lex.phrases or w in lex.titles for w in words):
            return False  # "30 DIRECTIONS PER DR. QUIST": a cue inside is no street name
        suffix = match.group(0).rstrip(". ").split()[-1].lower()
        return not (_all_clinical(match.group(1), lex, _upper(match.string)) and (suffix in _AMBIGUOUS_SUFFIX_WORDS or suffix in lex.clinical))
    if rule == "location.city_state":
        return not _all_clinical(match.group(1), lex, _upper(match.string))
    if rule == "phone.digits":
        text = match.group(0)
        digits = sum(c.isdigit() for c in text)
        groups = re.findall(r"\d+", text.split("x")[0])
        return 9 <= digits <= 16 and len(groups) >= 2 and ("." not in text or all(len(g) >= 3 for g in groups))
    if rule in ("date.day_month", "date.month_day"):
        text = match.group(0)
        if not re.search(r"\d{2,4}\s*$|'\d\d\s*$", text.strip()) or rule == "date.month_day":
            # "3 may", "may 3": the month must be written as a name (capitalised) or the year be there
            month = re.search(r"[A-Za-z]{3,}", text.replace("the", "", 1) if text.lower().startswith("the") else text)
            if month and month.group(0)[0].islower() and not re.search(_YEAR + r"\s*$", text):
                return False
    return True


def _needs(rule: str) -> str:
    """A character a text must contain for the rule to have a chance (a cheap pre-filter)."""
    if rule == "email":
        return "@"
    if rule.startswith("url"):
        return "."
    if rule == "location.city_state":
        return ","
    return "0"  # every other rule needs a digit


@cache
def _by_need() -> dict[str, tuple[tuple[str, Kind, re.Pattern[str]], ...]]:
    groups: dict[str, list[tuple[str, Kind, re.Pattern[str]]]] = {}
    for entry in _compiled():
        groups.setdefault(_needs(entry[0]), []).append(entry)
    return {need: tuple(rules) for need, rules in groups.items()}


_DIGIT = re.compile(r"\d")


def pattern_spans(text: str) -> Iterator[Span]:
    """Every match of every shape rule (overlapping; the detector merges them)."""
    lex = lexicons()
    for need, rules in _by_need().items():
        if (need == "0" and not _DIGIT.search(text)) or (need != "0" and need not in text):
            continue
        for rule, kind, pattern in rules:
            for match in pattern.finditer(text):
                if not _keep(rule, match, lex):
                    continue
                if rule in ("phone.label", "id.label"):
                    start, end = match.span(1)
                else:
                    start, end = match.span()
                if end > start:
                    yield Span(start, end, kind, Certainty.PHI, rule)
