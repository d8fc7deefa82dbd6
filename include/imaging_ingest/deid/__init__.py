"""Header de-identification: the PS3.15 profile as data, applied consistently with one secret."""

from .dates import date_offset_days, shift_da, shift_dt
from .engine import Deidentifier, DeidError, DeidOutput, DeidStats, PatientContext
from .profile import Action, Profile, ResolvedProfile
from .scrub import scrub_text
from .uids import keyed_hash, remap_uid

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
