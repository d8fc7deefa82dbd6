"""When a source's identifying value turns up in the output by coincidence, not as a leak.

The verifier searches the whole output for every identifying value of the source. Short
and common values also occur, by chance, inside attributes that say nothing about anyone
and that the de-identifier rightly keeps: an institution called ``TOSHIBA`` inside the
Manufacturer ``TOSHIBA_MEC``, a private element repeating the Manufacturer's Model Name, a
serial number ``00000`` inside the Slice Thickness ``6.000000``, a patient called
``Perfusion`` whose images say ``PERFUSION`` in Image Type. Quarantining those files holds
good data back and teaches curators to wave hits through.

A hit is coincidental only when every place it is found in the output is excused:

- the place is a *kept non-identifying attribute*: public, coded or numeric (CS, AS, DS,
  IS, binary numbers) or one of the few technical text attributes that name equipment and
  software (``TECHNICAL_KEYWORDS``), and never an attribute the verifier itself treats as
  identifying (names, IDs, institution, device);
- and either the value occurs there only *inside* a token (``00000`` in ``6.000000``), or it is
  a whole token of a value the source itself held in the same attribute (the output kept
  the source's own technical value; nothing was moved there).

A private element's value (searched only because nobody knows what private elements hold)
is also excused in any public attribute the verifier does not treat as identifying, when the
source held exactly that value there: a vendor's private copy of the Study Description
adds nothing to the Study Description.

What stays a leak: anything in free text, names, IDs, dates or private elements; a value
that the output holds in a technical attribute where the source did not (a name written
into Manufacturer by a faulty rule); and the patient's own identity (name, IDs, birth
names, address) in any technical text attribute, even where the source put it there. The
patient's single name words are excused only as a whole coded value (CS) the source also
had, which is how a name that is also a defined term (``PERFUSION``) looks. A value seen
more often in the raw header than in the elements located is never excused (it hides
somewhere unparsed). Finally, a value that is a strict part of the catalog's pseudonym,
found in Patient's Name or ID where those hold exactly the pseudonym, is excused: the
pseudonym is assigned by the catalog (prefix and counter) and carries nothing of the source.

This module decides only; it reads no files, so that the rule is testable on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "PATIENT_IDENTITY_KEYWORDS",
    "STRUCTURED_VRS",
    "TECHNICAL_KEYWORDS",
    "Place",
    "coincidental",
    "is_technical",
    "unexcused",
]

#: Coded and numeric VRs: values from a vocabulary or numbers, not text a person typed.
STRUCTURED_VRS = frozenset({"CS", "AS", "DS", "IS", "FL", "FD", "SS", "US", "SL", "UL", "SV", "UV", "AT"})

#: Text attributes that name equipment, software and acquisition techniques, never a person.
TECHNICAL_KEYWORDS = frozenset(
    {
        "Manufacturer",
        "ManufacturerModelName",
        "SoftwareVersions",
        "ConvolutionKernel",
        "SequenceName",
        "PulseSequenceName",
        "ReceiveCoilName",
        "TransmitCoilName",
        "FilterType",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
    }
)

#: Source attributes that state who the patient is: never excused in technical text.
PATIENT_IDENTITY_KEYWORDS = frozenset(
    {
        "PatientName",
        "PatientID",
        "OtherPatientIDs",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientMotherBirthName",
        "MedicalRecordLocator",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
    }
)

_PSEUDONYM_PLACES = frozenset({"PatientName", "PatientID"})
#: Text attributes whose values are identifiers of coding schemes: a coded vocabulary like CS.
_CODED_KEYWORDS = frozenset({"CodingSchemeDesignator"})
_NOT_KEPT_VRS = frozenset({"PN", "DA", "DT", "TM", "UI"})
_TOKEN = re.compile(r"[0-9a-z]+")


@dataclass(frozen=True)
class Place:
    """An output element that holds a hit: where (for the reason), what kind, and its values."""

    where: str
    keyword: str
    vr: str
    texts: tuple[str, ...]
    slot: tuple[str, int, int] | None = None


def is_technical(keyword: str, vr: str, identifying: Iterable[str] = ()) -> bool:
    """A kept non-identifying attribute: public, coded/numeric or technical text, not identifying."""
    if not keyword or keyword in identifying:
        return False
    return vr in STRUCTURED_VRS or keyword in TECHNICAL_KEYWORDS


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _whole_token(needle: str, text: str) -> bool:
    """Does ``needle`` occur in ``text`` bounded by non-alphanumerics (or the ends)?"""
    pattern = r"(?<![0-9a-z])" + re.escape(needle) + r"(?![0-9a-z])"
    return re.search(pattern, text.lower()) is not None


def _place_excused(
    needle: str,
    needle_keyword: str,
    needle_kind: str,
    single_word: bool,
    place: Place,
    source_values: set[tuple[str, str]],
    identifying: frozenset[str],
    pseudonym: str | None,
) -> bool:
    hits = [t for t in place.texts if needle in t.lower()]
    if not hits:
        return True  # the element was located by another spelling of the value; nothing here
    in_pseudonym = pseudonym and place.keyword in _PSEUDONYM_PLACES and needle != pseudonym.lower()
    if in_pseudonym and all(t.strip() == pseudonym for t in hits):
        return True
    if place.slot is not None or not place.keyword or place.keyword in identifying:
        return False
    if needle_kind == "private" and place.vr not in _NOT_KEPT_VRS:
        # a private copy of a public value the source held in that same attribute adds nothing to it
        return all((place.keyword, t.strip().lower()) in source_values for t in hits)
    if not is_technical(place.keyword, place.vr, identifying):
        return False
    patient = needle_keyword in PATIENT_IDENTITY_KEYWORDS
    for text in hits:
        if not _whole_token(needle, text):
            if patient and place.vr not in STRUCTURED_VRS:
                return False  # a name run into technical text is still the name
            continue
        if (place.keyword, text.strip().lower()) not in source_values:
            return False  # not a value the source itself held there: something put it there
        coded = place.vr == "CS" or place.keyword in _CODED_KEYWORDS
        if patient and not (single_word and coded and text.strip().lower() == needle):
            return False
    return True


def unexcused(
    needle: bytes,
    needle_keyword: str,
    needle_kind: str,
    places: list[Place],
    header_count: int,
    source_technical: set[tuple[str, str]],
    identifying: frozenset[str],
    pseudonym: str | None = None,
) -> list[Place] | None:
    """The places where a header hit of ``needle`` is not a coincidence; None when it is one everywhere.

    ``header_count`` is how often the value occurs in the raw header (case-insensitive);
    ``source_technical`` the (keyword, lower-case value) pairs of the source's own public
    non-identifying attributes; ``identifying`` the keywords the verifier treats as
    identifying (never excused); ``pseudonym`` the catalog's pseudonym of the patient.
    When an occurrence hides where no element accounts for it, every place is reported.
    """
    if not places:
        return []
    text = needle.decode("utf-8", "replace").lower()
    located = sum(t.lower().count(text) for p in places for t in p.texts)
    if located < header_count:
        return places  # an occurrence that no element accounts for
    single_word = needle_kind == "name" and len(_tokens(text)) == 1
    left = [
        p
        for p in places
        if not _place_excused(text, needle_keyword, needle_kind, single_word, p, source_technical, identifying, pseudonym)
    ]
    return left or None


def coincidental(
    needle: bytes,
    needle_keyword: str,
    needle_kind: str,
    places: list[Place],
    header_count: int,
    source_technical: set[tuple[str, str]],
    identifying: frozenset[str],
    pseudonym: str | None = None,
) -> bool:
    """Is a header hit of ``needle`` a coincidence at every place it was found? (see ``unexcused``)"""
    args = (needle, needle_keyword, needle_kind, places, header_count, source_technical, identifying, pseudonym)
    return unexcused(*args) is None
