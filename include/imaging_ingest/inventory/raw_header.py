"""The inventory's header elements from a file's bytes, without pydicom walking the file.

The inventory reads a dozen top-level values per file, but pydicom's header read builds an
element for each of the few hundred in a scanner's header (~2.6 ms for a CT file).
``core.raw_elements.parse`` walks the same bytes in a fraction of that; this module takes
the elements the inventory reads from that walk and gives them as pydicom would
(``HeaderValues.get`` stands for ``Dataset.get``). The plain case is converted here, as
pydicom's converters do it: the file states the dictionary's VR (or none, implicit VR), the
value is printable ASCII, a text value's character set is ASCII-compatible; the conversions
follow ``pydicom.values`` (``convert_UI``, ``convert_string``, ``convert_text``,
``convert_numbers``) and ``UID``. Anything else (an IS, another VR, other bytes, another
character set) is handed, still encoded, to a pydicom ``Dataset`` that converts it as after
its own read. The tests compare every value with pydicom's reading.

The walk is taken only where pydicom would walk the file the same way. ``raw_header``
returns None, and the caller reads the file with pydicom, for anything that ``parse`` leaves
(no ``DICM``, big endian, deflate, a value cut short...) and for the few places where
pydicom reads differently from the declared encoding: an implicit VR data set that starts
like explicit VR (pydicom switches), a command set group, a transfer syntax that pydicom
would read as another string, an implicit VR element of undefined length that pydicom scans
for its delimiter instead of reading items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.values import converters

from imaging_ingest.core.dicom_read import pixel_data_truncation
from imaging_ingest.core.raw_elements import UNDEFINED, RawFile, RawItem, looks_implicit, parse

__all__ = ["HEADER_KEYWORDS", "HeaderValues", "RawHeader", "raw_header"]

#: The top-level elements the inventory reads (``inventory.scan``), and the character set that decodes them.
HEADER_KEYWORDS = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BurnedInAnnotation",
    "ImageType",
    "Manufacturer",
    "BodyPartExamined",
    "RecognizableVisualFeatures",
)
#: (keyword, tag, dictionary VR) of each
_ELEMENTS = tuple((k, keyword_dict[k], dictionary_VR(keyword_dict[k])) for k in HEADER_KEYWORDS)
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_TRANSFER_SYNTAX = 0x00020010


_ABSENT = object()
#: values that read the same in every character set taken here: printable ASCII (and NUL padding)
_PLAIN = re.compile(rb"[\x20-\x7e\x00]*")
#: character sets (as stated, padding removed) in which printable ASCII bytes are those characters
_PLAIN_CHARSETS = frozenset({b"", b"ISO_IR 6", b"ISO_IR 100", b"ISO_IR 192"})
_CHARSET = 0x00080005


class HeaderValues:
    """``Dataset.get`` for the inventory's keywords, from a file's raw elements."""

    def __init__(self, plain: dict[str, Any], encoded: Dataset) -> None:
        self._plain = plain
        self._encoded = encoded

    def get(self, keyword: str) -> Any:
        """The value pydicom's ``Dataset.get(keyword)`` gives after reading the file."""
        value = self._plain.get(keyword, _ABSENT)
        return self._encoded.get(keyword) if value is _ABSENT else value


@dataclass(frozen=True)
class RawHeader:
    """What ``read_header`` needs from one file."""

    values: HeaderValues
    #: the transfer syntax the data set is encoded in, as ``encoding_transfer_syntax`` names it
    transfer_syntax: str
    #: ``core.dicom_read.truncation``'s reason for a file whose pixel data is cut short; None if whole
    truncation: str | None


def raw_header(data: bytes) -> RawHeader | None:
    """The inventory's elements of a Part 10 file's bytes, or None where pydicom must read the file."""
    raw = parse(data, stop_before_pixels=True)
    if raw is None:
        return None
    transfer_syntax = _transfer_syntax(raw)
    if transfer_syntax is None or not _read_alike(raw, data):
        return None
    charset = raw.dataset.get(_CHARSET)
    plain_text = charset is None or (charset.items is None and charset.value.rstrip(b" \x00") in _PLAIN_CHARSETS)
    plain: dict[str, Any] = {}
    encoded: dict[BaseTag, DataElement | RawDataElement] = {}
    for keyword, tag, vr in _ELEMENTS:
        elem = raw.dataset.get(tag)
        if elem is None:
            continue
        if elem.items is not None or elem.length == UNDEFINED:
            return None  # a sequence where a value belongs: pydicom's reading of it is pydicom's to give
        value = _plain_value(vr, elem.vr, elem.value, plain_text) if keyword != "SpecificCharacterSet" else _ABSENT
        if value is _ABSENT:
            encoded[BaseTag(tag)] = RawDataElement(BaseTag(tag), elem.vr or None, elem.length, elem.value, 0, raw.implicit, True)
        else:
            plain[keyword] = value
    cut = pixel_data_truncation(data, raw.header_end, implicit=raw.implicit)
    return RawHeader(HeaderValues(plain, Dataset(encoded)), transfer_syntax, cut)


