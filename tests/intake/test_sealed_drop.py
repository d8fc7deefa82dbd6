"""A sealed drop and bounded archives: a site that can write to the drop cannot make the worker read elsewhere.

The attacks (issue 15): a submission folder swapped for a symbolic link after it was
listed (to another collection's folder, or ``/proc/self``), a folder inside a submission
swapped likewise, a file replaced or grown after listing, a 200 KiB ``.tar.gz`` whose PAX
header is 200 MiB, and a zip whose members are each small but whose whole expansion
ratio is a bomb. Each is refused with a reason, and nothing outside the drop is read.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import ArchiveLimits, CollectionConfig, DropConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.intake.archives import ArchiveRejected, read_archive
from imaging_ingest.intake.drops import SubmissionChanged
from imaging_ingest.intake.local import LocalDrop
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore

pytestmark = pytest.mark.security


def _folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / name / rel).write_bytes(data)
    return root / name


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Another collection's folder, outside the drop: nothing of it may be read."""
    return _folder(tmp_path, "other-collection", {"scans/1.dcm": b"OTHER COLLECTION ORIGINAL", "READY": b""})


def test_submission_folder_swapped_for_a_link_is_refused(drop_root: Path, outside: Path) -> None:
    _folder(drop_root, "site-x", {"scans/1.dcm": b"site x data", "READY": b""})
    drop = LocalDrop(DropConfig(url=drop_root.as_uri()))
    listed = drop.submission("site-x")
    (drop_root / "site-x").rename(drop_root / ".site-x-moved")
    (drop_root / "site-x").symlink_to(outside)
    with pytest.raises(SubmissionChanged, match="symbolic link"):
        drop.submission("site-x")
    entry = listed.entries[0]  # the listed path now leads through the link: the open is refused too
    with pytest.raises(SubmissionChanged, match="symbolic link"), drop.open(entry):
        pass


def test_inner_folder_or_file_swapped_after_listing_is_refused(drop_root: Path, outside: Path) -> None:
    _folder(drop_root, "site-x", {"scans/1.dcm": b"site x data", "notes/2.dcm": b"more", "READY": b""})
    drop = LocalDrop(DropConfig(url=drop_root.as_uri()))
    entries = {e.path: e for e in drop.submission("site-x").entries}
    (drop_root / "site-x" / "scans").rename(drop_root / "site-x" / ".scans")
    (drop_root / "site-x" / "scans").symlink_to(outside / "scans")
    with pytest.raises(SubmissionChanged, match="symbolic link"), drop.open(entries["scans/1.dcm"]):
        pass
    (drop_root / "site-x" / "notes" / "2.dcm").unlink()
    (drop_root / "site-x" / "notes" / "2.dcm").symlink_to("/proc/self/environ")
    with pytest.raises(SubmissionChanged, match="symbolic link"), drop.open(entries["notes/2.dcm"]):
        pass


def test_file_replaced_or_grown_after_listing_is_refused(drop_root: Path) -> None:
    folder = _folder(drop_root, "site-x", {"a.dcm": b"aaaa", "b.dcm": b"bbbb", "READY": b""})
    drop = LocalDrop(DropConfig(url=drop_root.as_uri()))
    entries = {e.path: e for e in drop.submission("site-x").entries}
    replacement = folder / "a.new"
    replacement.write_bytes(b"zzzz")
    stat_a = os.stat(folder / "a.dcm")
    os.utime(replacement, ns=(stat_a.st_atime_ns, stat_a.st_mtime_ns))  # same size and time, other inode
    replacement.replace(folder / "a.dcm")
    with pytest.raises(SubmissionChanged, match="replaced"), drop.open(entries["a.dcm"]):
        pass
    with drop.open(entries["b.dcm"]) as fh:
        first = fh.read(2)
        with open(folder / "b.dcm", "ab") as grow:
            grow.write(b"more bytes")
        with pytest.raises(SubmissionChanged, match="grew|changed"):
            fh.read()
    assert first == b"bb"


def test_stage_raw_refuses_a_swapped_submission_and_reads_nothing_outside(
    drop_root: Path, outside: Path, demo_config: CollectionConfig, settings: Settings, secret: bytes,
    catalog: Catalog, store: ObjectStore,
) -> None:
    _folder(drop_root, "site-x", {"scans/1.dcm": b"site x data", "READY": b""})
    ingest = Ingest(demo_config, settings, secret=secret, catalog=catalog)
    claimed = ingest.claim().submission_id
    (drop_root / "site-x").rename(drop_root / ".site-x-moved")
    (drop_root / "site-x").symlink_to(outside)
    with pytest.raises(SubmissionChanged, match="symbolic link"):
        ingest.stage_raw(claimed)
    assert not list(store.list("raw", "")), "nothing may be staged from a swapped drop"


