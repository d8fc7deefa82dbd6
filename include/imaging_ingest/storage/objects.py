"""Tiered object storage over S3 (AWS, MinIO, or moto's server on loopback).

One bucket per tier (raw, staging, quarantine, public, restricted), so that access
policies and lifecycle rules apply to a whole bucket and a wrong key can never make a
restricted object public (``tiers.py`` sets them up). Every upload sends a SHA-256
checksum that the server checks, and copies between tiers are server-side. Objects
written to a tier get that tier's storage class from the storage policy.

Large objects (whole-slide images of several GB) go multipart, streamed from disk in
constant memory; S3 then keeps only per-part checksums, so the whole object's SHA-256 is
kept as the object tag ``sha256`` and ``head`` reports it from there. Transient errors
(500, 503, SlowDown, dropped connections) are retried by botocore with exponential
backoff and jitter (``retries`` below).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from imaging_ingest.config.settings import TIERS, Settings
from imaging_ingest.core.checksum import file_digests, sha256_b64_from_hex
from imaging_ingest.storage.policy import StoragePolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

__all__ = ["LocalCache", "ObjectInfo", "ObjectStore", "PublicTierViolation"]

#: Above this size uploads and copies go multipart, streamed from disk in constant memory.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: Part size of multipart transfers (memory per transfer is about this times the concurrency).
MULTIPART_CHUNK = 16 * 1024 * 1024
#: botocore's retry settings: 'standard' mode retries throttling (SlowDown, 503), 5xx errors
#: and connection errors with exponential backoff and full jitter.
RETRIES: dict[str, Any] = {"max_attempts": 10, "mode": "standard"}


class PublicTierViolation(RuntimeError):
    """Something tried to write a restricted collection's data to the public tier."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None = None
    storage_class: str | None = None


def _hex_from_b64(value: str | None) -> str | None:
    if not value or "-" in value:  # multipart composite checksums are not whole-object digests
        return None
    import base64

    return base64.b64decode(value).hex()


