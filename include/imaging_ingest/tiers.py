"""Storage tiers' policies, and ``storage init``: buckets, versioning, lifecycle, access.

Each tier is one bucket (see ``storage.py``). Its policy says which storage class new
objects get, when they move to an archive class, when they expire, and whether anyone may
read them anonymously. Only the public tier can be public: the model refuses any other
tier with ``public_read``, and ``init_storage`` blocks public access on every other bucket.

The policy is data: defaults here, overridden by a YAML file named by
``IMAGING_INGEST_STORAGE_POLICY`` (same shape as ``StoragePolicy``, validated, unknown
fields rejected). ``init_storage`` is idempotent: it compares each bucket's settings with
the policy and changes only what differs, reporting every change.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .settings import TIERS

if TYPE_CHECKING:
    from .storage import ObjectStore

__all__ = ["Change", "StoragePolicy", "TierPolicy", "init_storage", "lifecycle_rules", "public_read_policy"]

StorageClass = Literal["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"]
ArchiveClass = Literal["STANDARD_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]


class TierPolicy(BaseModel):
    """One tier's storage class, lifecycle and access."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    storage_class: StorageClass = Field(default="STANDARD", description="Class of newly written objects.")
    transition_days: int | None = Field(default=None, ge=1, description="Move objects to transition_class after N days.")
    transition_class: ArchiveClass | None = None
    expire_days: int | None = Field(default=None, ge=1, description="Delete objects N days after they were written.")
    noncurrent_expire_days: int | None = Field(
        default=None, ge=1, description="Delete overwritten or deleted versions after N days."
    )
    public_read: bool = Field(default=False, description="Anyone may read and list (public tier only).")

    @model_validator(mode="after")
    def _consistent(self) -> TierPolicy:
        if (self.transition_days is None) != (self.transition_class is None):
            raise ValueError("transition_days and transition_class go together")
        if self.expire_days is not None and self.transition_days is not None and self.expire_days <= self.transition_days:
            raise ValueError("expire_days must come after transition_days")
        return self


def _default(**kwargs: Any) -> Any:
    return Field(default_factory=lambda: TierPolicy(**kwargs))


class StoragePolicy(BaseModel):
    """Every tier's policy; the defaults suit an archive like TCIA's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    raw: TierPolicy = _default(transition_days=30, transition_class="DEEP_ARCHIVE", noncurrent_expire_days=30)
    staging: TierPolicy = _default(expire_days=30, noncurrent_expire_days=1)
    quarantine: TierPolicy = _default(noncurrent_expire_days=90)
    public: TierPolicy = _default(storage_class="STANDARD", public_read=True)
    restricted: TierPolicy = _default(storage_class="STANDARD_IA")

    @model_validator(mode="after")
    def _only_public_is_public(self) -> StoragePolicy:
        for tier in TIERS:
            if tier != "public" and self.tier(tier).public_read:
                raise ValueError(f"tier '{tier}' can never be public_read: only the public tier is readable anonymously")
        return self

    def tier(self, name: str) -> TierPolicy:
        if name not in TIERS:
            raise ValueError(f"unknown storage tier {name!r}")
        policy: TierPolicy = getattr(self, name)
        return policy

    @classmethod
    def load(cls, path: str | Path) -> StoragePolicy:
        """Read a policy YAML; errors name the file and the fields."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            return cls.model_validate(raw)
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read storage policy: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
            raise ValueError(f"{path}: {problems}") from None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> StoragePolicy:
        env = os.environ if environ is None else environ
        path = env.get("IMAGING_INGEST_STORAGE_POLICY")
        return cls.load(path) if path else cls()


def lifecycle_rules(policy: TierPolicy) -> list[dict[str, Any]]:
    """The bucket lifecycle rules for one tier (empty when it needs none)."""
    rules: list[dict[str, Any]] = []
    if policy.transition_days is not None:
        rules.append(
            {
                "ID": "archive-after-days",
                "Filter": {"Prefix": ""},
                "Status": "Enabled",
                "Transitions": [{"Days": policy.transition_days, "StorageClass": policy.transition_class}],
            }
        )
    if policy.expire_days is not None:
        rules.append(
            {"ID": "expire-after-days", "Filter": {"Prefix": ""}, "Status": "Enabled", "Expiration": {"Days": policy.expire_days}}
        )
    if policy.noncurrent_expire_days is not None:
        rules.append(
            {
                "ID": "expire-noncurrent-versions",
                "Filter": {"Prefix": ""},
                "Status": "Enabled",
                "NoncurrentVersionExpiration": {"NoncurrentDays": policy.noncurrent_expire_days},
            }
        )
    if rules:
        rules.append(
            {
                "ID": "abort-incomplete-uploads",
                "Filter": {"Prefix": ""},
                "Status": "Enabled",
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
            }
        )
    return rules


