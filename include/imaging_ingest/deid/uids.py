"""UID remapping: the same original UID becomes the same new UID everywhere, and only there.

``2.25.`` followed by the decimal of a 128-bit integer is the ISO/IEC 9834-8 UUID-derived
root, which needs no registered organisation root. The integer is the first 128 bits of
HMAC-SHA256(secret, original): without the secret nobody can map back or forward.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from pydicom.uid import UID_dictionary

__all__ = ["is_well_known_uid", "keyed_hash", "remap_uid"]


def keyed_hash(secret: bytes, purpose: str, value: str) -> bytes:
    """HMAC-SHA256 of a value, separated by purpose so that one digest never stands in for another."""
    return hmac.new(secret, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def is_well_known_uid(uid: str) -> bool:
    """SOP classes, transfer syntaxes, coding schemes...: registered UIDs identify no one and must stay."""
    return uid in UID_dictionary


@lru_cache(maxsize=65536)
def _remap(secret: bytes, uid: str) -> str:
    digest = hmac.new(secret, uid.encode("ascii", "replace"), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def remap_uid(secret: bytes, uid: str) -> str:
    """Map one UID; registered UIDs pass through unchanged."""
    uid = uid.strip("\x00 ")
    if not uid or is_well_known_uid(uid):
        return uid
    return _remap(secret, uid)
