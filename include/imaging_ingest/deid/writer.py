"""Writing a de-identified header fast: raw elements go out as the bytes they came in as.

pydicom's writer handles every element through a general path (a buffer per element,
value-type dispatch), which is most of the cost of a read-modify-write round trip. Most
elements of a de-identified header are unchanged: they are still the
``RawDataElement`` s the reader produced, in the same transfer syntax, so their bytes
can be written back behind a freshly packed tag and length. Only the elements the engine
changed (converted ``DataElement`` s) go through pydicom's ``write_data_element``, and
sequences are written here, item by item, with defined lengths.

Only little-endian transfer syntaxes (explicit or implicit VR) take this path; the
engine sends big-endian and deflated files through pydicom's own ``save_as``.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, cast

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info

__all__ = ["LONG_LENGTH_VRS", "encode_dataset", "encode_file_header", "encode_file_meta", "pixel_element_end"]

#: Explicit VRs with a 4-byte length (PS3.5 Table 7.1-1).
LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_LONG_LENGTH_VR_BYTES = frozenset(vr.encode() for vr in LONG_LENGTH_VRS)

#: String VRs a plain ASCII ``str`` value can be written for directly (PN excluded: its value is a PersonName).
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2sHL")
_IMPLICIT = struct.Struct("<HHL")
_ITEM = 0xFFFEE000
_ITEM_HEADER = struct.Struct("<HHL")
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_UNDEFINED = 0xFFFFFFFF


def _header(tag: int, vr: str | None, length: int, implicit: bool) -> bytes:
    if implicit:
        return _IMPLICIT.pack(tag >> 16, tag & 0xFFFF, length)
    vr = vr or "UN"
    if vr in LONG_LENGTH_VRS:
        return _LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    if length > 0xFFFF:  # cannot be said in 2 bytes: PS3.5 6.2.2 says write it as UN
        return _LONG.pack(tag >> 16, tag & 0xFFFF, b"UN", 0, length)
    return _SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), length)


def _encodings(ds: Dataset, inherited: Any) -> Any:
    if 0x00080005 not in ds._dict:
        return inherited
    value = ds[0x00080005].value  # converts one small element
    return value or inherited


def _ascii_value(elem: DataElement) -> bytes | None:
    """The encoded value of a string element that needs no character set, else None."""
    value = elem.value
    if value is None or value == "":
        return b""
    if type(value) is str:
        text = value
    elif type(value) is list and all(type(v) is str for v in value):
        text = "\\".join(value)
    else:
        return None
    if not text.isascii():
        return None
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if elem.VR == "UI" else b" "
    return data


def encode_dataset(ds: Dataset, implicit: bool, encodings: Any = None, parts: list[bytes] | None = None) -> list[bytes]:
    """Encode a (little-endian) data set as a list of byte strings, in tag order.

    Group length elements are not written (retired, and stale after de-identification).
    """
    out: list[bytes] = [] if parts is None else parts
    elements = cast(dict[int, Any], ds._dict)  # iterating the Dataset would convert every element
    encodings = _encodings(ds, encodings)
    for tag in sorted(elements):
        if not tag & 0xFFFF:
            continue
        elem = elements[tag]
        if type(elem) is RawDataElement:
            value = elem.value or b""
            if elem.length == _UNDEFINED:  # an undefined-length UN: keep it so, delimiter included
                out.append(_header(tag, elem.VR, _UNDEFINED, implicit))
                out.append(value)
                out.append(_SEQUENCE_DELIMITER)
                continue
            out.append(_header(tag, elem.VR, len(value), implicit))
            out.append(value)
        elif elem.VR == "SQ":
            items: list[bytes] = []
            for item in cast(list[Dataset], elem.value or []):
                body = encode_dataset(item, implicit, encodings)
                items.append(_ITEM_HEADER.pack(0xFFFE, 0xE000, sum(map(len, body))))
                items.extend(body)
            out.append(_header(tag, "SQ", sum(map(len, items)), implicit))
            out.extend(items)
        elif elem.VR in _STRING_VRS and (data := _ascii_value(elem)) is not None:
            out.append(_header(tag, elem.VR, len(data), implicit))
            out.append(data)
        else:
            fp = DicomBytesIO()
            fp.is_little_endian = True
            fp.is_implicit_VR = implicit
            write_data_element(fp, elem, encodings)
            out.append(fp.getvalue())
    return out


#: The file meta the engine writes, with the padding of each VR: what ``encode_file_meta`` packs itself.
_META_TAGS = {0x00020002: b"UI", 0x00020003: b"UI", 0x00020010: b"UI", 0x00020012: b"UI", 0x00020013: b"SH"}
_META_VERSION = _LONG.pack(0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01"


def encode_file_meta(meta: FileMetaDataset) -> bytes:
    """The file meta group as pydicom's ``write_file_meta_info(enforce_standard=True)`` writes it.

    The engine's file meta is always the same five short ASCII values; packing them here
    costs a fraction of pydicom's general writer (which validates, converts and buffers
    each element). Any other shape (a missing, empty, multi-valued or non-ASCII value,
    another element) goes to pydicom, so the bytes are pydicom's in every case.
    """
    elements = cast(dict[int, Any], meta._dict)
    parts = [_META_VERSION]
    if set(elements) == _META_TAGS.keys():
        for tag, vr in _META_TAGS.items():
            value = meta[tag].value
            if not (isinstance(value, str) and value and value.isascii() and len(value) < 0xFFFF):
                break
            data = value.encode("ascii")
            if len(data) % 2:
                data += b"\x00" if vr == b"UI" else b" "
            parts.append(_SHORT.pack(tag >> 16, tag & 0xFFFF, vr, len(data)) + data)
        else:
            body = b"".join(parts)
            return _SHORT.pack(0x0002, 0x0000, b"UL", 4) + struct.pack("<L", len(body)) + body
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()


def encode_file_header(ds: Dataset, meta: FileMetaDataset, implicit: bool) -> bytes:
    """Preamble (zeros), ``DICM``, the file meta group and the data set, pixel data excluded."""
    parts = [b"\x00" * 128 + b"DICM", encode_file_meta(meta)]
    encode_dataset(ds, implicit, None, parts)
    return b"".join(parts)


def pixel_element_end(fp: BinaryIO, start: int, file_size: int, implicit: bool, little: bool) -> int:
    """Where the pixel data element that starts at ``start`` ends (native or encapsulated).

    Anything after it (Data Set Trailing Padding, Digital Signatures, vendors' private
    groups written after the pixels) is dropped: it is padding, a signature that
    de-identification invalidates anyway, or private data that is never kept.

    Raises:
        ValueError: the element is truncated or malformed (the caller quarantines the file).
    """
    endian = "<" if little else ">"
    fp.seek(start)
    head = fp.read(8)
    if len(head) < 8:
        raise ValueError("truncated before the pixel data element")
    if implicit:
        (length,) = struct.unpack(endian + "L", head[4:8])
        value_start = start + 8
    elif head[4:6] in _LONG_LENGTH_VR_BYTES:
        extra = fp.read(4)
        if len(extra) < 4:
            raise ValueError("truncated pixel data element header")
        (length,) = struct.unpack(endian + "L", extra)
        value_start = start + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        value_start = start + 8
    if length != _UNDEFINED:
        end = value_start + length
        if end > file_size:
            raise ValueError(f"pixel data truncated: {file_size - value_start} of {length} bytes present")
        return end
    position = value_start  # encapsulated: walk the items up to the sequence delimiter
    while True:
        fp.seek(position)
        item = fp.read(8)
        if len(item) < 8:
            raise ValueError("encapsulated pixel data truncated (no sequence delimiter)")
        group, element, item_length = struct.unpack(endian + "HHL", item)
        tag = (group << 16) | element
        if tag == 0xFFFEE0DD:
            return position + 8
        if tag != _ITEM or item_length == _UNDEFINED:
            raise ValueError("malformed encapsulated pixel data")
        position += 8 + item_length
        if position > file_size:
            raise ValueError("encapsulated pixel data truncated")