class ObjectStore:
    """Typed access to the archive's tiers."""

    def __init__(
        self, settings: Settings, client: S3Client | None = None, policy: StoragePolicy | None = None
    ) -> None:
        self.settings = settings
        self._client = client
        self._policy = policy

    @property
    def policy(self) -> StoragePolicy:
        """The tiers' storage policy (``IMAGING_INGEST_STORAGE_POLICY``, else the defaults)."""
        if self._policy is None:
            from imaging_ingest.storage.policy import StoragePolicy

            self._policy = StoragePolicy.from_env()
        return self._policy

    def storage_class(self, tier: str) -> str | None:
        """The storage class for new objects in a tier; None for STANDARD (S3's default)."""
        name = self.policy.tier(tier).storage_class
        return None if name == "STANDARD" else name

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK, max_concurrency=4
        )

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.settings.s3_endpoint,
                region_name=self.settings.s3_region,
                config=Config(
                    retries=RETRIES,
                    s3={"addressing_style": "path"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        return self._client

    def bucket(self, tier: str) -> str:
        return self.settings.bucket(tier)

    # -- set-up ---------------------------------------------------------------------------

    def ensure_buckets(self) -> list[str]:
        """Create the tier buckets that are missing, with versioning on; idempotent."""
        created = []
        existing = {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}
        for tier in TIERS:
            name = self.bucket(tier)
            if name not in existing:
                kwargs: dict[str, Any] = {"Bucket": name}
                if self.settings.s3_region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.s3_region}
                self.client.create_bucket(**kwargs)
                created.append(name)
            self.client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return created

    # -- writes ---------------------------------------------------------------------------

    def put_file(
        self,
        tier: str,
        key: str,
        path: str | Path,
        *,
        sha256: str | None = None,
        storage_class: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Upload a file; the server verifies its SHA-256 (computed here when not given)."""
        path = Path(path)
        size = path.stat().st_size
        if sha256 is None:
            sha256 = file_digests(path).sha256
        extra: dict[str, Any] = {"ContentType": content_type}
        storage_class = storage_class or self.storage_class(tier)
        if storage_class:
            extra["StorageClass"] = storage_class
        if size < MULTIPART_THRESHOLD:
            with open(path, "rb") as fh:
                self.client.put_object(
                    Bucket=self.bucket(tier),
                    Key=key,
                    Body=fh,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=sha256_b64_from_hex(sha256),
                    **extra,
                )
        else:
            self.client.upload_file(
                str(path),
                self.bucket(tier),
                key,
                ExtraArgs={**extra, "ChecksumAlgorithm": "SHA256"},
                Config=self._transfer_config(),
            )
            self._tag_sha256(tier, key, sha256)
        return ObjectInfo(key=key, size=size, sha256=sha256, storage_class=storage_class)

    def _tag_sha256(self, tier: str, key: str, sha256: str) -> None:
        """Multipart objects carry no whole-object digest; keep ours as a tag for fixity checks."""
        self.client.put_object_tagging(
            Bucket=self.bucket(tier), Key=key, Tagging={"TagSet": [{"Key": "sha256", "Value": sha256}]}
        )

    def put_bytes(
        self, tier: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        import hashlib

        extra: dict[str, Any] = {}
        if storage_class := self.storage_class(tier):
            extra["StorageClass"] = storage_class
        self.client.put_object(
            Bucket=self.bucket(tier),
            Key=key,
            Body=data,
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=sha256_b64_from_hex(hashlib.sha256(data).hexdigest()),
            **extra,
        )

    def put_json(self, tier: str, key: str, document: Any) -> None:
        """Upload a document as indented JSON, encoded a piece at a time into a temporary file.

        A version's ``release.json`` lists every object: encoding it into one string (and
        that string into bytes) would hold two copies of tens of MB for a large collection.
        """
        with tempfile.TemporaryDirectory(prefix="json-") as tmp:
            path = Path(tmp) / "document.json"
            with open(path, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=2, sort_keys=True)
                out.write("\n")
            self.put_file(tier, key, path, content_type="application/json")

    def copy(
        self,
        src_tier: str,
        src_key: str,
        dst_tier: str,
        dst_key: str,
        storage_class: str | None = None,
        size: int = 0,
    ) -> ObjectInfo:
        """Server-side copy between tiers; returns the new object's info with its SHA-256.

        When the caller knows the size of a small object (the common case), one CopyObject
        request does it and its response carries the SHA-256 the server computed. Large
        objects go through the managed multipart copy, which keeps neither the digest nor
        the tags: the whole-object SHA-256 is tagged on the copy again.
        """
        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"}
        storage_class = storage_class or self.storage_class(dst_tier)
        if storage_class:
            extra["StorageClass"] = storage_class
        source_ref = {"Bucket": self.bucket(src_tier), "Key": src_key}
        if 0 < size < MULTIPART_THRESHOLD:
            result = self.client.copy_object(
                Bucket=self.bucket(dst_tier), Key=dst_key, CopySource=source_ref, **extra
            )
            sha256 = _hex_from_b64(result.get("CopyObjectResult", {}).get("ChecksumSHA256"))
            if sha256:
                return ObjectInfo(key=dst_key, size=size, sha256=sha256, storage_class=storage_class)
        else:
            source = self.head(src_tier, src_key)
            if source is None:
                raise FileNotFoundError(f"s3://{self.bucket(src_tier)}/{src_key} does not exist")
            if source.size < MULTIPART_THRESHOLD:
                self.client.copy_object(
                    Bucket=self.bucket(dst_tier), Key=dst_key, CopySource=source_ref, **extra
                )
            else:
                self.client.copy(
                    source_ref,
                    self.bucket(dst_tier),
                    dst_key,
                    ExtraArgs=extra,
                    Config=self._transfer_config(),
                )
                if source.sha256:  # a multipart copy keeps neither the digest nor the tags
                    self._tag_sha256(dst_tier, dst_key, source.sha256)
        info = self.head(dst_tier, dst_key)
        if info is None:
            raise RuntimeError(f"copy to {dst_tier}/{dst_key} left no object")
        return info

    def sizes(self, tier: str, prefix: str = "") -> dict[str, int]:
        """Every key under a prefix with its size, in one listing (cheaper than a HEAD per key)."""
        return {o.key: o.size for o in self.list(tier, prefix)}

    def delete(self, tier: str, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket(tier), Key=key)

    # -- reads ----------------------------------------------------------------------------

    def head(self, tier: str, key: str) -> ObjectInfo | None:
        try:
            meta = self.client.head_object(Bucket=self.bucket(tier), Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        sha256 = _hex_from_b64(meta.get("ChecksumSHA256"))
        multipart = "-" in str(meta.get("ETag", ""))
        if multipart and meta.get("ChecksumType") != "FULL_OBJECT":
            # A multipart object's checksum is a digest of its parts' digests, not of its bytes.
            sha256 = self._tagged_sha256(tier, key)
        return ObjectInfo(
            key=key,
            size=int(meta["ContentLength"]),
            sha256=sha256,
            storage_class=meta.get("StorageClass", "STANDARD"),
        )

    def _tagged_sha256(self, tier: str, key: str) -> str | None:
        tags = self.client.get_object_tagging(Bucket=self.bucket(tier), Key=key).get("TagSet", [])
        return next((t["Value"] for t in tags if t["Key"] == "sha256"), None)

    def get_bytes(self, tier: str, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket(tier), Key=key)["Body"].read()
        return body

    def get_json(self, tier: str, key: str) -> Any:
        return json.loads(self.get_bytes(tier, key))

    def download(self, tier: str, key: str, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")
        self.client.download_file(self.bucket(tier), key, str(tmp))
        os.replace(tmp, path)
        return path

    def list(self, tier: str, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket(tier), Prefix=prefix):
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"], size=int(item["Size"]), storage_class=item.get("StorageClass")
                )


class LocalCache:
    """A worker-local copy of objects, so that consecutive stages on one machine read from disk.

    Correctness never depends on it: a missing or wrong-sized file is fetched again from
    the object store, which stays the source of truth (tasks may run on other workers).
    """

    def __init__(self, root: Path, store: ObjectStore) -> None:
        self.root = root
        self.store = store

    def path(self, tier: str, key: str) -> Path:
        return self.root / tier / key

    def fetch(self, tier: str, key: str, size: int | None = None) -> Path:
        path = self.path(tier, key)
        if path.exists() and (size is None or path.stat().st_size == size):
            return path
        return self.store.download(tier, key, path)
