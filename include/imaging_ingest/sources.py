"""Drops: where sites leave submissions (a local folder, an S3 prefix, an SFTP folder: ``sftp.py``).

A drop holds one sub-folder (or prefix) per submission, or one zip/tar archive per
submission at its top level. A submission is complete when its marker file exists (for
an archive: a sidecar ``<archive>.<marker>``), or, for drops configured
``completion: stable``, when its listing did not change between two polls. Listing never follows a symbolic link out of the
submission and never opens a device or a pipe: such entries are listed as what they are
so that they can be quarantined with a reason instead of silently skipped.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse

from .config import DropConfig
from .settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

__all__ = [
    "Drop",
    "DropEntry",
    "DropSubmission",
    "LocalDrop",
    "S3Drop",
    "SubmissionChanged",
    "display_path",
    "is_archive_name",
    "open_drop",
    "REPORTS_DIR",
    "is_report_area",
    "report_path",
    "open_local",
    "unsafe_name_reason",
    "walk_tree",
]

#: File name endings read as archives: a submission may be one, and members of one are entries.
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def unsafe_name_reason(raw: bytes | str) -> str | None:
    """Why a file name cannot be trusted (newlines, control characters, invalid UTF-8), or None.

    Such names break line-oriented tools and logs and can smuggle text into reports; the
    file is quarantined with this reason, its content kept for a curator.
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "file name is not valid UTF-8"
    else:
        text = raw
        if any(0xDC80 <= ord(c) <= 0xDCFF for c in text):  # surrogate-escaped bytes from os.fsdecode
            return "file name is not valid UTF-8"
    if any(c in "\n\r" for c in text):
        return "file name contains a newline"
    if any(not c.isprintable() for c in text):
        return "file name contains control characters"
    return None


def display_path(raw: bytes) -> str:
    """A file name as text that is safe to store and show: bad bytes and control characters escaped."""
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


class SubmissionChanged(RuntimeError):
    """The drop changed between the listing and the read (a link swapped in, a file replaced or grown).

    The submission is refused, never partly staged: what a changing drop holds is not what
    the site declared complete. Messages never name the file (a name may carry PHI).
    """


@dataclass(frozen=True)
class DropEntry:
    """One entry of a submission; ``kind`` is 'file', 'symlink' or 'special'.

    ``name_problem`` says why the entry's raw name is unsafe (see ``unsafe_name_reason``).
    ``device`` and ``inode`` identify a local file as listed (0 where the drop has none):
    opening checks them, so a file replaced after the listing is refused.
    """

    path: str
    size: int
    kind: str
    token: str
    locator: str
    name_problem: str | None = None
    device: int = 0
    inode: int = 0


@dataclass(frozen=True)
class DropSubmission:
    name: str
    url: str
    entries: tuple[DropEntry, ...]
    marker_present: bool

    @property
    def fingerprint(self) -> str:
        """A digest of the listing: names, sizes and modification tokens."""
        digest = hashlib.sha256()
        for entry in sorted(self.entries, key=lambda e: e.path):
            ident = f"\x00{entry.inode}" if entry.inode else ""
            digest.update(f"{entry.path}\x00{entry.size}\x00{entry.kind}\x00{entry.token}{ident}\n".encode())
        return digest.hexdigest()


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
            raise SubmissionChanged("a folder of the submission is a symbolic link or not a folder: refused") from None
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
                    raise SubmissionChanged("a folder of the submission was replaced while it was listed: refused")
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
        raise SubmissionChanged("a file of the submission changed (size or time) after it was listed: refused")


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


class Drop(ABC):
    """A place submissions arrive in."""

    def __init__(self, config: DropConfig) -> None:
        self.config = config

    @abstractmethod
    def submission_names(self) -> list[str]: ...

    @abstractmethod
    def submission(self, name: str) -> DropSubmission: ...

    @abstractmethod
    @contextmanager
    def open(self, entry: DropEntry) -> Iterator[IO[bytes]]: ...

    def submissions(self) -> list[DropSubmission]:
        return [self.submission(name) for name in self.submission_names()]

    def write_report(self, submission: str, name: str, data: bytes) -> None:
        """Write ``REPORTS_DIR/<submission>/<name>`` beside the submissions (the site's submission report).

        The report folder is never listed as a submission (``is_report_area``).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot write reports")


#: The folder (or prefix) of a drop where the archive writes each submission's report for the site.
REPORTS_DIR = "reports"


def is_report_area(name: str) -> bool:
    """True for the drop's report folder: it is the archive's output, never a submission."""
    return name == REPORTS_DIR


def report_path(submission: str, name: str) -> tuple[str, str]:
    """The report's folder and file names, refusing anything but one plain component each."""
    for part in (submission, name):
        if not part or "/" in part or "\\" in part or part in (".", "..") or "\x00" in part:
            raise ValueError("a report is written as reports/<submission>/<file>")
    return submission, name


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
            and (e.is_dir(follow_symlinks=False) or (e.is_file(follow_symlinks=False) and is_archive_name(e.name)))
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
                entry = DropEntry(name, st.st_size, "file", str(st.st_mtime_ns), str(base), unsafe_name_reason(name),
                                  st.st_dev, st.st_ino)
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


