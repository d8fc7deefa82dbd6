"""Burned-in text screening: which images may carry PHI in their pixels, and what to do about it.

Header de-identification cannot see text drawn into an image. Screening, per image:

1. **Attributes** (from the manifest, no file read): ``BurnedInAnnotation``,
   ``RecognizableVisualFeatures``, and SOP classes and modalities that are screenshots or
   scans by nature (secondary capture, ultrasound, XA, scanned and encapsulated documents).
   An image none of these flag is passed without reading it, unless the collection OCRs
   every image (``pixels.ocr``).
2. **OCR** of one downsampled frame of the de-identified output (``ocr.py``), matched
   against the source's identifying values and generic PHI patterns.
3. **Redaction rules** (``pixels.redaction_rules``): a flagged image whose device and
   geometry match a rule has the rule's regions blanked (``redact.py``) and is read again;
   it goes on only if no PHI is left.
4. **Curators**: an approved quarantine item goes on (redacted with the curator's regions
   when given), a rejected one stays quarantined.

Scanned documents and encapsulated PDF/CDA are quarantined unless the collection allows
them. DICOM whole-slide LABEL and OVERVIEW images follow ``pathology.dicom_wsi_label_images``.
Reasons name rules and attributes, never a value read from the image; what OCR read goes
to the evidence (quarantine tier) only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom import dcmread
from pydicom.uid import UID

from imaging_ingest.config.sections import PathologyConfig, PixelsConfig, RedactionRule
from imaging_ingest.core.records import chunks, iter_records
from imaging_ingest.screen.ocr import (
    OcrResult,
    OcrUnavailable,
    evidence_png,
    frame_image,
    match_words,
    needle_tokens,
    ocr_image,
)
from imaging_ingest.screen.ocr import tesseract_available as tesseract_available
from imaging_ingest.screen.redact import RedactionError, redact_file

__all__ = [
    "DOCUMENT_SOP_CLASSES",
    "RISKY_MODALITIES",
    "RISKY_SOP_CLASSES",
    "CuratorDecision",
    "ScreenContext",
    "ScreenDecision",
    "screen_attributes",
    "screen_frame",
    "screen_images",
]

log = logging.getLogger(__name__)

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
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image Storage",
}

#: Encapsulated documents: no pixels to screen, a whole document to trust or not.
DOCUMENT_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.104.2": "Encapsulated CDA",
    "1.2.840.10008.5.1.4.1.1.104.3": "Encapsulated STL",
}

#: Modalities whose images usually carry annotations drawn by the device.
RISKY_MODALITIES = frozenset({"US", "XA", "DOC", "OT", "SC", "ES", "XC", "GM"})

#: ConversionType values that mean 'a scan of paper' (PS3.3 C.8.6.1).
_SCANNED_CONVERSIONS = frozenset({"SD", "SI"})
_WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
_WSI_ASSOCIATED = ("LABEL", "OVERVIEW")


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
    """Attribute-only screening: quarantine the still-ok rows whose attributes flag burned-in text."""
    frame = frame.copy()
    for index in frame.index[frame["status"] == "ok"]:
        row = frame.loc[index]
        decision = screen_attributes(
            *(_text(row.get(c)) for c in ("sop_class_uid", "modality", "burned_in_annotation", "recognizable_visual_features"))
        )
        if decision.flagged:
            frame.loc[index, ["status", "reason"]] = ["quarantined", decision.reason]
    return frame


@dataclass(frozen=True)
class CuratorDecision:
    """A curator's decision on a quarantined image: approved (optionally with regions to blank) or rejected."""

    state: str
    regions: tuple[tuple[int, int, int, int], ...] = ()
    by: str | None = None


@dataclass
class ScreenContext:
    """What screening needs besides the manifest: config, files, and where results go.

    ``output_of`` gives the de-identified file of a row (OCR'd and, when redacted,
    rewritten in place); ``on_rewrite`` is called with the row after a rewrite (the
    pipeline uploads the file again); ``on_evidence`` stores a quarantined image's
    evidence ``(row, name, data, content type)`` in a restricted place.
    """

    pixels: PixelsConfig
    pathology: PathologyConfig
    source_of: Callable[[dict[str, Any]], Path]
    output_of: Callable[[dict[str, Any]], Path]
    on_rewrite: Callable[[dict[str, Any]], None] | None = None
    on_evidence: Callable[[dict[str, Any], str, bytes, str], None] | None = None
    decisions: Mapping[int, CuratorDecision] = field(default_factory=dict)


