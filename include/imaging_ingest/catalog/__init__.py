"""The archive's catalog: collections, versions, submissions, patients, studies, series, instances."""

from .curation import QuarantineDecision, SupportingFile
from .models import SubmissionState
from .store import Catalog, ClaimOutcome, InstanceRecord

__all__ = ["Catalog", "ClaimOutcome", "InstanceRecord", "QuarantineDecision", "SubmissionState", "SupportingFile"]
