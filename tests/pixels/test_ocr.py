"""OCR of one downsampled frame: positive and negative images, matching, evidence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from imaging_ingest.screen import ocr
from imaging_ingest.screen.ocr import (
    OcrResult,
    Word,
    evidence_png,
    frame_image,
    match_words,
    needle_tokens,
    ocr_image,
)

from .conftest import render_text

pytestmark = pytest.mark.ocr


def _words(pixels: np.ndarray) -> list[Word]:
    return ocr_image(Image.fromarray(pixels))


def test_ocr_reads_a_name_a_record_number_and_a_date() -> None:
    words = _words(render_text(["QUARTERMAINE THEODORE", "MRN4839201  2019-03-02"]))
    hits = match_words(words, needle_tokens([("QUARTERMAINE^THEODORE", "(0010,0010) PatientName")]))
    matches = {w.text.upper(): w.match for w in hits}
    assert matches["QUARTERMAINE"] == "(0010,0010) PatientName"
    assert matches["THEODORE"] == "(0010,0010) PatientName"
    assert matches["MRN4839201"] == "pattern:record-number"
    assert matches["2019-03-02"] == "pattern:date"
    name = next(w for w in hits if w.text.upper() == "QUARTERMAINE")
    assert 0 <= name.left < 100 and 0 <= name.top < 60 and name.width > 100  # boxed where it was drawn


def test_ocr_finds_nothing_identifying_in_an_image_without_text() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(90, 25, (256, 256)).clip(0, 255).astype(np.uint8)
    words = _words(noise)
    assert match_words(words, needle_tokens([("QUARTERMAINE^THEODORE", "name")])) == []


def test_ocr_of_harmless_device_text_is_not_phi() -> None:
    words = _words(render_text(["TIS 0.4  MI 1.1", "Gain 52  Depth 16 cm"]))
    assert words  # it did read something
    assert match_words(words, needle_tokens([("QUARTERMAINE^THEODORE", "name")])) == []


def test_one_misread_letter_still_matches_a_long_identifier() -> None:
    word = Word("QUARTERMA1NE", 90, 0, 0, 10, 10)
    assert match_words([word], needle_tokens([("QUARTERMAINE", "name")]))[0].match == "name"
    assert match_words([Word("QUART", 90, 0, 0, 10, 10)], needle_tokens([("QUARTERMAINE", "name")])) == []


def test_frame_image_decodes_the_first_frame_only_and_downsamples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7.2", generate_uid()
    frames = np.zeros((5, 2048, 1536), dtype=np.uint8)
    frames[0, :100] = 255
    ds.Rows, ds.Columns, ds.NumberOfFrames = 2048, 1536, 5
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = frames.tobytes()
    path = tmp_path / "mf.dcm"
    ds.save_as(path, enforce_file_format=True)
    calls: list[object] = []
    real = pydicom.pixels.pixel_array

    def spy(src: object, **kwargs: object) -> np.ndarray:
        calls.append(kwargs.get("index"))
        return real(src, **kwargs)

    monkeypatch.setattr(pydicom.pixels, "pixel_array", spy)
    image, scale, full = frame_image(path, max_side=1024)
    assert calls == [0]
    assert full == (1536, 2048) and max(image.size) == 1024 and scale == pytest.approx(0.5)
    assert np.asarray(image)[:40].mean() > 200  # the first frame's white band, not another frame


def test_evidence_png_boxes_the_hits() -> None:
    pixels = render_text(["NAME: QUARTERMAINE"])
    image = Image.fromarray(pixels)
    words = ocr_image(image)
    result = OcrResult(tuple(words), 1.0, image.size, tuple(match_words(words, needle_tokens([("QUARTERMAINE", "n")]))))
    png = Image.open(io.BytesIO(evidence_png(image, result)))
    red = (np.asarray(png.convert("RGB")) == (255, 0, 0)).all(axis=-1)
    assert red.any()
    assert result.evidence()["hits"][0]["match"] in ("n", "pattern:label")


def test_without_tesseract_ocr_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "tesseract_available", lambda: False)
    with pytest.raises(ocr.OcrUnavailable, match="tesseract-ocr"):
        ocr_image(Image.new("L", (10, 10)))
