"""OCR of one downsampled frame, and matching what it reads against PHI.

Header de-identification cannot see text drawn into pixels. Screening reads the text of
*one* frame (the first), downsampled so its longest side is at most ``max_side``:
burned-in annotations are drawn on every frame of a clip in the same place, and a
1024-pixel frame is enough for Tesseract to read the sizes devices draw. A frame is
decoded with ``pydicom.pixels.pixel_array(path, index=0)``, which decodes that frame
only, never the whole multi-frame object.

What Tesseract reads is compared with the source file's own identifying values (names
and their parts, IDs, dates in the spellings people write them; the same values the leak
verifier searches for) and with generic PHI patterns (dates, record-number-like digit
runs, labels such as ``DOB``). Matches are returned with their boxes in the frame's full
resolution, for the curator's evidence; the values themselves never leave the evidence.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "OcrResult",
    "OcrUnavailable",
    "Word",
    "evidence_png",
    "frame_image",
    "match_words",
    "needle_tokens",
    "ocr_image",
    "tesseract_available",
]

#: Generic PHI patterns for one OCR'd word (after punctuation at its ends is stripped).
PHI_PATTERNS: dict[str, re.Pattern[str]] = {
    "date": re.compile(
        r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|(?:19|20)\d{6}"
        r"|\d{1,2}-?(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*-?\d{2,4})$",
        re.IGNORECASE,
    ),
    "record-number": re.compile(r"^(?:[A-Z]{1,4}[-#:]?)?\d{6,}$", re.IGNORECASE),
    "label": re.compile(r"^(?:NAME|PATIENT|PAT|DOB|D\.O\.B|BIRTH|BORN|MRN|SSN|ACC|ACCESSION|ADDRESS|PHONE)$", re.IGNORECASE),
}
_STRIP = " \t.,;:()[]{}'\"|"


class OcrUnavailable(RuntimeError):
    """Tesseract is not installed (Debian: tesseract-ocr): risky images cannot be read."""


@functools.cache
def tesseract_available() -> bool:
    try:
        import pytesseract

        pytesseract.get_tesseract_version()
    except Exception:  # noqa: BLE001 - missing module or binary: both mean 'no OCR here'
        return False
    return True


@dataclass(frozen=True)
class Word:
    """One word Tesseract read, boxed in full-resolution pixel coordinates."""

    text: str
    confidence: float
    left: int
    top: int
    width: int
    height: int
    match: str | None = None  # what it matched: a source tag such as "(0010,0010) PatientName", or "pattern:date"

    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.width, self.height)


@dataclass(frozen=True)
class OcrResult:
    words: tuple[Word, ...]
    scale: float  # downsampled size / full size
    size: tuple[int, int]  # full-resolution (columns, rows)
    hits: tuple[Word, ...] = field(default=())

    @property
    def identifying_hits(self) -> int:
        return sum(1 for w in self.hits if w.match and not w.match.startswith("pattern:"))

    @property
    def pattern_hits(self) -> int:
        return sum(1 for w in self.hits if w.match and w.match.startswith("pattern:"))

    def evidence(self) -> dict[str, Any]:
        """Every word with its box and match: restricted (quarantine tier) only, it holds the text."""
        return {
            "frame": 0,
            "full_size": list(self.size),
            "ocr_scale": self.scale,
            "words": [asdict(w) for w in self.words],
            "hits": [asdict(w) for w in self.hits],
        }


def _to_uint8(arr: np.ndarray, photometric: str | None) -> np.ndarray:
    """A displayable 8-bit grey image of one frame (colour to grey, wide ranges windowed)."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif arr.ndim == 3:  # planar or unexpected: take the first sample
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        values = arr.astype(np.float32)
        low, high = np.percentile(values, (0.5, 99.5)) if values.size else (0.0, 1.0)
        if high <= low:
            low, high = float(values.min(initial=0)), float(values.max(initial=1)) or 1.0
        arr = np.clip((values - low) * (255.0 / max(high - low, 1e-6)), 0, 255)
    out = arr.astype(np.uint8)
    if (photometric or "").upper() == "MONOCHROME1":
        out = 255 - out
    return out


