"""Files: raw header writing, pixel data copied as bytes, transfer syntaxes, file meta, reruns."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from imaging_ingest.config import DeidConfig, DeidOption
from imaging_ingest.deid import Deidentifier, DeidError, Profile, writer
from imaging_ingest.deid.engine import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from imaging_ingest.deid.writer import encode_file_meta
from imaging_ingest.synth.generate import SynthSummary

from .deid_helpers import SECRET, ct_dataset, dicom_files, patient, resolve, write


def run(src: Path, dst: Path, *options: DeidOption) -> Dataset:
    Deidentifier(resolve(*options), SECRET).deidentify_file(src, dst, patient())
    return dcmread(dst)


def pixel_bytes(path: Path) -> bytes:
    return dcmread(path)[0x7FE00010].value


def test_rerun_is_byte_identical(submission: SynthSummary, tmp_path: Path) -> None:
    for i, src in enumerate(dicom_files(submission)):
        engine = Deidentifier(Profile.load().resolve(DeidConfig()), SECRET)
        a = engine.deidentify_file(src, tmp_path / f"a{i}.dcm", patient())
        b = Deidentifier(Profile.load().resolve(DeidConfig()), SECRET).deidentify_file(src, tmp_path / f"b{i}.dcm", patient())
        assert (tmp_path / f"a{i}.dcm").read_bytes() == (tmp_path / f"b{i}.dcm").read_bytes()
        assert a == b
        assert a.sha256 == hashlib.sha256((tmp_path / f"a{i}.dcm").read_bytes()).hexdigest()
        assert a.md5 == hashlib.md5((tmp_path / f"a{i}.dcm").read_bytes()).hexdigest()
        assert a.size == (tmp_path / f"a{i}.dcm").stat().st_size


def test_pixel_data_is_copied_not_decoded(submission: SynthSummary, tmp_path: Path) -> None:
    for i, src in enumerate(dicom_files(submission, "CT") + dicom_files(submission, "MR")):
        dst = tmp_path / f"{i}.dcm"
        run(src, dst)
        assert pixel_bytes(dst) == pixel_bytes(src)
        assert dst.read_bytes().endswith(pixel_bytes(src))  # the pixel element is the last thing in the file


def test_file_meta_is_rewritten(tmp_path: Path) -> None:
    src = write(ct_dataset(), tmp_path / "src.dcm")
    raw = bytearray(src.read_bytes())
    raw[:12] = b"II*\x00QUANDTXX"  # a preamble with something in it (a TIFF header, say)
    src.write_bytes(bytes(raw))
    out = run(src, tmp_path / "out.dcm")
    meta = out.file_meta
    assert meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == out.SOPClassUID
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert "SourceApplicationEntityTitle" not in meta
    assert (tmp_path / "out.dcm").read_bytes()[:132] == b"\x00" * 128 + b"DICM"


def _pydicom_meta(meta: FileMetaDataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()


@pytest.mark.parametrize(
    ("values", "packed"),
    [
        ({}, True),  # the engine's meta: odd and even lengths below
        ({"MediaStorageSOPInstanceUID": "1.2.3.44"}, True),
        ({"ImplementationVersionName": "ODD"}, True),
        ({"MediaStorageSOPClassUID": ["1.2.840.10008.5.1.4.1.1.2", "1.2.3"]}, False),  # multi-valued
        ({"ImplementationVersionName": "IMAGINGÉ"}, False),  # non-ASCII
        ({"SourceApplicationEntityTitle": "ANOTHER"}, False),  # another element
    ],
)
def test_file_meta_bytes_are_pydicoms(values: dict[str, object], packed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's file meta is packed without pydicom's writer, to the same bytes; other shapes go to pydicom."""
    def meta() -> FileMetaDataset:
        m = FileMetaDataset()
        m.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        m.MediaStorageSOPInstanceUID = "1.2.3.4.5"
        m.TransferSyntaxUID = ExplicitVRLittleEndian
        m.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        m.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        for keyword, value in values.items():
            setattr(m, keyword, value)
        return m

    expected = _pydicom_meta(meta())
    calls = []
    monkeypatch.setattr(writer, "write_file_meta_info", lambda *a, **k: calls.append(1) or write_file_meta_info(*a, **k))
    assert encode_file_meta(meta()) == expected
    assert calls == ([] if packed else [1])


