"""Shapes of NBIA's JSON answers, for the published OpenAPI schema.

The endpoints build their answers directly (``nbia.py``) for speed; these models only
describe them. Every field is optional because NBIA, and we, leave out a field that has
no value.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = [
    "BodyPartValue",
    "CollectionValue",
    "ManufacturerValue",
    "ModalityValue",
    "PatientByModality",
    "PatientRecord",
    "SeriesRecord",
    "SeriesSize",
    "SopInstanceUid",
    "StudyRecord",
    "TokenAnswer",
    "VersionInfo",
    "CollectionInfo",
]


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow")


class CollectionValue(_Row):
    Collection: str


class BodyPartValue(_Row):
    BodyPartExamined: str


class ModalityValue(_Row):
    Modality: str


class ManufacturerValue(_Row):
    Manufacturer: str


class PatientByModality(_Row):
    PatientId: str
    Authorized: int | None = None


class PatientRecord(_Row):
    PatientId: str
    PatientName: str | None = None
    PatientSex: str | None = None
    EthnicGroup: str | None = None
    Collection: str
    Phantom: str | None = None
    SpeciesCode: str | None = None
    SpeciesDescription: str | None = None
    Authorized: int | None = None


class StudyRecord(_Row):
    StudyInstanceUID: str
    StudyDate: str | None = None
    StudyDescription: str | None = None
    AdmittingDiagnosesDescription: str | None = None
    StudyID: str | None = None
    PatientAge: str | None = None
    PatientID: str
    PatientName: str | None = None
    PatientSex: str | None = None
    EthnicGroup: str | None = None
    Collection: str
    SeriesCount: int
    LongitudinalTemporalEventType: str | None = None
    LongitudinalTemporalOffsetFromEvent: str | None = None
    Authorized: int | None = None


class SeriesRecord(_Row):
    SeriesInstanceUID: str
    StudyInstanceUID: str
    Modality: str | None = None
    ProtocolName: str | None = None
    SeriesDate: str | None = None
    SeriesDescription: str | None = None
    BodyPartExamined: str | None = None
    SeriesNumber: int | None = None
    AnnotationsFlag: bool | None = None
    Collection: str
    Site: str | None = None
    PatientID: str
    PatientSex: str | None = None
    PatientAge: str | None = None
    AdmittingDiagnosisDescription: str | None = None
    Manufacturer: str | None = None
    ManufacturerModelName: str | None = None
    SoftwareVersions: str | None = None
    ImageCount: int
    MaxSubmissionTimestamp: str | None = None
    LicenseName: str | None = None
    LicenseURI: str | None = None
    DataDescriptionURI: str | None = None
    FileSize: int
    ReleasedStatus: str | None = None
    DateReleased: str | None = None
    StudyDesc: str | None = None
    StudyDate: str | None = None
    ThirdPartyAnalysis: str | None = None
    Authorized: int | None = None


class SeriesSize(_Row):
    TotalSizeInBytes: int
    ObjectCount: int


class SopInstanceUid(_Row):
    SOPInstanceUID: str


class TokenAnswer(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    scope: str


class VersionInfo(BaseModel):
    version: int
    released: str
    objects: int
    bytes: int
    release_key: str
    base_url: str


class CollectionInfo(BaseModel):
    collection: str
    title: str
    license: str
    restricted: bool
    latest_version: int
    versions: list[VersionInfo]
