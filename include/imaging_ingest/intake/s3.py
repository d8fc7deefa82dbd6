"""S3 drops: one prefix per submission in a bucket (``s3://bucket/prefix``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any
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

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

__all__ = ["S3Drop"]


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
                    name,
                    int(head["ContentLength"]),
                    "file",
                    str(head.get("ETag", "")).strip('"'),
                    key,
                    unsafe_name_reason(name),
                )
                listing = self.client.list_objects_v2(
                    Bucket=self.bucket, Prefix=f"{key}.{self.config.marker}"
                )
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
                raise SubmissionChanged(
                    "an object of the submission changed after it was listed: refused"
                ) from None
            raise
        if int(response.get("ContentLength", entry.size)) != entry.size:
            response["Body"].close()
            raise SubmissionChanged("an object of the submission changed size after it was listed: refused")
        body = response["Body"]
        try:
            yield body
        finally:
            body.close()