def test_file_meta_without_a_required_value_fails_as_pydicom_does() -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    meta.MediaStorageSOPClassUID = ""
    with pytest.raises(AttributeError, match="Required File Meta Information"):
        encode_file_meta(meta)


def test_output_parses_as_pydicom_would_write_it(submission: SynthSummary, tmp_path: Path) -> None:
    """The raw writer and pydicom's writer agree on every element of the de-identified data set."""
    engine = Deidentifier(resolve(DeidOption.CLEAN_DESCRIPTORS, DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES), SECRET)
    for i, src in enumerate(dicom_files(submission)):
        dst = tmp_path / f"{i}.dcm"
        engine.deidentify_file(src, dst, patient())
        ds = dcmread(src)
        engine.deidentify_dataset(ds, patient())
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=False)
        expected = dcmread(io.BytesIO(buffer.getvalue()), force=True)
        got = dcmread(dst)
        assert [e.tag for e in got.iterall()] == [e.tag for e in expected.iterall()], src.name
        for a, b in zip(got.iterall(), expected.iterall(), strict=True):
            if a.VR != "SQ":
                assert a.value == b.value, a.tag


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_other_transfer_syntaxes(syntax: str, tmp_path: Path) -> None:
    ds = ct_dataset()
    src = write(ds, tmp_path / "src.dcm", ExplicitVRLittleEndian)
    source = dcmread(src)
    if syntax == ExplicitVRBigEndian:
        from pydicom.filewriter import dcmwrite

        source.file_meta.TransferSyntaxUID = syntax
        dcmwrite(tmp_path / "src2.dcm", source, implicit_vr=False, little_endian=False, force_encoding=True)
    elif syntax == DeflatedExplicitVRLittleEndian:
        source.file_meta.TransferSyntaxUID = syntax
        source.save_as(tmp_path / "src2.dcm")
    else:
        write(ds, tmp_path / "src2.dcm", syntax)
    out = run(tmp_path / "src2.dcm", tmp_path / "out.dcm")
    assert out.file_meta.TransferSyntaxUID == syntax
    assert out.PatientID == "TESTCOLL-0001" and out.Rows == 4
    assert out.pixel_array.tolist() == dcmread(tmp_path / "src2.dcm").pixel_array.tolist()
    assert out.StudyInstanceUID.startswith("2.25.")


def test_encapsulated_pixel_data_is_copied_whole(tmp_path: Path) -> None:
    ds = ct_dataset(pixels=False)
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    frames = [b"\xff\xd8\xff\xe0fake-jpeg-1\xff\xd9", b"\xff\xd8fake-jpeg-frame-2\xff\xd9"]
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 2
    src = write(ds, tmp_path / "src.dcm", JPEGBaseline8Bit)
    raw = src.read_bytes()
    src.write_bytes(raw + b"\xfc\xff\xfc\xff" + b"OB\x00\x00" + (4).to_bytes(4, "little") + b"PHI!")  # trailing padding
    out = run(src, tmp_path / "out.dcm")
    assert out.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert out.PixelData == dcmread(tmp_path / "src.dcm").PixelData
    assert b"PHI!" not in (tmp_path / "out.dcm").read_bytes()  # Data Set Trailing Padding is dropped


def test_objects_without_pixel_data(submission: SynthSummary, tmp_path: Path) -> None:
    src = dicom_files(submission, "RTSTRUCT")[0]
    out = run(src, tmp_path / "rs.dcm")
    assert "PixelData" not in out and out.Modality == "RTSTRUCT"


def test_unreadable_and_unsafe_files_raise_phi_free_errors(tmp_path: Path) -> None:
    engine = Deidentifier(resolve(), SECRET)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all, MRN123456")
    with pytest.raises(DeidError, match="unreadable") as info:
        engine.deidentify_file(junk, tmp_path / "o.dcm", patient())
    assert "MRN" not in str(info.value)
    ds = ct_dataset()
    src = write(ds, tmp_path / "nosop.dcm")
    no_sop = dcmread(src)
    del no_sop.SOPInstanceUID
    no_sop.save_as(src)
    with pytest.raises(DeidError, match="SOPInstanceUID"):
        engine.deidentify_file(src, tmp_path / "o.dcm", patient())
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(write(ct_dataset(rows=64), tmp_path / "big.dcm").read_bytes()[:-100])
    with pytest.raises(DeidError, match="truncated"):
        engine.deidentify_file(truncated, tmp_path / "o.dcm", patient())
    assert not (tmp_path / "o.dcm").exists()
