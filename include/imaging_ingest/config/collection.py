"""Collection configuration: one YAML file per collection, validated before any DAG exists.

A collection config says what a collection is (id, title, licence, access tier), where its
submissions arrive (the drop), when to look for them (schedule) and how to de-identify
them. A mistake in one file must fail loudly, naming the file and the field, without
hiding the other collections: ``load_collections`` returns the good configs and the errors
side by side.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imaging_ingest.config.sections import ClinicalConfig, PathologyConfig, PixelsConfig

__all__ = [
    "ArchiveLimits",
    "CitationConfig",
    "CollectionConfig",
    "ConfigError",
    "DeidOption",
    "DeidConfig",
    "DropConfig",
    "FixityConfig",
    "License",
    "TagOverride",
    "default_modalities",
    "load_collection_config",
    "load_collections",
]


class License(StrEnum):
    CC_BY_4_0 = "CC-BY-4.0"
    RESTRICTED = "restricted"


class DeidOption(StrEnum):
    """The PS3.15 Annex E options a collection may select (names follow Table E.1-1's columns)."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"


_TAG_RE = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")
_KEYWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


class TagOverride(BaseModel):
    """A per-collection exception to the profile for one attribute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["keep", "remove", "replace", "shift", "hash", "empty"]
    value: str | None = Field(default=None, description="The replacement value, for action 'replace'.")

    @model_validator(mode="after")
    def _value_only_for_replace(self) -> TagOverride:
        if self.action == "replace" and self.value is None:
            raise ValueError("action 'replace' needs a 'value'")
        if self.action != "replace" and self.value is not None:
            raise ValueError(f"action {self.action!r} takes no 'value'")
        return self


class DeidConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    options: list[DeidOption] = Field(
        default_factory=lambda: [DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, DeidOption.CLEAN_DESCRIPTORS]
    )
    overrides: dict[str, TagOverride] = Field(
        default_factory=dict, description="Keyed by keyword (PatientSex) or tag ((0010,0040) or 00100040)."
    )
    date_shift_days: tuple[int, int] = Field(
        default=(-3650, -30), description="Per-patient offsets are drawn from this closed range of days."
    )
    pseudonym_prefix: str | None = Field(
        default=None, pattern=r"^[A-Z0-9][A-Z0-9-]{0,15}$", description="Defaults to the collection id upper-cased."
    )

    @field_validator("overrides")
    @classmethod
    def _known_tags(cls, value: dict[str, TagOverride]) -> dict[str, TagOverride]:
        for key in value:
            if not (_TAG_RE.match(key) or _KEYWORD_RE.match(key)):
                raise ValueError(f"override key {key!r} is neither a DICOM keyword nor a tag like (0010,0010)")
        return value

    @field_validator("date_shift_days")
    @classmethod
    def _nonzero_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if low > high:
            raise ValueError(f"empty range: {low} > {high}")
        if low <= 0 <= high:
            raise ValueError("the range must not contain 0: an unshifted date would keep the original")
        return value

    @model_validator(mode="after")
    def _one_temporal_option(self) -> DeidConfig:
        if {DeidOption.RETAIN_LONGITUDINAL_FULL_DATES, DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES} <= set(
            self.options
        ):
            raise ValueError("choose one of retain_longitudinal_full_dates and retain_longitudinal_modified_dates")
        return self


class ArchiveLimits(BaseModel):
    """Limits on zip/tar archives in a drop: what a member may be before it is a bomb.

    An archive over ``max_members`` or ``max_total_bytes`` (uncompressed, as its headers
    declare, and as actually written, tar headers included) is quarantined whole, as is one
    whose whole expansion ratio or extended headers are over ``max_ratio`` or
    ``max_header_bytes``; a single zip member whose compression ratio exceeds
    ``max_ratio`` is quarantined alone.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_members: int = Field(default=100_000, ge=1, description="Members (files, links, folders) per archive.")
    max_total_bytes: int = Field(default=500 * 1024**3, ge=1, description="Uncompressed bytes per archive.")
    max_ratio: float = Field(default=200.0, gt=1, description="Uncompressed/compressed size of one zip member, "
                             "and of the whole archive (zip or tar, headers included).")
    max_header_bytes: int = Field(default=1024 * 1024, ge=1, description="Bytes of tar extended headers (PAX, "
                                  "GNU long names) per archive; tarfile holds each whole in memory.")


class DropConfig(BaseModel):
    """Where a collection's submissions arrive: one sub-folder (or prefix) per submission."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="file:///path, s3://bucket/prefix or sftp://host/path")
    connection_id: str | None = Field(default=None, description="Airflow Connection holding credentials.")
    completion: Literal["marker", "stable"] = Field(
        default="marker",
        description="'marker': a submission is complete when the marker file exists; "
        "'stable': when its listing is unchanged across two polls.",
    )
    marker: str = Field(default="READY", pattern=r"^[A-Za-z0-9._-]+$")
    archives: ArchiveLimits = Field(default_factory=ArchiveLimits)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in {"file", "s3", "sftp"}:
            raise ValueError(f"unsupported drop URL {value!r}: use file://, s3:// or sftp://")
        return value


class Creator(BaseModel):
    """A creator of a collection, as DataCite lists it (a person or an organisation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, description="'Family, Given' for a person.")
    name_type: Literal["Personal", "Organizational"] = "Personal"
    affiliation: str | None = None
    orcid: str | None = Field(default=None, pattern=r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")


_DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")


class CitationConfig(BaseModel):
    """How each published version is cited: DataCite metadata and the citation line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    creators: list[Creator] = Field(default_factory=list, description="Defaults to the publisher.")
    publisher: str = Field(default="Imaging Archive", min_length=1, max_length=200)
    doi: str = Field(
        default="10.5072/{collection}.v{version}",
        description="DOI of a version; {collection} and {version} are filled in. 10.5072 is DataCite's "
        "test prefix: a placeholder until the archive's own prefix is configured.",
    )
    concept_doi: str | None = Field(default=None, description="A DOI for the collection across versions.")
    landing_page: str | None = Field(default=None, description="URL template, e.g. https://archive.example/{collection}/v{version}")
    subjects: list[str] = Field(default_factory=list)
    restricted_license: str = Field(default="Restricted data use agreement", min_length=1)
    restricted_license_url: str | None = None

    @field_validator("doi")
    @classmethod
    def _doi_template(cls, value: str) -> str:
        try:
            sample = value.format(collection="c", version=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"DOI template {value!r}: only {{collection}} and {{version}} may be used ({exc})") from None
        if not _DOI_RE.match(sample):
            raise ValueError(f"DOI template {value!r} does not give a DOI like 10.1234/suffix")
        return value

    @field_validator("concept_doi")
    @classmethod
    def _concept_doi(cls, value: str | None) -> str | None:
        if value is not None and not _DOI_RE.match(value):
            raise ValueError(f"{value!r} is not a DOI like 10.1234/suffix")
        return value


class FixityConfig(BaseModel):
    """How the fixity audit re-verifies a collection's published objects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["all", "sample"] = Field(
        default="sample",
        description="'all': every object on every audit; 'sample': the least recently checked share, "
        "so that every object is checked within period_days of daily audits.",
    )
    period_days: int = Field(default=30, ge=1, le=3650)


_CRON_FIELD = r"[\d*/,\-A-Za-z?LW#]+"
_CRON_RE = re.compile(rf"^{_CRON_FIELD}(\s+{_CRON_FIELD}){{4,5}}$")
_PRESETS = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}


