"""The de-identification profile: PS3.15 Table E.1-1 and our keep lists, read from data files.

The table is data (``data/ps3_15_table_e1_1.csv``), not code: each row gives an attribute's
Basic Profile action and its action under each option. ``Profile.resolve`` folds the
options and per-tag overrides a collection selects into one decision per tag, made once
per batch, so that the per-element work in ``engine`` is a dictionary lookup.

Four more data files complete the picture:

- ``deid_supplement.csv``: free-text public attributes that are in neither Table E.1-1
  nor the safe list but that published IODs require (Segment Label, Text Value, Beam
  Name...), written in the table's own format so that they follow the same rules;
- ``safe_attributes.csv``: what an unlisted public attribute must be on to survive;
- ``safe_private.csv``: the Retain Safe Private Option's list, keyed by private creator;
- ``iod_attribute_types.csv``: the Type (1, 2) of the attributes whose code is combined
  (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``), per SOP class, which picks one action of the
  combination (see :func:`collapse_code`);
- ``nested_attribute_types.csv``: the same attributes' Type inside sequences, by path of
  sequence tags, from the standard's module and macro tables
  (``scripts/derive_standard_tables.py``), so that a combined code inside a sequence follows
  the attribute's Type there too;
- ``identifying_code_sequences.csv``: code sequences whose codes identify a person or an
  institution (Person Identification, Institution Code): inside their items Code Value and
  Code Meaning are dummied, although the keep list keeps codes everywhere else.
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

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from imaging_ingest.config import DeidConfig, DeidOption, TagOverride

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
#: Retain options come last so that what a collection chose to keep is kept, and Retain
#: Safe Private last of all because it only concerns the private-attributes row.
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

#: Which action of a combined code an attribute of a given Type gets, most preferred first.
_PREFERENCE: dict[str, tuple[str, ...]] = {
    "1": ("D", "Z", "X"),  # must be present with a value: a dummy
    "2": ("Z", "D", "X"),  # must be present, may be empty: empty
    "3": ("X", "Z", "D"),  # optional: removed
    "?": ("D", "Z", "X"),  # unknown IOD or inside a sequence: stay present, say nothing
}


def collapse_code(code: str, attribute_type: str | None = None) -> Action:
    """Reduce a combined code such as ``X/Z/D`` to one action.

    PS3.15 E.1.1 leaves the choice to the attribute's Type in the IOD: remove it when it is
    optional (Type 3), empty it when it is Type 2, replace it by a dummy when it is Type 1.
    ``attribute_type`` is that Type (``"1"``, ``"1C"``, ``"2"``, ``"2C"``, ``"3"``) where
    the SOP class is known; ``None`` where it is not (an unknown SOP class, or an
    attribute nested in a sequence), in which case the choice is the one that keeps every
    IOD valid and carries no information: D over Z over X. ``U`` always wins (``X/Z/U*``
    sequences keep their references, remapped).
    """
    code = code.strip()
    if not _CODE_RE.match(code):
        raise ValueError(f"not a PS3.15 action code: {code!r}")
    parts = code.rstrip("*").split("/")
    if len(parts) == 1:
        return Action(parts[0])
    if "U" in parts:
        return Action.UID
    for preferred in _PREFERENCE[(attribute_type or "?")[0]]:
        if preferred in parts:
            return Action(preferred)
    return Action(parts[0])


_TAG_RE = re.compile(r"^\(?([0-9A-Fa-fx]{4}),?([0-9A-Fa-fx]{4})\)?$")


def _keyword_from_name(name: str) -> str:
    """``Name to Use`` -> ``NameToUse``: PS3.6 keywords are the name in camel case."""
    words = re.split(r"[^A-Za-z0-9]+", name.split("(")[0])
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def parse_tag(text: str, extra_keywords: dict[str, int] | None = None) -> int:
    """``(0010,0010)``, ``00100010`` or a keyword such as ``PatientName`` to an int tag.

    ``extra_keywords`` resolves the keywords of attributes newer than pydicom's dictionary
    (the profile passes the table's own names, so ``NameToUse`` works too).
    """
    text = text.strip()
    match = _TAG_RE.match(text)
    if match and "x" not in text.lower():
        return int(match.group(1) + match.group(2), 16)
    tag = tag_for_keyword(text)
    if tag is None and extra_keywords:
        tag = extra_keywords.get(text)
    if tag is None:
        raise ValueError(f"unknown DICOM attribute {text!r}")
    return tag


def vr_of_tag(tag: int) -> str:
    """The dictionary VR of a public tag (``UN`` when pydicom does not know it)."""
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1 (or of our supplement, written in the same form)."""

    tag: str
    name: str
    basic: str
    options: dict[DeidOption, str]
    source: str = "PS3.15 Table E.1-1"

    def code(self, options: Iterable[DeidOption]) -> str:
        """The code in force under ``options`` (applied in ``OPTION_ORDER``)."""
        code = self.basic
        selected = set(options)
        for opt in OPTION_ORDER:
            if opt in selected:
                code = self.options.get(opt, code)
        return code


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
    """One decision per tag for a given set of options and overrides.

    ``actions`` holds the decisions that need no IOD context (combined codes collapsed the
    conservative way); ``actions_for_sop_class`` gives the top-level decisions of one SOP
    class, where combined codes follow the attribute's Type. Overrides win over both.
    """

    actions: dict[int, Action]
    masks: tuple[MaskRule, ...]
    safe_public: frozenset[int]
    safe_private: frozenset[tuple[str, int, int]]
    replacements: dict[int, str] = field(default_factory=dict)
    options: tuple[DeidOption, ...] = ()
    combined: dict[int, str] = field(default_factory=dict)
    iod_types: dict[str, dict[int, str]] = field(default_factory=dict)
    overridden: frozenset[int] = frozenset()
    safe_private_vr: dict[tuple[str, int, int], str] = field(default_factory=dict)
    nested_types: NestedTypes | None = None
    #: sequence tag -> {item attribute tag -> action}: codes that identify (after Retain options)
    identifying_codes: dict[int, dict[int, Action]] = field(default_factory=dict)
    _by_sop_class: dict[str | None, dict[int, Action]] = field(default_factory=dict, compare=False, repr=False)

    def action_for(self, tag: int, sop_class_uid: str | None = None) -> Action:
        """The action for a public tag; unlisted attributes survive only on the keep list."""
        action = self.actions_for_sop_class(sop_class_uid).get(tag) if sop_class_uid else self.actions.get(tag)
        if action is not None:
            return action
        return self.unlisted_action(tag)

    def unlisted_action(self, tag: int) -> Action:
        """Masked rows (curves, overlays), then the safe list; everything else is removed."""
        for mask in self.masks:
            if mask.matches(tag):
                return mask.action
        if tag in self.safe_public and tag & 0xFFFF:
            return Action.KEEP
        return Action.REMOVE  # including group lengths: they are never written back

    def remapped_instance_uids(self) -> frozenset[str]:
        """Which of SOP Instance, Study and Series Instance UID this profile replaces by their keyed remapping.

        Not under Retain UIDs, and not where an override keeps the attribute as it is. The
        inventory tolerates a source UID in the wrong syntax only there: it is never published.
        """
        if DeidOption.RETAIN_UIDS in self.options:
            return frozenset()
        kept_as_is = {t for t in self.overridden if self.actions.get(t) is Action.KEEP}
        keywords = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        return frozenset(k for k in keywords if tag_for_keyword(k) not in kept_as_is)

    def actions_for_sop_class(self, sop_class_uid: str | None) -> dict[int, Action]:
        """Top-level decisions for one SOP class: combined codes resolved by attribute Type.

        An unknown SOP class gets the context-free ``actions``. Cached per SOP class.
        """
        cached = self._by_sop_class.get(sop_class_uid)
        if cached is not None:
            return cached
        types = self.iod_types.get(sop_class_uid or "")
        if types is None:
            resolved = self.actions
        else:
            resolved = dict(self.actions)
            for tag, code in self.combined.items():
                if tag not in self.overridden:
                    resolved[tag] = collapse_code(code, types.get(tag, "3"))
        self._by_sop_class[sop_class_uid] = resolved
        return resolved

    def nested_actions(self, path: tuple[int, ...]) -> dict[int, Action]:
        """Decisions inside the items of the sequence at ``path`` (sequence tags from the top level).

        A combined code follows the attribute's Type at that path in the standard's module and
        macro tables; where the path is unknown the context-free ``actions`` apply (D, else Z,
        else X: present and empty of meaning). A fresh dict each call: the engine caches it.
        """
        types = self.nested_types.types_at(path) if self.nested_types is not None else {}
        resolved = dict(self.actions)
        for tag, kind in types.items():
            code = self.combined.get(tag)
            if code is not None and tag not in self.overridden:
                resolved[tag] = collapse_code(code, kind)
        if path:  # the items of a code sequence that identifies someone say nothing
            resolved.update(self.identifying_codes.get(path[-1], {}))
        return resolved

    def keeps_private(self, creator: str, group: int, element: int) -> bool:
        return DeidOption.RETAIN_SAFE_PRIVATE in self.options and (
            (creator.strip(), group, element & 0xFF) in self.safe_private
        )


_TYPE_ORDER = ("1", "1C", "2", "2C", "3")
#: Shared and Per-frame Functional Groups Sequences: the macros in their items are tabled on their own.
_FUNCTIONAL_GROUPS = frozenset({0x52009229, 0x52009230})


@dataclass(frozen=True)
class NestedTypes:
    """Types of attributes inside sequences: by the full path of sequence tags, else by the innermost sequence."""

    by_path: dict[tuple[int, ...], dict[int, str]]
    by_parent: dict[int, dict[int, str]]

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, str]]) -> NestedTypes:
        by_path: dict[tuple[int, ...], dict[int, str]] = {}
        by_parent: dict[int, dict[int, str]] = {}
        for row in rows:
            path = tuple(parse_tag(t) for t in row["path"].split("/"))
            tag, kind = parse_tag(row["tag"]), row["type"].strip()
            by_path.setdefault(path, {})[tag] = kind
            known = by_parent.setdefault(path[-1], {})
            if tag not in known or _TYPE_ORDER.index(kind) < _TYPE_ORDER.index(known[tag]):
                known[tag] = kind  # the strictest Type wins where contexts differ
        return cls(by_path, by_parent)

    def types_at(self, path: tuple[int, ...]) -> dict[int, str]:
        """Tag -> Type inside the items of the sequence at ``path``; empty where the standard does not say."""
        if not path:
            return {}
        while path and path[0] in _FUNCTIONAL_GROUPS:
            path = path[1:]  # a functional group macro's paths start inside the frame's item
        if not path:
            return {}
        exact = self.by_path.get(path)
        if exact is not None:
            return exact
        return self.by_parent.get(path[-1], {})


