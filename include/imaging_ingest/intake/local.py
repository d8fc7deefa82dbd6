"""Local drops: a folder read through directory descriptors, never through a symbolic link.

Every folder is opened relative to its parent's descriptor with ``O_NOFOLLOW`` and every file
is checked with ``fstat`` against its listing (device, inode, size, modification time), so a
site that can write to the drop cannot swap a listed folder or file for a link to something else.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from imaging_ingest.config import DropConfig
from imaging_ingest.intake.drops import (
    REPORTS_DIR,
    Drop,
    DropEntry,
    DropSubmission,
    SubmissionChanged,
    display_path,
    is_archive_name,
    is_report_area,
    report_path,
    unsafe_name_reason,
)

__all__ = ["LocalDrop", "SealedReader", "open_local", "open_sealed", "walk_tree"]


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: A folder, opened relative to its parent's descriptor, never through a link.
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_NOFOLLOW | _O_CLOEXEC
#: A file, likewise; O_NONBLOCK so that a FIFO swapped in cannot hang the reader.
_FILE_FLAGS = os.O_RDONLY | _O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _O_CLOEXEC
_LINK_ERRNOS = (errno.ELOOP, errno.ENOTDIR, getattr(errno, "EMLINK", errno.ELOOP))


def _open_dir(name: bytes, dir_fd: int | None) -> int:
    """Open the folder ``name`` under ``dir_fd``; a link (or anything not a folder) is refused."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise SubmissionChanged(
                "a folder of the submission is a symbolic link or not a folder: refused"
            ) from None
        raise


def _same_object(st: os.stat_result, expected: os.stat_result) -> bool:
    return (st.st_dev, st.st_ino) == (expected.st_dev, expected.st_ino)


def _walk_fd(dir_fd: int, rel: bytes, display_base: bytes, entries: list[DropEntry]) -> None:
    """Every entry under the open folder ``dir_fd`` (``rel`` from the root), never through a link."""
    for text in sorted(os.listdir(dir_fd)):
        name = os.fsencode(text)
        child = os.path.join(rel, name) if rel else name
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            sub_fd = _open_dir(name, dir_fd)
            try:
                if not _same_object(os.fstat(sub_fd), st):
                    raise SubmissionChanged(
                        "a folder of the submission was replaced while it was listed: refused"
                    )
                _walk_fd(sub_fd, child, display_base, entries)
            finally:
                os.close(sub_fd)
            continue
        if stat.S_ISLNK(st.st_mode):
            kind = "symlink"
        elif stat.S_ISREG(st.st_mode):
            kind = "file"
        else:
            kind = "special"
        entries.append(
            DropEntry(
                path=display_path(child),
                size=st.st_size if kind == "file" else 0,
                kind=kind,
                token=str(st.st_mtime_ns),
                locator=os.fsdecode(os.path.join(display_base, child)),
                name_problem=unsafe_name_reason(child),
                device=st.st_dev,
                inode=st.st_ino,
            )
        )


def walk_tree(root: Path) -> list[DropEntry]:
    """Every entry under ``root``, without following symbolic links (a link is an entry of kind 'symlink').

    ``root`` itself is opened as a folder; a ``root`` that is a link is refused.
    """
    entries: list[DropEntry] = []
    base_bytes = os.fsencode(root)
    try:
        fd = _open_dir(base_bytes, None)
    except FileNotFoundError:
        return []
    try:
        _walk_fd(fd, b"", base_bytes, entries)
    finally:
        os.close(fd)
    return sorted(entries, key=lambda e: e.path)


class SealedReader(io.RawIOBase):
    """Reads one opened drop file; refuses a file that ends short of, or runs past, its listed size.

    On the last byte it checks ``fstat`` again: a file written to while it was read (its size
    or modification time moved) is refused rather than staged half old, half new.
    """

    def __init__(self, fd: int, entry: DropEntry) -> None:
        super().__init__()
        self._fd = fd
        self.entry = entry
        self.remaining = entry.size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.remaining <= 0:
            if os.read(self._fd, 1):
                raise SubmissionChanged("a file of the submission grew after it was listed: refused")
            _check_listed(os.fstat(self._fd), self.entry)
            return 0
        data = os.read(self._fd, min(len(view), self.remaining))
        if not data:
            raise SubmissionChanged("a file of the submission shrank after it was listed: refused")
        view[: len(data)] = data
        self.remaining -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _check_listed(st: os.stat_result, entry: DropEntry) -> None:
    """The opened file is the listed one: a regular file, same device, inode, size and mtime."""
    if not stat.S_ISREG(st.st_mode):
        raise SubmissionChanged("a file of the submission is no longer a regular file: refused")
    if entry.inode and (st.st_dev, st.st_ino) != (entry.device, entry.inode):
        raise SubmissionChanged("a file of the submission was replaced after it was listed: refused")
    if st.st_size != entry.size or str(st.st_mtime_ns) != entry.token:
        raise SubmissionChanged(
            "a file of the submission changed (size or time) after it was listed: refused"
        )


