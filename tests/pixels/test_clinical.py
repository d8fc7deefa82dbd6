"""Clinical tables: IDs to the images' pseudonyms, dates by the patient's offset, free text scrubbed, the gate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from imaging_ingest.config.sections import ClinicalTable
from imaging_ingest.core.gates import GateFailed, run_gate
from imaging_ingest.screen.clinical import (
    PatientInfo,
    TableError,
    deidentify_table,
    gate_projection,
    read_table,
    table_leaks,
    write_table,
    xlsx_bytes,
)

TABLE = ClinicalTable(
    name="clinical",
    pattern="**/clinical.csv",
    columns={
        "patient_id": "patient_id",
        "patient_name": "drop",
        "diagnosis_date": "date",
        "age": "age",
        "stage": "keep",
        "notes": "free_text",
    },
)
PATIENTS = {
    "MRN4839201": PatientInfo("DEMO-0001", -400, ("HOLLOWAY^BRENDAN", "HOLLOWAY BRENDAN", "HOLLOWAY", "BRENDAN")),
    "MRN1000002": PatientInfo("DEMO-0002", -1000),
}


def _source() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["MRN4839201", "MRN1000002", "MRN4839201"],
            "patient_name": ["QUARTERMAINE^THEODORE", "ASHCROFT^BEATRIX", "QUARTERMAINE^THEODORE"],
            "diagnosis_date": ["2019-03-02", "2020-12-31", ""],
            "age": ["61", "93", ""],
            "stage": ["IIIA", "IV", "IIIA"],
            "notes": [
                "THEODORE QUARTERMAINE (MRN4839201) seen by Dr HOLLOWAY BRENDAN on 2019-03-04, phone (614) 555-0199",
                "stable",
                "",
            ],
        },
        dtype=str,
    )


def test_ids_become_pseudonyms_dates_shift_by_the_patients_offset_and_text_is_scrubbed() -> None:
    out, result = deidentify_table(_source(), TABLE, PATIENTS)
    assert list(out.columns) == ["patient_id", "diagnosis_date", "age", "stage", "notes"]
    assert list(out["patient_id"]) == ["DEMO-0001", "DEMO-0002", "DEMO-0001"]
    assert list(out["diagnosis_date"]) == ["2018-01-26", "2018-04-06", ""]  # -400 and -1000 days (2020 is a leap year)
    assert list(out["age"]) == ["61", "90+", ""]
    assert list(out["stage"]) == ["IIIA", "IV", "IIIA"]
    notes = out["notes"][0]
    for value in ("QUARTERMAINE", "THEODORE", "MRN4839201", "HOLLOWAY", "BRENDAN", "2019-03-04", "555"):
        assert value not in notes
    assert "seen by Dr" in notes
    assert result.dates_shifted == 2 and result.ages_capped == 1 and result.columns_dropped == 1


def test_free_text_can_be_dropped_instead() -> None:
    out, _ = deidentify_table(_source(), TABLE.model_copy(update={"free_text": "drop"}), PATIENTS)
    assert "notes" not in out.columns


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(secret="x"), "1 undeclared column(s) (positions 7)"),
        (lambda f: f.drop(columns=["stage"]), "lacks 1 declared column"),
        (lambda f: f.assign(patient_id=["MRN4839201", "", "MRN4839201"]), "1 row(s) without a patient id"),
        (lambda f: f.assign(patient_id=["MRN4839201", "MRN9999999", "MRN4839201"]), "1 patient(s) the collection has no pseudonym"),
        (lambda f: f.assign(diagnosis_date=["03/02/2019", "", ""]), "do not match the date format"),
        (lambda f: f.assign(age=["sixty", "", ""]), "is not a number"),
    ],
)
def test_tables_that_cannot_be_published_say_why_without_values(change, message: str) -> None:
    with pytest.raises(TableError) as error:
        deidentify_table(change(_source()), TABLE, PATIENTS)
    assert message in str(error.value)
    assert "MRN" not in str(error.value) and "QUARTERMAINE" not in str(error.value)


def test_csv_and_xlsx_round_trip_deterministically(tmp_path: Path) -> None:
    out, _ = deidentify_table(_source(), TABLE, PATIENTS)
    for fmt in ("csv", "xlsx"):
        write_table(out, tmp_path / f"a.{fmt}", fmt, sheet="clinical")
        write_table(out, tmp_path / f"b.{fmt}", fmt, sheet="clinical")
        assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes()
        back = read_table(tmp_path / f"a.{fmt}", f"x.{fmt}", TABLE)
        assert back.equals(out)


def test_xlsx_input_is_read_as_text_from_the_declared_sheet(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.title = "other"
    workbook.active.append(["nothing"])
    sheet = workbook.create_sheet("data")
    sheet.append(["mrn", "visit"])
    sheet.append(["00123", "2020-01-02"])
    path = tmp_path / "raw-object"  # cached raw objects have no suffix
    path.write_bytes(xlsx_bytes(workbook, __import__("datetime").datetime(2024, 1, 1)))
    table = ClinicalTable(name="t", pattern="*.xlsx", sheet="data", columns={"mrn": "patient_id", "visit": "date"})
    frame = read_table(path, "t.xlsx", table)
    assert frame.to_dict("records") == [{"mrn": "00123", "visit": "2020-01-02"}]
    with pytest.raises(TableError, match="sheet is missing"):
        read_table(path, "t.xlsx", table.model_copy(update={"sheet": "nope"}))


def test_gate_passes_on_a_correct_table_and_fails_on_each_broken_invariant(tmp_path: Path) -> None:
    source = _source()
    out, _ = deidentify_table(source, TABLE, PATIENTS)
    parameters = {"pseudonym_regex": r"^DEMO-\d{4,}$"}
    projection = gate_projection(source, out, TABLE, PATIENTS, (-3650, -30), file_id=7)
    assert set(projection.columns) >= {"pseudo_patient_id", "patient_mapped", "dates_outside_range", "original_ids_left"}
    assert not projection.astype(str).apply(lambda c: c.str.contains("MRN|QUARTERMAINE")).any().any()
    run_gate("clinical", projection, parameters)

    wrong_shift = out.assign(diagnosis_date=["2019-03-01", "2018-04-06", ""])
    kept_id = out.assign(stage=["MRN4839201", "IV", "IIIA"])
    unmapped = out.assign(patient_id=["DEMO-0002", "DEMO-0002", "DEMO-0001"])
    extra_column = out.assign(patient_name=source["patient_name"])
    for broken, expectation in (
        (wrong_shift, "dates_outside_range"),
        (kept_id, "original_ids_left"),
        (unmapped, "patient_mapped"),
        (extra_column, "undeclared_columns"),
    ):
        with pytest.raises(GateFailed) as failure:
            run_gate("clinical", gate_projection(source, broken, TABLE, PATIENTS, (-3650, -30), 7), parameters)
        assert expectation in str(failure.value)


def test_leak_check_reads_the_written_table() -> None:
    out, _ = deidentify_table(_source(), TABLE, PATIENTS)
    assert table_leaks(out, lambda row: ["MRN4839201", "QUARTERMAINE"]) == 0
    leaked = out.assign(stage=["see QUARTERMAINE", "IV", "IIIA"])
    assert table_leaks(leaked, lambda row: ["QUARTERMAINE"]) == 1
