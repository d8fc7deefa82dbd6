"""Optional collection-config sections for PHI beyond headers: pixels, clinical tables, pathology.

Each section has defaults, so a collection YAML without them loads as before (images are
screened, supporting files are quarantined as undeclared). The models are plain pydantic
with ``extra="forbid"``, like the rest of ``config.py``; they stay free of heavy imports
because the DAG factory validates every collection config at parse time.

Redaction rules are data (CTP's DicomPixelAnonymizer signatures, as YAML or CSV): a
reference names a packaged starter set (``starter``) or a file, resolved against the
folder of the collection YAML and loaded when the config is, so a broken rules file
fails the config, naming the file.
"""

from __future__ import annotations

import csv
import fnmatch
import re
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

__all__ = [
    "ClinicalConfig",
    "ClinicalTable",
    "ColumnRole",
    "PathologyConfig",
    "PixelsConfig",
    "RedactionRule",
    "load_redaction_rules",
]

_BUILTIN_RULES = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class RedactionRule(BaseModel):
    """Regions to blank in images of one device and geometry (a CTP pixel-anonymizer signature).

    Every given criterion must hold: ``manufacturer`` and ``model`` match as case-insensitive
    substrings (as CTP's ``containsIgnoreCase``), the others exactly. Regions are
    ``[x, y, width, height]`` in pixels from the top left corner, as in CTP's scripts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    manufacturer: str | None = None
    model: str | None = None
    modality: str | None = None
    sop_class_uid: str | None = Field(default=None, pattern=r"^[0-9.]{1,64}$")
    rows: int | None = Field(default=None, ge=1)
    columns: int | None = Field(default=None, ge=1)
    regions: list[tuple[int, int, int, int]] = Field(min_length=1)
    note: str = ""

    @field_validator("regions")
    @classmethod
    def _positive(cls, value: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
        for x, y, w, h in value:
            if x < 0 or y < 0 or w <= 0 or h <= 0:
                raise ValueError(f"region {[x, y, w, h]} needs x, y >= 0 and width, height > 0")
        return value

    @model_validator(mode="after")
    def _some_criterion(self) -> RedactionRule:
        if not any((self.manufacturer, self.model, self.modality, self.sop_class_uid, self.rows, self.columns)):
            raise ValueError(f"rule {self.id!r} matches every image: give at least one criterion")
        return self

    def matches(
        self,
        manufacturer: str | None,
        model: str | None,
        modality: str | None,
        sop_class_uid: str | None,
        rows: int | None,
        columns: int | None,
    ) -> bool:
        def contains(needle: str | None, value: str | None) -> bool:
            return needle is None or (value is not None and needle.lower() in value.lower())

        def equals(expected: object, value: object) -> bool:
            return expected is None or expected == value

        return (
            contains(self.manufacturer, manufacturer)
            and contains(self.model, model)
            and equals(self.modality.upper() if self.modality else None, (modality or "").upper() or None)
            and equals(self.sop_class_uid, sop_class_uid)
            and equals(self.rows, rows)
            and equals(self.columns, columns)
        )


def _rules_from_csv(text: str) -> list[dict[str, Any]]:
    """CSV rules: one row per rule, ``regions`` as ``x,y,w,h;x,y,w,h``; empty cells mean 'any'."""
    rows = []
    for row in csv.DictReader(line for line in text.splitlines() if not line.startswith("#")):
        item: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
        item["regions"] = [[int(v) for v in part.split(",")] for part in item.get("regions", "").split(";") if part]
        for key in ("rows", "columns"):
            if key in item:
                item[key] = int(item[key])
        rows.append(item)
    return rows


def load_redaction_rules(reference: str, base_dir: Path | None = None) -> list[RedactionRule]:
    """Load a rules file (YAML with a ``rules`` list, or CSV) or a packaged set by name."""
    if _BUILTIN_RULES.match(reference) and "." not in reference:
        resource = resources.files("imaging_ingest") / "data" / "redaction" / f"{reference}.yaml"
        if not resource.is_file():
            raise ValueError(f"no packaged redaction rule set named {reference!r}")
        text, suffix, where = resource.read_text(encoding="utf-8"), ".yaml", f"packaged set {reference!r}"
    else:
        path = Path(reference)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read redaction rules {path}: {exc.strerror or exc}") from None
        suffix, where = path.suffix.lower(), str(path)
    try:
        if suffix == ".csv":
            items = _rules_from_csv(text)
        else:
            import yaml  # deferred: only a config naming YAML rules reads one; saves ~25 ms of CLI start-up

            document = yaml.safe_load(text) or {}
            items = document.get("rules", []) if isinstance(document, dict) else document
        return [RedactionRule.model_validate(item) for item in items]
    except Exception as exc:  # noqa: BLE001 - any parse or validation problem names the file
        raise ValueError(f"invalid redaction rules in {where}: {exc}") from None


class PixelsConfig(BaseModel):
    """Burned-in text screening and redaction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ocr: bool = Field(
        default=False,
        description="OCR every image; when false only risky images (screen captures, US, XA, documents, "
        "burned-in annotation declared) are OCR'd.",
    )
    ocr_max_side: int = Field(default=1024, ge=128, le=4096, description="OCR a frame downsampled to this longest side.")
    ocr_min_confidence: int = Field(default=50, ge=0, le=100)
    ocr_workers: int = Field(default=2, ge=1, le=16, description="Images screened at once (Tesseract runs per image).")
    allow_scanned_documents: bool = Field(
        default=False, description="Publish scanned documents and encapsulated PDF/CDA instead of quarantining them."
    )
    redaction_rules: list[RedactionRule] = Field(
        default_factory=list,
        description="Inline rules, names of packaged sets (e.g. 'starter') or rule files (YAML/CSV), "
        "relative to the collection YAML's folder.",
    )

    @field_validator("redaction_rules", mode="before")
    @classmethod
    def _load_references(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        base_dir = (info.context or {}).get("config_dir")
        rules: list[Any] = []
        for item in value:
            if isinstance(item, str):
                rules.extend(load_redaction_rules(item, Path(base_dir) if base_dir else None))
            else:
                rules.append(item)
        return rules

    @field_validator("redaction_rules")
    @classmethod
    def _unique_ids(cls, value: list[RedactionRule]) -> list[RedactionRule]:
        seen: set[str] = set()
        for rule in value:
            if rule.id in seen:
                raise ValueError(f"redaction rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return value


class ColumnRole(StrEnum):
    """What a clinical table's column holds, and so what de-identification does to it."""

    PATIENT_ID = "patient_id"  # replaced by the patient's pseudonym (the images' PatientID)
    DATE = "date"  # shifted by the patient's date offset
    AGE = "age"  # kept; ages above 89 become "90+"
    FREE_TEXT = "free_text"  # scrubbed or dropped (the table's free_text policy)
    KEEP = "keep"  # kept as it is (the curator vouches it identifies no one)
    DROP = "drop"  # removed


class ClinicalTable(BaseModel):
    """One kind of clinical table a submission may carry (CSV, TSV or XLSX)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,47}$", description="Published file name (never the submitted one).")
    pattern: str = Field(min_length=1, description="Glob on the file's path in the submission, e.g. '**/clinical*.csv'.")
    sheet: str | None = Field(default=None, description="XLSX sheet to read; the first sheet when not given.")
    date_format: str = Field(default="%Y-%m-%d", description="strptime format of the date columns.")
    free_text: Literal["scrub", "drop"] = "scrub"
    allow_unknown_patients: bool = Field(
        default=False,
        description="Give new pseudonyms to patients the collection has no images of (else the table is quarantined).",
    )
    columns: dict[str, ColumnRole] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_patient_column(self) -> ClinicalTable:
        ids = [c for c, role in self.columns.items() if role == ColumnRole.PATIENT_ID]
        if len(ids) != 1:
            raise ValueError(f"table {self.name!r} needs exactly one column with role patient_id, has {len(ids)}")
        if "%" not in self.date_format:
            raise ValueError(f"date_format {self.date_format!r} is not a strptime format")
        return self

    def matches(self, source_path: str) -> bool:
        path = source_path.replace("\\", "/")
        return fnmatch.fnmatch(path, self.pattern) or (
            self.pattern.startswith("**/") and fnmatch.fnmatch(path, self.pattern[3:])
        )


class ClinicalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tables: list[ClinicalTable] = Field(default_factory=list)

    @field_validator("tables")
    @classmethod
    def _unique_names(cls, value: list[ClinicalTable]) -> list[ClinicalTable]:
        names = [t.name for t in value]
        if len(names) != len(set(names)):
            raise ValueError("clinical table names must be unique")
        return value

    def table_for(self, source_path: str) -> ClinicalTable | None:
        return next((t for t in self.tables if t.matches(source_path)), None)


#: ImageDescription keys of an Aperio SVS that describe the scan, not the patient or the operator.
DEFAULT_DESCRIPTION_KEYS = (
    "AppMag",
    "MPP",
    "StripeWidth",
    "Exposure Time",
    "Exposure Scale",
    "Gamma",
    "Focus Offset",
    "Left",
    "Top",
    "LineCameraSkew",
    "LineAreaXOffset",
    "LineAreaYOffset",
    "OriginalWidth",
    "OriginalHeight",
    "Filtered",
    "Compression Quality",
    "ICC Profile",
)


class PathologyConfig(BaseModel):
    """Whole-slide images: SVS / pyramidal TIFF files and DICOM WSI label and overview images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Accept slide files (.svs, .tif, .tiff); else they are quarantined.")
    keep_description_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_DESCRIPTION_KEYS))
    keep_thumbnail: bool = Field(default=True, description="Keep an SVS's thumbnail page (tissue only, no label).")
    patient_id_from_path: str | None = Field(
        default=None,
        description="Regex with a named group 'patient_id' applied to the slide's path in the submission; "
        "by default the slide belongs to the one patient whose DICOM files share its nearest folder.",
    )
    slide_patients: dict[str, str] = Field(
        default_factory=dict,
        description="A slide-to-patient table: the slide's path in the submission (or its file name) -> the "
        "patient's ID. With it or patient_id_from_path, a slide needs no DICOM image of its patient "
        "(pathology-only collections); the patient gets a pseudonym of its own.",
    )
    dicom_wsi_label_images: Literal["drop", "redact", "quarantine"] = Field(
        default="drop",
        description="DICOM WSI LABEL and OVERVIEW instances: not published (recorded as rejected), "
        "published with every pixel blanked, or held for a curator.",
    )

    @field_validator("patient_id_from_path")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "patient_id" not in compiled.groupindex:
            raise ValueError("the regular expression needs a named group (?P<patient_id>...)")
        return value