def open_sealed(root: Path, entry: DropEntry) -> SealedReader:
    """Open a listed regular file under ``root`` component by component, never through a link.

    Every folder between ``root`` and the file is opened with ``O_NOFOLLOW`` relative to its
    parent's descriptor, so a folder swapped for a link after the listing is refused; the
    file is then checked against the listing (``_check_listed``).
    """
    if entry.kind != "file":
        raise ValueError("not a regular file")
    rel = os.path.relpath(os.fsencode(entry.locator), os.fsencode(root))
    parts = rel.split(b"/")
    if rel.startswith(b"/") or b".." in parts or not parts:
        raise SubmissionChanged("a listed file is not under the drop: refused")
    fd = _open_dir(os.fsencode(root), None)
    try:
        for part in parts[:-1]:
            parent, fd = fd, _open_dir(part, fd)
            os.close(parent)
        try:
            file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno in _LINK_ERRNOS:
                raise SubmissionChanged("a file of the submission became a symbolic link: refused") from None
            raise
    finally:
        os.close(fd)
    try:
        _check_listed(os.fstat(file_fd), entry)
    except BaseException:
        os.close(file_fd)
        raise
    return SealedReader(file_fd, entry)


def open_local(entry: DropEntry) -> IO[bytes]:
    """Open a listed regular file of a local tree (the CLI's own folder), refusing a link or a changed file."""
    root = Path(os.path.dirname(entry.locator) or ".")
    return io.BufferedReader(open_sealed(root, entry), 1 << 20)


class LocalDrop(Drop):
    """A folder on a local or mounted file system: ``file:///path``."""

    def __init__(self, config: DropConfig) -> None:
        super().__init__(config)
        self.root = Path(urlparse(config.url).path) if config.url.startswith("file://") else Path(config.url)

    def submission_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            e.name
            for e in os.scandir(self.root)
            if not e.name.startswith(".")
            and not is_report_area(e.name)
            and (
                e.is_dir(follow_symlinks=False)
                or (e.is_file(follow_symlinks=False) and is_archive_name(e.name))
            )
        )

    def submission(self, name: str) -> DropSubmission:
        """The listing of one submission, walked from the root's descriptor; a linked folder is refused."""
        base = self.root / name
        raw = os.fsencode(name)
        if b"/" in raw or raw in (b"", b".", b".."):
            raise ValueError("a submission name is one folder or archive of the drop")
        root_fd = _open_dir(os.fsencode(self.root), None) if self.root.is_dir() else None
        if root_fd is None:
            return DropSubmission(name=name, url=base.as_uri(), entries=(), marker_present=False)
        try:
            try:
                st = os.stat(raw, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                return DropSubmission(name=name, url=base.as_uri(), entries=(), marker_present=False)
            if stat.S_ISLNK(st.st_mode):
                raise SubmissionChanged("the submission folder is a symbolic link: refused")
            if is_archive_name(name) and stat.S_ISREG(st.st_mode):
                entry = DropEntry(
                    name,
                    st.st_size,
                    "file",
                    str(st.st_mtime_ns),
                    str(base),
                    unsafe_name_reason(name),
                    st.st_dev,
                    st.st_ino,
                )
                marker = self._is_regular(root_fd, os.fsencode(f"{name}.{self.config.marker}"))
                return DropSubmission(name, base.as_uri(), (entry,), marker)
            if not stat.S_ISDIR(st.st_mode):
                raise SubmissionChanged("the submission is neither a folder nor an archive: refused")
            fd = _open_dir(raw, root_fd)
        finally:
            os.close(root_fd)
        try:
            if not _same_object(os.fstat(fd), st):
                raise SubmissionChanged("the submission folder was replaced while it was listed: refused")
            found: list[DropEntry] = []
            _walk_fd(fd, b"", os.fsencode(base), found)
        finally:
            os.close(fd)
        entries = sorted(found, key=lambda e: e.path)
        marker = any(e.path == self.config.marker and e.kind == "file" for e in entries)
        entries = [e for e in entries if e.path != self.config.marker]
        return DropSubmission(name=name, url=base.as_uri(), entries=tuple(entries), marker_present=marker)

    @staticmethod
    def _is_regular(dir_fd: int, name: bytes) -> bool:
        try:
            return stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    @contextmanager
    def open(self, entry: DropEntry) -> Iterator[IO[bytes]]:
        with io.BufferedReader(open_sealed(self.root, entry), 1 << 20) as fh:
            yield fh

    def write_report(self, submission: str, name: str, data: bytes) -> None:
        _write_local_report(self.root, submission, name, data)


def _write_local_report(root: Path, submission: str, name: str, data: bytes) -> None:
    """Write ``root/reports/<submission>/<name>`` atomically, never through a link."""
    folder, filename = report_path(submission, name)
    fd = _open_dir(os.fsencode(root), None)
    try:
        for part in (REPORTS_DIR, folder):
            with suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            parent, fd = fd, _open_dir(os.fsencode(part), fd)
            os.close(parent)
        tmp = f".{filename}.partial"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_NOFOLLOW | _O_CLOEXEC, 0o644, dir_fd=fd)
        with os.fdopen(out, "wb") as handle:
            handle.write(data)
        os.replace(tmp, filename, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
