"""The labelled set is built once per session (Faker is slow to start 14 locales)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # labelled.py is shared with bench/freetext

from labelled import Example, labelled_set  # noqa: E402


@pytest.fixture(scope="session")
def labelled() -> list[Example]:
    return labelled_set(2400, seed=14)