def frame_image(path: str | Path, max_side: int = 1024) -> tuple[Image.Image, float, tuple[int, int]]:
    """Decode the first frame of a DICOM file only; return it grey, downsampled, with its scale and full size."""
    from pydicom import dcmread
    from pydicom.pixels import pixel_array

    header = dcmread(path, stop_before_pixels=True, specific_tags=[0x00280004])
    arr = pixel_array(str(path), index=0)
    image = Image.fromarray(_to_uint8(arr, header.get("PhotometricInterpretation")))
    full = image.size
    if max(full) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image, image.size[0] / full[0], full


def ocr_image(image: Image.Image, scale: float = 1.0, min_confidence: float = 50) -> list[Word]:
    """Run Tesseract (sparse text: annotations are scattered, not paragraphs) over one image."""
    if not tesseract_available():
        raise OcrUnavailable("Tesseract is not installed (Debian package tesseract-ocr)")
    import pytesseract

    data = pytesseract.image_to_data(image, config="--psm 11", output_type=pytesseract.Output.DICT)
    words = []
    for i, text in enumerate(data["text"]):
        text = (text or "").strip()
        confidence = float(data["conf"][i])
        if not text or confidence < min_confidence:
            continue
        words.append(
            Word(
                text=text,
                confidence=confidence,
                left=int(round(data["left"][i] / scale)),
                top=int(round(data["top"][i] / scale)),
                width=max(1, int(round(data["width"][i] / scale))),
                height=max(1, int(round(data["height"][i] / scale))),
            )
        )
    return words


def needle_tokens(values: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Identifying values (value, source) as the single words OCR would read, upper-cased.

    A name such as ``DOE^JOHN`` becomes ``DOE`` and ``JOHN`` (a word of OCR output never
    spans a space); short tokens are left out, as they would match everyday words.
    """
    tokens: dict[str, str] = {}
    for value, source in values:
        for token in re.split(r"[\s\^=,]+", value.upper()):
            token = token.strip(_STRIP)
            if len(token) >= 4 and not token.isdigit() or token.isdigit() and len(token) >= 5:
                tokens.setdefault(token, source)
    return tokens


def _near(a: str, b: str) -> bool:
    """Equal, or one edit apart for words of six characters or more (OCR misreads a letter)."""
    if a == b:
        return True
    if min(len(a), len(b)) < 6 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def match_words(words: Sequence[Word], tokens: dict[str, str]) -> list[Word]:
    """The words that are (or nearly are) an identifying value, or that look like PHI."""
    hits = []
    for word in words:
        text = word.text.upper().strip(_STRIP)
        if not text:
            continue
        source = tokens.get(text) or next((s for t, s in tokens.items() if _near(text, t)), None)
        if source is not None:
            hits.append(_with_match(word, source))
            continue
        for name, pattern in PHI_PATTERNS.items():
            if pattern.match(text):
                hits.append(_with_match(word, f"pattern:{name}"))
                break
    return hits


def _with_match(word: Word, match: str) -> Word:
    return Word(word.text, word.confidence, word.left, word.top, word.width, word.height, match)


def evidence_png(image: Image.Image, result: OcrResult, regions: Iterable[tuple[int, int, int, int]] = ()) -> bytes:
    """The downsampled frame with every word boxed (hits red, other words yellow, redaction regions blue)."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    scale = result.scale

    def rect(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
        x, y, w, h = box
        return (x * scale, y * scale, (x + w) * scale, (y + h) * scale)

    for x, y, w, h in regions:
        draw.rectangle(rect((x, y, w, h)), outline=(0, 128, 255), width=2)
    hit_boxes = {w.box() for w in result.hits}
    for word in result.words:
        if word.box() not in hit_boxes:
            draw.rectangle(rect(word.box()), outline=(255, 200, 0), width=1)
    for word in result.hits:
        draw.rectangle(rect(word.box()), outline=(255, 0, 0), width=2)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