def test_stage_raw_refuses_a_listing_other_than_the_claimed_one(
    drop_root: Path, demo_config: CollectionConfig, settings: Settings, secret: bytes, catalog: Catalog,
    store: ObjectStore,
) -> None:
    folder = _folder(drop_root, "site-x", {"scans/1.dcm": b"site x data", "READY": b""})
    ingest = Ingest(demo_config, settings, secret=secret, catalog=catalog)
    claimed = ingest.claim().submission_id
    (folder / "scans" / "planted.dcm").write_bytes(b"added after the claim")
    with pytest.raises(SubmissionChanged, match="changed since it was claimed"):
        ingest.stage_raw(claimed)
    assert not list(store.list("raw", ""))


def _pax_bomb(path: Path, header_bytes: int) -> None:
    """A .tar.gz whose first member carries a PAX header of ``header_bytes`` (one comment record)."""
    prefix = f"{header_bytes} comment=".encode()
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, header_bytes
    member = tarfile.TarInfo("scan.dcm")
    member.size = 4
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(pax.tobuf(tarfile.USTAR_FORMAT) + prefix)
        left = header_bytes - len(prefix) - 1
        while left > 0:
            out.write(b"a" * min(left, 1 << 20))
            left -= min(left, 1 << 20)
        out.write(b"\n" + b"\0" * (-header_bytes % 512))
        out.write(member.tobuf(tarfile.USTAR_FORMAT) + b"abcd" + b"\0" * 508 + b"\0" * 1024)


def test_pax_header_bomb_is_refused_without_the_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    _pax_bomb(bomb, 200 * 1024 * 1024)
    assert bomb.stat().st_size < 400 * 1024
    limits = ArchiveLimits(max_ratio=10_000)  # the ratio alone would not stop it: the header limit does
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveRejected, match="PAX or GNU long names"):
            list(read_archive(bomb, tmp_path / "work", limits))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"reading the bomb's headers took {peak} bytes"


def test_header_bytes_count_towards_the_expansion_ratio(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    _pax_bomb(bomb, 2 * 1024 * 1024)  # under this header limit, but 2 MiB of headers from a few KiB
    with pytest.raises(ArchiveRejected, match="compression ratio"):
        list(read_archive(bomb, tmp_path / "work", ArchiveLimits(max_ratio=50, max_header_bytes=4 << 20)))


def test_gnu_long_names_count_against_the_header_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for index in range(20):
            info = tarfile.TarInfo(f"{index:02d}-" + "n" * 4000)
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveRejected, match="PAX or GNU long names"):
        list(read_archive(path, tmp_path / "work", ArchiveLimits(max_header_bytes=32 * 1024)))
    assert len(list(read_archive(path, tmp_path / "ok", ArchiveLimits()))) == 20


def test_zip_whose_whole_expansion_is_a_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ratio.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for index in range(64):  # each member at the 1 MiB floor, so no single member is flagged
            zf.writestr(f"part{index:02d}.dcm", b"\0" * (1 << 20))
    assert path.stat().st_size < 200 * 1024
    with pytest.raises(ArchiveRejected, match=r"archive compression ratio \d+:1 is over the limit"):
        list(read_archive(path, tmp_path / "work", ArchiveLimits()))
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_ordinary_tar_gz_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "fine.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for index in range(3):
            data = os.urandom(2000)
            info = tarfile.TarInfo(f"scans/é-{index}.dcm")  # a non-ASCII name: a small PAX header
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    members = list(read_archive(path, tmp_path / "work", ArchiveLimits()))
    assert [m.path for m in members] == [f"scans/é-{i}.dcm" for i in range(3)]
    assert all(m.reason is None and m.size == 2000 for m in members)


def test_s3_object_replaced_after_listing_is_refused(settings: Settings, store: ObjectStore) -> None:
    from imaging_ingest.intake.s3 import S3Drop

    bucket = f"{settings.bucket_prefix}-drop"
    store.client.create_bucket(Bucket=bucket)
    store.client.put_object(Bucket=bucket, Key="in/sub1/1.dcm", Body=b"listed bytes")
    drop = S3Drop(DropConfig(url=f"s3://{bucket}/in"), store.client)
    (entry,) = drop.submission("sub1").entries
    with drop.open(entry) as fh:
        assert fh.read() == b"listed bytes"
    store.client.put_object(Bucket=bucket, Key="in/sub1/1.dcm", Body=b"other bytes!")
    with pytest.raises(SubmissionChanged, match="changed"), drop.open(entry):
        pass
