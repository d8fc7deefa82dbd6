"""A data set built from a raw parse is the one ``dcmread`` reads, or the builder steps aside."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pydicom
from dicom_bytes import part10_files, saved_as
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from imaging_ingest.core.raw_dataset import file_dataset
from imaging_ingest.core.raw_elements import read


def _elements(ds: Dataset) -> dict[int, Any]:
    """Each element as pydicom holds it; raw ones without ``value_tell`` (the builder does not record it)."""
    out: dict[int, Any] = {}
    for tag, elem in ds._dict.items():
        if isinstance(elem, RawDataElement):
            out[int(tag)] = ("raw", elem.VR, elem.length, elem.value, elem.is_implicit_VR, elem.is_little_endian)
        else:
            out[int(tag)] = ("converted", elem.VR, elem.value)
    return out


def _reading(ds: Dataset) -> dict[str, Any]:
    return {
        "elements": _elements(ds),
        "order": [int(t) for t in ds._dict],
        "meta": _elements(ds.file_meta),
        "encoding": ds.original_encoding,
        "charset": ds.original_character_set,
        "character_set": ds._character_set,
        "preamble": ds.preamble,
    }


def _same_as_pydicom(data: bytes) -> None:
    raw = read(data)
    assert raw is not None
    built = file_dataset(data, raw)
    assert built is not None
    fh = io.BytesIO(data)
    theirs = pydicom.dcmread(fh, stop_before_pixels=True)
    assert raw.header_end == fh.tell()
    assert _reading(built) == _reading(theirs)
    for tag, elem in theirs._dict.items():  # sequences convert alike when touched
        if elem.VR == "SQ" or (elem.VR is None and isinstance(theirs[tag].value, Sequence)):
            assert built[tag].value == theirs[tag].value



def test_every_file_of_the_synthetic_corpus_builds_as_dcmread_reads_it(synth_cache: Path) -> None:
    files = part10_files(synth_cache)
    assert len(files) > 20
    built = 0
    for path in files:
        data = path.read_bytes()
        raw = read(data)
        if raw is not None and file_dataset(data, raw) is not None:
            _same_as_pydicom(data)
            built += 1
    assert built >= len(files) * 0.8  # the common case takes the fast path



def test_implicit_vr_and_character_sets(synth_cache: Path) -> None:
    ds = pydicom.dcmread(part10_files(synth_cache)[0])
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.InstitutionName = "Hôpital"
    _same_as_pydicom(saved_as(ds, ds.file_meta.TransferSyntaxUID))
    _same_as_pydicom(saved_as(ds, ImplicitVRLittleEndian))


def test_undefined_lengths_and_contradictions_are_left_to_pydicom(synth_cache: Path) -> None:
    ds = pydicom.dcmread(next(p for p in part10_files(synth_cache) if p.stat().st_size > 100_000))
    item = Dataset()
    item.CodeValue = "1"
    ds.ProcedureCodeSequence = Sequence([item])
    ds["ProcedureCodeSequence"].is_undefined_length = True
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    raw = read(data)
    assert raw is not None
    assert file_dataset(data, raw) is None  # pydicom reads an undefined-length sequence as it goes
    plain = saved_as(pydicom.dcmread(part10_files(synth_cache)[0]), ImplicitVRLittleEndian)
    raw = read(plain)
    assert raw is not None
    lying = dataclasses.replace(raw, implicit=False)
    assert file_dataset(plain, lying) is None  # the first element says implicit, the syntax explicit


def test_an_empty_data_set_is_left_to_pydicom(synth_cache: Path) -> None:
    data = part10_files(synth_cache)[0].read_bytes()
    raw = read(data)
    assert raw is not None
    header_only = data[: raw.dataset_start]  # file meta, and nothing after it
    raw = read(header_only)
    assert raw is not None
    assert file_dataset(header_only, raw) is None