def _data_path(name: str) -> Path:
    return Path(str(resources.files("imaging_ingest") / "data" / name))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def _rules(path: Path, source: str) -> list[Rule]:
    rules = []
    for row in _read_csv(path):
        options = {opt: row[opt.value].strip() for opt in DeidOption if row.get(opt.value, "").strip()}
        rules.append(Rule(tag=row["tag"], name=row["name"], basic=row["basic"].strip(), options=options, source=source))
    return rules


@dataclass(frozen=True)
class Profile:
    """The profile tables as loaded from data files."""

    rules: tuple[Rule, ...]
    safe_public: frozenset[int]
    safe_private: frozenset[tuple[str, int, int]]
    edition: str
    iod_types: dict[str, dict[int, str]] = field(default_factory=dict, compare=False)
    safe_private_vr: dict[tuple[str, int, int], str] = field(default_factory=dict, compare=False)
    nested_types: NestedTypes | None = field(default=None, compare=False)
    identifying_codes: tuple[tuple[int, int, Action, str], ...] = field(default=(), compare=False)

    @classmethod
    @cache
    def load(cls) -> Profile:
        table = _data_path("ps3_15_table_e1_1.csv")
        with table.open(encoding="utf-8") as fh:
            edition = fh.readline().lstrip("# ").split('"')[0].strip()
        rules = _rules(table, "PS3.15 Table E.1-1")
        listed = {r.tag for r in rules}
        for rule in _rules(_data_path("deid_supplement.csv"), "deid_supplement.csv"):
            if rule.tag in listed:
                raise ValueError(f"deid_supplement.csv repeats a Table E.1-1 row: {rule.tag}")
            rules.append(rule)
        safe_public = frozenset(parse_tag(row["tag"]) for row in _read_csv(_data_path("safe_attributes.csv")))
        private_rows = _read_csv(_data_path("safe_private.csv"))
        safe_private_vr = {
            (row["private_creator"].strip(), int(row["group"], 16), int(row["element"], 16)): row["vr"].strip()
            for row in private_rows
        }
        iod_types: dict[str, dict[int, str]] = {}
        for row in _read_csv(_data_path("iod_attribute_types.csv")):
            iod_types.setdefault(row["sop_class_uid"], {})[parse_tag(row["tag"])] = row["type"]
        nested = NestedTypes.from_rows(_read_csv(_data_path("nested_attribute_types.csv")))
        codes = tuple(
            (parse_tag(r["sequence"]), parse_tag(r["attribute"]), Action(r["action"].strip()), r["retained_by"].strip())
            for r in _read_csv(_data_path("identifying_code_sequences.csv"))
        )
        return cls(
            tuple(rules), safe_public, frozenset(safe_private_vr), edition, iod_types, safe_private_vr, nested, codes
        )

    @property
    def extra_keywords(self) -> dict[str, int]:
        """Keywords of the table's attributes that pydicom's dictionary does not know."""
        out = {}
        for rule in self.rules:
            match = _TAG_RE.match(rule.tag)
            if match and "x" not in rule.tag.lower():
                tag = int(match.group(1) + match.group(2), 16)
                if keyword_for_tag(tag) == "":
                    out[_keyword_from_name(rule.name)] = tag
        return out

    def rule_for(self, tag: int) -> Rule | None:
        """The table (or supplement) row of an exact tag, if any."""
        wanted = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        return next((r for r in self.rules if r.tag == wanted), None)

    def resolve(self, config: DeidConfig) -> ResolvedProfile:
        selected = tuple(opt for opt in OPTION_ORDER if opt in config.options)
        actions: dict[int, Action] = {}
        combined: dict[int, str] = {}
        masks: list[MaskRule] = []
        for rule in self.rules:
            code = rule.code(selected)
            match = _TAG_RE.match(rule.tag)
            if match is None:  # the private-attributes row, "(gggg,eeee) where gggg is odd"
                continue
            action = collapse_code(code)
            if "x" in rule.tag.lower():
                masks.append(MaskRule(match.group(1), match.group(2), action))
                continue
            tag = int(match.group(1) + match.group(2), 16)
            actions[tag] = action
            if "/" in code and "U" not in code:
                combined[tag] = code
        replacements = _apply_overrides(actions, config.overrides.items(), self.extra_keywords)
        return ResolvedProfile(
            actions=actions,
            masks=tuple(masks),
            safe_public=self.safe_public,
            safe_private=self.safe_private,
            replacements=replacements,
            options=selected,
            combined=combined,
            iod_types=self.iod_types,
            overridden=frozenset(parse_tag(k, self.extra_keywords) for k in config.overrides),
            safe_private_vr=self.safe_private_vr,
            nested_types=self.nested_types,
            identifying_codes=_identifying_codes(self.identifying_codes, selected),
        )


