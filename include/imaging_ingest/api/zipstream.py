"""A zip archive written as a stream: stored entries, data descriptors, ZIP64 when needed.

A series download must start at once and never hold a series in memory, so each entry
is copied chunk by chunk from its source (an S3 ``get_object`` body) while its CRC-32 is
computed on the way; the CRC and sizes follow the data in a data descriptor, and the
central directory at the end repeats them. Entries are stored, not compressed: DICOM
pixel data rarely shrinks enough to pay for the CPU.

Because every entry's size is known before the stream starts (the release lists it),
the archive's exact length is known too (``ZipStream.size``), so the response can carry
a ``Content-Length`` and clients can show progress. An entry whose bytes differ from
what was declared (size or MD5) aborts the stream with ``IntegrityError`` rather
than deliver a wrong file: the client then sees a truncated, invalid download.

Readers that use the central directory (Python's ``zipfile``, Info-ZIP ``unzip``, 7-Zip,
libarchive, Java's ``ZipFile``) read these archives; Java's ``ZipInputStream`` refuses
stored entries with data descriptors, as it does for every streamed stored zip.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

__all__ = ["ZipEntry", "IntegrityError", "ZipStream"]

_LOCAL = 0x04034B50
_DESCRIPTOR = 0x08074B50
_CENTRAL = 0x02014B50
_END = 0x06054B50
_END64 = 0x06064B50
_LOCATOR64 = 0x07064B50

_MAX32 = 0xFFFFFFFF
_MAX16 = 0xFFFF
_FLAG_DESCRIPTOR = 0x0008
_FLAG_UTF8 = 0x0800
_STORED = 0


class IntegrityError(IOError):
    """An entry's bytes differ from its declared size or MD5: the archive is abandoned."""


@dataclass(frozen=True)
class ZipEntry:
    """One file of the archive: its name, exact size, and how to read it when its turn comes."""

    name: str
    size: int
    open: Callable[[], Iterable[bytes]]
    md5: str | None = None


def _dos_datetime(when: datetime) -> tuple[int, int]:
    year = min(max(when.year, 1980), 2107)
    date = ((year - 1980) << 9) | (when.month << 5) | when.day
    time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
    return time, date


@dataclass(frozen=True)
class _Layout:
    """Where an entry sits and which fields overflow 32 bits."""

    entry: ZipEntry
    name: bytes
    offset: int
    zip64_sizes: bool
    zip64_offset: bool

    @property
    def flags(self) -> int:
        utf8 = 0 if self.entry.name.isascii() else _FLAG_UTF8
        return _FLAG_DESCRIPTOR | utf8

    @property
    def version(self) -> int:
        return 45 if (self.zip64_sizes or self.zip64_offset) else 20

    @property
    def local_extra_size(self) -> int:
        return 20 if self.zip64_sizes else 0

    @property
    def local_size(self) -> int:
        return 30 + len(self.name) + self.local_extra_size

    @property
    def descriptor_size(self) -> int:
        return 24 if self.zip64_sizes else 16

    @property
    def span(self) -> int:
        return self.local_size + self.entry.size + self.descriptor_size

    @property
    def central_extra_size(self) -> int:
        fields = (2 if self.zip64_sizes else 0) + (1 if self.zip64_offset else 0)
        return 4 + 8 * fields if fields else 0

    @property
    def central_size(self) -> int:
        return 46 + len(self.name) + self.central_extra_size


