"""The inventory's fast header read gives what pydicom's reading gives, file for file.

``read_header`` takes a file's elements from its bytes (``inventory.raw_header``) and falls
back to pydicom where that steps aside; ``read_header_with_pydicom`` is pydicom's reading,
the reference. Every file of the synthetic corpus, every file and archive member of the
hostile submission, and files written to probe the value conversions must read the same.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from tests.intake.hostile import build_hostile_submission

from imaging_ingest.inventory.raw_header import raw_header
from imaging_ingest.inventory.scan import inventory_frame, read_header, read_header_with_pydicom


def _same(path: Path) -> None:
    fast, reference = read_header(path, path.name), read_header_with_pydicom(path, path.name)
    assert fast == reference, path
    for key, value in fast.values.items():  # equal values of another type (an int for a str) would pass ==
        assert type(value) is type(reference.values[key]), (path, key)


def _members(archive: Path, into: Path) -> list[Path]:
    """The regular-file members of a zip or tar, written out to be read as files."""
    out: list[Path] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            blobs = [zf.read(i) for i in zf.infolist() if not i.is_dir() and i.file_size < 16 << 20]
    else:
        with tarfile.open(archive) as tf:
            blobs = [tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()]  # type: ignore[union-attr]
    for blob in blobs:
        out.append(into / f"{archive.name}.{len(out)}.dcm")
        out[-1].write_bytes(blob)
    return out


def test_the_synthetic_corpus_reads_the_same_and_takes_the_fast_path(synth_cache: Path) -> None:
    files = sorted(p for p in synth_cache.rglob("*") if p.is_file())
    fast = [p for p in files if raw_header(p.read_bytes()) is not None]
    assert len(fast) > 20  # the comparison below is not pydicom against itself
    for path in files:
        _same(path)


def test_hostile_files_and_archive_members_read_the_same(tmp_path: Path, synth_cache: Path) -> None:
    root = tmp_path / "hostile"
    build_hostile_submission(root, synth_cache, specials=False)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    members = tmp_path / "members"
    members.mkdir()
    for archive in [p for p in files if p.suffix in {".zip", ".tar"}]:
        files += _members(archive, members)
    assert len(files) > 30
    for path in files:
        _same(path)


def _ct(synth_cache: Path) -> Path:
    return sorted(synth_cache.rglob("*CT*/*.dcm"))[0]


def test_a_file_cut_in_its_pixel_data_keeps_its_reason(tmp_path: Path, synth_cache: Path) -> None:
    data = _ct(synth_cache).read_bytes()
    for cut in (1, 4000, len(data) // 3):
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(data[:-cut])
        assert raw_header(path.read_bytes()) is not None  # the fast path decides it
        header = read_header(path, path.name)
        assert header.reason == "truncated file: element (7FE0,0010) PixelData is cut short"
        assert header == read_header_with_pydicom(path, path.name)
    for cut in range(1, 1200, 7):  # cut inside the header: every element, every element header
        path = tmp_path / "head.dcm"
        path.write_bytes(data[: 132 + cut])
        _same(path)


def _variant(synth_cache: Path, **values: object) -> Dataset:
    ds = pydicom.dcmread(_ct(synth_cache))
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    "values",
    [
        {"PatientID": " MRN 1 ", "Manufacturer": "A\\B ", "Modality": "CT "},
        {"PatientID": "", "Manufacturer": "", "BodyPartExamined": ""},
        {"ImageType": ["ORIGINAL", " PRIMARY ", ""], "BurnedInAnnotation": "NO"},
        {"ImageType": [" ORIGINAL", "PRIMARY "], "BodyPartExamined": " CHEST"},
        {"SeriesInstanceUID": " 1.2.3 ", "StudyInstanceUID": "1.2 \\ 3.4"},
        {"SpecificCharacterSet": "ISO_IR 192", "PatientID": "Müller", "Manufacturer": "Ärzte GmbH"},
        {"SpecificCharacterSet": "ISO_IR 100", "PatientID": "Müller"},
        {"SpecificCharacterSet": "ISO 2022 IR 87", "PatientID": "ABC"},
        {"NumberOfFrames": "3 ", "RecognizableVisualFeatures": "YES"},
        {"NumberOfFrames": "2.5"},
        {"Rows": [2, 3]},
    ],
)
def test_values_convert_as_pydicom_converts_them(tmp_path: Path, synth_cache: Path, values: dict[str, object]) -> None:
    path = tmp_path / "v.dcm"
    _variant(synth_cache, **values).save_as(path)
    _same(path)


def test_raw_bytes_pydicom_would_read_otherwise(tmp_path: Path, synth_cache: Path) -> None:
    """NUL padding, a VR other than the dictionary's, implicit VR: written by hand, read the same."""
    ds = _variant(synth_cache)
    ds["PatientID"].value = "MRN\x00"
    ds.add_new(0x00280010, "SS", 512)  # Rows stated as SS
    ds.add_new(0x00080060, "LO", "MR")  # Modality stated as LO
    ds.save_as(tmp_path / "odd_vr.dcm")
    # values pydicom's writer would normalise, patched into the bytes (same lengths, space-padded)
    ds = _variant(synth_cache, SeriesInstanceUID="1.2.999999999", StudyInstanceUID="1.2.88888888888",
                  PatientID="PID-PLACEHOLDER", ImageType=["AAAAAAAA", "BBBBBBBB"])
    ds.save_as(tmp_path / "patched.dcm")
    data = (tmp_path / "patched.dcm").read_bytes()
    for placeholder, value in (
        (b"1.2.999999999\x00", b" 1.2 \\ 9.99\x00 "),
        (b"1.2.88888888888\x00", b"1.2.8\x00\x00      "),
        (b"PID-PLACEHOLDER ", b" A \\\x00B\x00 \\ C  "),
        (b"AAAAAAAA\\BBBBBBBB", b" AA\x00  \\ BB\x00 \\ "),
    ):
        assert len(value) <= len(placeholder) and data.count(placeholder) == 1
        data = data.replace(placeholder, value.ljust(len(placeholder)))
    (tmp_path / "patched.dcm").write_bytes(data)
    assert raw_header(data) is not None
    implicit = _variant(synth_cache)
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit.save_as(tmp_path / "implicit.dcm", enforce_file_format=True)
    assert raw_header((tmp_path / "implicit.dcm").read_bytes()) is not None
    for path in sorted(tmp_path.iterdir()):
        _same(path)


def test_a_missing_source_checksum_is_filled_where_duplicates_need_it(tmp_path: Path, synth_cache: Path) -> None:
    """Files sharing a SOP Instance UID get their missing ``sha256_source`` (and duplicate detection uses it)."""
    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    shutil.copy(_ct(synth_cache), a)
    shutil.copy(_ct(synth_cache), b)
    records = [
        {"file_id": i, "source_path": p.name, "sha256_source": None, "status": "ok", "reason": None, "path": str(p)}
        for i, p in enumerate((a, b))
    ]
    frame = inventory_frame(records, lambda r: Path(r["path"]), ["CT"])
    assert list(frame["sha256_source"]) == [hashlib.sha256(a.read_bytes()).hexdigest()] * 2
    assert list(frame["reason"]) == [None, "exact duplicate of file 0"]