@dataclass
class _Outcome:
    status: str = "ok"
    reason: str | None = None
    action: str = "none"
    rule: str | None = None
    ocr_words: int = 0
    ocr_hits: int = 0
    frames_decoded: int = 0
    redacted: dict[str, Any] | None = None
    policy_rejected: bool = False
    evidence: bool = False


#: Columns screening adds to the manifest (PHI-free: counts and rule names).
SCREEN_COLUMNS = (
    "screen_action",
    "redaction_rule",
    "ocr_words",
    "ocr_hits",
    "frames_decoded",
    "screen_evidence",
    "policy_rejected",
)


def _is_dicom(row: Mapping[str, Any]) -> bool:
    kind = row.get("kind")
    return not isinstance(kind, str) or kind == "dicom"


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not pd.isna(value) else None
    except (TypeError, ValueError):
        return None


def screen_images(frame: pd.DataFrame, ctx: ScreenContext) -> pd.DataFrame:
    """Screen every still-ok DICOM row (and apply curators' decisions); return the manifest with outcomes."""
    frame = frame.copy()
    defaults: dict[str, Any] = {
        "screen_action": None, "redaction_rule": None, "ocr_words": 0, "ocr_hits": 0, "frames_decoded": 0,
        "screen_evidence": False, "policy_rejected": False,
    }
    for column, value in defaults.items():
        if column not in frame.columns:
            frame[column] = value
    frame["screen_action"] = frame["screen_action"].astype(object)
    frame["redaction_rule"] = frame["redaction_rule"].astype(object)
    ok = frame.index[frame["status"] == "ok"]
    # Tesseract runs as a subprocess per image: threads overlap those runs (files are independent).
    # Rows go in chunks, so the dicts held at once do not grow with the submission.
    with ThreadPoolExecutor(max(1, ctx.pixels.ocr_workers)) as pool:
        for indexes in chunks(ok):
            records = [(i, r) for i, r in zip(indexes, iter_records(frame.loc[indexes]), strict=True) if _is_dicom(r)]
            outcomes = list(pool.map(lambda r: _screen_one(r, ctx), [r for _, r in records]))
            _apply(frame, [index for index, _ in records], outcomes, ctx)
    return frame


def _apply(frame: pd.DataFrame, indexes: list[Any], outcomes: list[_Outcome], ctx: ScreenContext) -> None:
    """Write a chunk's screening outcomes into their manifest rows, a column at a time (and re-upload redacted files)."""
    if not indexes:
        return
    columns: dict[str, list[Any]] = {
        "status": [o.status for o in outcomes],
        "reason": [o.reason if o.status != "ok" else None for o in outcomes],
        "screen_action": [o.action for o in outcomes],
        "redaction_rule": [o.rule for o in outcomes],
        "ocr_words": [o.ocr_words for o in outcomes],
        "ocr_hits": [o.ocr_hits for o in outcomes],
        "frames_decoded": [o.frames_decoded for o in outcomes],
        "screen_evidence": [o.evidence for o in outcomes],
        "policy_rejected": [o.policy_rejected for o in outcomes],
    }
    for column, values in columns.items():
        frame.loc[indexes, column] = values
    for index, outcome in zip(indexes, outcomes, strict=True):
        if outcome.redacted:  # rare: one row at a time
            for column, value in outcome.redacted.items():
                frame.at[index, column] = value
            if ctx.on_rewrite is not None:
                ctx.on_rewrite(frame.loc[index].to_dict())


def _screen_one(record: dict[str, Any], ctx: ScreenContext) -> _Outcome:
    file_id = int(record["file_id"])
    decision = ctx.decisions.get(file_id)
    if decision is not None and decision.state == "rejected":
        return _Outcome("quarantined", str(record.get("reason") or "rejected by a curator"), action="rejected")
    if decision is not None and decision.state == "approved":
        return _approved(record, decision, ctx)

    sop_class = _text(record.get("sop_class_uid"))
    modality = (_text(record.get("modality")) or "").upper()
    image_type = (_text(record.get("image_type")) or "").upper().split("\\")
    if sop_class == _WSI_SOP_CLASS and any(t in image_type for t in _WSI_ASSOCIATED):
        return _wsi_associated(record, [t for t in _WSI_ASSOCIATED if t in image_type][0], ctx)
    if sop_class in DOCUMENT_SOP_CLASSES:
        if ctx.pixels.allow_scanned_documents:
            return _Outcome(action="document-allowed")
        return _Outcome(
            "quarantined",
            f"{DOCUMENT_SOP_CLASSES[sop_class]} document: not allowed by this collection (pixels.allow_scanned_documents)",
            action="document",
        )
    flags = screen_attributes(
        sop_class, modality, _text(record.get("burned_in_annotation")), _text(record.get("recognizable_visual_features"))
    )
    if not flags.flagged and not ctx.pixels.ocr:
        return _Outcome()
    if _int(record.get("rows")) is None:  # no pixel matrix: nothing to read (SR, RT objects)
        return _Outcome() if not flags.flagged else _Outcome("quarantined", flags.reason, action="flagged")
    return _screen_pixels(record, flags, ctx)


