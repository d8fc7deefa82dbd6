"""The de-identification profile: PS3.15 Table E.1-1 and our keep lists, read from data files.

The table is data (``data/ps3_15_table_e1_1.csv``), not code: each row gives an attribute's
Basic Profile action and its action under each option. ``Profile.resolve`` folds the
options and per-tag overrides a collection selects into one decision per tag, made once
per batch, so that the per-element work in ``engine`` is a dictionary lookup.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from ..config import DeidConfig, DeidOption, TagOverride

__all__ = [
    "Action",
    "OPTION_ORDER",
    "Profile",
    "ResolvedProfile",
    "Rule",
    "collapse_code",
    "parse_tag",
]


class Action(StrEnum):
    """What happens to one attribute (PS3.15 E.1.1 action codes, plus our overrides)."""

    KEEP = "K"
    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    CLEAN = "C"
    UID = "U"
    REPLACE = "replace"
    SHIFT = "shift"
    HASH = "hash"


#: The order in which options are applied: a later option's cell wins over an earlier one.
OPTION_ORDER: tuple[DeidOption, ...] = (
    DeidOption.CLEAN_GRAPHICS,
    DeidOption.CLEAN_STRUCTURED_CONTENT,
    DeidOption.CLEAN_DESCRIPTORS,
    DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
    DeidOption.RETAIN_LONGITUDINAL_FULL_DATES,
    DeidOption.RETAIN_PATIENT_CHARACTERISTICS,
    DeidOption.RETAIN_DEVICE_IDENTITY,
    DeidOption.RETAIN_INSTITUTION_IDENTITY,
    DeidOption.RETAIN_UIDS,
    DeidOption.RETAIN_SAFE_PRIVATE,
)

_CODE_RE = re.compile(r"^[DZXKCU](/[DZXKCU])*\*?$")


def collapse_code(code: str) -> Action:
    """Reduce a combined code such as ``X/Z/D`` to one action.

    The standard lets the choice depend on the IOD's attribute type (remove if optional,
    empty if Type 2, dummy if Type 1). Without the IOD at hand we take the choice that
    keeps the attribute present and carries no information: U over D over Z over X.
    """
    code = code.strip()
    if not _CODE_RE.match(code):
        raise ValueError(f"not a PS3.15 action code: {code!r}")
    parts = code.rstrip("*").split("/")
    for preferred in ("U", "D", "Z"):
        if preferred in parts and len(parts) > 1:
            return Action(preferred)
    return Action(parts[0])


_TAG_RE = re.compile(r"^\(?([0-9A-Fa-fx]{4}),?([0-9A-Fa-fx]{4})\)?$")


def parse_tag(text: str) -> int:
    """``(0010,0010)``, ``00100010`` or a keyword such as ``PatientName`` to an int tag."""
    text = text.strip()
    match = _TAG_RE.match(text)
    if match and "x" not in text.lower():
        return int(match.group(1) + match.group(2), 16)
    tag = tag_for_keyword(text)
    if tag is None:
        raise ValueError(f"unknown DICOM attribute {text!r}")
    return tag


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1."""

    tag: str
    name: str
    basic: str
    options: dict[DeidOption, str]


@dataclass(frozen=True)
class MaskRule:
    """A table row with a masked tag such as ``(60xx,4000)``: matched digit by digit."""

    group_mask: str
    element_mask: str
    action: Action

    def matches(self, tag: int) -> bool:
        hex_tag = f"{tag:08X}"
        return all(m in ("x", "X") or m == c for m, c in zip(self.group_mask + self.element_mask, hex_tag, strict=True))


@dataclass(frozen=True)
class ResolvedProfile:
    """One decision per tag for a given set of options and overrides."""

    actions: dict[int, Action]
    masks: tuple[MaskRule, ...]
    safe_public: frozenset[int]
    safe_private: frozenset[tuple[str, int, int]]
    replacements: dict[int, str] = field(default_factory=dict)
    options: tuple[DeidOption, ...] = ()

    def action_for(self, tag: int) -> Action:
        """The action for a public tag; unlisted attributes survive only on the keep list."""
        action = self.actions.get(tag)
        if action is not None:
            return action
        for mask in self.masks:
            if mask.matches(tag):
                return mask.action
        if tag in self.safe_public or (tag & 0xFFFF) == 0:  # group lengths are recomputed on write
            return Action.KEEP
        return Action.REMOVE

    def keeps_private(self, creator: str, group: int, element: int) -> bool:
        return DeidOption.RETAIN_SAFE_PRIVATE in self.options and (
            (creator.strip(), group, element & 0xFF) in self.safe_private
        )


def _data_path(name: str) -> Path:
    return Path(str(resources.files("imaging_ingest") / "data" / name))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


@dataclass(frozen=True)
class Profile:
    """The profile tables as loaded from data files."""

    rules: tuple[Rule, ...]
    safe_public: frozenset[int]
    safe_private: frozenset[tuple[str, int, int]]
    edition: str

    @classmethod
    @cache
    def load(cls) -> Profile:
        table = _data_path("ps3_15_table_e1_1.csv")
        edition = table.open(encoding="utf-8").readline().lstrip("# ").strip()
        rules = []
        for row in _read_csv(table):
            options = {opt: row[opt.value].strip() for opt in DeidOption if row.get(opt.value, "").strip()}
            rules.append(Rule(tag=row["tag"], name=row["name"], basic=row["basic"].strip(), options=options))
        safe_public = frozenset(parse_tag(row["tag"]) for row in _read_csv(_data_path("safe_attributes.csv")))
        safe_private = frozenset(
            (row["private_creator"].strip(), int(row["group"], 16), int(row["element"], 16))
            for row in _read_csv(_data_path("safe_private.csv"))
        )
        return cls(tuple(rules), safe_public, safe_private, edition)

    def resolve(self, config: DeidConfig) -> ResolvedProfile:
        selected = [opt for opt in OPTION_ORDER if opt in config.options]
        actions: dict[int, Action] = {}
        masks: list[MaskRule] = []
        for rule in self.rules:
            code = rule.basic
            for opt in selected:
                code = rule.options.get(opt, code)
            action = collapse_code(code)
            match = _TAG_RE.match(rule.tag)
            if match is None:  # the private-attributes row, "(gggg,eeee) where gggg is odd"
                continue
            if "x" in rule.tag.lower():
                masks.append(MaskRule(match.group(1), match.group(2), action))
            else:
                actions[parse_tag(rule.tag)] = action
        replacements = _apply_overrides(actions, config.overrides.items())
        return ResolvedProfile(
            actions=actions,
            masks=tuple(masks),
            safe_public=self.safe_public,
            safe_private=self.safe_private,
            replacements=replacements,
            options=tuple(selected),
        )


_OVERRIDE_ACTIONS = {
    "keep": Action.KEEP,
    "remove": Action.REMOVE,
    "empty": Action.EMPTY,
    "replace": Action.REPLACE,
    "shift": Action.SHIFT,
    "hash": Action.HASH,
}


def _apply_overrides(actions: dict[int, Action], overrides: Iterable[tuple[str, TagOverride]]) -> dict[int, str]:
    replacements: dict[int, str] = {}
    for key, override in overrides:
        tag = parse_tag(key)
        actions[tag] = _OVERRIDE_ACTIONS[override.action]
        if override.value is not None:
            replacements[tag] = override.value
    return replacements


def describe_tag(tag: int) -> str:
    """``(0010,0010) PatientName``: how tags appear in logs and reasons (never values)."""
    keyword = keyword_for_tag(tag) if not (tag >> 16) % 2 else "private"
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword or 'unknown'}".rstrip()
