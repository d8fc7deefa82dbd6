"""Fixtures for PHI beyond headers: a synthetic submission with extras, small slides, rendered text images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imaging_ingest.config import CollectionConfig


@pytest.fixture(scope="session")
def extras_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-patient submission with the extras (US, DICOM WSI, SVS, XLSX), generated once; copy before changing."""
    from imaging_ingest.synth.generate import generate_submission

    root = tmp_path_factory.mktemp("synth-extras") / "submission"
    generate_submission(root, patients=2, seed=11, extras=True)
    return root


@pytest.fixture
def extras_submission(drop_root: Path, extras_cache: Path) -> Path:
    target = drop_root / "site-b-batch-1"
    shutil.copytree(extras_cache, target)
    (target / "READY").write_text("complete\n")
    return target


@pytest.fixture
def svs_path(extras_cache: Path) -> Path:
    return next(extras_cache.rglob("*.svs"))


def render_text(lines: list[str], size: tuple[int, int] = (640, 240), *, background: int = 255) -> np.ndarray:
    """Grey pixels with the lines drawn big enough to OCR (DejaVu Sans, as the synthetic data uses)."""
    from imaging_ingest.synth.documents import load_font as _font

    image = Image.new("L", size, background)
    draw = ImageDraw.Draw(image)
    font = _font(24)
    for i, line in enumerate(lines):
        draw.text((16, 16 + i * 40), line, fill=255 - background, font=font)
    return np.asarray(image)


@pytest.fixture
def pixels_config(demo_config: CollectionConfig) -> CollectionConfig:
    return demo_config