def _plain_value(vr: str, stated: str, value: bytes, plain_text: bool) -> Any:
    """pydicom's value for a plain element (see the module's docstring); ``_ABSENT`` for pydicom to convert."""
    if (stated and stated != vr) or not _PLAIN.fullmatch(value):
        return _ABSENT
    if vr == "US":
        # empty: pydicom's empty US is None; one value: an int; several, or an odd length: pydicom's
        return None if not value else int.from_bytes(value, "little") if len(value) == 2 else _ABSENT
    if not value:
        return ""  # pydicom's empty text value (``empty_value_for_VR``)
    text = value.decode("ascii")
    if vr == "UI":  # convert_UI: strip the padding, split; UID() strips each value
        items = [item.strip() for item in text.rstrip("\x00 ").split("\\")]
    elif vr == "CS":  # convert_string -> multi_string: strip the padding, split
        items = text.rstrip(" \x00").split("\\")
    elif vr == "LO" and plain_text:  # convert_text: split, strip each value's padding
        items = [item.rstrip("\x00 ") for item in text.split("\\")]
    else:
        return _ABSENT
    return items[0] if len(items) == 1 else items


def _transfer_syntax(raw: RawFile) -> str | None:
    """The declared transfer syntax where pydicom reads the same string from it; None otherwise.

    pydicom decodes (0002,0010) by its VR, splits it at backslashes and strips it on both
    sides; ``parse`` only strips the right. Where that could differ (or where the syntax is
    empty, which pydicom replaces by what it found), the file goes to pydicom. So does a file
    meta group with a VR pydicom has no converter for: pydicom then rereads the group as
    implicit VR.
    """
    elem = raw.meta.get(_TRANSFER_SYNTAX)
    if elem is None or elem.vr != "UI" or any(e.vr not in converters for e in raw.meta.values()):
        return None
    syntax = raw.transfer_syntax
    if not syntax or not syntax.isascii() or "\\" in syntax or syntax != syntax.strip() or "\ufffd" in syntax:
        return None
    return syntax


def _read_alike(raw: RawFile, data: bytes) -> bool:
    """Does pydicom walk this data set as ``parse`` did (same encoding, same element ends)?"""
    if not raw.dataset:
        return True
    first = next(iter(raw.dataset))
    if first >> 16 == 0x0000:
        return False  # a command set group: pydicom reads it apart from the data set
    if raw.implicit:
        start = 132 + sum(e.length + (12 if e.vr in _LONG_VRS else 8) for e in raw.meta.values())
        if data[start:start + 4] != (first >> 16).to_bytes(2, "little") + (first & 0xFFFF).to_bytes(2, "little"):
            return False  # the meta group is not where its elements say (a repeated tag): not ours to judge
        if not looks_implicit(data, start):
            return False  # pydicom takes this for explicit VR despite the transfer syntax
        return _no_scanned_values(raw.dataset)
    return True


def _no_scanned_values(item: RawItem) -> bool:
    """No implicit VR element of undefined length that pydicom reads by scanning for its delimiter.

    ``parse`` reads such an element as a sequence of items; pydicom does so only where the
    dictionary (or, for an unknown tag, the first item) says it is one, and otherwise takes
    the bytes up to the first sequence delimiter it finds, which may end it elsewhere.
    """
    for tag, elem in item.items():
        if elem.items is None:
            continue
        if elem.length == UNDEFINED and tag not in _PIXEL_TAGS and not _dictionary_sequence(tag):
            return False
        if not all(_no_scanned_values(nested) for nested in elem.items):
            return False
    return True


def _dictionary_sequence(tag: int) -> bool:
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return True  # unknown to the dictionary: pydicom looks at the first item, as ``parse`` did
