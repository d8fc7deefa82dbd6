"""Reading DICOM files as they come: without a Part 10 preamble and file meta, or cut short.

Two kinds of real-world file need more than ``dcmread``:

- **ACR-NEMA style files** (no 128-byte preamble, no ``DICM``, no file meta: the data set
  starts at byte 0, usually implicit VR little endian). dcmtk and pydicom read them; the
  archive de-identifies them and publishes proper Part 10 files. ``force=True`` would also
  "read" any junk (a text file becomes a data set of one nonsense element), so a file is
  taken as such a data set only when it starts with a group 0008 element and states a
  valid SOP Class and SOP Instance UID.
- **Truncated files**: pydicom reads an element whose value the file cuts short without
  complaint. A truncated copy must not pass for the instance (nor make its intact original
  look like a conflicting duplicate), so ``truncation`` names the first element the file
  cuts short.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

from pydicom import dcmread
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

__all__ = ["NOT_DICOM", "encoding_transfer_syntax", "pixel_data_truncation", "read_dataset", "truncation"]

NOT_DICOM = "not a DICOM file (no DICM prefix, no file meta, no data set it could be read as)"
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_LONG_LENGTH_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
#: the first element of a data set without file meta: a group 0008 tag, little or big endian
_GROUP_8_STARTS = (b"\x08\x00", b"\x00\x08")
_PIXEL_DATA_CUT = "truncated file: element (7FE0,0010) PixelData is cut short"


def _plausible(ds: Dataset) -> bool:
    """A force-read data set that is a real one: SOP Class and Instance UIDs both present and valid."""
    try:
        values = [str(ds.get(k, "") or "") for k in ("SOPClassUID", "SOPInstanceUID")]
    except Exception:  # noqa: BLE001 - junk that happened to parse fails here
        return False
    return all(v and UID(v).is_valid for v in values)


def read_dataset(fp: BinaryIO, *, stop_before_pixels: bool = True) -> Dataset:
    """``dcmread``, falling back to a data set without preamble and file meta when the file is one.

    Raises:
        InvalidDicomError: neither a Part 10 file nor a plausible preamble-less data set.
    """
    start = fp.tell()
    try:
        return dcmread(fp, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        fp.seek(start)
        if fp.read(2) not in _GROUP_8_STARTS:
            raise
        fp.seek(start)
        ds = dcmread(fp, stop_before_pixels=stop_before_pixels, force=True)
        if not _plausible(ds):
            raise InvalidDicomError(NOT_DICOM) from None
        return ds


def encoding_transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax a data set was actually encoded in, from the file meta or the reading."""
    meta = ds.file_meta if getattr(ds, "file_meta", None) is not None else None
    declared = meta.get("TransferSyntaxUID") if meta is not None else None
    if declared:
        return UID(declared)
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _short_element(ds: Dataset) -> int | None:
    """The first top-level raw element whose value the file holds fewer bytes of than it declares."""
    for tag, elem in ds._dict.items():
        if type(elem) is not RawDataElement or elem.length == _UNDEFINED or elem.value is None:
            continue
        if len(elem.value) < elem.length:
            return int(tag)
    return None


def _dangling_after(ds: Dataset, size: int) -> int | None:
    """The last element's tag when bytes follow it that pydicom dropped (a cut element header)."""
    raw = [e for e in ds._dict.values() if type(e) is RawDataElement and e.value_tell is not None]
    if not raw:
        return None
    last = max(raw, key=lambda e: e.value_tell)
    if last.length == _UNDEFINED:
        return None
    return int(last.tag) if 0 < size - (last.value_tell + last.length) < 12 else None


def _pixel_end(fp: BinaryIO, start: int, size: int, implicit: bool, little: bool) -> bool:
    """Does the pixel data element starting at ``start`` end inside the file?"""
    endian = "<" if little else ">"
    fp.seek(start)
    head = fp.read(12)
    if len(head) < 8:
        return False
    if struct.unpack(endian + "HH", head[:4]) != (0x7FE0, 0x0010):
        return True  # something else follows the header: not ours to judge here
    if implicit:
        (length,) = struct.unpack(endian + "L", head[4:8])
        value_start = start + 8
    elif head[4:6] in _LONG_LENGTH_VRS:
        if len(head) < 12:
            return False
        (length,) = struct.unpack(endian + "L", head[8:12])
        value_start = start + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        value_start = start + 8
    if length != _UNDEFINED:
        return value_start + length <= size
    position = value_start  # encapsulated: the items must reach the sequence delimiter
    while True:
        fp.seek(position)
        item = fp.read(8)
        if len(item) < 8:
            return False
        group, element, item_length = struct.unpack(endian + "HHL", item)
        if (group, element) == (0xFFFE, 0xE0DD):
            return True
        if (group, element) != (0xFFFE, 0xE000) or item_length == _UNDEFINED:
            return False
        position += 8 + item_length
        if position > size:
            return False


def truncation(ds: Dataset, fp: BinaryIO, header_end: int, size: int) -> str | None:
    """Why a file read with ``stop_before_pixels`` is cut short, naming the element; None if whole.

    ``header_end`` is where the header read stopped (the pixel data element, or the end).
    """
    tag = _short_element(ds)
    if tag is not None:
        return f"truncated file: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword_for_tag(tag) or 'private'} is cut short"
    if header_end >= size:
        last = _dangling_after(ds, size)
        if last is not None:
            return f"truncated file: the data set ends inside the element after ({last >> 16:04X},{last & 0xFFFF:04X})"
    else:
        implicit, little = ds.original_encoding
        if not _pixel_end(fp, header_end, size, bool(implicit), little is not False):
            return _PIXEL_DATA_CUT
    return None


def pixel_data_truncation(data: bytes, header_end: int, *, implicit: bool) -> str | None:
    """``truncation``'s pixel data check for a little-endian file whose bytes are already in memory.

    For a reader that walked the header itself (``core.raw_elements``) and stopped at
    ``header_end``: the same check, the same reason, no second read of the file.
    """
    if header_end >= len(data):
        return None
    return None if _pixel_end(io.BytesIO(data), header_end, len(data), implicit, True) else _PIXEL_DATA_CUT
