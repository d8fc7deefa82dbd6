"""Storage tiers' policies: storage classes, lifecycle, and who may read each tier.

Each tier is one bucket (see ``objects.py``). Its policy says which storage class new
objects get, when they move to an archive class, when they expire, and whether anyone may
read them anonymously. Only the public tier can be public: the model refuses any other
tier with ``public_read``, and ``tiers.init_storage`` blocks public access on every other bucket.

The policy is data: defaults here, overridden by a YAML file named by
``IMAGING_INGEST_STORAGE_POLICY`` (same shape as ``StoragePolicy``, validated, unknown
fields rejected).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from imaging_ingest.config.settings import TIERS

__all__ = ["StoragePolicy", "TierPolicy", "lifecycle_rules", "public_access_block", "public_read_policy"]


StorageClass = Literal["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"]
ArchiveClass = Literal["STANDARD_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]


class TierPolicy(BaseModel):
    """One tier's storage class, lifecycle and access."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    storage_class: StorageClass = Field(default="STANDARD", description="Class of newly written objects.")
    transition_days: int | None = Field(
        default=None, ge=1, description="Move objects to transition_class after N days."
    )
    transition_class: ArchiveClass | None = None
    expire_days: int | None = Field(
        default=None, ge=1, description="Delete objects N days after they were written."
    )
    noncurrent_expire_days: int | None = Field(
        default=None, ge=1, description="Delete overwritten or deleted versions after N days."
    )
    public_read: bool = Field(default=False, description="Anyone may read and list (public tier only).")

    @model_validator(mode="after")
    def _consistent(self) -> TierPolicy:
        if (self.transition_days is None) != (self.transition_class is None):
            raise ValueError("transition_days and transition_class go together")
        if (
            self.expire_days is not None
            and self.transition_days is not None
            and self.expire_days <= self.transition_days
        ):
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
                raise ValueError(
                    f"tier '{tier}' can never be public_read: only the public tier is readable anonymously"
                )
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
            {
                "ID": "expire-after-days",
                "Filter": {"Prefix": ""},
                "Status": "Enabled",
                "Expiration": {"Days": policy.expire_days},
            }
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


def public_access_block(public: bool) -> dict[str, bool]:
    """Public access block: everything blocked, except bucket policies on the public bucket."""
    return {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": not public,
        "RestrictPublicBuckets": not public,
    }
