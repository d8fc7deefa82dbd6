"""Safe reading of zip and tar archives from a drop: every member becomes an entry.

Sites often send a submission as one archive, and archives are a classic way in for
hostile input: member names with ``../`` or an absolute path, links pointing outside,
device files, and bombs (a few kilobytes that expand to terabytes). Nothing here ever
writes to a path taken from a member name: members are streamed to numbered files in a
work folder, byte counts are enforced while writing, and every member that cannot be
taken gets a reason instead of being dropped. The limits come from the collection's
``drop.archives`` settings.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .config import ArchiveLimits
from .sources import display_path, unsafe_name_reason

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
    try:
        is_tar = tarfile.is_tarfile(archive)
    except OSError:
        is_tar = False
    if not is_tar:
        raise ArchiveRejected("archive is neither a readable zip nor a tar file")
    yield from _read_tar(archive, work, limits)


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
            elif (
                reason is None
                and info.file_size > RATIO_FLOOR
                and info.file_size / max(info.compress_size, 1) > limits.max_ratio
            ):
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
                yield ArchiveMember(index, path, info.file_size, None, "archive member is larger than its header says")
                continue
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
                local.unlink(missing_ok=True)
                yield ArchiveMember(index, path, info.file_size, None, f"archive member is corrupt ({type(exc).__name__})")
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
                    raise ArchiveRejected(f"archive has more than {limits.max_members} members, over the limit")
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
                reason = _link_problem(info.name, info.linkname) if info.issym() else "archive member is a hard link"
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
                yield ArchiveMember(index, path, info.size, None, f"archive member is corrupt ({type(exc).__name__})")
                continue
            yield ArchiveMember(index, path, size, local, unsafe_name_reason(raw))
