"""``storage init``: buckets, versioning, lifecycle and access, made to match the tiers' policy.

``init_storage`` is idempotent: it compares each bucket's settings with the policy
(``policy.py``) and changes only what differs, reporting every change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from imaging_ingest.config.settings import TIERS
from imaging_ingest.storage.objects import ObjectStore
from imaging_ingest.storage.policy import (
    StoragePolicy,
    lifecycle_rules,
    public_access_block,
    public_read_policy,
)

__all__ = ["Change", "POLICY_MARKER", "ensure_storage", "init_storage"]


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

        block = public_access_block(tp.public_read)
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
            current_policy: dict[str, Any] | None = json.loads(
                client.get_bucket_policy(Bucket=bucket)["Policy"]
            )
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
    keep = {
        "ID",
        "Filter",
        "Status",
        "Transitions",
        "Expiration",
        "NoncurrentVersionExpiration",
        "AbortIncompleteMultipartUpload",
    }
    out = {k: v for k, v in rule.items() if k in keep}
    if "Transitions" in out:
        out["Transitions"] = [
            {"Days": t.get("Days"), "StorageClass": t.get("StorageClass")} for t in out["Transitions"]
        ]
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
