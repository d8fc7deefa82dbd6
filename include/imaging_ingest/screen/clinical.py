"""De-identify clinical tables (CSV, TSV, XLSX) with the same pseudonyms and date shifts as the images.

A collection declares each table it expects and the role of every column
(``config_sections.ColumnRole``). Patient IDs become the patient's pseudonym, dates move
by the patient's own offset (so the interval between a diagnosis and a scan is the same
in the table and in the images), ages above 89 become ``90+``, free text is scrubbed of
the patient's identifying values or dropped, and ``drop`` columns go. A table with a
column nobody declared, a row without a patient, a date that does not parse, or a patient
the collection has no images of (unless allowed) is not published: the reason comes back
instead, and the caller quarantines the file.

Every cell is read as text (``dtype=str``) so that identifiers keep their leading zeros
and nothing is reformatted behind the curator's back. Outputs are deterministic: CSV with
``\\n`` line ends; XLSX as a fresh workbook (no author, fixed timestamps, no other sheets).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from imaging_ingest.config.sections import ClinicalTable, ColumnRole
from imaging_ingest.deid.freetext import TextClass, clean_text
from imaging_ingest.deid.freetext.element import format_counts

__all__ = [
    "PatientInfo",
    "TableError",
    "TableResult",
    "deidentify_table",
    "gate_projection",
    "read_table",
    "table_format",
    "table_leaks",
    "write_table",
    "xlsx_bytes",
]

_FIXED_TIME = datetime(2000, 1, 1)


class TableError(Exception):
    """A table that cannot be published as it is; the message is PHI-free (column positions, counts)."""


@dataclass(frozen=True)
class PatientInfo:
    pseudonym: str
    offset_days: int
    identifiers: tuple[str, ...] = ()  # names and IDs the patient's own files state (for scrubbing free text)


@dataclass
class TableResult:
    rows: int = 0
    columns_out: int = 0
    dates_shifted: int = 0
    ages_capped: int = 0
    free_text_pieces_removed: int = 0
    free_text_values_flagged: int = 0  # cells left with a suspect span (for the distinct-value review)
    free_text_removed_by_column: dict[str, int] = field(default_factory=dict)
    columns_dropped: int = 0
    patients: set[str] = field(default_factory=set)

    def summary(self) -> dict[str, int | str]:
        """PHI-free counts; the free-text removals per column as one ``column:n,...`` cell."""
        return {
            "clinical_rows": self.rows,
            "clinical_columns": self.columns_out,
            "clinical_dates_shifted": self.dates_shifted,
            "clinical_ages_capped": self.ages_capped,
            "clinical_text_removed": self.free_text_pieces_removed,
            "clinical_text_flagged": self.free_text_values_flagged,
            "clinical_text_removed_by_column": format_counts(self.free_text_removed_by_column),
            "clinical_columns_dropped": self.columns_dropped,
            "clinical_patients": len(self.patients),
        }


def table_format(source_path: str) -> str:
    suffix = Path(source_path).suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".xlsx": "xlsx"}.get(suffix, "unsupported")


def read_table(path: str | Path, source_path: str, table: ClinicalTable) -> pd.DataFrame:
    """Every cell as text, empty cells as ''; raise ``TableError`` for what cannot be read."""
    fmt = table_format(source_path)
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif fmt == "tsv":
            frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif fmt == "xlsx":
            frame = _read_xlsx(path, table.sheet)
        else:
            raise TableError(f"clinical table format {Path(source_path).suffix.lower() or '(none)'} is not supported")
    except TableError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, KeyError, zipfile.BadZipFile) as exc:
        raise TableError(f"clinical table cannot be read ({type(exc).__name__})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read_xlsx(path: str | Path, sheet: str | None) -> pd.DataFrame:
    from openpyxl import load_workbook

    # A file object, not a path: openpyxl refuses paths without an .xlsx suffix (cached raw objects have none).
    with open(path, "rb") as fh:
        workbook = load_workbook(io.BytesIO(fh.read()), read_only=True, data_only=True)
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise TableError("the declared XLSX sheet is missing")
        rows = list((workbook[sheet] if sheet else workbook.worksheets[0]).iter_rows(values_only=True))
    finally:
        workbook.close()
    if not rows:
        raise TableError("clinical table is empty")
    header = ["" if v is None else str(v) for v in rows[0]]
    body = [["" if v is None else _cell_text(v) for v in row] for row in rows[1:] if any(v is not None for v in row)]
    return pd.DataFrame(body, columns=header, dtype=str)


def _cell_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d") if value.time() == datetime.min.time() else value.isoformat(sep=" ")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _positions(frame: pd.DataFrame, names: Iterable[str]) -> str:
    index = {c: i + 1 for i, c in enumerate(frame.columns)}
    return ", ".join(str(index[n]) for n in names if n in index)


def check_columns(frame: pd.DataFrame, table: ClinicalTable) -> None:
    """Every column declared, every declared column present (column names may identify: positions only)."""
    if len(set(frame.columns)) != len(frame.columns):
        raise TableError("clinical table has duplicate column names")
    undeclared = [c for c in frame.columns if c not in table.columns]
    if undeclared:
        raise TableError(
            f"clinical table has {len(undeclared)} undeclared column(s) (positions {_positions(frame, undeclared)}); "
            "declare a role for each in clinical.tables[].columns"
        )
    missing = [c for c in table.columns if c not in frame.columns]
    if missing:
        raise TableError(f"clinical table lacks {len(missing)} declared column(s)")


def patient_column(table: ClinicalTable) -> str:
    return next(c for c, role in table.columns.items() if role == ColumnRole.PATIENT_ID)


def _shift(value: str, days: int, fmt: str) -> str:
    return (datetime.strptime(value.strip(), fmt) + timedelta(days=days)).strftime(fmt)


def _age(value: str) -> tuple[str, bool]:
    match = re.match(r"^\s*(\d+(?:\.\d+)?)", value)
    if not match:
        raise ValueError("not an age")
    return ("90+", True) if float(match.group(1)) > 89 else (value, False)


def deidentify_table(
    frame: pd.DataFrame, table: ClinicalTable, patients: Mapping[str, PatientInfo]
) -> tuple[pd.DataFrame, TableResult]:
    """The de-identified table (declared non-dropped columns, in order) and what was done."""
    check_columns(frame, table)
    id_column = patient_column(table)
    ids = frame[id_column].str.strip()
    if (ids == "").any():
        raise TableError(f"clinical table has {int((ids == '').sum())} row(s) without a patient id")
    unknown = sorted(set(ids) - set(patients))
    if unknown:
        raise TableError(f"clinical table names {len(unknown)} patient(s) the collection has no pseudonym for")
    result = TableResult(rows=len(frame), patients=set(ids))
    out = pd.DataFrame(index=frame.index)
    for column, role in table.columns.items():
        values = frame[column]
        if role == ColumnRole.DROP or (role == ColumnRole.FREE_TEXT and table.free_text == "drop"):
            result.columns_dropped += 1
            continue
        if role == ColumnRole.PATIENT_ID:
            out[column] = [patients[i].pseudonym for i in ids]
        elif role == ColumnRole.DATE:
            shifted, bad = [], 0
            for value, pid in zip(values, ids, strict=True):
                if not value.strip():
                    shifted.append("")
                    continue
                try:
                    shifted.append(_shift(value, patients[pid].offset_days, table.date_format))
                    result.dates_shifted += 1
                except ValueError:
                    bad += 1
            if bad:
                raise TableError(
                    f"clinical table: {bad} date cell(s) in column position {_positions(frame, [column])} "
                    f"do not match the date format {table.date_format}"
                )
            out[column] = shifted
        elif role == ColumnRole.AGE:
            ages = []
            for value in values:
                if not value.strip():
                    ages.append("")
                    continue
                try:
                    age, capped = _age(value)
                except ValueError:
                    raise TableError(
                        f"clinical table: an age in column position {_positions(frame, [column])} is not a number"
                    ) from None
                ages.append(age)
                result.ages_capped += capped
            out[column] = ages
        elif role == ColumnRole.FREE_TEXT:
            cleaned = []
            for row_index, (value, pid) in enumerate(zip(values, ids, strict=True)):
                own = [pid, *patients[pid].identifiers, *_dropped_values(frame, table, row_index)]
                text = clean_text(value, text_class=TextClass.NARRATIVE, identifiers=own)
                cleaned.append(text.text)
                result.free_text_pieces_removed += text.n_removed
                result.free_text_values_flagged += text.flagged
                if text.n_removed:
                    result.free_text_removed_by_column[column] = result.free_text_removed_by_column.get(column, 0) + text.n_removed
            out[column] = cleaned
        else:
            out[column] = values
    result.columns_out = len(out.columns)
    return out.reset_index(drop=True), result


def _dropped_values(frame: pd.DataFrame, table: ClinicalTable, row: int) -> list[str]:
    """The row's values in dropped columns (names, addresses): free text must not repeat them."""
    values = []
    for column, role in table.columns.items():
        if role == ColumnRole.DROP:
            value = str(frame[column].iloc[row]).strip()
            if value:
                values.append(value)
                values.extend(p for p in re.split(r"[\s\^,]+", value) if len(p) >= 2)
    return values


