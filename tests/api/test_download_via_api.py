"""``imaging-ingest download --api``: the bytes through the API's pinned-version getSingleImage, checked against the index."""

from __future__ import annotations

from pathlib import Path

import pytest

from imaging_ingest.download.selection import from_index
from imaging_ingest.download.transfer import ApiSource, S3Source, download

pytestmark = [pytest.mark.api, pytest.mark.mirror]


@pytest.mark.parametrize("version", [1, 2])
def test_a_download_through_the_api_reproduces_each_versions_bytes(api_archive, api_server: str, tmp_path: Path,
                                                                   version: int) -> None:
    store = api_archive.store
    index = S3Source(store.bucket("public"), api_archive.settings.s3_endpoint, anonymous=False)
    selection = from_index(index, "demo", version)
    selection.items = [i for i in selection.items if i.sop_uid][:12]  # DICOM instances (the API serves those)
    report = download(selection, ApiSource(api_server), tmp_path, workers=4, progress=False)
    assert report.fetched == len(selection.items) == 12
    for item in selection.items:
        assert (tmp_path / item.path).read_bytes() == store.get_bytes("public", item.key)
