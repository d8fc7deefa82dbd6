"""What the catalog takes and returns besides its ORM rows: instance records, claims, members, errors."""

from __future__ import annotations

from dataclasses import dataclass

from imaging_ingest.catalog.models import (
    SubmissionState,
)

__all__ = [
    "CatalogOutOfSync",
    "ClaimOutcome",
    "FixityTarget",
    "InstanceRecord",
    "InvalidTransition",
    "Member",
    "RegisteredObject",
    "replacement_key",
]


class InvalidTransition(ValueError):
    """A submission state change the state machine does not allow."""


class CatalogOutOfSync(RuntimeError):
    """The catalog and the object store disagree in a way the pipeline must not paper over."""


@dataclass(frozen=True)
class ClaimOutcome:
    submission_id: str
    state: str
    created: bool

    @property
    def already_published(self) -> bool:
        return self.state == SubmissionState.PUBLISHED


@dataclass(frozen=True)
class InstanceRecord:
    """One published file as the register stage hands it to the catalog (de-identified values only)."""

    pseudonym: str
    id_hash: str
    study_uid: str
    study_date: str | None
    study_description: str | None
    series_uid: str
    modality: str | None
    body_part: str | None
    manufacturer: str | None
    series_description: str | None
    sop_uid: str
    sop_class_uid: str
    object_key: str
    tier: str
    size: int
    sha256: str
    md5: str


@dataclass(frozen=True)
class RegisteredObject:
    """An instance row as publication needs it: which key holds which bytes, and its span."""

    id: int
    sop_uid: str
    sha256: str
    object_key: str
    submission_id: str
    published_version: int | None
    retired_version: int | None

    @property
    def live(self) -> bool:
        """Pending publication or listed in the latest version."""
        return self.retired_version is None


@dataclass(frozen=True)
class Member:
    """One object of a collection version, with its place in the patient/study/series tree."""

    key: str
    size: int
    sha256: str
    md5: str
    tier: str
    patient: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str | None


@dataclass(frozen=True)
class FixityTarget:
    """A published object to re-verify: where it is and what it must hash to."""

    collection_id: str
    key: str
    tier: str
    size: int
    sha256: str
    md5: str


def replacement_key(object_key: str, sha256: str) -> str:
    """The key of a replacement object: the first key with a content discriminator before the suffix.

    ``demo/1.2/3.4/5.6.dcm`` with new bytes becomes ``demo/1.2/3.4/5.6.<sha256[:16]>.dcm``, so a
    replacement never overwrites the object an earlier version lists, and the same bytes
    always get the same key (reruns stay idempotent).
    """
    stem, dot, suffix = object_key.rpartition(".")
    if not dot or "/" in suffix:
        return f"{object_key}.{sha256[:16]}"
    return f"{stem}.{sha256[:16]}.{suffix}"
