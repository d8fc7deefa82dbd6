"""Series downloads over HTTP: exact length, checksum manifest, and a corrupted object never delivered."""

from __future__ import annotations

import hashlib
import io
import zipfile

import httpx
import pytest

from .conftest import ApiArchive

pytestmark = pytest.mark.api

V4 = "/nbia-api/services/v4"


def _a_series(base: str) -> dict:
    return httpx.get(f"{base}{V4}/getSeries", params={"Collection": "demo", "Modality": "CT"}).json()[0]


def test_zip_has_its_announced_length_and_md5_manifest(api_server: str) -> None:
    series = _a_series(api_server)
    with httpx.stream("GET", f"{api_server}{V4}/getImage",
                      params={"SeriesInstanceUID": series["SeriesInstanceUID"], "IncludeMD5": "Yes"}) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
        announced = int(answer.headers["content-length"])
        body = b"".join(answer.iter_bytes())
    assert len(body) == announced
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
        assert names[0] == "LICENSE" and names[-1] == "md5hashes.csv"
        assert names[1:-1] == [f"{n:08d}.dcm" for n in range(1, series["ImageCount"] + 1)]
        manifest = archive.read("md5hashes.csv").decode().splitlines()
        assert manifest[0] == "Filename,MD5Hash"
        for line in manifest[1:]:
            name, md5 = line.split(",")
            assert hashlib.md5(archive.read(name)).hexdigest() == md5
    assert sum(archive.getinfo(n).file_size for n in names[1:-1]) == series["FileSize"]


def test_a_corrupted_object_ends_the_download_instead_of_being_delivered(api_server: str,
                                                                         api_archive: ApiArchive) -> None:
    series = _a_series(api_server)
    sop = httpx.get(f"{api_server}{V4}/getSOPInstanceUIDs",
                    params={"SeriesInstanceUID": series["SeriesInstanceUID"]}).json()[-1]["SOPInstanceUID"]
    key = f"demo/{series['StudyInstanceUID']}/{series['SeriesInstanceUID']}/{sop}.dcm"
    original = api_archive.store.get_bytes("public", key)
    damaged = original[:-1] + bytes([original[-1] ^ 0xFF])
    api_archive.store.put_bytes("public", key, damaged)
    try:
        zip_params = {"SeriesInstanceUID": series["SeriesInstanceUID"]}
        # the connection ends before the announced length
        with pytest.raises(httpx.HTTPError), httpx.stream("GET", f"{api_server}{V4}/getImage",
                                                          params=zip_params) as answer:
            assert answer.status_code == 200
            b"".join(answer.iter_bytes())
            raise AssertionError("a zip with a damaged image was delivered whole")  # pragma: no cover
        one_params = {"SeriesInstanceUID": series["SeriesInstanceUID"], "SOPInstanceUID": sop}
        with pytest.raises(httpx.HTTPError), httpx.stream("GET", f"{api_server}{V4}/getSingleImage",
                                                          params=one_params) as one:
            b"".join(one.iter_bytes())
            raise AssertionError("a damaged single image was delivered whole")  # pragma: no cover
    finally:
        api_archive.store.put_bytes("public", key, original)
    assert httpx.get(f"{api_server}{V4}/getImage",
                     params={"SeriesInstanceUID": series["SeriesInstanceUID"]}).status_code == 200
