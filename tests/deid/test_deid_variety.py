"""Real-world variety at inventory: every standard modality, files without file meta, truncated and transcoded twins."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from imaging_ingest.config import CollectionConfig, DropConfig, License, default_modalities
from imaging_ingest.deid import Deidentifier
from imaging_ingest.inventory.scan import inventory_frame, read_header

from .deid_helpers import SECRET, ct_dataset, patient, resolve, write


def test_default_modalities_are_every_defined_term() -> None:
    terms = default_modalities()
    assert {"CT", "MR", "MG", "CR", "DX", "US", "NM", "XA", "ECG", "SM", "RTSTRUCT", "SEG", "SR", "PT"} <= set(terms)
    assert "ST" in terms  # retired terms are still accepted
    assert len(terms) == len(set(terms)) >= 80
    config = CollectionConfig(id="x_y", title="xyz", license=License.CC_BY_4_0, drop=DropConfig(url="file:///tmp"))
    assert tuple(config.modalities) == terms
    restricted = config.model_copy(update={"modalities": ["CT"]})
    assert restricted.modalities == ["CT"]


def _record(i: int, path: Path) -> dict[str, object]:
    return {"file_id": i, "source_path": path.name, "sha256_source": hashlib.sha256(path.read_bytes()).hexdigest(),
            "status": "ok", "reason": None, "path": str(path)}


def _inventory(paths: list[Path], modalities: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    records = [_record(i, p) for i, p in enumerate(paths)]
    frame = inventory_frame(records, lambda r: Path(r["path"]), modalities or default_modalities())
    return frame.set_index("source_path")


def test_pixel_screening_still_flags_modalities_that_carry_burned_in_text() -> None:
    from imaging_ingest.screen.pixels import screen_attributes

    assert screen_attributes(None, "US", None).flagged and screen_attributes(None, "XA", None).flagged
    assert not screen_attributes(None, "MG", None).flagged


@pytest.mark.parametrize("modality", ["MG", "CR", "DX", "US", "NM", "XA"])
def test_modalities_are_not_quarantined_by_default(modality: str, tmp_path: Path) -> None:
    ds = ct_dataset()
    ds.Modality = modality
    frame = _inventory([write(ds, tmp_path / "a.dcm")])
    assert frame.loc["a.dcm", "status"] == "ok"
    restricted = _inventory([tmp_path / "a.dcm"], ["CT"])
    assert restricted.loc["a.dcm", "reason"] == f"modality {modality} is not accepted by this collection"


def _without_meta(ds: pydicom.Dataset, path: Path, implicit: bool, little: bool) -> Path:
    """The data set alone from byte 0, as ACR-NEMA era software wrote it: no preamble, no DICM, no file meta."""
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, little
    write_dataset(buffer, ds.copy())
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize(
    ("implicit", "little", "syntax"),
    [(True, True, ImplicitVRLittleEndian), (False, True, ExplicitVRLittleEndian), (False, False, ExplicitVRBigEndian)],
)
def test_files_without_preamble_and_meta_are_read_and_published_as_part10(implicit: bool, little: bool, syntax: str,
                                                                          tmp_path: Path) -> None:
    src = _without_meta(ct_dataset(), tmp_path / "acrnema.dcm", implicit, little)
    assert src.read_bytes()[:2] in (b"\x08\x00", b"\x00\x08") and b"DICM" not in src.read_bytes()[:200]
    header = read_header(src, src.name)
    assert header.reason is None and header.values["transfer_syntax"] == syntax
    out = tmp_path / "out.dcm"
    Deidentifier(resolve(), SECRET).deidentify_file(src, out, patient())
    assert out.read_bytes()[128:132] == b"DICM"
    written = pydicom.dcmread(out)  # no force: a proper Part 10 file
    assert written.file_meta.TransferSyntaxUID == syntax
    assert written.PatientName != ct_dataset().PatientName and written.PixelData == ct_dataset().PixelData


def test_junk_is_still_refused(tmp_path: Path) -> None:
    junk = {
        "readme.dcm": b"This is not DICOM at all\n" * 4,
        "group8.dcm": b"\x08\x00\x05\x00junk junk junk junk",  # starts like a data set, states no SOP UIDs
        "icc.dcm": bytes(range(256)),
    }
    for name, data in junk.items():
        (tmp_path / name).write_bytes(data)
        reason = read_header(tmp_path / name, name).reason
        assert reason is not None and reason.startswith("not a DICOM file"), (name, reason)


def test_a_truncated_twin_is_quarantined_and_its_original_published(tmp_path: Path) -> None:
    good = write(ct_dataset(rows=16), tmp_path / "good.dcm")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(good.read_bytes()[:-100])  # same SOP Instance UID, pixel data cut short
    frame = _inventory([good, cut])
    assert frame.loc["good.dcm", "status"] == "ok"
    assert frame.loc["cut.dcm", "status"] == "quarantined"
    assert frame.loc["cut.dcm", "reason"] == "truncated file: element (7FE0,0010) PixelData is cut short"


def test_a_header_cut_short_is_named(tmp_path: Path) -> None:
    ds = ct_dataset(pixels=False)
    good = write(ds, tmp_path / "good.dcm")
    data = good.read_bytes()
    for cut in (1, 3, 7, 11):  # into the last value, and into the last element's header (pydicom drops it)
        (tmp_path / "cut.dcm").write_bytes(data[:-cut])
        reason = read_header(tmp_path / "cut.dcm", "cut.dcm").reason
        assert reason is not None and reason.startswith("truncated file: ") and "(0028,105" in reason, (cut, reason)
    assert read_header(good, "good.dcm").reason is None


def test_the_same_instance_in_other_transfer_syntaxes_is_published_once(tmp_path: Path) -> None:
    ds = ct_dataset()
    paths = [
        write(ds.copy(), tmp_path / "explicit.dcm", ExplicitVRLittleEndian),
        write(ds.copy(), tmp_path / "implicit.dcm", ImplicitVRLittleEndian),
        _without_meta(ds, tmp_path / "bigendian.dcm", False, False),
    ]
    changed = ds.copy()
    changed.ImageComments = "another image"
    frame = _inventory(paths)
    assert list(frame["status"]) == ["ok", "quarantined", "quarantined"]
    assert set(frame["reason"].dropna()) == {"duplicate of file 0: the same instance in another transfer syntax"}
    conflict = write(changed, tmp_path / "conflict.dcm")
    frame = _inventory([tmp_path / "explicit.dcm", tmp_path / "implicit.dcm", conflict])
    assert set(frame["reason"]) == {"SOPInstanceUID shared by 3 files with different content"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.sampled_from(["part10", "nometa"]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(1, 10_000)),
)
def test_corrupt_headers_get_a_reason_never_an_exception(base: str, edits: list[tuple[int, int]], cut: int | None,
                                                         tmp_path: Path) -> None:
    ds = ct_dataset()
    path = write(ds, tmp_path / "good.dcm") if base == "part10" else _without_meta(ds, tmp_path / "good.dcm", True, True)
    data = bytearray(path.read_bytes())
    for offset, value in edits:
        data[offset % len(data)] = value
    if cut is not None:
        data = data[: max(1, cut % len(data))]
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(bytes(data))
    header = read_header(bad, "bad.dcm")  # unknown VRs, wrong lengths, cut elements: all become reasons
    assert header.reason is None or isinstance(header.reason, str)


def _rgb(ds: pydicom.Dataset, planar: int, image: np.ndarray) -> pydicom.Dataset:
    ds = ds.copy()
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = planar
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = (image if planar == 0 else image.transpose(2, 0, 1)).astype("u1").tobytes()
    return ds


def test_pixels_coded_differently_but_equal_when_decoded_are_one_instance(tmp_path: Path) -> None:
    image = np.arange(4 * 4 * 3, dtype="u1").reshape(4, 4, 3)
    by_pixel = write(_rgb(ct_dataset(), 0, image), tmp_path / "by_pixel.dcm")
    by_plane = write(_rgb(ct_dataset(), 1, image), tmp_path / "by_plane.dcm")
    frame = _inventory([by_pixel, by_plane])
    assert list(frame["status"]) == ["ok", "quarantined"]
    assert frame.loc["by_plane.dcm", "reason"] == (
        "duplicate of file 0: the same instance with its pixels coded differently (identical when decoded)"
    )
    stated_16 = ct_dataset()
    stated_16.BitsStored, stated_16.HighBit = 16, 15  # what a JPEG 2000 encoder states for a 12-bit image
    frame = _inventory([write(ct_dataset(), tmp_path / "bits12.dcm"), write(stated_16, tmp_path / "bits16.dcm")])
    assert list(frame["status"]) == ["ok", "quarantined"]
    other = image.copy()
    other[3, 3, 2] += 1  # one sample differs: another image under the same UID
    changed = write(_rgb(ct_dataset(), 1, other), tmp_path / "changed.dcm")
    frame = _inventory([by_pixel, changed])
    assert set(frame["reason"]) == {"SOPInstanceUID shared by 2 files with different content"}
    header_differs = _rgb(ct_dataset(), 1, image)
    header_differs.SeriesDescription = "AXIAL 3MM"
    frame = _inventory([by_pixel, write(header_differs, tmp_path / "header.dcm")])
    assert set(frame["reason"]) == {"SOPInstanceUID shared by 2 files with different content"}


def test_instance_uids_in_the_wrong_syntax_are_remapped_unless_kept(tmp_path: Path) -> None:
    from imaging_ingest.catalog import Catalog
    from imaging_ingest.config import DeidConfig, DeidOption
    from imaging_ingest.deid import Profile
    from imaging_ingest.pipeline.localrun import deidentify_tree

    ds = ct_dataset()
    hashed = {k: hashlib.sha256(k.encode()).hexdigest() for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")}
    for keyword, value in hashed.items():  # what a hashing pseudonymiser upstream leaves: 64 hex digits
        setattr(ds, keyword, value)
    src = write(ds, tmp_path / "src" / "hashed.dcm")
    default = Profile.load().resolve(DeidConfig())
    assert default.remapped_instance_uids() == set(hashed)
    ok = inventory_frame([_record(0, src)], lambda r: Path(r["path"]), default_modalities(),
                         remapped_uids=default.remapped_instance_uids())
    assert ok["status"].tolist() == ["ok"]
    strict = _inventory([src])  # nothing said about remapping: refused as before
    assert strict["reason"].tolist() == ["invalid SOPInstanceUID (not a valid UID)"]
    ds.SOPInstanceUID = "1.2\\3.4"  # two values: not one identifier
    bad = write(ds, tmp_path / "bad.dcm")
    frame = inventory_frame([_record(0, bad)], lambda r: Path(r["path"]), default_modalities(),
                            remapped_uids=default.remapped_instance_uids())
    assert frame["status"].tolist() == ["quarantined"]
    retained = Profile.load().resolve(DeidConfig(options=[DeidOption.RETAIN_UIDS]))
    assert retained.remapped_instance_uids() == frozenset()
    kept = Profile.load().resolve(DeidConfig(overrides={"SeriesInstanceUID": {"action": "keep"}}))
    assert kept.remapped_instance_uids() == {"SOPInstanceUID", "StudyInstanceUID"}

    for options, status in (([], "published"), ([DeidOption.RETAIN_UIDS], "quarantined")):
        config = CollectionConfig(id="x_y", title="xyz", license=License.CC_BY_4_0,
                                  drop=DropConfig(url=(tmp_path / "src").as_uri()), deid=DeidConfig(options=options))
        catalog = Catalog.from_url(f"sqlite:///{tmp_path / f'c{len(options)}.db'}")
        out = tmp_path / f"out{len(options)}"
        try:
            summary = deidentify_tree(tmp_path / "src", out, secret=SECRET, config=config, catalog=catalog)
        finally:
            catalog.dispose()
        assert (summary.published, summary.quarantined) == ((1, 0) if status == "published" else (0, 1)), summary.reasons
    published = pydicom.dcmread(next((tmp_path / "out0").rglob("*.dcm")))
    assert all(pydicom.uid.UID(published[k].value).is_valid for k in hashed)
    data = next((tmp_path / "out0").rglob("*.dcm")).read_bytes()
    assert not [v for v in hashed.values() if v.encode() in data]
