"""DICOMweb with the real ``dicomweb-client`` (PyPI) against the running service.

The archive is the API suite's (real ingests: the public ``demo`` collection in two
versions and two restricted collections); every answer is checked against the catalog
and the published objects.
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image
from requests.exceptions import HTTPError

from imaging_ingest.api.dicomweb.rendered import read_frames

from .conftest import ApiArchive, token_for
from .test_api_tcia_utils import SeriesTruth, catalog_truth

pytestmark = [pytest.mark.api, pytest.mark.dicomweb]


def _value(attributes: dict[str, Any], tag: str) -> Any:
    values = attributes.get(tag, {}).get("Value") or [None]
    first = values[0]
    return first.get("Alphabetic") if isinstance(first, dict) else first


@pytest.fixture(scope="module")
def client(api_server: str) -> DICOMwebClient:
    return DICOMwebClient(url=f"{api_server}/dicomweb")


@pytest.fixture(scope="module")
def truth(api_archive: ApiArchive) -> dict[str, SeriesTruth]:
    return catalog_truth(api_archive, "demo")


def _studies(truth: dict[str, SeriesTruth]) -> dict[str, list[SeriesTruth]]:
    studies: dict[str, list[SeriesTruth]] = defaultdict(list)
    for t in truth.values():
        studies[t.study].append(t)
    return studies


def test_search_for_studies_filters_includefield_and_paging(client: DICOMwebClient, truth: dict[str, SeriesTruth]) -> None:
    studies = _studies(truth)
    found = client.search_for_studies()
    assert {_value(s, "0020000D") for s in found} == set(studies)
    for s in found:
        members = studies[_value(s, "0020000D")]
        assert _value(s, "00100020") == _value(s, "00100010") == members[0].patient
        assert _value(s, "00201206") == len(members)
        assert _value(s, "00201208") == sum(len(m.md5) for m in members)
        assert set(s["00080061"]["Value"]) == {m.modality for m in members if m.modality}

    patient = next(iter(truth.values())).patient
    mine = client.search_for_studies(search_filters={"PatientID": patient})
    assert {_value(s, "0020000D") for s in mine} == {t.study for t in truth.values() if t.patient == patient}
    wildcard = client.search_for_studies(search_filters={"PatientName": patient[:-1].lower() + "*"}, fuzzymatching=True)
    assert {_value(s, "0020000D") for s in mine} <= {_value(s, "0020000D") for s in wildcard}
    mr = client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})
    assert {_value(s, "0020000D") for s in mr} == {u for u, m in studies.items() if any(x.modality == "MR" for x in m)}
    date = _value(found[0], "00080020")
    dated = client.search_for_studies(search_filters={"StudyDate": f"{date}-{date}"})
    assert dated and all(_value(s, "00080020") == date for s in dated)
    assert client.search_for_studies(search_filters={"StudyDate": "-19000101"}) == []

    narrow = client.search_for_studies(fields=["StudyDescription"], limit=1)
    assert len(narrow) == 1 and "00081030" in narrow[0]
    everything = client.search_for_studies(fields=["all"], limit=1)
    assert {"00120020", "00101010"} <= set(everything[0])  # beyond the defaults
    pages = [client.search_for_studies(limit=1, offset=n) for n in range(len(found))]
    assert [_value(p[0], "0020000D") for p in pages] == [_value(s, "0020000D") for s in found]
    assert client.search_for_studies(limit=1, offset=len(found)) == []
    assert len(client.search_for_studies(limit=1, get_remaining=True)) == len(found)


def test_search_for_series_at_top_level_and_in_a_study(client: DICOMwebClient, truth: dict[str, SeriesTruth]) -> None:
    all_series = client.search_for_series(get_remaining=True)
    assert {_value(s, "0020000E") for s in all_series} == set(truth)
    ct = client.search_for_series(search_filters={"Modality": "CT"})
    assert {_value(s, "0020000E") for s in ct} == {u for u, t in truth.items() if t.modality == "CT"}
    chest = client.search_for_series(search_filters={"BodyPartExamined": "chest"})
    assert {_value(s, "0020000E") for s in chest} == {
        u for u, t in truth.items() if (t.body_part or "").upper() == "CHEST"}
    study = next(iter(truth.values())).study
    in_study = client.search_for_series(study, fields=["0008103E", "00080021"])  # one comma list, as OHIF sends
    assert {_value(s, "0020000E") for s in in_study} == {u for u, t in truth.items() if t.study == study}
    assert all("0008103E" in s and "00201209" in s for s in in_study)
    one = next(iter(truth))
    assert [_value(s, "0020000E") for s in client.search_for_series(search_filters={"SeriesInstanceUID": one})] == [one]


@pytest.mark.parametrize(
    ("level", "filters"),
    [
        ("studies", {}),
        ("studies", {"StudyDate": "20000101-"}),
        ("studies", {"ModalitiesInStudy": "C?", "PatientName": "*"}),
        ("studies", {"PatientID": "demo*\\nobody"}),
        ("series", {}),
        ("series", {"Modality": "ct\\MR", "BodyPartExamined": "*"}),
        ("series", {"SeriesDescription": "*", "StudyDate": "-29991231"}),
    ],
)
def test_catalog_searches_answer_as_the_header_matching_does(api_server: str, level: str,
                                                             filters: dict[str, str]) -> None:
    """Searches on catalog columns are matched and paged in SQL; one more key only the headers hold
    (StudyTime, matching everything) makes the same search match in Python: the answers must agree,
    page by page."""
    url = f"{api_server}/dicomweb/{level}"
    whole_sql = httpx.get(url, params=filters).json()
    whole_python = httpx.get(url, params={**filters, "StudyTime": "*"}).json()
    assert whole_sql == whole_python and whole_sql
    for offset in range(0, len(whole_sql) + 1, 2):
        page = {**filters, "limit": "2", "offset": str(offset)}
        sql = httpx.get(url, params=page).json()
        assert sql == httpx.get(url, params={**page, "StudyTime": "*"}).json() == whole_sql[offset : offset + 2]


def test_search_for_instances(client: DICOMwebClient, truth: dict[str, SeriesTruth]) -> None:
    series = next(t for t in truth.values() if len(t.md5) > 1)
    found = client.search_for_instances(series.study, series.uid)
    assert {_value(i, "00080018") for i in found} == set(series.md5)
    assert all(_value(i, "00280010") and _value(i, "00200013") is not None for i in found)  # from the headers
    number = _value(found[0], "00200013")
    by_number = client.search_for_instances(series.study, series.uid, search_filters={"InstanceNumber": str(number)})
    assert [_value(i, "00080018") for i in by_number] == [_value(found[0], "00080018")]
    paged = client.search_for_instances(series.study, series.uid, limit=1, offset=1)
    assert [_value(i, "00080018") for i in paged] == [_value(found[1], "00080018")]
    sop = _value(found[0], "00080018")
    top = client.search_for_instances(search_filters={"SOPInstanceUID": sop}, fields=["PatientID"])
    assert [_value(i, "00080018") for i in top] == [sop] and _value(top[0], "00100020") == series.patient


def test_series_metadata_instance_frames_and_rendered(client: DICOMwebClient, api_archive: ApiArchive,
                                                      truth: dict[str, SeriesTruth]) -> None:
    series = next(t for t in truth.values() if t.modality == "CT")
    metadata = client.retrieve_series_metadata(series.study, series.uid)
    assert {_value(m, "00080018") for m in metadata} == set(series.md5)
    first = metadata[0]
    assert first["7FE00010"]["BulkDataURI"].endswith(f"/instances/{_value(first, '00080018')}/bulk/7FE00010")
    assert _value(first, "00083002")  # AvailableTransferSyntaxUID: how the frames are encoded
    sop = _value(first, "00080018")

    instance = client.retrieve_instance(series.study, series.uid, sop)
    assert instance.SOPInstanceUID == sop and instance.SeriesInstanceUID == series.uid
    stored = pydicom.dcmread(io.BytesIO(_stored_bytes(api_archive, series, sop)))
    assert instance.PixelData == stored.PixelData

    frames = client.retrieve_instance_frames(series.study, series.uid, sop, frame_numbers=[1])
    assert len(frames) == 1
    assert frames[0] == read_frames(_stored_bytes(api_archive, series, sop)).frame(1)
    if int(stored.get("NumberOfFrames") or 1) == 1 and "TransferSyntaxUID" in stored.file_meta \
            and not stored.file_meta.TransferSyntaxUID.is_compressed:
        assert frames[0] == stored.PixelData  # frame 1 of a single-frame uncompressed instance: its pixel data

    jpeg = client.retrieve_instance_rendered(series.study, series.uid, sop, media_types=("image/jpeg",))
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    assert image.format == "JPEG" and image.size == (stored.Columns, stored.Rows)
    assert np.asarray(image).std() > 0, "a rendered image is not blank"
    series_instances = client.retrieve_series(series.study, series.uid)
    assert {d.SOPInstanceUID for d in series_instances} == set(series.md5)


def _stored_bytes(api_archive: ApiArchive, series: SeriesTruth, sop: str) -> bytes:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from imaging_ingest.catalog.models import Instance

    with Session(api_archive.catalog.engine) as s:
        key = s.scalars(select(Instance.object_key).where(Instance.sop_uid == sop)
                        .order_by(Instance.id.desc())).first()
    assert key is not None
    return api_archive.store.get_bytes("public", key)


def test_restricted_collections_hidden_without_a_token(api_server: str, api_archive: ApiArchive,
                                                       client: DICOMwebClient) -> None:
    hidden = catalog_truth(api_archive, "demo_restricted")
    series = next(iter(hidden.values()))
    public_studies = {_value(s, "0020000D") for s in client.search_for_studies()}
    assert series.study not in public_studies
    assert client.search_for_studies(search_filters={"StudyInstanceUID": series.study}) == []
    assert client.search_for_series(search_filters={"SeriesInstanceUID": series.uid}) == []
    with pytest.raises(HTTPError) as missing_error:
        client.retrieve_series_metadata(series.study, series.uid)
    base = f"{api_server}/dicomweb"
    hidden_answer = httpx.get(f"{base}/studies/{series.study}/series/{series.uid}/metadata")
    missing_answer = httpx.get(f"{base}/studies/{series.study}/series/1.2.3.4/metadata")
    assert missing_error.value.response.status_code == 404
    assert (hidden_answer.status_code, hidden_answer.content) == (missing_answer.status_code, missing_answer.content)

    bob = DICOMwebClient(url=base, headers={"Authorization": f"Bearer {token_for(api_server, 'bob')}"})
    assert bob.search_for_studies(search_filters={"StudyInstanceUID": series.study}) == []  # another collection's grant
    alice = DICOMwebClient(url=base, headers={"Authorization": f"Bearer {token_for(api_server, 'alice')}"})
    assert [_value(s, "0020000D") for s in alice.search_for_studies(search_filters={"StudyInstanceUID": series.study})] \
        == [series.study]
    assert {_value(m, "00080018") for m in alice.retrieve_series_metadata(series.study, series.uid)} == set(series.md5)


def test_frames_of_compressed_pixel_data_are_their_fragments() -> None:
    """A compressed frame is sent as stored: frame n is its fragment(s), not decoded."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    fragments = [b"\xff\xd8frame-one\xff\xd9", b"\xff\xd8frame-two!\xff\xd9"]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "1.2.3"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.SamplesPerPixel, ds.NumberOfFrames = 8, 1, 2
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    frames = read_frames(out.getvalue())
    assert frames.compressed and frames.served_syntax == JPEGBaseline8Bit
    assert [frames.frame(1), frames.frame(2)] == [f + (b"\x00" if len(f) % 2 else b"") for f in fragments]
