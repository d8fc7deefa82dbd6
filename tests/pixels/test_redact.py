"""Redaction: pixels inside the boxes are zeroed in every frame, everything outside is untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from imaging_ingest.screen.redact import RedactionError, blank_regions, redact_file


def _image(path: Path, pixels: np.ndarray, photometric: str, *, frames: int = 1, compress: bool = False) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.6.1", generate_uid()
    ds.Modality = "US"
    ds.BurnedInAnnotation = "YES"
    ds.DeidentificationMethod = "imaging-ingest"
    ds.set_pixel_data(pixels, photometric, 8 if pixels.dtype == np.uint8 else 12, generate_instance_uid=False)
    if frames > 1:
        ds.NumberOfFrames = frames
    if compress:
        ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_inside_the_box_is_zeroed_and_outside_untouched(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 255, (120, 160, 3), dtype=np.uint8)
    src = _image(tmp_path / "us.dcm", pixels, "RGB")
    uid = pydicom.dcmread(src).SOPInstanceUID
    result = redact_file(src, tmp_path / "out.dcm", [(10, 5, 50, 20), (150, 100, 40, 40)], "rule-1")
    out = pydicom.dcmread(tmp_path / "out.dcm")
    arr = out.pixel_array
    assert (arr[5:25, 10:60] == 0).all()
    assert (arr[100:120, 150:160] == 0).all()  # the second box clipped at the image's edge
    mask = np.ones(arr.shape[:2], dtype=bool)
    mask[5:25, 10:60] = False
    mask[100:120, 150:160] = False
    assert np.array_equal(arr[mask], pixels[mask])
    assert out.BurnedInAnnotation == "NO"
    assert out.SOPInstanceUID == uid
    assert "pixel redaction rule-1" in list(out.DeidentificationMethod)
    assert "113101" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert result.regions == ((10, 5, 50, 20), (150, 100, 40, 40))
    assert result.size == (tmp_path / "out.dcm").stat().st_size


def test_every_frame_is_redacted_and_compressed_input_is_decoded(tmp_path: Path) -> None:
    frames = np.full((3, 64, 64), 200, dtype=np.uint8)
    src = _image(tmp_path / "mf.dcm", frames, "MONOCHROME2", frames=3, compress=True)
    redact_file(src, src, [(0, 0, 64, 8)], "band")
    out = pydicom.dcmread(src)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # written uncompressed, losslessly
    arr = out.pixel_array
    assert arr.shape == (3, 64, 64)
    assert (arr[:, :8] == 0).all() and (arr[:, 8:] == 200).all()


def test_redaction_is_deterministic(tmp_path: Path) -> None:
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096
    src = _image(tmp_path / "a.dcm", pixels, "MONOCHROME2")
    one = redact_file(src, tmp_path / "1.dcm", [(1, 1, 5, 5)], "r")
    two = redact_file(src, tmp_path / "2.dcm", [(1, 1, 5, 5)], "r")
    assert one.sha256 == two.sha256


def test_a_file_without_pixels_cannot_be_redacted(tmp_path: Path) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", generate_uid()
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    with pytest.raises(RedactionError, match="no pixel data"):
        redact_file(tmp_path / "sr.dcm", tmp_path / "o.dcm", [(0, 0, 1, 1)], "r")


def test_blank_regions_leaves_its_input_alone() -> None:
    arr = np.ones((4, 4), dtype=np.uint8)
    out = blank_regions(arr, [(0, 0, 2, 2)], frames=1)
    assert arr.sum() == 16 and out.sum() == 12
