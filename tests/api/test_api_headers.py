"""Header fields read from published objects: ranged reads, the long-header fallback, the persistent cache."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from imaging_ingest.api.headers import HeaderCache, read_header_fields


def _dicom(pixels: int = 200_000, long_header: bool = False) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    ds.SeriesDate = "20200131"
    ds.ManufacturerModelName = "Model X"
    ds.SoftwareVersions = ["1.0", "2.0"]
    ds.PatientSex = "F"
    ds.PatientAge = "052Y"
    ds.SliceThickness = "2.5"
    ds.SeriesNumber = 7
    ds.PixelSpacing = ["0.75", "0.8"]
    if long_header:  # a sequence in group 0008 far longer than the first ranged read
        items = []
        for _ in range(2000):
            item = Dataset()
            item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            item.ReferencedSOPInstanceUID = generate_uid()
            items.append(item)
        ds.ReferencedImageSequence = Sequence(items)
    ds.Rows = ds.Columns = 100
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = b"\x00" * pixels
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


class Fetcher:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[int | None] = []

    def __call__(self, tier: str, key: str, length: int | None) -> bytes:
        self.calls.append(length)
        return self.data if length is None else self.data[:length]


def test_fields_come_from_the_first_bytes_only() -> None:
    fetch = Fetcher(_dicom())
    fields = read_header_fields(fetch, "public", "k.dcm", len(fetch.data))
    assert fetch.calls == [64 * 1024]
    assert fields["SeriesNumber"] == 7 and fields["SeriesDate"] == "01-31-2020"
    assert fields["SoftwareVersions"] == "1.0\\2.0" and fields["PixelSpacing"] == "0.75"
    assert fields["PatientSex"] == "F" and fields["PatientAge"] == "052Y" and fields["SliceThickness"] == "2.5"
    assert fields["StudyID"] is None


def test_a_header_longer_than_the_ranged_read_is_read_whole() -> None:
    fetch = Fetcher(_dicom(long_header=True))
    assert len(fetch.data) > 200_000
    fields = read_header_fields(fetch, "public", "k.dcm", len(fetch.data))
    assert fetch.calls == [64 * 1024, None]
    assert fields["ManufacturerModelName"] == "Model X" and fields["SeriesNumber"] == 7


def test_cache_persists_and_survives_unreadable_objects(tmp_path: Path) -> None:
    good, bad = Fetcher(_dicom(pixels=1000)), Fetcher(b"not dicom at all" * 10)
    fetchers = {"good.dcm": good, "bad.dcm": bad}

    def fetch(tier: str, key: str, length: int | None) -> bytes:
        return fetchers[key](tier, key, length)

    cache = HeaderCache(tmp_path / "headers.sqlite", fetch, workers=2)
    found = cache.get_many([("public", "good.dcm", len(good.data)), ("public", "bad.dcm", len(bad.data))])
    cache.close()
    assert found["good.dcm"]["SeriesNumber"] == 7 and found["bad.dcm"] == {}
    again = HeaderCache(tmp_path / "headers.sqlite", lambda *a: (_ for _ in ()).throw(AssertionError("no fetch")))
    assert again.get_many([("public", "good.dcm", len(good.data))])["good.dcm"] == found["good.dcm"]
    again.close()
