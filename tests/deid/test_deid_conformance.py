"""Outputs introduce no new dciodvfy errors compared with their inputs.

Synthetic CT, MR, RTSTRUCT and SC from ``generate_submission``, plus (``synth.conformance``) a CT
whose Request Attributes Sequence nests a Referenced Study Sequence and whose person
identifications carry identifying codes, a Segmentation and a Comprehensive SR.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from imaging_ingest.config import DeidOption
from imaging_ingest.deid import Deidentifier
from imaging_ingest.synth.conformance import write_conformance_set
from imaging_ingest.synth.generate import SynthSummary

from .deid_helpers import OPTION_SETS, SECRET, dicom_files, patient, resolve

pytestmark = pytest.mark.dciodvfy



def errors(path: Path) -> set[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    # the element path in a message names where, not which file: compare messages as they are
    return {re.sub(r"\s+", " ", line).strip() for line in lines if line.startswith("Error")}


@pytest.mark.parametrize("options", list(OPTION_SETS.values()), ids=list(OPTION_SETS))
def test_no_new_dciodvfy_errors(options: tuple[DeidOption, ...], submission: SynthSummary, tmp_path: Path) -> None:
    engine = Deidentifier(resolve(*options), SECRET)
    files = dicom_files(submission)
    kinds = {f.parent.name.split("_")[1] for f in files}
    assert {"CT", "MR", "RTSTRUCT", "SCANNED"} <= kinds
    seen = set()
    for i, src in enumerate(files):
        kind = src.parent.name.split("_")[1]
        if kind in seen and kind != "RTSTRUCT":
            continue  # one file per kind and option set keeps the suite quick
        seen.add(kind)
        out = tmp_path / f"{i}.dcm"
        engine.deidentify_file(src, out, patient())
        new = errors(out) - errors(src)
        assert not new, f"{kind}: {sorted(new)}"


@pytest.fixture(scope="module")
def conformance_set(submission: SynthSummary, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cts = dicom_files(submission, "CT")
    series = [p for p in cts if p.parent == cts[0].parent]
    return write_conformance_set(series, tmp_path_factory.mktemp("conformance"))


@pytest.mark.parametrize("options", list(OPTION_SETS.values()), ids=list(OPTION_SETS))
def test_no_new_dciodvfy_errors_in_nested_sequences_seg_and_sr(
    options: tuple[DeidOption, ...], conformance_set: dict[str, Path], tmp_path: Path
) -> None:
    engine = Deidentifier(resolve(*options), SECRET)
    assert set(conformance_set) == {"CT_REQUEST", "SEG", "SR"}
    for kind, src in conformance_set.items():
        assert errors(src) == set(), f"{kind}: the synthetic input itself is not conformant"
        out = tmp_path / f"{kind}.dcm"
        engine.deidentify_file(src, out, patient())
        new = errors(out) - errors(src)
        assert not new, f"{kind}: {sorted(new)}"