@cache
def default_modalities() -> tuple[str, ...]:
    """Every Modality defined term of the standard (current and retired), from ``data/modalities.csv``.

    The archive takes whatever the standard defines unless a collection restricts it: a
    modality is not a privacy risk in itself (burned-in text is screened per modality).
    """
    path = Path(str(resources.files("imaging_ingest") / "data" / "modalities.csv"))
    with path.open(newline="", encoding="utf-8") as fh:
        return tuple(row["modality"] for row in csv.DictReader(line for line in fh if not line.startswith("#")))


class CollectionConfig(BaseModel):
    """One collection, as curated by archive staff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,47}$", description="Used in DAG ids and object keys.")
    title: str = Field(min_length=3, max_length=200)
    description: str = ""
    license: License
    tier: Literal["public", "restricted"] = "public"
    drop: DropConfig
    schedule: str | None = Field(default=None, description="Cron expression, preset such as @daily, or null.")
    modalities: list[str] = Field(
        default_factory=lambda: list(default_modalities()),
        min_length=1,
        description="Modalities accepted; by default every defined term of PS3.3 C.7.3.1.1.1 (data/modalities.csv). "
        "Pixel screening still applies to those that carry burned-in text.",
    )
    missing_patient_id: Literal["per_study", "quarantine"] = Field(
        default="per_study",
        description="A file without a Patient ID (Type 2: present, may be empty): each such study becomes a "
        "pseudonymous patient of its own (nothing links it to other studies), or the file is quarantined.",
    )
    batch_size: int = Field(default=200, ge=1, le=5000, description="Files per de-identification batch.")
    workers: int = Field(default=1, ge=1, le=64, description="Processes per de-identification batch.")
    deid: DeidConfig = Field(default_factory=DeidConfig)
    citation: CitationConfig = Field(default_factory=CitationConfig)
    fixity: FixityConfig = Field(default_factory=FixityConfig)
    pixels: PixelsConfig = Field(default_factory=PixelsConfig)
    clinical: ClinicalConfig = Field(default_factory=ClinicalConfig)
    pathology: PathologyConfig = Field(default_factory=PathologyConfig)
    owner: str = "archive"
    run_deadline_minutes: int = Field(
        default=360, ge=5, le=10080, description="Alert when a run is still going this long after it was queued."
    )
    tags: list[str] = Field(default_factory=list)
    derived_from: list[str] = Field(
        default_factory=list,
        description="Collections whose published data this one's analysis results (SEG, SR, RTSTRUCT) reference.",
    )
    release_approvals: int = Field(
        default=1, ge=1, le=3,
        description="Different curators who must approve a quarantined image before it is released (two-person rule).",
    )
    free_text_flags: Literal["remove", "quarantine"] = Field(
        default="remove",
        description="A free-text value the detector flagged and no curator has decided on yet: removed from the "
        "file (the file is published), or the whole file quarantined until a curator has reviewed the value.",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None or value in _PRESETS or _CRON_RE.match(value.strip()):
            return value
        raise ValueError(f"{value!r} is neither a cron expression nor one of {', '.join(sorted(_PRESETS))}")

    @field_validator("modalities")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @model_validator(mode="after")
    def _restricted_stays_restricted(self) -> CollectionConfig:
        if self.license == License.RESTRICTED and self.tier != "restricted":
            raise ValueError("a collection under the restricted licence must use tier 'restricted'")
        return self

    @property
    def dag_id(self) -> str:
        return f"ingest__{self.id}"

    @property
    def pseudonym_prefix(self) -> str:
        return self.deid.pseudonym_prefix or self.id.upper().replace("_", "-")[:16]


class ConfigError(ValueError):
    """A collection config that cannot be used; the message names the file and the fields."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


