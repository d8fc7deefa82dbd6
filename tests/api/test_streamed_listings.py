"""Listing answers are streamed: rows are made and encoded a chunk at a time, never the whole body at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.responses import StreamingResponse

from imaging_ingest.api.nbia import (
    CHUNK_ROWS,
    SERIES_COLUMNS,
    csv_chunks,
    json_chunks,
    render_csv,
    render_json,
)
from imaging_ingest.api.routes import _answer

pytestmark = pytest.mark.api

ROWS = [
    {
        "SeriesInstanceUID": f"1.2.{n}",
        "Modality": "CT" if n % 2 else None,
        "ImageCount": n,
        "SeriesDescription": "=cmd|' /C calc'!A0" if n == 7 else f"séries {n}",
    }
    for n in range(2 * CHUNK_ROWS + 3)
]


class _Counted:
    """Rows handed out one at a time, counting how many were asked for so far."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in ROWS:
            self.pulled += 1
            yield row


def _chunks(response: StreamingResponse, rows: _Counted) -> list[tuple[bytes, int]]:
    """Each chunk the response sends, with how many rows had been made when it was sent."""

    async def collect() -> list[tuple[bytes, int]]:
        return [
            (chunk if isinstance(chunk, bytes) else chunk.encode(), rows.pulled)
            async for chunk in response.body_iterator
        ]

    return asyncio.run(collect())


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_listing_is_sent_chunk_by_chunk_as_its_rows_are_made(fmt: str) -> None:
    rows = _Counted()
    response = _answer(rows, SERIES_COLUMNS, fmt)
    assert isinstance(response, StreamingResponse)
    assert rows.pulled == 1  # only the first row, to know the answer is not empty
    chunks = _chunks(response, rows)
    assert len(chunks) >= 3
    for index, (_chunk, pulled) in enumerate(chunks[:-1]):
        assert pulled <= (index + 1) * CHUNK_ROWS + 1  # never more than a chunk ahead of what was sent
    body = b"".join(c for c, _ in chunks)
    assert body == (render_json(ROWS) if fmt == "json" else render_csv(SERIES_COLUMNS, ROWS))


def test_chunks_joined_are_the_whole_answer_byte_for_byte() -> None:
    assert b"".join(json_chunks(ROWS)) == json.dumps(ROWS, separators=(",", ":"), ensure_ascii=False).encode()
    assert b"".join(json_chunks([])) == b"[]"
    assert b"".join(csv_chunks(SERIES_COLUMNS, ROWS, size=7)) == render_csv(SERIES_COLUMNS, ROWS)
    assert b"'=cmd" in render_csv(SERIES_COLUMNS, ROWS)  # formula cells still neutralised


def test_no_rows_is_still_an_empty_200() -> None:
    response = _answer(iter(()), SERIES_COLUMNS, "json")
    assert response.status_code == 200 and response.body == b""


def test_the_server_streams_a_whole_collection_listing(api_server: str) -> None:
    url = f"{api_server}/nbia-api/services/v4/getSeries"
    with httpx.stream("GET", url, params={"Collection": "demo"}) as answer:
        assert answer.status_code == 200
        assert answer.headers.get("transfer-encoding") == "chunked" and "content-length" not in answer.headers
        body = answer.read()
    rows = json.loads(body)
    assert rows and all(r["Collection"] == "demo" for r in rows)
    csv_answer = httpx.get(url, params={"Collection": "demo", "format": "csv"})
    assert (
        csv_answer.headers["content-type"].startswith("text/csv")
        and csv_answer.text.count("\n") == len(rows) + 1
    )
