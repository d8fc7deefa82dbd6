"""CSV cells from header values and file names never run as spreadsheet formulas."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from imaging_ingest.api.nbia import render_csv
from imaging_ingest.core.csvsafe import neutralise, neutralise_frame

pytestmark = pytest.mark.security


@pytest.mark.parametrize("value", ['=HYPERLINK("http://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3",
                                   "@SUM(A1:A9)", "\t=1", "\r=1"])
def test_formula_cells_are_neutralised(value: str) -> None:
    assert neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["-125.5", "+3", "-1.5e-3", "-125.5\\-80\\12", "CHEST", "a=b", "", 12, None])
def test_data_is_left_alone(value: object) -> None:
    assert neutralise(value) == value


def test_api_csv_and_manifest_frames() -> None:
    body = render_csv(["SeriesDescription", "SliceThickness"], [{"SeriesDescription": "=cmd|' /C calc'!A0",
                                                                 "SliceThickness": "-1.25"}])
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[1] == ["'=cmd|' /C calc'!A0", "-1.25"]
    frame = neutralise_frame(pd.DataFrame({"name": ["@evil", "ok"], "size": [-1, 2]}))
    assert frame["name"].tolist() == ["'@evil", "ok"] and frame["size"].tolist() == [-1, 2]
