"""Blank regions of burned-in text in a de-identified DICOM file's pixels.

The way CTP's DicomPixelAnonymizer does it: a rule (device and geometry) names boxes,
and every frame has those boxes set to 0. Compressed pixel data is decoded first and the
result is written uncompressed (Explicit VR Little Endian): lossless, and never a second
lossy generation. The file then says what was done: ``BurnedInAnnotation`` is ``NO``, the
Clean Pixel Data Option code (113101) joins the de-identification method codes, and
``DeidentificationMethod`` names the rule. UIDs stay as the de-identifier made them, so a
redacted file is the only version of its instance that is ever published.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from imaging_ingest.core.checksum import file_digests

__all__ = ["RedactionError", "RedactionResult", "blank_regions", "redact_file"]

_CLEAN_PIXEL_DATA = ("113101", "DCM", "Clean Pixel Data Option")


class RedactionError(Exception):
    """Pixels that cannot be redacted; the message is PHI-free and becomes a quarantine reason."""


@dataclass(frozen=True)
class RedactionResult:
    sha256: str
    md5: str
    size: int
    regions: tuple[tuple[int, int, int, int], ...]
    frames: int


def blank_regions(arr: np.ndarray, regions: Iterable[tuple[int, int, int, int]], frames: int) -> np.ndarray:
    """Set each ``(x, y, width, height)`` box to 0 in every frame (boxes are clipped to the image)."""
    out = arr.copy()
    stack = out if frames > 1 else out[np.newaxis, ...]
    rows, columns = stack.shape[1], stack.shape[2]
    for x, y, w, h in regions:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(columns, x + w), min(rows, y + h)
        if x1 > x0 and y1 > y0:
            stack[:, y0:y1, x0:x1, ...] = 0
    return out


def _record(ds: Dataset, rule_id: str) -> None:
    ds.BurnedInAnnotation = "NO"
    existing = ds.get("DeidentificationMethod")
    methods = [str(v) for v in existing] if isinstance(existing, MultiValue) else [str(existing)] if existing else []
    note = f"pixel redaction {rule_id}"[:64]
    if note not in methods:
        ds.DeidentificationMethod = [*methods, note] if methods else note
    codes = ds.get("DeidentificationMethodCodeSequence")
    if codes is None:
        ds.DeidentificationMethodCodeSequence = Sequence()
        codes = ds.DeidentificationMethodCodeSequence
    if not any(getattr(item, "CodeValue", None) == _CLEAN_PIXEL_DATA[0] for item in codes):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = _CLEAN_PIXEL_DATA
        codes.append(item)


def redact_file(
    src: str | Path, dst: str | Path, regions: Iterable[tuple[int, int, int, int]], rule_id: str
) -> RedactionResult:
    """Write ``src`` with ``regions`` blanked in every frame to ``dst`` (which may be ``src``)."""
    boxes = tuple((int(x), int(y), int(w), int(h)) for x, y, w, h in regions)
    ds = dcmread(src)
    if "PixelData" not in ds:
        raise RedactionError("no pixel data to redact")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - the decoder's type names the cause; no value in it
        raise RedactionError(
            f"cannot decode pixel data for redaction (transfer syntax {ds.file_meta.TransferSyntaxUID}, "
            f"{type(exc).__name__})"
        ) from None
    if photometric.startswith("YBR") and arr.ndim >= 3 and arr.shape[-1] == 3:
        photometric = "RGB"  # pydicom converted the decoded YCbCr to RGB
    redacted = blank_regions(arr, boxes, frames)
    bits_stored = int(ds.get("BitsStored", arr.dtype.itemsize * 8))
    ds.set_pixel_data(redacted, photometric, bits_stored, generate_instance_uid=False)
    if "NumberOfFrames" in ds and frames == 1:
        ds.NumberOfFrames = 1
    _record(ds, rule_id)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.redacting")
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, dst)
    digests = file_digests(dst)
    return RedactionResult(digests.sha256, digests.md5, digests.size, boxes, frames)