class ZipStream:
    """A zip archive of known entries, produced as an iterator of byte chunks.

    ``force_zip64`` writes every ZIP64 structure even for small archives, so that the
    ZIP64 paths can be tested without multi-gigabyte data.
    """

    def __init__(self, entries: Iterable[ZipEntry], *, modified: datetime, force_zip64: bool = False) -> None:
        self.modified = modified
        self.force_zip64 = force_zip64
        self._layout: list[_Layout] = []
        offset = 0
        names: set[str] = set()
        for entry in entries:
            if entry.name in names:
                raise ValueError(f"duplicate zip entry name {entry.name!r}")
            if entry.size < 0:
                raise ValueError(f"negative size for zip entry {entry.name!r}")
            names.add(entry.name)
            item = _Layout(
                entry=entry,
                name=entry.name.encode("utf-8"),
                offset=offset,
                zip64_sizes=force_zip64 or entry.size >= _MAX32,
                zip64_offset=force_zip64 or offset >= _MAX32,
            )
            self._layout.append(item)
            offset += item.span
        self._central_offset = offset
        self._central_size = sum(item.central_size for item in self._layout)
        self._zip64_end = (
            force_zip64
            or len(self._layout) >= _MAX16
            or self._central_offset >= _MAX32
            or self._central_size >= _MAX32
        )

    @property
    def size(self) -> int:
        """The archive's exact length in bytes."""
        end = 22 + (56 + 20 if self._zip64_end else 0)
        return self._central_offset + self._central_size + end

    def __iter__(self) -> Iterator[bytes]:
        time, date = _dos_datetime(self.modified)
        crcs: list[int] = []
        written = 0
        for item in self._layout:
            header = self._local_header(item, time, date)
            yield header
            crc, count = 0, 0
            digest = hashlib.md5(usedforsecurity=False) if item.entry.md5 else None
            for chunk in item.entry.open():
                if not chunk:
                    continue
                count += len(chunk)
                if count > item.entry.size:
                    raise IntegrityError(f"zip entry {item.entry.name} is longer than its declared {item.entry.size} bytes")
                crc = zlib.crc32(chunk, crc)
                if digest is not None:
                    digest.update(chunk)
                yield chunk
            if count != item.entry.size:
                raise IntegrityError(
                    f"zip entry {item.entry.name} has {count} bytes, {item.entry.size} were declared"
                )
            if digest is not None and digest.hexdigest() != (item.entry.md5 or "").lower():
                raise IntegrityError(f"zip entry {item.entry.name} does not match its catalogued MD5")
            crcs.append(crc)
            yield self._descriptor(item, crc)
            written += item.span
        assert written == self._central_offset
        central = b"".join(self._central_header(item, crc, time, date) for item, crc in zip(self._layout, crcs, strict=True))
        yield central + self._end_records()

    # -- records ---------------------------------------------------------------------------

    @staticmethod
    def _local_header(item: _Layout, time: int, date: int) -> bytes:
        size_field = _MAX32 if item.zip64_sizes else 0
        extra = struct.pack("<HHQQ", 0x0001, 16, 0, 0) if item.zip64_sizes else b""
        return (
            struct.pack(
                "<IHHHHHIIIHH",
                _LOCAL,
                item.version,
                item.flags,
                _STORED,
                time,
                date,
                0,
                size_field,
                size_field,
                len(item.name),
                len(extra),
            )
            + item.name
            + extra
        )

    @staticmethod
    def _descriptor(item: _Layout, crc: int) -> bytes:
        size = item.entry.size
        if item.zip64_sizes:
            return struct.pack("<IIQQ", _DESCRIPTOR, crc, size, size)
        return struct.pack("<IIII", _DESCRIPTOR, crc, size, size)

    @staticmethod
    def _central_header(item: _Layout, crc: int, time: int, date: int) -> bytes:
        size, offset = item.entry.size, item.offset
        values: list[int] = []
        if item.zip64_sizes:
            values += [size, size]  # uncompressed, then compressed, as APPNOTE orders them
        if item.zip64_offset:
            values.append(offset)
        extra = struct.pack(f"<HH{len(values)}Q", 0x0001, 8 * len(values), *values) if values else b""
        return (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                _CENTRAL,
                item.version,  # made by: version 2.0/4.5, MS-DOS attributes
                item.version,
                item.flags,
                _STORED,
                time,
                date,
                crc,
                _MAX32 if item.zip64_sizes else size,
                _MAX32 if item.zip64_sizes else size,
                len(item.name),
                len(extra),
                0,
                0,
                0,
                0,
                _MAX32 if item.zip64_offset else offset,
            )
            + item.name
            + extra
        )

    def _end_records(self) -> bytes:
        count, offset, size = len(self._layout), self._central_offset, self._central_size
        records = b""
        if self._zip64_end:
            end64_at = offset + size
            records += struct.pack("<IQHHIIQQQQ", _END64, 44, 45, 45, 0, 0, count, count, size, offset)
            records += struct.pack("<IIQI", _LOCATOR64, 0, end64_at, 1)
            return records + struct.pack(
                "<IHHHHIIH", _END, 0, 0, _MAX16, _MAX16, _MAX32, _MAX32, 0
            )
        return struct.pack("<IHHHHIIH", _END, 0, 0, count, count, size, offset, 0)
