"""The streaming zip writer: valid archives (ZIP64 too), exact length, constant memory, integrity checks."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from imaging_ingest.api.zipstream import IntegrityError, ZipEntry, ZipStream

WHEN = datetime(2024, 5, 6, 7, 8, 10)


def _entries(files: dict[str, bytes], chunk: int = 1000) -> list[ZipEntry]:
    def opener(data: bytes) -> object:
        return lambda: (data[i : i + chunk] for i in range(0, len(data), chunk))

    return [ZipEntry(name, len(data), opener(data), hashlib.md5(data).hexdigest()) for name, data in files.items()]  # type: ignore[arg-type]


@pytest.mark.parametrize("force_zip64", [False, True], ids=["zip32", "zip64"])
def test_archive_reads_back_and_has_its_declared_length(tmp_path: Path, force_zip64: bool) -> None:
    files = {f"{n:08d}.dcm": os.urandom(997 * n) for n in range(1, 6)} | {"LICENSE": b"CC-BY-4.0\n", "empty": b""}
    stream = ZipStream(_entries(files), modified=WHEN, force_zip64=force_zip64)
    data = b"".join(stream)
    assert len(data) == stream.size
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == list(files)
        assert {n: archive.read(n) for n in files} == files
        assert archive.getinfo("LICENSE").date_time == (2024, 5, 6, 7, 8, 10)


@pytest.mark.unzip
@pytest.mark.parametrize("force_zip64", [False, True], ids=["zip32", "zip64"])
def test_info_zip_unzip_tests_the_archive_clean(tmp_path: Path, force_zip64: bool) -> None:
    """A second, independent reader: Info-ZIP's ``unzip -t`` checks every entry's CRC."""
    files = {f"{n:08d}.dcm": os.urandom(997 * n) for n in range(1, 6)} | {"LICENSE": b"CC-BY-4.0\n", "empty": b""}
    path = tmp_path / "series.zip"
    path.write_bytes(b"".join(ZipStream(_entries(files), modified=WHEN, force_zip64=force_zip64)))
    checked = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_first_bytes_come_before_any_object_is_read() -> None:
    opened: list[str] = []

    def source(name: str) -> Iterator[bytes]:
        opened.append(name)
        yield b"x" * 10

    entries = [ZipEntry(n, 10, lambda n=n: source(n)) for n in ("a", "b")]  # type: ignore[misc]
    chunks = iter(ZipStream(entries, modified=WHEN))
    assert next(chunks).startswith(b"PK\x03\x04") and opened == []
    assert next(chunks) == b"x" * 10 and opened == ["a"]
    rest = b"".join(chunks)
    assert opened == ["a", "b"] and rest.endswith(b"\x00\x00")


def test_a_large_entry_streams_in_constant_memory() -> None:
    size, chunk = 64 * 1024 * 1024, 1024 * 1024

    def big() -> Iterator[bytes]:
        block = b"\x5a" * chunk
        for _ in range(size // chunk):
            yield block

    stream = ZipStream([ZipEntry("big.dcm", size, big)], modified=WHEN)
    tracemalloc.start()
    try:
        total, largest = 0, 0
        for part in stream:
            total += len(part)
            largest = max(largest, len(part))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == stream.size and largest == chunk
    assert peak < 8 * chunk, f"peak {peak} bytes while streaming {size} bytes"


@pytest.mark.parametrize(
    ("declared", "md5", "message"),
    [
        (11, None, "has 10 bytes, 11 were declared"),
        (9, None, "longer than its declared 9 bytes"),
        (10, "0" * 32, "does not match its catalogued MD5"),
    ],
)
def test_a_wrong_object_aborts_the_archive(declared: int, md5: str | None, message: str) -> None:
    stream = ZipStream([ZipEntry("a.dcm", declared, lambda: iter([b"0123456789"]), md5)], modified=WHEN)
    with pytest.raises(IntegrityError, match=message):
        b"".join(stream)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ZipStream([ZipEntry("a", 0, lambda: iter(())), ZipEntry("a", 0, lambda: iter(()))], modified=WHEN)
