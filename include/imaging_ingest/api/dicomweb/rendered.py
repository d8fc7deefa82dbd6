"""Frames of an instance: their encoded bytes (WADO-RS frames) and consumer images (rendered, thumbnail).

Frames are cut from the object's pixel data without decoding: an uncompressed frame is
its slice of the pixel data, a compressed frame its fragments (``pydicom.encaps``).
Rendered images decode the frame (pydicom, numpy), apply the window the header gives
(else the frame's own range), and write JPEG or PNG with Pillow.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

__all__ = ["Frames", "NoPixelData", "read_frames", "render"]

#: A transfer syntax that is uncompressed little endian: its frames are served as explicit VR little endian.
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
EXPLICIT_LE = "1.2.840.10008.1.2.1"

#: The media type of a compressed frame, by transfer syntax (PS3.18 table 8.7.3-2).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}


class NoPixelData(Exception):
    """The instance has no pixel data, or not the frame asked for."""


@dataclass(frozen=True)
class Frames:
    """An instance's pixel data, ready to cut frames from."""

    dataset: Dataset
    transfer_syntax: str
    count: int

    @property
    def compressed(self) -> bool:
        return self.transfer_syntax not in _UNCOMPRESSED

    @property
    def served_syntax(self) -> str:
        """The transfer syntax a frame is sent in: the original one, uncompressed as explicit VR LE."""
        return EXPLICIT_LE if not self.compressed else self.transfer_syntax

    def frame_range(self, number: int) -> tuple[int, int]:
        """Where uncompressed frame ``number`` (1-based) lies in the pixel data: ``(start, end)``."""
        ds = self.dataset
        bits = int(ds.BitsAllocated)
        pixels = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
        if bits == 1:  # frames of single-bit data need not start on a byte boundary; serve whole bytes
            return ((number - 1) * pixels) // 8, -(-(number * pixels) // 8)
        size = pixels * bits // 8
        return (number - 1) * size, number * size

    def frame(self, number: int) -> bytes:
        """Frame ``number`` (1-based) as stored: a slice, or a compressed frame's fragments joined."""
        if not 1 <= number <= self.count:
            raise NoPixelData(f"the instance has {self.count} frame(s); there is no frame {number}")
        data = self.dataset.PixelData
        if self.compressed:
            for index, frame in enumerate(generate_frames(data, number_of_frames=self.count), start=1):
                if index == number:
                    return bytes(frame)
            raise NoPixelData(f"frame {number} is missing from the encapsulated pixel data")
        start, end = self.frame_range(number)
        return bytes(data[start:end])


def read_frames(data: bytes) -> Frames:
    """Parse an instance's bytes for its frames; ``NoPixelData`` when it has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds:
        raise NoPixelData("the instance has no pixel data")
    syntax = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in ds.file_meta else EXPLICIT_LE
    count = int(ds.get("NumberOfFrames") or 1)
    return Frames(ds, syntax, count)


def _to_8bit(ds: Dataset, pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):  # colour: already 8-bit per sample for display
        if str(ds.get("PhotometricInterpretation", "")).startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, str(ds.PhotometricInterpretation), "RGB")
        return np.clip(pixels, 0, 255).astype(np.uint8)
    values = pixels.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        center = float(center[0] if isinstance(center, list | tuple) or type(center).__name__ == "MultiValue" else center)
        width = float(width[0] if isinstance(width, list | tuple) or type(width).__name__ == "MultiValue" else width)
        low, high = center - width / 2, center + width / 2
    else:
        low, high = float(values.min()), float(values.max())
    scaled = (values - low) / max(high - low, 1e-9) * 255.0
    out = np.clip(scaled, 0, 255).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 255 - out
    return out


def render(frames: Frames, number: int, media_type: str, size: int | None = None, quality: int = 90) -> bytes:
    """Frame ``number`` as a JPEG or PNG (``size`` bounds the longer side, for thumbnails)."""
    if not 1 <= number <= frames.count:
        raise NoPixelData(f"the instance has {frames.count} frame(s); there is no frame {number}")
    ds = frames.dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pixels = ds.pixel_array
    if frames.count > 1:
        pixels = pixels[number - 1]
    image = Image.fromarray(_to_8bit(ds, pixels))
    if size:
        image.thumbnail((size, size))
    out = io.BytesIO()
    if media_type == "image/png":
        image.save(out, format="PNG", optimize=False)
    else:
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(out, format="JPEG", quality=quality)
    return out.getvalue()

