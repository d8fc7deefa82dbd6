"""Fetch a selection: in parallel, resumable after any interruption, every object checked against the index.

Each object is written to ``<file>.partial`` and renamed into place only after its size,
SHA-256 and MD5 match the release index; so a file under its final name is a verified
one, and a run killed at any moment (even ``SIGKILL``) loses at most the unfinished
parts. The next run skips finished files and continues each ``.partial`` where it stopped
(an HTTP range request), re-hashing what is already on disk; a part that turns out wrong
is fetched again from the start once. Free disk space is checked before anything is
fetched; one progress bar counts the bytes of the whole selection.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from imaging_ingest.download.selection import Item, Selection

__all__ = ["ApiSource", "DownloadFailed", "DownloadReport", "InsufficientSpace", "S3Source", "download"]

#: Read size of network streams: small enough that an interrupted object leaves a usable part.
CHUNK = 256 * 1024
#: Space kept free beyond what the download needs (file system metadata, other writers).
SPACE_MARGIN = 64 * 1024 * 1024


class InsufficientSpace(OSError):
    """The destination has less free space than the selection still needs."""


class DownloadFailed(RuntimeError):
    """Objects that could not be fetched or whose bytes did not match the index (the rest are kept)."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        shown = "; ".join(f"{key}: {why}" for key, why in failures[:10])
        super().__init__(f"{len(failures)} object(s) not downloaded: {shown}" + ("; ..." if len(failures) > 10 else ""))


class ByteSource(Protocol):
    """Where object bytes come from."""

    def chunks(self, item: Item, start: int) -> Iterator[bytes]:
        """The object's bytes from offset ``start`` (a source that cannot seek yields from 0 and says so)."""
        ...

    def resumes(self) -> bool:
        """Whether ``chunks`` honours ``start``."""
        ...


