"""Safe reading of zip and tar archives from a drop: every member becomes an entry.

Sites often send a submission as one archive, and archives are a classic way in for
hostile input: member names with ``../`` or an absolute path, links pointing outside,
device files, and bombs (a few kilobytes that expand to terabytes). Nothing here ever
writes to a path taken from a member name: members are streamed to numbered files in a
work folder, byte counts are enforced while writing, and every member that cannot be
taken gets a reason instead of being dropped. The limits come from the collection's
``drop.archives`` settings.

Limits count what the archive costs, not only what its members declare: a tar archive's
headers are scanned from the (decompressed) stream before ``tarfile`` sees it, so that PAX
extended headers and GNU long names (which ``tarfile`` reads whole into memory) count
against ``max_header_bytes`` and every header byte counts towards the archive's expanded
size and compression ratio; a zip archive's whole expansion ratio is checked as well as
each member's.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from zlib import error as zlib_error

from imaging_ingest.config import ArchiveLimits
from imaging_ingest.intake.drops import display_path, unsafe_name_reason

__all__ = ["ArchiveMember", "ArchiveRejected", "read_archive"]

_CHUNK = 1 << 20
#: Ratios are checked above this uncompressed size: a small, very compressible member is harmless.
RATIO_FLOOR = 1 << 20


class ArchiveRejected(Exception):
    """The archive as a whole cannot be used (unreadable, or over a limit); the message is the reason."""


@dataclass(frozen=True)
class ArchiveMember:
    """One member: extracted to ``local`` when it can be taken (or kept for review), with a reason when not."""

    index: int
    path: str
    size: int
    local: Path | None
    reason: str | None = None


def _path_problem(name: str) -> str | None:
    """A member name that would land outside the archive's folder if extracted naively."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "archive member has an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "archive member path escapes the archive (../)"
    return None


def _link_problem(name: str, target: str) -> str:
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        return "archive member is a symbolic link pointing outside the archive"
    return "archive member is a link (never followed)"