class S3Drop(Drop):
    """A bucket prefix: ``s3://bucket/prefix``; one sub-prefix per submission."""

    def __init__(self, config: DropConfig, client: S3Client) -> None:
        super().__init__(config)
        parsed = urlparse(config.url)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = client

    def _prefix(self, name: str = "") -> str:
        parts = [p for p in (self.prefix, name) if p]
        return "/".join(parts) + "/" if parts else ""

    def submission_names(self) -> list[str]:
        names = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._prefix(), Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self._prefix()) :].rstrip("/")
                if not is_report_area(name):
                    names.append(name)
            for item in page.get("Contents", []):
                rel = item["Key"][len(self._prefix()) :]
                if is_archive_name(rel):
                    names.append(rel)
        return sorted(names)

    def submission(self, name: str) -> DropSubmission:
        if is_archive_name(name):
            key = self._prefix() + name
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.ClientError:
                head = None
            if head is not None:
                entry = DropEntry(
                    name, int(head["ContentLength"]), "file", str(head.get("ETag", "")).strip('"'), key,
                    unsafe_name_reason(name),
                )
                listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{key}.{self.config.marker}")
                marker = any(o["Key"] == f"{key}.{self.config.marker}" for o in listing.get("Contents", []))
                return DropSubmission(name, f"s3://{self.bucket}/{key}", (entry,), marker)
        prefix = self._prefix(name)
        entries = []
        marker = False
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                rel = item["Key"][len(prefix) :]
                if rel == self.config.marker:
                    marker = True
                    continue
                if not rel or rel.endswith("/"):
                    continue
                entries.append(
                    DropEntry(
                        path=display_path(rel.encode()),
                        size=int(item["Size"]),
                        kind="file",
                        token=str(item.get("ETag", "")).strip('"'),
                        locator=item["Key"],
                        name_problem=unsafe_name_reason(rel),
                    )
                )
        return DropSubmission(
            name=name, url=f"s3://{self.bucket}/{prefix}", entries=tuple(entries), marker_present=marker
        )

    def write_report(self, submission: str, name: str, data: bytes) -> None:
        folder, filename = report_path(submission, name)
        content_type = "application/json" if filename.endswith(".json") else "text/csv"
        key = f"{self._prefix(REPORTS_DIR)}{folder}/{filename}"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    @contextmanager
    def open(self, entry: DropEntry) -> Iterator[IO[bytes]]:
        """The listed object, and only it: its ETag must still be the listed one (else ``SubmissionChanged``)."""
        kwargs = {"IfMatch": f'"{entry.token}"'} if entry.token else {}
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=entry.locator, **kwargs)
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                raise SubmissionChanged("an object of the submission changed after it was listed: refused") from None
            raise
        if int(response.get("ContentLength", entry.size)) != entry.size:
            response["Body"].close()
            raise SubmissionChanged("an object of the submission changed size after it was listed: refused")
        body = response["Body"]
        try:
            yield body
        finally:
            body.close()


def open_drop(
    config: DropConfig, settings: Settings, s3_client: S3Client | None = None, sftp_connect: Any = None
) -> Drop:
    """The drop a collection config names; clients for remote drops may be passed in (Airflow hooks).

    ``sftp_connect`` is a callable returning a connected ``paramiko.SFTPClient`` (see
    ``sftp.connector``); without it an SFTP drop connects with the key and known-hosts
    files named by ``IMAGING_INGEST_SFTP_KEY_FILE`` and ``IMAGING_INGEST_SFTP_KNOWN_HOSTS``.
    """
    scheme = urlparse(config.url).scheme
    if scheme == "sftp":
        from .sftp import SFTPDrop, connector_from_env

        return SFTPDrop(config, sftp_connect or connector_from_env(config.url))
    if scheme == "file":
        return LocalDrop(config)
    if scheme == "s3":
        if s3_client is None:
            from .storage import ObjectStore

            s3_client = ObjectStore(settings).client
        return S3Drop(config, s3_client)
    raise NotImplementedError(f"drops of scheme {scheme!r} are not supported yet")