class S3Source:
    """An S3 bucket (the archive's tier or a mirror), anonymous unless asked to sign."""

    def __init__(self, bucket: str, endpoint: str | None = None, region: str = "us-east-1", *,
                 anonymous: bool = True, client: Any = None) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self.anonymous = anonymous
        self._region = region
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore import UNSIGNED
                from botocore.config import Config

                self._client = boto3.client(
                    "s3", endpoint_url=self.endpoint, region_name=self._region,
                    config=Config(
                        signature_version=UNSIGNED if self.anonymous else None,
                        retries={"max_attempts": 10, "mode": "standard"},
                        s3={"addressing_style": "path"}, max_pool_connections=32,
                    ),
                )
            return self._client

    def get(self, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def resumes(self) -> bool:
        return True

    def chunks(self, item: Item, start: int) -> Iterator[bytes]:
        extra = {"Range": f"bytes={start}-"} if start else {}
        body = self.client.get_object(Bucket=self.bucket, Key=item.key, **extra)["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()


class ApiSource:
    """The archive's REST API: ``getSingleImage`` of the version the object was selected from."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def resumes(self) -> bool:
        return False

    def chunks(self, item: Item, start: int) -> Iterator[bytes]:
        import httpx

        if not item.series_uid or not item.sop_uid:
            raise ValueError(f"{item.key}: the API serves DICOM instances only")
        url = (f"{self.base_url}/collections/{item.collection_id}/versions/{item.version}"
               "/nbia-api/services/v4/getSingleImage")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        params = {"SeriesInstanceUID": item.series_uid, "SOPInstanceUID": item.sop_uid}
        with httpx.stream("GET", url, params=params, headers=headers, timeout=60) as response:
            response.raise_for_status()
            yield from response.iter_bytes(CHUNK)


@dataclass
class DownloadReport:
    objects: int = 0
    fetched: int = 0
    already_present: int = 0
    bytes_fetched: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"objects": self.objects, "fetched": self.fetched, "already_present": self.already_present,
                "bytes_fetched": self.bytes_fetched, "seconds": round(self.seconds, 3),
                "failed": len(self.failures)}


class _Throttle:
    """At most ``rate`` bytes per second across all workers (None: unlimited)."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            self.done += n
            ahead = self.done / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


def _target(destination: Path, item: Item) -> Path:
    path = (destination / item.path).resolve()
    if destination.resolve() not in path.parents:
        raise ValueError(f"{item.key}: its download path leaves the destination")
    return path


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _present(path: Path, item: Item) -> bool:
    """A file under its final name was verified before it was renamed there; its size must still match."""
    return path.is_file() and path.stat().st_size == item.size


def check_space(destination: Path, needed: int) -> None:
    """Raise before downloading when the destination's file system cannot hold what is left to fetch."""
    probe = destination
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + SPACE_MARGIN > free:
        raise InsufficientSpace(
            f"not enough free space in {destination}: the selection needs {needed} more bytes "
            f"(plus a {SPACE_MARGIN // 2**20} MiB margin), {free} are free"
        )


def _fetch(source: ByteSource, item: Item, path: Path, tick: Callable[[int], None], throttle: _Throttle) -> int:
    """Fetch one object into place (resuming its .partial); returns the bytes transferred."""
    partial = _partial(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        have = partial.stat().st_size if partial.exists() else 0
        if have > item.size or not source.resumes() or attempt == 2:
            if have and have <= item.size and source.resumes():  # the bar counted it as done
                tick(-have)
            partial.unlink(missing_ok=True)
            have = 0
        if have:  # the part already on disk counts towards the digests
            with open(partial, "rb") as fh:
                while block := fh.read(CHUNK):
                    sha256.update(block)
                    md5.update(block)
        fetched = 0
        if have < item.size or item.size == 0:
            with open(partial, "ab") as out:
                for block in source.chunks(item, have):
                    out.write(block)
                    sha256.update(block)
                    md5.update(block)
                    fetched += len(block)
                    tick(len(block))
                    throttle.take(len(block))
        size = have + fetched
        if size == item.size and sha256.hexdigest() == item.sha256 and md5.hexdigest() == item.md5:
            os.replace(partial, path)
            return fetched
        tick(-size)
        partial.unlink(missing_ok=True)
        problem = f"size {size}, expected {item.size}" if size != item.size else "checksum differs from the index"
        if attempt == 2:
            raise ValueError(problem)
    raise AssertionError("unreachable")


def download(
    selection: Selection,
    source: ByteSource,
    destination: Path,
    *,
    workers: int = 8,
    progress: bool | None = None,
    max_rate: int | None = None,
) -> DownloadReport:
    """Download every object of a selection into ``destination``, verified; resumable.

    Raises ``InsufficientSpace`` before fetching anything when the disk is too small, and
    ``DownloadFailed`` after the others finished when some objects failed (their retry is
    the next run, which keeps what is done).
    """
    from tqdm import tqdm

    started = time.monotonic()
    destination.mkdir(parents=True, exist_ok=True)
    report = DownloadReport(objects=len(selection.items))
    todo: list[tuple[Item, Path]] = []
    done_bytes = 0
    partial_bytes = 0
    for item in selection.items:
        path = _target(destination, item)
        if _present(path, item):
            report.already_present += 1
            done_bytes += item.size
        else:
            todo.append((item, path))
            part = _partial(path)
            if part.exists() and part.stat().st_size <= item.size and source.resumes():
                partial_bytes += part.stat().st_size
    check_space(destination, sum(i.size for i, _ in todo) - partial_bytes)
    bar = tqdm(total=selection.total_bytes, initial=done_bytes + partial_bytes, unit="B", unit_scale=True,
               unit_divisor=1024, desc="download", disable=None if progress is None else not progress,
               dynamic_ncols=True)
    lock = threading.Lock()

    def tick(n: int) -> None:
        with lock:
            bar.update(n)

    throttle = _Throttle(max_rate)

    def one(job: tuple[Item, Path]) -> None:
        item, path = job
        try:
            fetched = _fetch(source, item, path, tick, throttle)
        except Exception as exc:  # noqa: BLE001 (reported per object; the others go on)
            with lock:
                report.failures.append((item.key, f"{type(exc).__name__}: {exc}"))
            return
        with lock:
            report.fetched += 1
            report.bytes_fetched += fetched

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(one, todo))
    finally:
        bar.close()
    report.seconds = time.monotonic() - started
    if report.failures:
        raise DownloadFailed(sorted(report.failures))
    return report
