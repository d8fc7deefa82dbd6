"""Files that share a SOP Instance UID: one instance in several encodings, or a real conflict.

The same SOP Instance UID on files with different bytes usually means a conflict nobody can
settle (which copy is right?), and all copies are held back. One case is not a conflict: the
same instance transcoded into another transfer syntax (uncompressed and JPEG 2000 lossless,
little and big endian, implicit and explicit VR). Their data sets (everything but the file
meta, the encoded pixels and the attributes that record a lossy compression) are identical,
which ``content_key`` checks on parsed values, so that the encoding itself does not count
(big endian words are compared as values; YBR_ICT/YBR_RCT, the colour coding of JPEG 2000, is RGB). One of them is published, the best encoding first:
uncompressed, then deflated, then compressed lossless, then lossy; the others are duplicates.

Transcoders also rewrite how the pixels are coded, not only the transfer syntax: RGB becomes
YBR_FULL, colour-by-pixel becomes colour-by-plane, a JPEG 2000 encoder states Bits Stored 16 for
a 14-bit image. ``decoded_key`` covers these: the data set without the attributes that only say
how pixels are coded (Photometric Interpretation, Planar Configuration, Bits Stored, High Bit and
the lossy-compression record), plus the decoded pixel values themselves (colour as RGB). Equal
decoded keys mean equal images, so such copies are twins too; copies whose decoded pixels differ
in any value, or that cannot be decoded, stay a conflict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Set
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from imaging_ingest.core.dicom_read import read_dataset

__all__ = ["content_key", "decoded_key", "encoding_rank", "preferred"]

_PIXEL_DATA = 0x7FE00010
#: What an encoding adds about itself: Lossy Image Compression, its Ratio and Method (PS3.3 C.7.6.1.1.5),
#: which a lossy-compressed copy states and its decompressed twin may not.
_ENCODING_HISTORY = frozenset({0x00282110, 0x00282112, 0x00282114})
_PHOTOMETRIC = 0x00280004
#: Photometric Interpretations that only say how JPEG 2000 coded RGB (PS3.5 8.2.4): decoded, they are RGB.
_CODED_AS_RGB = frozenset({"YBR_ICT", "YBR_RCT"})
#: Attributes that only say how the pixels are coded: equal decoded pixels make them irrelevant.
_PIXEL_CODING = frozenset({_PHOTOMETRIC, 0x00280006, 0x00280101, 0x00280102})
_WORD_VRS = frozenset({"OW", "US or OW", "US or SS or OW"})
#: Lossy transfer syntaxes (PS3.5 Table A-1): the last choice among twins.
_LOSSY = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.107",
        "1.2.840.10008.1.2.4.108",
        "1.2.840.10008.1.2.4.203",
    }
)


def _canonical(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value.rstrip(b"\x00 ")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return b"\\".join(_canonical(v) for v in value)
    return str(value).strip().encode("utf-8", "replace")


def _feed(ds: Dataset, digest: Any, big_endian: bool, depth: int = 0, skip: Set[int] = frozenset()) -> None:
    for elem in ds:
        if elem.tag == _PIXEL_DATA or elem.tag in _ENCODING_HISTORY or elem.tag.group in (0x0002, 0xFFFC):
            continue
        if depth == 0 and elem.tag in skip:
            continue
        if elem.tag.element == 0:  # group lengths depend on the encoding
            continue
        digest.update(f"{int(elem.tag):08X}".encode())
        if isinstance(elem.value, Sequence):
            for item in elem.value:
                digest.update(b"{")
                _feed(item, digest, big_endian, depth + 1, skip)
                digest.update(b"}")
        elif elem.tag == _PHOTOMETRIC and str(elem.value).strip() in _CODED_AS_RGB:
            digest.update(b"=RGB;")
        elif big_endian and elem.VR in _WORD_VRS and isinstance(elem.value, bytes):
            words = bytearray(elem.value[: len(elem.value) // 2 * 2])
            words[0::2], words[1::2] = words[1::2], words[0::2]  # 16-bit words as a little endian file has them
            digest.update(b"=" + _canonical(bytes(words)) + b";")
        else:
            digest.update(b"=" + _canonical(elem.value) + b";")


def content_key(path: Path) -> str | None:
    """A digest of a file's data set as values (not bytes): equal for the same instance in any encoding.

    None when the file cannot be read that far (it then stays a conflict).
    """
    try:
        with open(path, "rb") as fh:
            ds = read_dataset(fh, stop_before_pixels=True)
        digest = hashlib.sha256()
        _feed(ds, digest, ds.original_encoding[1] is False)
    except Exception:  # noqa: BLE001 - an unreadable copy settles nothing
        return None
    return digest.hexdigest()


def decoded_key(path: Path) -> str | None:
    """A digest of the data set without its pixel-coding attributes, and of the decoded pixel values.

    Equal for two copies of one image whose pixels are coded differently (RGB and YBR_FULL, by
    pixel and by plane, Bits Stored 16 and 14 for the same values). None when the file cannot be
    read or its pixels cannot be decoded (no decoder, corrupt data): it then stays a conflict.
    """
    try:
        with open(path, "rb") as fh:
            ds = read_dataset(fh, stop_before_pixels=False)
        if _PIXEL_DATA not in ds:
            return None
        pixels = ds.pixel_array  # colour is decoded to RGB (pydicom's default)
        digest = hashlib.sha256()
        _feed(ds, digest, ds.original_encoding[1] is False, skip=_PIXEL_CODING)
        values = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
        digest.update(f"|{values.dtype.str}{values.shape}|".encode())
        digest.update(values.tobytes())
    except Exception:  # noqa: BLE001 - an undecodable copy settles nothing
        return None
    return digest.hexdigest()


def encoding_rank(transfer_syntax: str | None) -> int:
    """0 uncompressed, 1 deflated, 2 compressed lossless, 3 lossy or unknown."""
    if not transfer_syntax:
        return 0
    uid = UID(transfer_syntax)
    if uid in _LOSSY or not uid.is_transfer_syntax:
        return 3
    if uid.is_deflated:
        return 1
    return 2 if uid.is_compressed else 0


def preferred(candidates: Iterable[tuple[int, str | None]]) -> int:
    """The file id to publish among twins: the best encoding, then the first file."""
    return min(candidates, key=lambda c: (encoding_rank(c[1]), c[0]))[0]

