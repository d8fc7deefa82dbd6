"""SVS / pyramidal TIFF scrub: label and macro gone, description scrubbed, tiles bit-identical, OpenSlide opens it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from imaging_ingest.config.sections import DEFAULT_DESCRIPTION_KEYS
from imaging_ingest.screen.slides import (
    SlideError,
    classify_pages,
    deidentify_slide,
    removed_values,
    scrub_aperio_description,
    verify_slide,
)
from imaging_ingest.synth.extras import SlideText, write_svs

pytestmark = pytest.mark.openslide

TEXT = SlideText(
    filename="S19-4711 QUARTERMAINE", date="03/02/19", time="10:11:12", user="kingsbury", barcode="S19-4711",
    scanner="SS12345", label_lines=["QUARTERMAINE THEODORE", "MRN4839201"], artist="KINGSBURY FLETCHER",
    host="RIVERBENDPATH01", datetime_tag="2019:03:02 10:11:12",
)


@pytest.fixture
def openslide() -> Any:
    """openslide-python, imported here: it loads the C library on import, which ``make unit`` need not have."""
    import openslide

    return openslide


@pytest.fixture
def slide(tmp_path: Path) -> Path:
    return write_svs(tmp_path / "QUARTERMAINE.svs", 1024, 768, TEXT, seed=5)


def _deid(src: Path, dst: Path, **kw: object):
    return deidentify_slide(src, dst, keep_description_keys=DEFAULT_DESCRIPTION_KEYS, **kw)  # type: ignore[arg-type]


def test_synthetic_slide_is_an_aperio_slide_with_label_and_macro(openslide: Any, slide: Path) -> None:
    with openslide.OpenSlide(str(slide)) as source:
        assert source.properties[openslide.PROPERTY_NAME_VENDOR] == "aperio"
        assert {"label", "macro", "thumbnail"} <= set(source.associated_images)
        assert source.properties["aperio.Filename"] == TEXT.filename


def test_label_and_macro_are_removed_and_tiles_stay_bit_identical(openslide: Any, slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.svs"
    result = _deid(slide, out)
    assert result.pages_removed == {"label": 1, "macro": 1}
    assert verify_slide(slide, out, result.needles) == []
    with openslide.OpenSlide(str(out)) as deid, openslide.OpenSlide(str(slide)) as source:
        assert deid.properties[openslide.PROPERTY_NAME_VENDOR] == "aperio"
        assert set(deid.associated_images) == {"thumbnail"}
        assert deid.level_dimensions == source.level_dimensions
        assert deid.properties["aperio.AppMag"] == "20" and deid.properties["aperio.MPP"] == "0.4990"
        for key in ("Filename", "Date", "Time", "User", "Barcode", "ScanScope ID"):
            assert f"aperio.{key}" not in deid.properties
        region = (200, 100), 0, (300, 300)
        assert np.array_equal(np.asarray(deid.read_region(*region)), np.asarray(source.read_region(*region)))
    with tifffile.TiffFile(slide) as a, tifffile.TiffFile(out) as b:
        level_a, level_b = a.pages[0], b.pages[0]
        assert level_a.databytecounts == level_b.databytecounts
        with open(slide, "rb") as fa, open(out, "rb") as fb:
            for oa, ob, n in zip(level_a.dataoffsets, level_b.dataoffsets, level_a.databytecounts, strict=True):
                fa.seek(oa)
                fb.seek(ob)
                assert fa.read(n) == fb.read(n)
        assert 306 not in level_b.tags and 305 not in level_b.tags and 315 not in level_b.tags and 316 not in level_b.tags
    data = out.read_bytes()
    for value in (b"QUARTERMAINE", b"S19-4711", b"kingsbury", b"KINGSBURY", b"RIVERBENDPATH01", b"2019:03:02", b"03/02/19"):
        assert value not in data


def test_description_scrub_keeps_scan_keys_only() -> None:
    description = TEXT.description(1024, 768, 256)
    scrubbed, removed_keys, removed = scrub_aperio_description(description, DEFAULT_DESCRIPTION_KEYS)
    assert scrubbed.startswith("Aperio Image Library v12.0.15 \r\n1024x768 [0,100 1024x768] (256x256) JPEG/RGB Q=70|")
    assert "AppMag = 20" in scrubbed and "MPP = 0.4990" in scrubbed and "Left = 25.1" in scrubbed
    assert set(removed_keys) == {"ScanScope ID", "Filename", "Date", "Time", "User", "Barcode"}
    assert "S19-4711 QUARTERMAINE" in removed and "QUARTERMAINE" not in scrubbed
    odd, _, values = scrub_aperio_description("Aperio Image Library v1\r\n10x10 DOE JOHN (256x256)|AppMag = 20", ["AppMag"])
    assert odd == "Aperio Image Library v1\r\n10x10 (256x256)|AppMag = 20" and "DOE" in values


def test_the_thumbnail_can_be_dropped_too(openslide: Any, slide: Path, tmp_path: Path) -> None:
    result = _deid(slide, tmp_path / "out.svs", keep_thumbnail=False)
    assert result.pages_removed == {"label": 1, "macro": 1, "thumbnail": 1}
    with openslide.OpenSlide(str(tmp_path / "out.svs")) as deid:
        assert set(deid.associated_images) == set()


def test_verification_catches_a_label_left_behind_and_changed_tiles(slide: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.svs"
    shutil.copy(slide, copy)
    problems = verify_slide(slide, copy, removed_values(slide, keep_description_keys=DEFAULT_DESCRIPTION_KEYS))
    assert any("label/macro" in p for p in problems)
    assert any("removed from the slide's metadata" in p for p in problems)
    other = write_svs(tmp_path / "other.svs", 1024, 768, TEXT, seed=6)
    result = _deid(other, tmp_path / "other-out.svs")
    assert any("differs from the source" in p for p in verify_slide(slide, tmp_path / "other-out.svs", result.needles))


def test_generic_pyramidal_tiff(tmp_path: Path) -> None:
    src = tmp_path / "generic.tif"
    rng = np.random.default_rng(1)
    with tifffile.TiffWriter(src) as tw:
        tw.write(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8), tile=(256, 256), photometric="rgb",
                 description="scanned 2019-03-02 by KINGSBURY", compression="zlib", metadata=None,
                 datetime="2019:03:02 10:11:12")
        tw.write(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), tile=(128, 128), photometric="rgb",
                 subfiletype=1, compression="zlib", metadata=None)
        tw.write(np.full((100, 200, 3), 250, np.uint8), photometric="rgb", description="label QUARTERMAINE",
                 metadata=None, subfiletype=1)
    info_pages = classify_pages(__import__("tifftools").read_tiff(str(src))["ifds"])
    assert [p.role for p in info_pages] == ["level", "level", "label"]
    out = tmp_path / "out.tif"
    result = _deid(src, out)
    assert result.vendor == "generic-tiff" and result.pages_removed == {"label": 1}
    assert verify_slide(src, out, result.needles) == []
    assert b"KINGSBURY" not in out.read_bytes() and b"QUARTERMAINE" not in out.read_bytes()


def test_a_stripped_tiff_is_not_a_slide(tmp_path: Path) -> None:
    src = tmp_path / "flat.tif"
    tifffile.imwrite(src, np.zeros((64, 64), np.uint8))
    with pytest.raises(SlideError, match="not a tiled pyramidal TIFF"):
        _deid(src, tmp_path / "o.tif")
    (tmp_path / "junk.svs").write_bytes(b"not a tiff at all")
    with pytest.raises(SlideError, match="not a readable TIFF"):
        _deid(tmp_path / "junk.svs", tmp_path / "o.tif")


def test_deidentifying_twice_gives_identical_bytes(slide: Path, tmp_path: Path) -> None:
    _deid(slide, tmp_path / "a.svs")
    _deid(slide, tmp_path / "b.svs")
    assert (tmp_path / "a.svs").read_bytes() == (tmp_path / "b.svs").read_bytes()
