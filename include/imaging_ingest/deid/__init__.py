"""Header de-identification: the PS3.15 profile as data, applied consistently with one secret."""

from imaging_ingest.deid.dates import date_offset_days, shift_da, shift_dt
from imaging_ingest.deid.engine import Deidentifier, DeidError, DeidOutput, DeidStats, PatientContext
from imaging_ingest.deid.profile import Action, Profile, ResolvedProfile
from imaging_ingest.deid.scrub import scrub_text
from imaging_ingest.deid.uids import keyed_hash, remap_uid

__all__ = [
    "Action",
    "DeidError",
    "DeidOutput",
    "DeidStats",
    "Deidentifier",
    "PatientContext",
    "Profile",
    "ResolvedProfile",
    "date_offset_days",
    "keyed_hash",
    "remap_uid",
    "scrub_text",
    "shift_da",
    "shift_dt",
]