def write_table(frame: pd.DataFrame, dst: str | Path, fmt: str, sheet: str = "data") -> None:
    """Write deterministically: the same table always gives the same bytes."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("csv", "tsv"):
        frame.to_csv(dst, index=False, sep="," if fmt == "csv" else "\t", lineterminator="\n", encoding="utf-8")
        return
    from openpyxl import Workbook

    workbook = Workbook()
    worksheet = workbook.active
    assert worksheet is not None
    worksheet.title = sheet
    worksheet.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        worksheet.append(list(row))
    workbook.properties.creator = "imaging-ingest"
    workbook.properties.lastModifiedBy = None
    dst.write_bytes(xlsx_bytes(workbook, _FIXED_TIME))


def xlsx_bytes(workbook: Any, when: datetime) -> bytes:
    """A workbook's bytes with every timestamp fixed: openpyxl stamps 'now' into the properties and zip entries."""
    workbook.properties.created = when
    buffer = io.BytesIO()
    workbook.save(buffer)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            info = zipfile.ZipInfo(item.filename, date_time=(max(when.year, 1980), when.month, when.day, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            data = zin.read(item.filename)
            if item.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rb"\g<1>" + stamp + rb"\g<2>", data)
            zout.writestr(info, data)
    return out.getvalue()


def gate_projection(
    source: pd.DataFrame,
    output: pd.DataFrame,
    table: ClinicalTable,
    patients: Mapping[str, PatientInfo],
    shift_range: tuple[int, int],
    file_id: int,
) -> pd.DataFrame:
    """A PHI-free row per table row for the clinical gate, computed from the written output.

    ``patient_mapped``: the output's patient cell is the pseudonym the source's ID maps to;
    ``dates_outside_range``: date cells whose shift is not the patient's offset, or whose
    offset is outside the collection's range; ``original_ids_left``: cells anywhere in the
    row that still hold an original patient ID; ``undeclared_columns``: output columns
    that are neither declared nor kept.
    """
    id_column = patient_column(table)
    original_ids = {v.strip() for v in source[id_column] if len(v.strip()) >= 3}
    kept = [c for c, r in table.columns.items() if r != ColumnRole.DROP and not (r == ColumnRole.FREE_TEXT and table.free_text == "drop")]
    undeclared = len([c for c in output.columns if c not in kept])
    low, high = shift_range
    rows = []
    for i in range(len(source)):
        pid = source[id_column].iloc[i].strip()
        out_row = output.iloc[i] if i < len(output) else pd.Series(dtype=str)
        outside = checked = 0
        for column, role in table.columns.items():
            if role != ColumnRole.DATE or column not in output.columns:
                continue
            before, after = source[column].iloc[i].strip(), str(out_row.get(column, "")).strip()
            if not before and not after:
                continue
            checked += 1
            try:
                shift = (datetime.strptime(after, table.date_format) - datetime.strptime(before, table.date_format)).days
            except ValueError:
                outside += 1
                continue
            expected = patients[pid].offset_days if pid in patients else None
            if shift != expected or not low <= shift <= high:
                outside += 1
        cells = [str(v) for v in out_row.tolist()]
        left = sum(1 for cell in cells for original in original_ids if original and original in cell)
        rows.append(
            {
                "file_id": file_id,
                "row": i,
                "pseudo_patient_id": str(out_row.get(id_column, "")) or None,
                "patient_mapped": pid in patients and out_row.get(id_column) == patients[pid].pseudonym,
                "dates_checked": checked,
                "dates_outside_range": outside,
                "original_ids_left": left,
                "undeclared_columns": undeclared,
            }
        )
    return pd.DataFrame(rows)


def table_leaks(output: pd.DataFrame, needles_by_row: Callable[[int], Iterable[str]]) -> int:
    """Rows of the written table in which a cell holds one of that row's identifying values (case-insensitive)."""
    leaks = 0
    for i in range(len(output)):
        cells = " \x00 ".join(str(v) for v in output.iloc[i].tolist()).lower()
        if any(n.lower() in cells for n in needles_by_row(i) if len(n) >= 4):
            leaks += 1
    return leaks
