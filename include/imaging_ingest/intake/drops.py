"""Drops: where sites leave submissions (a local folder, an S3 prefix, an SFTP folder: ``sftp.py``).

A drop holds one sub-folder (or prefix) per submission, or one zip/tar archive per
submission at its top level. A submission is complete when its marker file exists (for
an archive: a sidecar ``<archive>.<marker>``), or, for drops configured
``completion: stable``, when its listing did not change between two polls. Listing never follows a symbolic link out of the
submission and never opens a device or a pipe: such entries are listed as what they are
so that they can be quarantined with a reason instead of silently skipped.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from imaging_ingest.config import DropConfig

__all__ = [
    "REPORTS_DIR",
    "Drop",
    "DropEntry",
    "DropSubmission",
    "SubmissionChanged",
    "display_path",
    "is_archive_name",
    "is_report_area",
    "report_path",
    "unsafe_name_reason",
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
