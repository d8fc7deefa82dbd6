"""Burned-in text screening: which images may carry PHI in their pixels.

Header de-identification cannot see text drawn into an image. Screening flags images
whose attributes or kind make burned-in text likely: ``BurnedInAnnotation`` set,
recognisable visual features, and SOP classes and modalities that are screenshots or
scans by nature (secondary capture, ultrasound, scanned documents, encapsulated
documents). Flagged images are quarantined for a curator unless a redaction rule applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pydicom.uid import UID

__all__ = ["RISKY_MODALITIES", "RISKY_SOP_CLASSES", "ScreenDecision", "screen_attributes", "screen_frame"]

#: SOP classes whose pixels are, by nature, captures of screens or paper.
RISKY_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF Storage",
    "1.2.840.10008.5.1.4.1.1.104.2": "Encapsulated CDA Storage",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image Storage",
}

#: Modalities whose images usually carry annotations drawn by the device.
RISKY_MODALITIES = frozenset({"US", "XA", "DOC", "OT", "SC", "ES", "XC", "GM"})


@dataclass(frozen=True)
class ScreenDecision:
    flagged: bool
    reason: str | None = None


def screen_attributes(
    sop_class_uid: str | None,
    modality: str | None,
    burned_in_annotation: str | None,
    recognizable_visual_features: str | None = None,
) -> ScreenDecision:
    """Screen by attributes alone (no pixels decoded); the reason names the rule, never a value from the image."""
    if (burned_in_annotation or "").upper() == "YES":
        return ScreenDecision(True, "burned-in annotation declared (BurnedInAnnotation=YES)")
    if (recognizable_visual_features or "").upper() == "YES":
        return ScreenDecision(True, "recognizable visual features declared (RecognizableVisualFeatures=YES)")
    if sop_class_uid in RISKY_SOP_CLASSES:
        return ScreenDecision(True, f"burned-in text likely: {RISKY_SOP_CLASSES[sop_class_uid]}")
    if modality and modality.upper() in RISKY_MODALITIES:
        return ScreenDecision(True, f"burned-in text likely: modality {modality.upper()}")
    if sop_class_uid and UID(sop_class_uid).is_valid is False:
        return ScreenDecision(True, "unrecognised SOP Class UID")
    return ScreenDecision(False)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None  # NaN and None alike


def screen_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Quarantine the still-ok rows of a manifest whose attributes flag burned-in text."""
    frame = frame.copy()
    for index in frame.index[frame["status"] == "ok"]:
        row = frame.loc[index]
        decision = screen_attributes(
            *(_text(row.get(c)) for c in ("sop_class_uid", "modality", "burned_in_annotation", "recognizable_visual_features"))
        )
        if decision.flagged:
            frame.loc[index, ["status", "reason"]] = ["quarantined", decision.reason]
    return frame
