"""A DICOM file's elements straight from its bytes: tags, VRs and value bytes, nothing converted.

pydicom builds a ``RawDataElement`` per element, checks and records a great deal, and hands the
values on to converters; for the stages that only need to *look* at a header (the inventory's
handful of identifiers, the verifier's search for a source's identifying values) that costs
more than the rest of their work. This reader does the one thing they need: it walks the
common encoding (a Part 10 file, explicit or implicit VR little endian, encapsulated pixel
data included) and returns each element's tag, VR and value bytes, with sequences as nested
items. Values are slices of the buffer read once. ``read`` parses with the data dictionary's
sequences (what every caller wants); the de-identification engine and the verifier's scan of
the source share one such parse per file (``deid.batch``).

It is deliberately narrow. Anything outside that path (no preamble or ``DICM``, big endian,
deflate, a value or item that runs past the end of the file, a malformed sequence) makes
``parse`` return None, and the caller reads the file with pydicom as before: the fast path
never decides a hard case.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

from pydicom.datadict import DicomDictionary

__all__ = ["RawElement", "RawFile", "RawItem", "looks_implicit", "parse", "read"]

UNDEFINED = 0xFFFFFFFF
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
#: little-endian syntaxes whose data set is explicit VR and that need no inflating first
_NOT_EXPLICIT_LE = frozenset({_IMPLICIT_LE, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_MAX_DEPTH = 64
_HEAD = struct.Struct("<HH")
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<L")
_new = tuple.__new__
#: the explicit VRs with a 2-byte length, as their bytes: the reader's hot path
_SHORT_VRS = {
    vr.encode("ascii"): vr
    for vr in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US")
}


class RawElement(NamedTuple):
    """One element as encoded.

    ``vr`` is the VR the file states (explicit VR), or "" where the encoding states none
    (implicit VR): the caller looks it up. A sequence has ``items``, and its value bytes
    when its length is defined (empty when undefined); every other element has ``items``
    None and its value bytes (empty for an empty or undefined-length value).
    """

    tag: int
    vr: str
    length: int
    value: bytes
    items: list[RawItem] | None = None


#: One data set (the file's, or a sequence item's): its elements by tag, in file order.
RawItem = dict[int, RawElement]


@dataclass(frozen=True)
class RawFile:
    """A parsed file: its file meta, its data set, how the data set is encoded, where the header ends."""

    meta: RawItem
    dataset: RawItem
    implicit: bool
    transfer_syntax: str
    #: offset of the first top-level pixel data element (or the end of the data read)
    header_end: int
    #: offset of the data set's first element (just past the file meta)
    dataset_start: int = 132


class _Outside(Exception):
    """The bytes leave the encoding this reader takes on: the caller reads them with pydicom."""


def parse(data: bytes, *, stop_before_pixels: bool = True, implicit_sequences: frozenset[int] = frozenset()) -> RawFile | None:
    """The file meta and data set of a Part 10 file's bytes, or None when it is not on the fast path.

    ``implicit_sequences``: tags that are sequences in an implicit VR data set although their
    length is defined (the caller's data dictionary knows them; undefined-length values are
    read as sequences whatever their tag).
    """
    if len(data) < 144 or data[128:132] != b"DICM":
        return None
    try:
        meta, position = _read_meta(data)
        syntax = meta.get(0x00020010)
        if syntax is None:
            return None
        transfer_syntax = syntax.value.decode("ascii", "replace").rstrip("\x00 ")
        if transfer_syntax in _NOT_EXPLICIT_LE and transfer_syntax != _IMPLICIT_LE:
            return None
        implicit = transfer_syntax == _IMPLICIT_LE
        reader = _Reader(data, implicit, implicit_sequences)
        dataset, end = reader.items_until(position, len(data), 0, stop_before_pixels)
    except (_Outside, struct.error, UnicodeDecodeError):
        return None
    return RawFile(meta, dataset, implicit, transfer_syntax, end, position)


@cache
def dictionary_sequences() -> frozenset[int]:
    """The public tags the data dictionary says are sequences (an implicit VR file states no VR)."""
    return frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")


def read(data: bytes) -> RawFile | None:
    """A file's raw elements (file meta, data set up to the pixel data), or None off the fast path.

    Implicit VR sequences are recognised by the data dictionary, as pydicom recognises them.
    """
    return parse(data, implicit_sequences=dictionary_sequences())


def looks_implicit(data: bytes, position: int) -> bool:
    """Does the element at ``position`` look implicit VR? pydicom's own test (``filereader._is_implicit_vr``).

    pydicom reads a data set's first element this way and switches encoding, whatever the
    transfer syntax says, when the two disagree: a reader that must read as pydicom does
    checks the same bytes the same way.
    """
    vr = data[position + 4 : position + 6]
    return not (len(vr) == 2 and 0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)


def _read_meta(data: bytes) -> tuple[RawItem, int]:
    """The group 0002 elements (always explicit VR little endian) and where the data set starts."""
    meta: RawItem = {}
    position = 132
    reader = _Reader(data, False, frozenset())
    while position + 8 <= len(data):
        group, _element = _HEAD.unpack_from(data, position)
        if group != 0x0002:
            break
        elem, position = reader.element(position, len(data), 0)
        meta[elem.tag] = elem
    return meta, position


class _Reader:
    def __init__(self, data: bytes, implicit: bool, implicit_sequences: frozenset[int]) -> None:
        self.data = data
        self.implicit = implicit
        self.implicit_sequences = implicit_sequences

    def items_until(self, position: int, end: int, depth: int, stop_before_pixels: bool = False) -> tuple[RawItem, int]:
        """The elements from ``position`` to ``end`` (or to an item delimiter, which ends the item)."""
        item: RawItem = {}
        data = self.data
        short_vrs = {} if self.implicit else _SHORT_VRS  # explicit VR: the common elements are read inline
        unpack = _SHORT.unpack_from
        while position < end:
            if position + 8 > end:
                raise _Outside("an element header cut short")
            group, element, vr_bytes, length = unpack(data, position)
            tag = group << 16 | element
            if tag == _ITEM_END:
                if depth == 0:
                    raise _Outside("an item delimiter outside any item")
                return item, position + 8
            if depth == 0 and stop_before_pixels and tag in _PIXEL_TAGS:
                return item, position
            vr = short_vrs.get(vr_bytes)
            if vr is not None:  # a short-length explicit VR (never a sequence): what ``element`` does, inline
                start = position + 8
                position = start + length
                if position > end:
                    raise _Outside("a value runs past the end")
                item[tag] = _new(RawElement, (tag, vr, length, data[start:position], None))  # NamedTuple's __new__, less a call
                continue
            elem, position = self.element(position, end, depth)
            item[tag] = elem
        return item, position

    def element(self, position: int, end: int, depth: int) -> tuple[RawElement, int]:
        data = self.data
        if self.implicit:
            group, element = _HEAD.unpack_from(data, position)
            (length,) = _LONG.unpack_from(data, position + 4)
            vr, start = "", position + 8
        else:
            group, element, vr_bytes, length = _SHORT.unpack_from(data, position)
            if vr_bytes in _LONG_VRS:
                if position + 12 > end:
                    raise _Outside("an element header cut short")
                (length,) = _LONG.unpack_from(data, position + 8)
                start = position + 12
            elif vr_bytes.isalpha() and vr_bytes.isupper():
                start = position + 8
            else:
                raise _Outside("not a VR")
            vr = vr_bytes.decode("ascii")
        tag = group << 16 | element
        sequence = vr == "SQ" or (self.implicit and tag in self.implicit_sequences)
        if length == UNDEFINED:
            if tag in _PIXEL_TAGS:  # encapsulated pixel data: its fragments, as bytes
                stop = self._sequence_end(start, end)
                return RawElement(tag, vr, length, data[start:stop - 8]), stop
            if not sequence and vr != "":  # (explicit UN of undefined length: implicit VR inside; pydicom's case)
                raise _Outside("an undefined length on a VR that cannot have one")
            items, stop = self.sequence(start, end, depth, defined=False)
            return RawElement(tag, vr or "SQ", length, b"", items), stop
        stop = start + length
        if stop > end:
            raise _Outside("a value runs past the end")
        if sequence:
            items, _ = self.sequence(start, stop, depth, defined=True)
            return RawElement(tag, vr or "SQ", length, data[start:stop], items), stop
        return RawElement(tag, vr, length, data[start:stop]), stop

    def sequence(self, position: int, end: int, depth: int, *, defined: bool) -> tuple[list[RawItem], int]:
        if depth >= _MAX_DEPTH:
            raise _Outside("sequences nested too deeply")
        items: list[RawItem] = []
        data = self.data
        while position < end:
            if position + 8 > end:
                raise _Outside("an item header cut short")
            group, element = _HEAD.unpack_from(data, position)
            (length,) = _LONG.unpack_from(data, position + 4)
            tag = group << 16 | element
            if tag == _SEQUENCE_END:
                if defined:
                    raise _Outside("a sequence delimiter in a defined-length sequence")
                return items, position + 8
            if tag != _ITEM:
                raise _Outside("not an item")
            position += 8
            if length == UNDEFINED:
                item, position = self.items_until(position, end, depth + 1)
            else:
                if position + length > end:
                    raise _Outside("an item runs past the end")
                item, stop = self.items_until(position, position + length, depth + 1)
                if stop != position + length:
                    raise _Outside("an item delimiter inside a defined-length item")
                position = stop
            items.append(item)
        if not defined:
            raise _Outside("a sequence without its delimiter")
        return items, position

    def _sequence_end(self, position: int, end: int) -> int:
        """Past the sequence delimiter of encapsulated pixel data (its items are opaque fragments)."""
        data = self.data
        while position + 8 <= end:
            group, element = _HEAD.unpack_from(data, position)
            (length,) = _LONG.unpack_from(data, position + 4)
            tag = group << 16 | element
            if tag == _SEQUENCE_END:
                return position + 8
            if tag != _ITEM or length == UNDEFINED or position + 8 + length > end:
                raise _Outside("a malformed pixel data fragment")
            position += 8 + length
        raise _Outside("encapsulated pixel data without its delimiter")
