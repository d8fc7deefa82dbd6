"""Fixtures for the de-identification tests (helpers live in ``deid_helpers``).

``deid_roundtrip`` writes a data set the way a modality would (pydicom, explicit VR little
endian unless a test says otherwise), runs it through ``Deidentifier.deidentify_file``
(the raw-element path production uses) and reads the result back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from imaging_ingest.deid import Deidentifier, PatientContext, ResolvedProfile
from imaging_ingest.deid.engine import DeidOutput
from imaging_ingest.synth.generate import SynthSummary, generate_submission

from .deid_helpers import SECRET, patient, resolve, write

RoundTrip = Callable[..., tuple[Dataset, DeidOutput]]


@pytest.fixture
def deid_roundtrip(tmp_path: Path) -> RoundTrip:
    """``deid_roundtrip(ds, profile=None, patient=None, transfer_syntax=...)`` -> (output data set, DeidOutput)."""
    counter = iter(range(10_000))

    def run(
        ds: Dataset,
        profile: ResolvedProfile | None = None,
        context: PatientContext | None = None,
        transfer_syntax: str = ExplicitVRLittleEndian,
    ) -> tuple[Dataset, DeidOutput]:
        n = next(counter)
        src = write(ds, tmp_path / f"src{n}.dcm", transfer_syntax)
        dst = tmp_path / f"out{n}.dcm"
        output = Deidentifier(profile or resolve(), SECRET).deidentify_file(src, dst, context or patient())
        return dcmread(dst), output

    return run


@pytest.fixture(scope="session")
def submission(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    """One synthetic patient's submission (SC, CT, MR, RTSTRUCT; baseline and follow-up)."""
    return generate_submission(tmp_path_factory.mktemp("deid-synth") / "drop", patients=1, seed=11,
                               ct_slices=3, mr_slices=2, rows=32, columns=32)
