"""The frame index: frames placed in the stored object, read back by range and checked by MD5."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from imaging_ingest.api.dicomweb.frames import FrameReader, IndexedFrames, index_frames
from imaging_ingest.api.dicomweb.rendered import read_frames
from imaging_ingest.api.releases import InstanceView
from imaging_ingest.api.zipstream import IntegrityError

pytestmark = pytest.mark.dicomweb


def _instance(
    syntax: str, frames: int, pixel_data: bytes, bits: int = 16, encapsulated: bool = False
) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "1.2.3"
    ds.Rows, ds.Columns = 4, 3
    ds.BitsAllocated, ds.SamplesPerPixel, ds.NumberOfFrames = bits, 1, frames
    ds.PixelData = pixel_data
    if encapsulated:
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    ds.PixelRepresentation = 0
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=syntax == ImplicitVRLittleEndian, enforce_file_format=True)
    return out.getvalue()


class _Store:
    """An object store holding one object, counting whole and ranged reads."""

    def __init__(self, data: bytes) -> None:
        self.data, self.ranges, self.whole = data, 0, 0
        self.client = self

    def bucket(self, tier: str) -> str:
        return tier

    def get_bytes(self, tier: str, key: str) -> bytes:
        self.whole += 1
        return self.data

    def get_object(self, Bucket: str, Key: str, Range: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.ranges += 1
        first, _, last = Range.removeprefix("bytes=").partition("-")
        return {"Body": io.BytesIO(self.data[int(first) : int(last) + 1])}


def _view(data: bytes) -> InstanceView:
    import hashlib

    return InstanceView(
        "1.2.3",
        "1.2.840.10008.5.1.4.1.1.7",
        "c/1.2.3.dcm",
        "public",
        len(data),
        hashlib.md5(data).hexdigest(),
        hashlib.sha256(data).hexdigest(),
    )


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("explicit, 3 frames", _instance(ExplicitVRLittleEndian, 3, bytes(range(72)))),
        ("implicit, 2 frames", _instance(ImplicitVRLittleEndian, 2, bytes(range(48)))),
        ("8-bit, 1 frame", _instance(ExplicitVRLittleEndian, 1, bytes(range(12)), bits=8)),
        (
            "JPEG, a fragment per frame",
            _instance(
                JPEGBaseline8Bit,
                2,
                encapsulate([b"\xff\xd8one\xff\xd9!", b"\xff\xd8two\xff\xd9"]),
                bits=8,
                encapsulated=True,
            ),
        ),
        (
            "JPEG, 2 fragments per frame, offset table",
            _instance(
                JPEGBaseline8Bit,
                2,
                encapsulate(
                    [b"\xff\xd8first-frame-bytes\xff\xd9", b"\xff\xd8second-frame-a-bit-longer\xff\xd9"],
                    fragments_per_frame=2,
                    has_bot=True,
                ),
                bits=8,
                encapsulated=True,
            ),
        ),
    ],
)
def test_indexed_frames_are_the_frames_cut_from_the_whole_object(
    name: str, data: bytes, tmp_path: Path
) -> None:
    whole = read_frames(data)
    index = index_frames(data, whole)
    assert index is not None, name
    store = _Store(data)
    reader = FrameReader(tmp_path / "cache.sqlite", store)
    first = reader.open(_view(data))  # the first request reads the whole object and keeps the index
    assert store.whole == 1 and first.count == whole.count
    reader.close()
    reader = FrameReader(tmp_path / "cache.sqlite", store)  # a restart: the index comes from the file
    indexed = reader.open(_view(data))
    assert isinstance(indexed, IndexedFrames) and store.whole == 1
    assert (indexed.served_syntax, indexed.compressed) == (whole.served_syntax, whole.compressed)
    assert [indexed.frame(n) for n in range(1, whole.count + 1)] == [
        whole.frame(n) for n in range(1, whole.count + 1)
    ]
    assert store.ranges == whole.count  # one ranged read per frame, never the whole object again
    reader.close()


def test_a_frame_read_by_range_that_does_not_match_its_md5_is_not_delivered(tmp_path: Path) -> None:
    data = _instance(ExplicitVRLittleEndian, 2, bytes(range(48)))
    store = _Store(data)
    reader = FrameReader(None, store)
    reader.open(_view(data))
    pieces = index_frames(data, read_frames(data)).frames[1][0]  # type: ignore[union-attr]
    damaged = bytearray(data)
    damaged[pieces[0][0]] ^= 0xFF
    store.data = bytes(damaged)
    frames = reader.open(_view(data))
    assert frames.frame(1) == data[pieces[0][0] - 24 : pieces[0][0]]
    with pytest.raises(IntegrityError):
        frames.frame(2)


def test_frames_that_cannot_be_placed_exactly_have_no_index() -> None:
    several = encapsulate(
        [b"\xff\xd8aaaa\xff\xd9", b"\xff\xd8bbbb\xff\xd9"], fragments_per_frame=2, has_bot=False
    )
    data = _instance(JPEGBaseline8Bit, 2, several, bits=8, encapsulated=True)
    assert index_frames(data, read_frames(data)) is None
