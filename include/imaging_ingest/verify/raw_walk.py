"""The verifier's walk over a file's raw elements, the same walk it makes over a pydicom data set.

``find_leaks`` used to read both files with pydicom and walk the data sets element by element;
on a scanner's header that cost more than the de-identification itself. The bytes reader
(``core.raw_elements``) gives the same elements for a fraction of the cost, and this walk
yields them as the pydicom walk does (same order, same VR for an element the file states
none for, sequences recursed), with values decoded as ``values.element_strings`` decodes an
element pydicom has not converted.

Where the two readings could differ, this walk does not guess: it raises ``RawFallback`` and
the caller reads the file with pydicom (the reference). That is the case for an element
pydicom would read as a sequence that the bytes reader did not (a public sequence stated as
UN, say), or one the bytes reader read as a sequence that pydicom would read as bytes.
"""

from __future__ import annotations

import re

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.tag import BaseTag
from pydicom.values import convert_string

from imaging_ingest.core.raw_elements import RawElement, RawFile, RawItem, read

__all__ = ["RawFallback", "code_values", "converted", "public_vr", "raw_strings", "read", "walk"]

UNDEFINED = 0xFFFFFFFF
_CHARSET = 0x00080005
_CODE_VALUE = 0x00080100
_MAX_DEPTH = 64


class RawFallback(Exception):
    """The bytes could be read two ways: the caller reads the file with pydicom instead."""


_DICTIONARY_VR: dict[int, str | None] = {}


def dictionary_vr(tag: int) -> str | None:
    """The data dictionary's VR of a tag (None: not in the dictionary), cached per tag."""
    try:
        return _DICTIONARY_VR[tag]
    except KeyError:
        pass
    try:
        vr: str | None = str(dictionary_VR(tag))
    except KeyError:
        vr = None
    _DICTIONARY_VR[tag] = vr
    return vr


def public_vr(tag: int, stated: str) -> str:
    """The VR the verifier reads an element as: the stated one, else the dictionary's, else UN.

    For a private element (odd group) with no VR or UN: LO for a private creator, else UN;
    the same rule as ``leaks._vr`` for a pydicom element (``stated`` "" is pydicom's None).
    """
    if stated and stated != "UN":
        return stated
    if (tag >> 16) & 1:
        return "UN" if (tag & 0xFFFF) >= 0x1000 else "LO"
    return dictionary_vr(tag) or "UN"


def raw_strings(elem: RawElement) -> list[str]:
    """An element's values as text: UTF-8, else Latin-1, split on the value separator, " \\x00" stripped.

    ``values.element_strings`` reads an element pydicom has not converted the same way.
    """
    raw = elem.value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return [v.strip(" \x00") for v in text.split("\\")]


def _read_as_sequence(tag: int, elem: RawElement, implicit: bool) -> bool:
    """Would pydicom have read this element, which the bytes reader read as a sequence, as one too?"""
    if not implicit or elem.length != UNDEFINED:
        return True  # explicit SQ; or implicit, defined length, a dictionary sequence (``read``)
    vr = dictionary_vr(tag)
    if vr is not None:
        return vr == "SQ"
    return bool(elem.items)  # pydicom looks ahead for an item; an empty one it reads as bytes


def walk(item: RawItem, implicit: bool, wanted: frozenset[str] | None = None) -> list[tuple[RawItem, int, RawElement, str]]:
    """Every element of a raw data set and its sequences, in file order: (its data set, tag, element, VR).

    The list ``leaks._walk`` yields for the same file read by pydicom; raises ``RawFallback``
    where pydicom's reading of an element could differ from the bytes reader's. ``wanted``:
    only the elements of these VRs (every element is still checked). A list, not a generator:
    nested generators cost more than the rest of the walk.
    """
    out: list[tuple[RawItem, int, RawElement, str]] = []
    _collect(item, implicit, wanted, out, 0)
    return out


def _collect(
    item: RawItem, implicit: bool, wanted: frozenset[str] | None, out: list[tuple[RawItem, int, RawElement, str]],
    depth: int,
) -> None:
    if depth > _MAX_DEPTH:
        return
    for tag, elem in item.items():
        _tag, vr, length, _value, items = elem
        if items is not None:
            if not _read_as_sequence(tag, elem, implicit):
                raise RawFallback(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) read as a sequence by one reader only")
            for sub in items:
                _collect(sub, implicit, wanted, out, depth + 1)
            continue
        if not vr or vr == "UN":
            vr = public_vr(tag, vr)
        if vr == "SQ" or (vr == "UN" and length == UNDEFINED):
            raise RawFallback(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) a sequence pydicom would parse from its bytes")
        if wanted is None or vr in wanted:
            out.append((item, tag, elem, vr))


#: a value every DICOM character set decodes as ASCII, with nothing but trailing spaces to strip
_PLAIN = re.compile(rb"[0-9A-Za-z_.\-]+ *")


def converted(elem: RawElement, encoding: str | list[str] | None = None, *, plain_vrs: tuple[str, ...] = ()) -> object:
    """An element's value as pydicom converts it on access (``Dataset.__getitem__``).

    A value of one of ``plain_vrs`` (VRs whose converter decodes and strips trailing spaces,
    or both sides, and splits on backslashes) that is plain ASCII converts to itself, stripped:
    that is read here; anything else goes through pydicom's converter.
    """
    if elem.vr in plain_vrs and _PLAIN.fullmatch(elem.value):
        return elem.value.decode("ascii").rstrip(" ")
    raw = RawDataElement(BaseTag(elem.tag), elem.vr or None, elem.length, elem.value, 0, not elem.vr, True)
    return convert_raw_data_element(raw, encoding=encoding).value


def code_values(raw: RawFile, sequence_tag: int) -> set[str]:
    """``str(item.get("CodeValue", ""))`` of each item of a top-level code sequence, as pydicom reads them.

    The values are converted by pydicom's own converter with the character set pydicom would
    use (the item's own, else the data set's): a few elements a file. An unreadable sequence
    claims nothing (the empty set), as in ``leaks._retained_codes``.
    """
    elem = raw.dataset.get(sequence_tag)
    if elem is None:
        return set()
    if elem.items is None:
        raise RawFallback("a code sequence pydicom would parse from its bytes")
    try:
        charset = raw.dataset.get(_CHARSET)
        # as pydicom's reader: the data set's character set read as it is met, the items' own converted
        encoding = convert_encodings(convert_string(charset.value, True)) if charset is not None else default_encoding
        codes = set()
        for item in elem.items:
            own = item.get(_CHARSET)
            item_encoding = convert_encodings(converted(own)) if own is not None else encoding  # type: ignore[arg-type]
            value = item.get(_CODE_VALUE)
            codes.add(str(converted(value, item_encoding, plain_vrs=("SH", ""))) if value is not None else "")
        return codes
    except Exception:  # noqa: BLE001 - an unreadable record claims nothing
        return set()
