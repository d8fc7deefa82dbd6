"""Where each frame lies in a stored instance, so that a later frame request reads only that frame.

The first frame request of an instance reads the whole object, checked against the
catalog's size and MD5 (``wado.instance_bytes``), and cuts its frames (``rendered``). On the
way it records each frame's place in the object: the byte range of an uncompressed frame,
or the fragments of a compressed one, with the MD5 of the frame's bytes. That index is
kept for good by object key (``KeyedJsonCache``, table ``frame_index``: published objects
never change). Later requests for that instance's frames read just those bytes with a
ranged GET and check them against the recorded MD5, so every byte sent is still checked
against a digest taken from a verified read. A multi-frame instance (an enhanced CT, a
whole-slide image) is then never read whole to send one frame.

An instance whose frames cannot be placed exactly (big endian or deflated data, fragments
that do not map to frames) has no index; its frames are cut from the whole object each time.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydicom.encaps import generate_frames
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag

from imaging_ingest.api.dicomweb.rendered import EXPLICIT_LE, Frames, read_frames
from imaging_ingest.api.dicomweb.wado import instance_bytes, instance_range
from imaging_ingest.api.jsoncache import KeyedJsonCache
from imaging_ingest.api.releases import InstanceView
from imaging_ingest.api.zipstream import IntegrityError

__all__ = ["FrameIndex", "FrameReader", "FrameSource", "index_frames"]

_PIXEL_DATA = 0x7FE00010
_IMPLICIT_LE = "1.2.840.10008.1.2"
_NOT_INDEXED = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflated
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0"
_UNDEFINED = 0xFFFFFFFF


class FrameSource(Protocol):
    """What the frames endpoint needs: the syntax frames are sent in, and frame ``n`` (1-based)."""

    @property
    def served_syntax(self) -> str: ...

    @property
    def compressed(self) -> bool: ...

    @property
    def count(self) -> int: ...

    def frame(self, number: int) -> bytes: ...


@dataclass(frozen=True)
class FrameIndex:
    """Each frame's pieces, ``(offset, length)`` in the object, and the MD5 of the frame's bytes."""

    syntax: str
    frames: tuple[tuple[tuple[tuple[int, int], ...], str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "syntax": self.syntax,
            "frames": [[[list(p) for p in pieces], md5] for pieces, md5 in self.frames],
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> FrameIndex:
        return cls(
            str(value["syntax"]),
            tuple((tuple((int(o), int(n)) for o, n in pieces), str(md5)) for pieces, md5 in value["frames"]),
        )


def _pixel_data_start(data: bytes) -> int | None:
    """Where the Pixel Data element starts in the object (pydicom stops reading just before it)."""

    def stop_when(tag: BaseTag, vr: str | None, length: int) -> bool:
        return int(tag) >= _PIXEL_DATA

    stream = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_partial(stream, stop_when=stop_when, force=True)
    except Exception:
        return None
    start = stream.tell()
    return start if data[start : start + 4] == b"\xe0\x7f\x10\x00" else None


def _items(data: bytes, position: int) -> list[tuple[int, int]] | None:
    """The ``(offset, length)`` of each item value of encapsulated pixel data; None if malformed."""
    items: list[tuple[int, int]] = []
    while position + 8 <= len(data):
        tag, (length,) = data[position : position + 4], struct.unpack_from("<I", data, position + 4)
        if tag == _SEQUENCE_END:
            return items
        if tag != _ITEM or length == _UNDEFINED or position + 8 + length > len(data):
            return None
        items.append((position + 8, length))
        position += 8 + length
    return None


def _fragment_groups(
    data: bytes, items: list[tuple[int, int]], count: int
) -> list[list[tuple[int, int]]] | None:
    table, fragments = items[0], items[1:]
    if not fragments:
        return None
    if count == 1:
        return [fragments]
    if len(fragments) == count:
        return [[f] for f in fragments]
    if table[1] != 4 * count:
        return None  # several fragments per frame and no offset table: not placed exactly
    first = fragments[0][0] - 8
    starts = [first + o for o in struct.unpack_from(f"<{count}I", data, table[0])]
    groups: list[list[tuple[int, int]]] = [[] for _ in range(count)]
    for fragment in fragments:
        frame = max(i for i, s in enumerate(starts) if s <= fragment[0] - 8)
        groups[frame].append(fragment)
    return groups if all(groups) else None


def index_frames(data: bytes, pixels: Frames) -> FrameIndex | None:
    """The frame index of a verified object and its parsed frames; None when they cannot be placed exactly.

    Each placed frame is compared with the frame pydicom cuts: the index is only kept when every
    frame's bytes in place are exactly the frame's bytes.
    """
    if pixels.transfer_syntax in _NOT_INDEXED:
        return None
    start = _pixel_data_start(data)
    if start is None:
        return None
    explicit = pixels.transfer_syntax != _IMPLICIT_LE
    header = 12 if explicit else 8
    (length,) = struct.unpack_from("<I", data, start + header - 4)
    value = start + header
    groups: list[list[tuple[int, int]]] | None
    expected: list[bytes]
    if pixels.compressed:
        if length != _UNDEFINED or (items := _items(data, value)) is None:
            return None
        groups = _fragment_groups(data, items, pixels.count)
        try:
            expected = [
                bytes(f) for f in generate_frames(pixels.dataset.PixelData, number_of_frames=pixels.count)
            ]
        except Exception:
            return None
    else:
        if length == _UNDEFINED:
            return None
        groups = []
        expected = []
        for number in range(1, pixels.count + 1):
            first, end = pixels.frame_range(number)
            groups.append([(value + first, end - first)])
            expected.append(pixels.frame(number))
    if groups is None or len(groups) != len(expected):
        return None
    frames = []
    for pieces, wanted in zip(groups, expected, strict=True):
        found = b"".join(data[o : o + n] for o, n in pieces)
        if found != wanted:
            return None
        frames.append((tuple(pieces), hashlib.md5(found, usedforsecurity=False).hexdigest()))
    return FrameIndex(pixels.transfer_syntax, tuple(frames))


class IndexedFrames:
    """An instance's frames read through its index: one ranged GET per frame, checked against its MD5."""

    def __init__(self, index: FrameIndex, store: object, instance: InstanceView) -> None:
        self.index, self._store, self._instance = index, store, instance

    @property
    def compressed(self) -> bool:
        return self.index.syntax not in ("1.2.840.10008.1.2", EXPLICIT_LE)

    @property
    def served_syntax(self) -> str:
        return self.index.syntax if self.compressed else EXPLICIT_LE

    @property
    def count(self) -> int:
        return len(self.index.frames)

    def frame(self, number: int) -> bytes:
        pieces, md5 = self.index.frames[number - 1]
        first, end = pieces[0][0], pieces[-1][0] + pieces[-1][1]
        span = instance_range(self._store, self._instance, first, end)
        data = b"".join(span[o - first : o - first + n] for o, n in pieces)
        if hashlib.md5(data, usedforsecurity=False).hexdigest() != md5:
            raise IntegrityError(
                f"frame {number} of {self._instance.key} does not match its recorded MD5; not delivered"
            )
        return data


class FrameReader:
    """Frames of instances: through the index when one is kept, else from the whole object (indexing it)."""

    def __init__(self, path: Path | None, store: object) -> None:
        self.cache = KeyedJsonCache(path, "frame_index", "frames", what="frame index", memory_items=20_000)
        self._store = store

    def close(self) -> None:
        self.cache.close()

    def open(self, instance: InstanceView) -> FrameSource:
        """The instance's frames (``rendered.NoPixelData`` when it has none)."""
        known = self.cache.lookup([instance.key]).get(instance.key)
        if known:
            return IndexedFrames(FrameIndex.from_json(known), self._store, instance)
        data = instance_bytes(self._store, instance)
        pixels = read_frames(data)
        index = index_frames(data, pixels)
        if index is not None:
            self.cache.put({instance.key: index.to_json()})
        return pixels