def _copy_capped(src: IO[bytes], dst: Path, cap: int) -> int:
    """Stream ``src`` to ``dst``; stop with ``ArchiveRejected`` past ``cap`` bytes."""
    written = 0
    with open(dst, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > cap:
                raise OverflowError
            out.write(chunk)
    return written


def read_archive(archive: Path, work: Path, limits: ArchiveLimits) -> Iterator[ArchiveMember]:
    """Yield every file-like member of a zip or tar archive, extracted under ``work``.

    Folders are not members. Raises ``ArchiveRejected`` before yielding anything when the
    archive cannot be opened or its declared size or member count is over a limit, and
    during extraction when a compressed stream turns out larger than declared.
    """
    work.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        yield from _read_zip(archive, work, limits)
        return
    # tarfile.is_tarfile would already read the first member's extended header whole: scan first.
    scan_tar(archive, limits)
    yield from _read_tar(archive, work, limits)


_BLOCK = 512
_TAR_HEADER_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


def _open_stream(archive: Path) -> IO[bytes]:
    """The archive's bytes, decompressed by its magic number (gzip, bzip2, xz, or none)."""
    with open(archive, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")  # type: ignore[return-value]
    if magic.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    parts, left = [], size
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _skip(stream: IO[bytes], size: int) -> None:
    """Read past ``size`` bytes a chunk at a time (never held whole); short means truncated."""
    left = size
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            raise ArchiveRejected("truncated tar archive (a member's data ends early)")
        left -= len(chunk)


def _pax_size(data: bytes) -> int | None:
    """The ``size`` record of a PAX extended header, which overrides the next member's header."""
    for record in data.split(b"\n"):
        _, _, keyword = record.partition(b" ")
        if keyword.startswith(b"size="):
            try:
                return int(keyword[5:])
            except ValueError:
                raise ArchiveRejected("tar archive has an invalid PAX size record") from None
    return None


def scan_tar(archive: Path, limits: ArchiveLimits) -> None:
    """Walk a tar archive's headers without keeping any member's data; raise ``ArchiveRejected`` past a limit.

    Counts members, the bytes of extended headers (PAX, GNU long names: ``max_header_bytes``),
    and every byte the archive expands to, headers and padding included (``max_total_bytes``
    and, against the file's size on disk, ``max_ratio``). A header over the limit is refused
    before a byte of it is read, so a small archive with a huge header costs no memory.
    """
    compressed = max(os.path.getsize(archive), 1)
    members = header_bytes = expanded = 0
    next_size: int | None = None
    try:
        with _open_stream(archive) as stream:
            while True:
                block = _read_exact(stream, _BLOCK)
                if len(block) < _BLOCK:
                    if expanded == 0:
                        raise ArchiveRejected("archive is neither a readable zip nor a tar file")
                    raise ArchiveRejected("truncated tar archive (no end-of-archive marker)")
                if block == bytes(_BLOCK):
                    return
                try:
                    info = tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
                except tarfile.HeaderError:
                    if expanded == 0:
                        raise ArchiveRejected("archive is neither a readable zip nor a tar file") from None
                    raise ArchiveRejected("corrupt tar archive (a header is invalid)") from None
                expanded += _BLOCK
                size = info.size
                if info.type in _TAR_HEADER_TYPES:
                    header_bytes += size
                    if header_bytes > limits.max_header_bytes:
                        raise ArchiveRejected(
                            f"archive headers (PAX or GNU long names) take more than {limits.max_header_bytes} "
                            "bytes, over the limit"
                        )
                    data = _read_exact(stream, size)
                    if len(data) < size:
                        raise ArchiveRejected("truncated tar archive (an extended header ends early)")
                    _skip(stream, -size % _BLOCK)
                    if info.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
                        next_size = _pax_size(data)
                    expanded += size + (-size % _BLOCK)
                else:
                    members += 1
                    if next_size is not None:
                        size, next_size = next_size, None
                    if info.type == tarfile.GNUTYPE_SPARSE:
                        extended = block[482]
                        while extended:  # old GNU sparse maps continue in extra header blocks
                            more = _read_exact(stream, _BLOCK)
                            if len(more) < _BLOCK:
                                raise ArchiveRejected("truncated tar archive (a sparse map ends early)")
                            expanded += _BLOCK
                            extended = more[504]
                    if info.type in tarfile.REGULAR_TYPES or info.type not in tarfile.SUPPORTED_TYPES:
                        _skip(stream, size + (-size % _BLOCK))
                        expanded += size + (-size % _BLOCK)
                if members > limits.max_members:
                    raise ArchiveRejected(
                        f"archive has more than {limits.max_members} members, over the limit"
                    )
                if expanded > limits.max_total_bytes:
                    raise ArchiveRejected(
                        f"archive expands to more than {limits.max_total_bytes} bytes, over the limit"
                    )
                if expanded > RATIO_FLOOR and expanded / compressed > limits.max_ratio:
                    raise ArchiveRejected(
                        f"archive compression ratio over {expanded / compressed:.0f}:1 "
                        f"is over the limit of {limits.max_ratio:.0f}:1"
                    )
    except (OSError, EOFError, lzma.LZMAError, zlib_error) as exc:
        raise ArchiveRejected(f"unreadable or corrupt tar archive ({type(exc).__name__})") from None


def _member_ratio_over(info: zipfile.ZipInfo, limits: ArchiveLimits) -> bool:
    return info.file_size > RATIO_FLOOR and info.file_size / max(info.compress_size, 1) > limits.max_ratio


def _read_zip(archive: Path, work: Path, limits: ArchiveLimits) -> Iterator[ArchiveMember]:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveRejected(f"unreadable zip archive ({type(exc).__name__})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise ArchiveRejected(f"archive has {len(infos)} members, over the limit of {limits.max_members}")
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_total_bytes:
            raise ArchiveRejected(
                f"archive expands to {declared} bytes, over the limit of {limits.max_total_bytes}"
            )
        # Many members each under the floor can still make a bomb: what would be expanded counts as a
        # whole too (a member over the ratio on its own is quarantined unread, so it costs nothing).
        expandable = sum(i.file_size for i in infos if not _member_ratio_over(i, limits))
        whole = expandable / max(os.path.getsize(archive), 1)
        if expandable > RATIO_FLOOR and whole > limits.max_ratio:
            raise ArchiveRejected(
                f"archive compression ratio {whole:.0f}:1 is over the limit of {limits.max_ratio:.0f}:1"
            )
        remaining = limits.max_total_bytes
        for index, info in enumerate(infos):
            if info.is_dir():
                continue
            raw_name = info.orig_filename if info.flag_bits & 0x800 else info.orig_filename.encode("cp437")
            raw = raw_name.encode("utf-8", "surrogateescape") if isinstance(raw_name, str) else raw_name
            path = display_path(raw)
            mode = info.external_attr >> 16
            reason = _path_problem(info.filename)
            if reason is None and stat.S_ISLNK(mode):
                with zf.open(info) as link:
                    target = link.read(4096).decode("utf-8", "replace")
                reason = _link_problem(info.filename, target)
            elif reason is None and mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode):
                reason = "archive member is a device file or pipe"
            elif reason is None and _member_ratio_over(info, limits):
                ratio = info.file_size / info.compress_size
                reason = f"archive member compression ratio {ratio:.0f}:1 is over the limit of {limits.max_ratio:.0f}:1"
            if reason is not None:
                yield ArchiveMember(index, path, info.file_size, None, reason)
                continue
            local = work / f"{index:06d}"
            try:
                with zf.open(info) as src:
                    size = _copy_capped(src, local, min(info.file_size, remaining))
            except OverflowError:
                local.unlink(missing_ok=True)
                yield ArchiveMember(
                    index, path, info.file_size, None, "archive member is larger than its header says"
                )
                continue
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
                local.unlink(missing_ok=True)
                yield ArchiveMember(
                    index, path, info.file_size, None, f"archive member is corrupt ({type(exc).__name__})"
                )
                continue
            remaining -= size
            yield ArchiveMember(index, path, size, local, unsafe_name_reason(raw))


def _read_tar(archive: Path, work: Path, limits: ArchiveLimits) -> Iterator[ArchiveMember]:
    try:
        tf = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveRejected(f"unreadable tar archive ({type(exc).__name__})") from None
    with tf:
        # One pass over the headers first, so that the count and the declared size decide before
        # any byte is written; it stops as soon as a limit is passed, so a bomb is never expanded.
        members = []
        declared = 0
        compressed = max(os.path.getsize(archive), 1)
        try:
            for info in tf:
                members.append(info)
                declared += info.size if info.isreg() else 0
                if len(members) > limits.max_members:
                    raise ArchiveRejected(
                        f"archive has more than {limits.max_members} members, over the limit"
                    )
                if declared > limits.max_total_bytes:
                    raise ArchiveRejected(
                        f"archive expands to more than {limits.max_total_bytes} bytes, over the limit"
                    )
                if declared > RATIO_FLOOR and declared / compressed > limits.max_ratio:
                    raise ArchiveRejected(
                        f"archive compression ratio over {declared / compressed:.0f}:1 "
                        f"is over the limit of {limits.max_ratio:.0f}:1"
                    )
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveRejected(f"truncated or corrupt tar archive ({type(exc).__name__})") from None
        for index, info in enumerate(members):
            if info.isdir():
                continue
            raw = info.name.encode("utf-8", "surrogateescape")
            path = display_path(raw)
            reason = _path_problem(info.name)
            if reason is None and (info.issym() or info.islnk()):
                reason = (
                    _link_problem(info.name, info.linkname)
                    if info.issym()
                    else "archive member is a hard link"
                )
            elif reason is None and not info.isreg():
                reason = "archive member is a device file or pipe"
            if reason is not None:
                yield ArchiveMember(index, path, 0 if not info.isreg() else info.size, None, reason)
                continue
            local = work / f"{index:06d}"
            try:
                src = tf.extractfile(info)
                if src is None:
                    raise tarfile.TarError("no data")
                with src:
                    size = _copy_capped(src, local, info.size)
            except (tarfile.TarError, OSError, EOFError, OverflowError) as exc:
                local.unlink(missing_ok=True)
                yield ArchiveMember(
                    index, path, info.size, None, f"archive member is corrupt ({type(exc).__name__})"
                )
                continue
            yield ArchiveMember(index, path, size, local, unsafe_name_reason(raw))
