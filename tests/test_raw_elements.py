"""The raw element reader agrees with pydicom on every element it reads, and steps aside otherwise."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicom_bytes import part10_files, saved_as
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from imaging_ingest.core.raw_elements import RawItem, parse


def _pydicom_tree(ds: Dataset) -> list[Any]:
    """(tag, value bytes) per element, sequences as nested lists; values pydicom converted on reading: None."""
    out: list[Any] = []
    for tag, elem in ds._dict.items():
        if elem.VR == "SQ" or (elem.VR is None and elem.length == 0xFFFFFFFF):
            value = ds[tag].value
            if isinstance(value, Sequence):
                out.append((int(tag), [_pydicom_tree(item) for item in value]))
                continue
        out.append((int(tag), elem.value if isinstance(elem.value, bytes) else None))
    return out


def _raw_tree(item: RawItem, like: list[Any]) -> list[Any]:
    out: list[Any] = []
    for (tag, elem), (_, theirs) in zip(item.items(), like, strict=False):
        if elem.items is not None:
            out.append((tag, [_raw_tree(i, t) for i, t in zip(elem.items, theirs, strict=False)]))
        else:
            out.append((tag, elem.value if theirs is not None else None))
    return out



def test_every_element_of_the_synthetic_corpus_reads_as_pydicom_reads_it(synth_cache: Path) -> None:
    files = part10_files(synth_cache)
    assert len(files) > 20
    for path in files:
        data = path.read_bytes()
        raw = parse(data)
        assert raw is not None, path.name
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            header_end = fh.tell()
        theirs = _pydicom_tree(ds)
        assert [t for t, _ in theirs] == list(raw.dataset), path.name
        assert _raw_tree(raw.dataset, theirs) == theirs, path.name
        assert raw.header_end == header_end, path.name
        assert raw.transfer_syntax == str(ds.file_meta.TransferSyntaxUID)



def test_implicit_vr_files_are_read_with_their_sequences(synth_cache: Path) -> None:
    path = next(p for p in part10_files(synth_cache) if "RTSTRUCT" in str(pydicom.dcmread(p, stop_before_pixels=True).Modality))
    data = saved_as(pydicom.dcmread(path), ImplicitVRLittleEndian)
    raw = parse(data)
    assert raw is not None and raw.implicit
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    theirs = _pydicom_tree(ds)
    assert _raw_tree(raw.dataset, theirs) == theirs


def test_files_off_the_fast_path_are_left_to_pydicom(synth_cache: Path) -> None:
    path = part10_files(synth_cache)[0]
    data = path.read_bytes()
    assert parse(data[128 + 4 :]) is None  # no preamble
    explicit = b"1.2.840.10008.1.2.1\x00"
    assert explicit in data[:400]
    assert parse(data.replace(explicit, ExplicitVRBigEndian.encode() + b"\x00", 1)) is None  # stated big endian
    raw = parse(data)
    assert raw is not None
    cut = data[: raw.header_end - 7]  # an element cut short inside the header
    assert parse(cut) is None


@pytest.mark.parametrize("stop", [True, False])
def test_pixel_data_ends_the_header_or_is_read_as_a_value(synth_cache: Path, stop: bool) -> None:
    path = next(p for p in part10_files(synth_cache) if p.stat().st_size > 100_000)
    data = path.read_bytes()
    raw = parse(data, stop_before_pixels=stop)
    assert raw is not None
    assert (0x7FE00010 in raw.dataset) is not stop
    if not stop:
        assert raw.dataset[0x7FE00010].value == pydicom.dcmread(path).PixelData
