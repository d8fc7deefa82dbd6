"""The archive's catalog: collections, versions, submissions, patients, studies, series, instances."""

from .curation import QuarantineDecision, SupportingFile
from .models import SubmissionState
from .store import Catalog, ClaimOutcome, InstanceRecord
from .textreview import FreeTextOccurrence, FreeTextValue

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
