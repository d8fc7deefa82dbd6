"""The published OpenAPI schema, clear 400s for bad parameters, and a bounded schemathesis run."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.api

V4 = "/nbia-api/services/v4"
ENDPOINTS = (
    "getCollectionValues", "getBodyPartValues", "getModalityValues", "getManufacturerValues", "getPatient",
    "getPatientByCollectionAndModality", "getPatientStudy", "getSeries", "getUpdatedSeries", "getSeriesMetadata",
    "getSeriesSize", "getSOPInstanceUIDs", "getImage", "getImageWithMD5Hash", "getSingleImage",
    "NewPatientsInCollection", "NewStudiesInPatientCollection",
)


def test_openapi_schema_is_published(api_server: str) -> None:
    schema = httpx.get(f"{api_server}/openapi.json").json()
    paths = schema["paths"]
    for name in ENDPOINTS:
        assert f"{V4}/{name}" in paths, name
        assert f"/collections/{{collection}}/versions/{{version}}{V4}/{name}" in paths, name
    assert "/nbia-api/oauth/token" in paths
    assert httpx.get(f"{api_server}/docs").status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("getSeries", {"Colection": "demo"}, "Invalid query parameter: 'Colection'"),
        ("getSeriesSize", {}, "A query parameter, SeriesInstanceUID, is required"),
        ("getSingleImage", {"SeriesInstanceUID": "1.2.3"}, "A query parameter, SOPInstanceUID, is required"),
        ("getPatientByCollectionAndModality", {"Collection": "demo"}, "Modality, is required"),
        ("getUpdatedSeries", {"fromDate": "31/31/2020"}, "fromDate must be a date written MM-DD-YYYY"),
        ("NewPatientsInCollection", {"Collection": "demo", "fromDate": "yesterday"}, "fromDate must be"),
        ("getSeries", {"format": "xml"}, "format must be JSON or CSV"),
        ("getImage", {"SeriesInstanceUID": ""}, "SeriesInstanceUID is invalid"),
    ],
)
def test_bad_parameters_answer_400_with_a_clear_message(api_server: str, path: str, params: dict[str, str],
                                                        expected: str) -> None:
    answer = httpx.get(f"{api_server}{V4}/{path}", params=params)
    assert answer.status_code == 400
    assert expected in answer.json()["detail"]


def test_bad_form_answers_400(api_server: str) -> None:
    assert httpx.post(f"{api_server}{V4}/getSeriesMetadata", data={}).status_code == 400
    assert httpx.post(f"{api_server}{V4}/getSeriesMetadata", data={"list": " , "}).status_code == 400


def test_empty_results_are_an_empty_200(api_server: str) -> None:
    for path, params in (
        ("getSeries", {"Collection": "nothing"}),
        ("getPatient", {"PatientId": "NOBODY"}),
        ("getSOPInstanceUIDs", {"SeriesInstanceUID": "1.2.3.4"}),
        ("getSeriesSize", {"SeriesInstanceUID": "1.2.3.4"}),
    ):
        answer = httpx.get(f"{api_server}{V4}/{path}", params=params)
        assert answer.status_code == 200 and answer.content == b"", path
    assert httpx.post(f"{api_server}{V4}/getSeriesMetadata", data={"list": "1.2.3.4"}).content == b""


def test_missing_images_are_not_found(api_server: str) -> None:
    answer = httpx.get(f"{api_server}{V4}/getImage", params={"SeriesInstanceUID": "1.2.3.4"})
    assert answer.status_code == 404 and "No published series" in answer.json()["detail"]
    series = httpx.get(f"{api_server}{V4}/getSeries", params={"Collection": "demo"}).json()[0]
    answer = httpx.get(f"{api_server}{V4}/getSingleImage",
                       params={"SeriesInstanceUID": series["SeriesInstanceUID"], "SOPInstanceUID": "1.2.3"})
    assert answer.status_code == 404


def test_csv_format(api_server: str) -> None:
    answer = httpx.get(f"{api_server}{V4}/getModalityValues", params={"format": "CSV"})
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.text.splitlines() == ['"Modality"', '"CT"', '"MR"', '"RTSTRUCT"']


def test_no_server_errors(api_server: str) -> None:
    """Generated requests, valid and invalid, to every operation of the schema: none may answer 5xx.

    Bounded: a few examples per operation and generation mode, so the run takes seconds.
    """
    schema = schemathesis.openapi.from_url(f"{api_server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    calls: list[int] = []
    for operation in operations:
        for mode, examples in ((GenerationMode.POSITIVE, 6), (GenerationMode.NEGATIVE, 4)):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                      database=None, phases=[Phase.generate])
            def call(case: Any) -> None:
                response = case.call_and_validate(checks=[not_a_server_error], timeout=30)
                calls.append(response.status_code)

            try:
                call()
            except Unsatisfiable:  # no invalid request exists for an operation without parameters
                assert mode == GenerationMode.NEGATIVE, operation.label
    assert len(calls) > 5 * len(operations)
    assert {200, 400} <= set(calls)
