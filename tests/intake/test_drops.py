"""Drops and archives: S3 drops (prefix or archive per submission), tar bombs, completion rules."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import ArchiveLimits
from imaging_ingest.config.settings import Settings
from imaging_ingest.intake.archives import ArchiveRejected, read_archive
from imaging_ingest.intake.drops import unsafe_name_reason
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.storage.objects import ObjectStore

from .conftest import SECRET, intake_config, make_settings, run_intake_dag


def _upload_folder(store: ObjectStore, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            store.put_file("staging", f"{prefix}/{path.relative_to(folder)}", path)


def test_tar_gz_bomb_is_rejected_without_expanding_it(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for index in range(4):
            info = tarfile.TarInfo(f"zeros{index}.bin")
            info.size = 8 * 1024 * 1024
            tf.addfile(info, io.BytesIO(b"\0" * info.size))
    with pytest.raises(ArchiveRejected, match="compression ratio"):
        list(read_archive(archive, tmp_path / "work", ArchiveLimits(max_ratio=100)))
    assert not any((tmp_path / "work").iterdir())


def test_zip_member_larger_than_declared_is_cut_off(tmp_path: Path) -> None:
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bin", b"a" * 1000)
    data = bytearray(archive.read_bytes())
    # Shrink the declared uncompressed size in the central directory (and local header) to 10 bytes.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    data[22:26] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    members = list(read_archive(archive, tmp_path / "work", ArchiveLimits()))
    assert len(members) == 1 and members[0].local is None
    assert members[0].reason is not None


def test_not_an_archive_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"this is not a zip")
    with pytest.raises(ArchiveRejected, match="neither a readable zip nor a tar"):
        list(read_archive(fake, tmp_path / "work", ArchiveLimits()))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (b"ok name.dcm", None),
        ("caf\u00e9.dcm".encode(), None),
        (b"a\nb", "file name contains a newline"),
        (b"a\x1bb", "file name contains control characters"),
        (b"a\xc3", "file name is not valid UTF-8"),
    ],
)
def test_unsafe_names(name: bytes, reason: str | None) -> None:
    assert unsafe_name_reason(name) == reason


def test_s3_drop_archive_submission_and_prefix_submission(
    small_submission: Path, settings: Settings, catalog: Catalog, store: ObjectStore
) -> None:
    _upload_folder(store, small_submission, "drop/site-b-1")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for path in sorted(small_submission.rglob("*.dcm"))[:3]:
            tf.add(path, arcname=f"extra/{path.name}")
    store.put_bytes("staging", "drop/site-d.tar.gz", buffer.getvalue())
    store.put_bytes("staging", "drop/site-d.tar.gz.READY", b"")
    config = intake_config(f"s3://{settings.bucket('staging')}/drop")
    ingest = Ingest(config, settings, secret=SECRET, catalog=catalog)
    ready = ingest.discover()
    assert sorted(r["files"] for r in ready) == [1, 14]
    first = ingest.run()
    second = ingest.run()
    assert first is not None and second is not None
    assert sorted([first["files_in"], second["files_in"]]) == [3, 14]
    # The archive repeats three files of the folder submission: same content, same object, nothing new.
    assert catalog.latest_version("intake").objects == 14


@pytest.mark.e2e
def test_dag_from_s3_drop_through_an_airflow_connection(
    small_submission: Path, tmp_path: Path, s3_endpoint: str, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "home", s3_endpoint)
    store = ObjectStore(settings)
    store.client.create_bucket(Bucket=f"{settings.bucket_prefix}-drop")
    for path in sorted(small_submission.rglob("*")):
        if path.is_file():
            store.client.upload_file(str(path), f"{settings.bucket_prefix}-drop",
                                     f"incoming/site-b-1/{path.relative_to(small_submission)}")
    config = intake_config(f"s3://{settings.bucket_prefix}-drop/incoming", connection_id="intake_drop_s3")
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    sub = run_intake_dag(monkeypatch, tmp_path, settings, config, "intake_drop_s3", connection)
    assert sub.source_url == f"s3://{settings.bucket_prefix}-drop/incoming/site-b-1/"
    assert (sub.published, sub.quarantined) == (14, 0)
    catalog = Catalog.from_url(settings.catalog_url)
    release = store.get_json("public", catalog.latest_version("intake").release_key)
    assert release["object_count"] == 14
    catalog.dispose()
