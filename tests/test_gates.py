"""Great Expectations gates: pass, fail with a readable message and reports, never see PHI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from imaging_ingest.core.gates import GateFailed, gate_inputs, load_suite, run_gate, suite_columns
from imaging_ingest.pipeline.manifest import public_projection

PARAMS = {"files_in": 3, "modalities": ["CT", "MR"], "pseudonym_regex": r"^DEMO-\d{4,}$", "uid_regex": r"^2\.25\.\d+$"}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "file_id": [0, 1, 2],
            "status": ["ok", "ok", "quarantined"],
            "kind": ["dicom", "dicom", "other"],
            "reason": [None, None, "zero-byte file"],
            "sop_uid_h": ["a1", "b2", None],
            "series_uid_h": ["s", "s", None],
            "modality": ["CT", "CT", None],
            "patients_in_series": [1.0, 1.0, None],
            "pseudo_patient_id": ["DEMO-0001", "DEMO-0001", None],
        }
    )


def test_suites_are_data() -> None:
    for name in ("inventory", "deidentified", "verified"):
        suite = load_suite(name)
        assert suite["name"] == name and suite["expectations"]


def test_inventory_gate_passes_and_writes_reports(tmp_path: Path) -> None:
    result = run_gate("inventory", _frame(), PARAMS, tmp_path)
    assert result.success and result.evaluated == len(load_suite("inventory")["expectations"])
    assert result.json_report.exists() and "<html" in result.html_report.read_text().lower()


def test_a_gate_needs_only_the_columns_its_suite_names(tmp_path: Path) -> None:
    columns = suite_columns("inventory")
    assert columns[0] == "file_id" and "kind" in columns  # "kind" is only named in a row condition
    assert set(columns) <= set(_frame().columns)
    assert run_gate("inventory", _frame()[columns], PARAMS, tmp_path).success
    assert "sop_uid" in gate_inputs("inventory") and "sop_uid_h" not in gate_inputs("inventory")


def test_failed_gate_names_expectations_and_files(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[1, "sop_uid_h"] = "a1"  # duplicate
    frame.loc[0, "modality"] = "XA"  # not accepted
    frame.loc[2, "reason"] = None  # quarantined without a reason
    with pytest.raises(GateFailed) as failure:
        run_gate("inventory", frame, PARAMS, tmp_path)
    message = str(failure.value)
    assert "expect_column_values_to_be_unique(sop_uid_h)" in message
    assert "expect_column_values_to_be_in_set(modality)" in message and "file ids 0" in message
    assert "expect_column_values_to_not_be_null(reason)" in message
    assert (tmp_path / "inventory.html").exists()


def test_conservation_is_checked(tmp_path: Path) -> None:
    with pytest.raises(GateFailed, match="expect_table_row_count_to_equal"):
        run_gate("inventory", _frame().iloc[:2], PARAMS, tmp_path)


def test_gates_see_a_projection_without_phi() -> None:
    manifest = pd.DataFrame(
        {"file_id": [0], "source_path": ["DOE_JOHN/1.dcm"], "patient_id": ["MRN123"], "sop_uid": ["1.2.3"],
         "series_uid": ["1.2"], "study_uid": ["1.1"], "status": ["ok"]}
    )
    projection = public_projection(manifest, b"k" * 32)
    text = projection.to_csv()
    assert "DOE" not in text and "MRN123" not in text and "1.2.3" not in text
    assert set(projection.columns) >= {"sop_uid_h", "series_uid_h", "study_uid_h"}
