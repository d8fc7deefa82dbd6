"""The archive's catalog: collections, versions, submissions, patients, studies, series, instances."""

from imaging_ingest.catalog.curation import QuarantineDecision, SupportingFile
from imaging_ingest.catalog.models import SubmissionState
from imaging_ingest.catalog.store import Catalog, ClaimOutcome, InstanceRecord
from imaging_ingest.catalog.textreview import FreeTextOccurrence, FreeTextValue

__all__ = [
    "Catalog",
    "ClaimOutcome",
    "FreeTextOccurrence",
    "FreeTextValue",
    "InstanceRecord",
    "QuarantineDecision",
    "SubmissionState",
    "SupportingFile",
]