def _source_header(record: dict[str, Any], ctx: ScreenContext) -> Any:
    return dcmread(ctx.source_of(record), stop_before_pixels=True, force=True)


def _tokens(header: Any) -> dict[str, str]:
    from imaging_ingest.verify.leaks import identifying_values

    return needle_tokens((n.value.decode("utf-8", "replace"), n.source) for n in identifying_values(header))


def _ocr(path: Path, tokens: dict[str, str], ctx: ScreenContext) -> tuple[Any, OcrResult]:
    image, scale, full = frame_image(path, ctx.pixels.ocr_max_side)
    words = ocr_image(image, scale, ctx.pixels.ocr_min_confidence)
    return image, OcrResult(tuple(words), scale, full, tuple(match_words(words, tokens)))


def _screen_pixels(record: dict[str, Any], flags: ScreenDecision, ctx: ScreenContext) -> _Outcome:
    header = _source_header(record, ctx)
    scanned = (
        str(header.get("ConversionType", "")).upper() in _SCANNED_CONVERSIONS
        and record.get("sop_class_uid") in RISKY_SOP_CLASSES
    ) or str(header.get("Modality", "")).upper() == "DOC"
    rule = _matching_rule(header, ctx.pixels.redaction_rules)
    output = ctx.output_of(record)
    outcome = _Outcome(action="screened")
    if not tesseract_available():
        if rule is not None and not scanned:
            return _redact_with_rule(record, rule, output, None, None, {}, ctx, outcome)
        reasons = [r for r in (flags.reason, "scanned document" if scanned else None) if r]
        return _Outcome("quarantined", "; ".join(reasons or ["OCR requested"]) + "; OCR unavailable", action="no-ocr")
    tokens = _tokens(header)
    try:
        image, result = _ocr(output, tokens, ctx)
    except OcrUnavailable:
        return _Outcome("quarantined", f"{flags.reason or 'OCR requested'}; OCR unavailable", action="no-ocr")
    except Exception as exc:  # noqa: BLE001 - an undecodable frame is a quarantine reason, not a crash
        return _Outcome("quarantined", f"cannot decode a frame for OCR ({type(exc).__name__})", action="undecodable")
    outcome.frames_decoded, outcome.ocr_words, outcome.ocr_hits = 1, len(result.words), len(result.hits)

    if scanned and not ctx.pixels.allow_scanned_documents:
        reasons = [r for r in (_declared(record), "scanned document") if r]
        if result.hits:
            reasons.append("OCR matched identifying text")
        return _quarantine(
            record, outcome, "burned-in PHI: " + ", ".join(reasons) + " (pixels.allow_scanned_documents is off)",
            image, result, ctx,
        )
    if rule is not None and (flags.flagged or result.hits):
        return _redact_with_rule(record, rule, output, image, result, tokens, ctx, outcome)
    if result.hits:
        reasons = [r for r in (_declared(record),) if r] + ["OCR matched identifying text"]
        return _quarantine(record, outcome, "burned-in PHI: " + ", ".join(reasons), image, result, ctx)
    if _declared(record):
        return _quarantine(
            record, outcome, f"burned-in PHI: {_declared(record)}, no redaction rule matches", image, result, ctx
        )
    outcome.action = "ocr-clean"
    return outcome


def _declared(record: dict[str, Any]) -> str | None:
    """The burned-in attribute the file itself sets, if any (a risky class alone is not a declaration)."""
    for column, keyword in (
        ("burned_in_annotation", "BurnedInAnnotation"),
        ("recognizable_visual_features", "RecognizableVisualFeatures"),
    ):
        if (_text(record.get(column)) or "").upper() == "YES":
            return f"{keyword}=YES"
    return None