#: Variables a collection config may name: paths that differ per machine, and the operators' own
#: ``IMAGING_CONFIG_*``. Anything else (``${IMAGING_INGEST_SECRET}``, ``${AWS_SECRET_ACCESS_KEY}``)
#: is refused: a config's values end up in titles, citations and releases, which are published.
ENV_ALLOWED = frozenset({"IMAGING_INGEST_DROP_ROOT", "IMAGING_INGEST_HOME"})
ENV_ALLOWED_PREFIX = "IMAGING_CONFIG_"


class EnvNotAllowed(KeyError):
    """A ``${VAR}`` outside the allow-list."""


def _expand_env(value: Any, environ: dict[str, str] | os._Environ[str]) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in string values (paths differ per machine); allow-listed names only."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name not in ENV_ALLOWED and not name.startswith(ENV_ALLOWED_PREFIX):
                raise EnvNotAllowed(name)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise KeyError(name)

        return _ENV_RE.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, environ) for v in value]
    return value


def _describe(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"field '{where}': {item['msg']}")
    return problems


def load_collection_config(path: str | Path, environ: dict[str, str] | None = None) -> CollectionConfig:
    """Read and validate one collection YAML; raise ``ConfigError`` naming the file and fields."""
    import yaml  # deferred: ``deidentify`` without --config reads no YAML; saves ~25 ms of CLI start-up

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"cannot read: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"invalid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(path, ["expected a mapping at the top level"])
    try:
        raw = _expand_env(raw, os.environ if environ is None else environ)
    except EnvNotAllowed as exc:
        allowed = ", ".join(sorted(ENV_ALLOWED))
        raise ConfigError(path, [f"environment variable {exc.args[0]} may not be used in a collection config "
                                 f"(allowed: {allowed}, {ENV_ALLOWED_PREFIX}*)"]) from None
    except KeyError as exc:
        raise ConfigError(path, [f"environment variable {exc.args[0]} is not set and has no default"]) from None
    try:
        config = CollectionConfig.model_validate(raw, context={"config_dir": path.parent})
    except ValidationError as exc:
        raise ConfigError(path, _describe(exc)) from None
    expected = path.stem.replace("-", "_")
    if config.id != expected:
        raise ConfigError(path, [f"field 'id': {config.id!r} must match the file name {expected!r}"])
    return config


@dataclass(frozen=True)
class LoadedCollections:
    configs: list[CollectionConfig]
    errors: list[ConfigError]


def config_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in {".yaml", ".yml"})


def load_collections(paths: Iterable[Path] | str | Path) -> LoadedCollections:
    """Load every config, isolating failures: one bad file never hides the others."""
    files = config_files(paths) if isinstance(paths, str | Path) else list(paths)
    configs: list[CollectionConfig] = []
    errors: list[ConfigError] = []
    seen: dict[str, Path] = {}
    for file in files:
        try:
            config = load_collection_config(file)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if config.id in seen:
            errors.append(ConfigError(file, [f"field 'id': {config.id!r} is already used by {seen[config.id]}"]))
            continue
        seen[config.id] = file
        configs.append(config)
    return LoadedCollections(configs, errors)