def public_read_policy(bucket: str) -> dict[str, Any]:
    """Anyone may get objects and list the bucket; nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicReadObjects",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
            {
                "Sid": "PublicListBucket",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
        ],
    }


def _block(public: bool) -> dict[str, bool]:
    """Public access block: everything blocked, except bucket policies on the public bucket."""
    return {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": not public,
        "RestrictPublicBuckets": not public,
    }


@dataclass(frozen=True)
class Change:
    """One thing ``init_storage`` did (or would do) to one bucket."""

    tier: str
    bucket: str
    what: str
    state: str  # 'created', 'changed', 'unchanged'

    def as_dict(self) -> dict[str, str]:
        return {"tier": self.tier, "bucket": self.bucket, "what": self.what, "state": self.state}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _normal(rules: list[dict[str, Any]]) -> str:
    return json.dumps(sorted(rules, key=lambda r: r.get("ID", "")), sort_keys=True)


def init_storage(store: ObjectStore, policy: StoragePolicy | None = None) -> list[Change]:
    """Bring every tier's bucket in line with the policy; idempotent, returns what it found and did."""
    policy = policy or store.policy
    client = store.client
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    changes: list[Change] = []
    for tier in TIERS:
        bucket, tp = store.bucket(tier), policy.tier(tier)

        def note(what: str, state: str, tier: str = tier, bucket: str = bucket) -> None:
            changes.append(Change(tier, bucket, what, state))

        if bucket in existing:
            note("bucket", "unchanged")
        else:
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if store.settings.s3_region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": store.settings.s3_region}
            client.create_bucket(**kwargs)
            note("bucket", "created")

        if client.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled":
            note("versioning", "unchanged")
        else:
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            note("versioning", "changed")

        wanted = lifecycle_rules(tp)
        try:
            current = client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        except ClientError as exc:
            if _code(exc) != "NoSuchLifecycleConfiguration":
                raise
            current = []
        if _normal([_comparable(r) for r in current]) == _normal(wanted):
            note("lifecycle", "unchanged")
        elif wanted:
            client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": wanted})
            note("lifecycle", "changed")
        else:
            client.delete_bucket_lifecycle(Bucket=bucket)
            note("lifecycle", "changed")

        block = _block(tp.public_read)
        try:
            current_block = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except ClientError as exc:
            if _code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
            current_block = {}
        if dict(current_block) == block:
            note("public-access-block", "unchanged")
        else:
            client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
            note("public-access-block", "changed")

        try:
            current_policy: dict[str, Any] | None = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
        except ClientError as exc:
            if _code(exc) != "NoSuchBucketPolicy":
                raise
            current_policy = None
        wanted_policy = public_read_policy(bucket) if tp.public_read else None
        if current_policy == wanted_policy:
            note("bucket-policy", "unchanged")
        elif wanted_policy is None:
            client.delete_bucket_policy(Bucket=bucket)
            note("bucket-policy", "changed")
        else:
            client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(wanted_policy))
            note("bucket-policy", "changed")
    return changes


def _comparable(rule: dict[str, Any]) -> dict[str, Any]:
    """A lifecycle rule as read back, reduced to the fields ``lifecycle_rules`` writes."""
    keep = {"ID", "Filter", "Status", "Transitions", "Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload"}
    out = {k: v for k, v in rule.items() if k in keep}
    if "Transitions" in out:
        out["Transitions"] = [{"Days": t.get("Days"), "StorageClass": t.get("StorageClass")} for t in out["Transitions"]]
    if "Expiration" in out:
        out["Expiration"] = {"Days": out["Expiration"].get("Days")}
    if "NoncurrentVersionExpiration" in out:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": out["NoncurrentVersionExpiration"].get("NoncurrentDays")
        }
    return out


#: Where a run finds the policy last applied (in the staging tier: restricted, and expiring only by rule).
POLICY_MARKER = ".imaging-ingest/storage-policy.json"


def ensure_storage(store: ObjectStore, policy: StoragePolicy | None = None) -> list[Change]:
    """What every run does before it works: one read when nothing changed, a full ``init_storage`` when it did.

    The full reconciliation costs a few dozen requests; a marker object in the staging
    tier records the policy it applied, so a run only repeats it for a new deployment or a
    changed policy. ``imaging-ingest storage init`` always reconciles (and reports drift).
    """
    policy = policy or store.policy
    digest = hashlib.sha256(policy.model_dump_json().encode()).hexdigest()
    try:
        marker = json.loads(store.get_bytes("staging", POLICY_MARKER))
    except (ClientError, ValueError):
        marker = None
    if isinstance(marker, dict) and marker.get("policy_sha256") == digest:
        return []
    changes = init_storage(store, policy)
    store.put_json("staging", POLICY_MARKER, {"policy_sha256": digest})
    return changes