def _matching_rule(header: Any, rules: list[RedactionRule]) -> RedactionRule | None:
    values = (
        str(header.get("Manufacturer", "") or "") or None,
        str(header.get("ManufacturerModelName", "") or "") or None,
        str(header.get("Modality", "") or "") or None,
        str(header.get("SOPClassUID", "") or "") or None,
        _int(header.get("Rows")),
        _int(header.get("Columns")),
    )
    return next((rule for rule in rules if rule.matches(*values)), None)


def _redact_with_rule(
    record: dict[str, Any],
    rule: RedactionRule,
    output: Path,
    image: Any,
    before: OcrResult | None,
    tokens: dict[str, str],
    ctx: ScreenContext,
    outcome: _Outcome,
) -> _Outcome:
    outcome.rule = rule.id
    try:
        result = redact_file(output, output, rule.regions, rule.id)
    except RedactionError as exc:
        return _quarantine(record, outcome, f"redaction rule {rule.id} could not be applied: {exc}", image, before, ctx)
    outcome.redacted = {"sha256": result.sha256, "md5": result.md5, "size_out": result.size}
    outcome.action = "redacted"
    if not tesseract_available():
        outcome.action = "redacted-unchecked"
        return outcome
    try:
        image_after, after = _ocr(output, tokens, ctx)
    except Exception as exc:  # noqa: BLE001 - as above
        return _quarantine(record, outcome, f"cannot decode a redacted frame for OCR ({type(exc).__name__})", None, None, ctx)
    outcome.frames_decoded += 1
    outcome.ocr_hits = len(after.hits)
    if after.hits:
        return _quarantine(
            record, outcome, f"burned-in PHI: OCR matched identifying text after redaction rule {rule.id}",
            image_after, after, ctx, regions=rule.regions,
        )
    return outcome


def _quarantine(
    record: dict[str, Any],
    outcome: _Outcome,
    reason: str,
    image: Any,
    result: OcrResult | None,
    ctx: ScreenContext,
    regions: list[tuple[int, int, int, int]] | tuple[tuple[int, int, int, int], ...] = (),
) -> _Outcome:
    outcome.status, outcome.reason = "quarantined", reason
    if image is not None and result is not None and ctx.on_evidence is not None:
        evidence = result.evidence() | {"reason": reason, "redaction_rule": outcome.rule}
        ctx.on_evidence(record, "evidence.png", evidence_png(image, result, regions), "image/png")
        ctx.on_evidence(
            record, "evidence.json", json.dumps(evidence, indent=2, sort_keys=True).encode(), "application/json"
        )
        outcome.evidence = True
    return outcome


def _approved(record: dict[str, Any], decision: CuratorDecision, ctx: ScreenContext) -> _Outcome:
    """A curator approved the image: publish it, with the curator's regions blanked when given."""
    outcome = _Outcome(action="approved")
    if decision.regions:
        output = ctx.output_of(record)
        try:
            result = redact_file(output, output, decision.regions, "curator")
        except RedactionError as exc:
            return _Outcome("quarantined", f"curator's redaction could not be applied: {exc}", action="approved")
        outcome.action, outcome.rule = "approved-redacted", "curator"
        outcome.redacted = {"sha256": result.sha256, "md5": result.md5, "size_out": result.size}
    return outcome


def _wsi_associated(record: dict[str, Any], kind: str, ctx: ScreenContext) -> _Outcome:
    """A DICOM WSI LABEL or OVERVIEW image: the slide's label (names, barcodes) is in its pixels."""
    policy = ctx.pathology.dicom_wsi_label_images
    if policy == "redact":
        rows, columns = _int(record.get("rows")) or 0, _int(record.get("cols")) or 0
        output = ctx.output_of(record)
        try:
            result = redact_file(output, output, [(0, 0, columns, rows)], f"wsi-{kind.lower()}")
        except RedactionError as exc:
            return _Outcome("quarantined", f"DICOM WSI {kind} image could not be blanked: {exc}", action="wsi-label")
        outcome = _Outcome(action="redacted", rule=f"wsi-{kind.lower()}")
        outcome.redacted = {"sha256": result.sha256, "md5": result.md5, "size_out": result.size}
        return outcome
    if policy == "quarantine":
        return _Outcome("quarantined", f"DICOM WSI {kind} image: held for curator review", action="wsi-label")
    return _Outcome(
        "quarantined",
        f"DICOM WSI {kind} image: not published (pathology.dicom_wsi_label_images is drop)",
        action="wsi-label",
        policy_rejected=True,
    )