def _identifying_codes(
    rows: Iterable[tuple[int, int, Action, str]], selected: Iterable[DeidOption]
) -> dict[int, dict[int, Action]]:
    """The identifying code sequences' item actions, without those a selected Retain option keeps."""
    kept = {opt.value for opt in selected}
    out: dict[int, dict[int, Action]] = {}
    for sequence, attribute, action, retained_by in rows:
        if retained_by not in kept:
            out.setdefault(sequence, {})[attribute] = action
    return out


_OVERRIDE_ACTIONS = {
    "keep": Action.KEEP,
    "remove": Action.REMOVE,
    "empty": Action.EMPTY,
    "replace": Action.REPLACE,
    "shift": Action.SHIFT,
    "hash": Action.HASH,
}
_SHIFTABLE_VRS = frozenset({"DA", "DT", "TM", "UN"})


def _apply_overrides(
    actions: dict[int, Action], overrides: Iterable[tuple[str, TagOverride]], extra_keywords: dict[str, int]
) -> dict[int, str]:
    replacements: dict[int, str] = {}
    for key, override in overrides:
        tag = parse_tag(key, extra_keywords)
        if (tag >> 16) & 1:
            raise ValueError(f"override {key!r}: private attributes follow the safe-private list, not overrides")
        vr = vr_of_tag(tag)
        if override.action == "shift" and vr not in _SHIFTABLE_VRS:
            raise ValueError(f"override {key!r}: only dates and date-times can be shifted, not VR {vr}")
        if override.action in ("replace", "hash") and vr == "SQ":
            raise ValueError(f"override {key!r}: a sequence cannot be {override.action}d; use keep, remove or empty")
        actions[tag] = _OVERRIDE_ACTIONS[override.action]
        if override.value is not None:
            replacements[tag] = override.value
    return replacements


def describe_tag(tag: int) -> str:
    """``(0010,0010) PatientName``: how tags appear in logs and reasons (never values)."""
    keyword = keyword_for_tag(tag) if not (tag >> 16) % 2 else "private"
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword or 'unknown'}".rstrip()
