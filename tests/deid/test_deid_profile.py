"""The profile as data: Table E.1-1 2026d, the supplement, the keep lists, options and overrides."""

from __future__ import annotations

import re

import pytest
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from imaging_ingest.config import DeidConfig, DeidOption, TagOverride
from imaging_ingest.deid import Action, Profile
from imaging_ingest.deid.profile import OPTION_ORDER, collapse_code, parse_tag

from .deid_helpers import resolve

CT = "1.2.840.10008.5.1.4.1.1.2"
PET = "1.2.840.10008.5.1.4.1.1.128"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"


def tag(keyword: str) -> int:
    value = tag_for_keyword(keyword)
    assert value is not None
    return value


def test_table_is_the_2026d_edition_with_all_657_rows() -> None:
    profile = Profile.load()
    assert "2026d" in profile.edition and "E.1-1" in profile.edition
    table = [r for r in profile.rules if r.source == "PS3.15 Table E.1-1"]
    assert len(table) == 657
    assert len({r.tag for r in table}) == 657


def test_every_code_is_a_ps3_15_action_code() -> None:
    code = re.compile(r"^[DZXKCU](/[DZXKCU])*\*?$")
    for rule in Profile.load().rules:
        assert code.match(rule.basic), rule
        assert all(code.match(c) for c in rule.options.values()), rule
    basics = {r.basic for r in Profile.load().rules}
    assert {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"} <= basics


def test_every_option_column_is_read() -> None:
    used = {opt for rule in Profile.load().rules for opt in rule.options}
    assert used == set(DeidOption)


@pytest.mark.parametrize(
    ("keyword", "basic", "option", "cell"),
    [
        ("PatientName", "Z", None, None),
        ("PatientID", "Z/D", None, None),
        ("StudyInstanceUID", "U", DeidOption.RETAIN_UIDS, "K"),
        ("StudyDate", "Z", DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, "C"),
        ("StudyDate", "Z", DeidOption.RETAIN_LONGITUDINAL_FULL_DATES, "K"),
        ("InstitutionName", "X/Z/D", DeidOption.RETAIN_INSTITUTION_IDENTITY, "K"),
        ("ContentSequence", "D", DeidOption.CLEAN_STRUCTURED_CONTENT, "C"),
        ("StationName", "X/Z/D", DeidOption.RETAIN_DEVICE_IDENTITY, "K"),
        ("ScheduledStationAETitle", "X", DeidOption.RETAIN_DEVICE_IDENTITY, "C"),
        ("SeriesDescription", "X", DeidOption.CLEAN_DESCRIPTORS, "C"),
        ("ReferencedImageSequence", "X/Z/U*", DeidOption.RETAIN_UIDS, "K"),
        ("PatientAge", "X", DeidOption.RETAIN_PATIENT_CHARACTERISTICS, "K"),
    ],
)
def test_well_known_rows(keyword: str, basic: str, option: DeidOption | None, cell: str | None) -> None:
    rule = Profile.load().rule_for(tag(keyword))
    assert rule is not None and rule.basic == basic
    if option is not None:
        assert rule.options[option] == cell


def test_supplement_rows_are_not_in_the_table_nor_the_safe_list() -> None:
    profile = Profile.load()
    supplement = [r for r in profile.rules if r.source == "deid_supplement.csv"]
    assert {keyword_for_tag(parse_tag(r.tag)) for r in supplement} >= {
        "SegmentLabel", "SegmentDescription", "BeamName", "ContentDescription", "TextValue"}
    table_tags = {r.tag for r in profile.rules if r.source != "deid_supplement.csv"}
    for rule in supplement:
        assert rule.tag not in table_tags
        assert parse_tag(rule.tag) not in profile.safe_public


def test_safe_list_has_no_table_rows_and_no_person_or_date_attributes() -> None:
    from pydicom.datadict import dictionary_VR

    profile = Profile.load()
    listed = {parse_tag(r.tag) for r in profile.rules if "x" not in r.tag.lower() and "g" not in r.tag}
    assert not (profile.safe_public & listed)
    for t in profile.safe_public:
        assert dictionary_VR(t) not in ("PN", "DA", "DT", "TM"), keyword_for_tag(t)
        assert not (t >> 16) & 1


@pytest.mark.parametrize(
    ("code", "attribute_type", "expected"),
    [
        ("X", None, Action.REMOVE),
        ("Z", "1", Action.EMPTY),  # a single code is what it says, whatever the Type
        ("X/Z", "2", Action.EMPTY),
        ("X/Z", "3", Action.REMOVE),
        ("X/Z", None, Action.EMPTY),
        ("X/D", "1C", Action.DUMMY),
        ("X/D", "2", Action.DUMMY),  # no Z in the code: a dummy keeps a Type 2 attribute present
        ("X/D", "3", Action.REMOVE),
        ("X/Z/D", "1", Action.DUMMY),
        ("X/Z/D", "2C", Action.EMPTY),
        ("X/Z/D", "3", Action.REMOVE),
        ("X/Z/D", None, Action.DUMMY),
        ("Z/D", "1", Action.DUMMY),
        ("Z/D", "2", Action.EMPTY),
        ("Z/D", "3", Action.EMPTY),  # no X: the closest to removal is empty
        ("X/Z/U*", "1", Action.UID),
        ("X/Z/U*", None, Action.UID),
    ],
)
def test_collapse_code_follows_the_attribute_type(code: str, attribute_type: str | None, expected: Action) -> None:
    assert collapse_code(code, attribute_type) is expected


def test_collapse_code_rejects_non_codes() -> None:
    with pytest.raises(ValueError):
        collapse_code("Q")


def test_combined_codes_resolve_per_sop_class() -> None:
    profile = resolve()  # basic profile only
    # Series Date X/D: optional in a CT, Type 1 in a PET (PET Series module)
    assert profile.action_for(tag("SeriesDate"), CT) is Action.REMOVE
    assert profile.action_for(tag("SeriesDate"), PET) is Action.DUMMY
    # Content Date Z/D: Type 2C in both
    assert profile.action_for(tag("ContentDate"), CT) is Action.EMPTY
    # Institution Name X/Z/D: Type 3 in General Equipment
    assert profile.action_for(tag("InstitutionName"), CT) is Action.REMOVE
    # unknown SOP class or nested (no SOP class): stay present, carry nothing
    assert profile.action_for(tag("InstitutionName")) is Action.DUMMY
    assert profile.action_for(tag("InstitutionName"), "1.2.3.4") is Action.DUMMY
    # supplement: Segment Label lives in Segment Sequence items (Type 1 there): nested -> a dummy,
    # kept through the scrubber under Clean Descriptors; it does not belong at the top level of a SEG
    assert profile.action_for(tag("SegmentLabel")) is Action.DUMMY
    assert profile.action_for(tag("SegmentLabel"), SEG) is Action.REMOVE
    assert resolve(DeidOption.CLEAN_DESCRIPTORS).action_for(tag("SegmentLabel")) is Action.CLEAN


def test_later_options_win_and_retain_beats_clean() -> None:
    assert OPTION_ORDER[-1] is DeidOption.RETAIN_SAFE_PRIVATE
    dates = resolve(DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES)
    assert dates.action_for(tag("StudyDate")) is Action.CLEAN
    both = resolve(DeidOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, DeidOption.RETAIN_DEVICE_IDENTITY)
    assert both.action_for(tag("DateOfLastCalibration")) is Action.KEEP
    assert resolve(DeidOption.RETAIN_UIDS).action_for(tag("SOPInstanceUID")) is Action.KEEP
    assert resolve().action_for(tag("SOPInstanceUID")) is Action.UID


def test_unlisted_attributes_survive_only_on_the_safe_list() -> None:
    profile = resolve()
    assert profile.action_for(tag("Rows")) is Action.KEEP
    assert profile.action_for(tag("PixelData")) is Action.KEEP
    assert profile.action_for(tag("CTDIvol")) is Action.KEEP
    assert profile.action_for(tag("PatientBreedDescription")) is Action.REMOVE  # free text, not listed
    assert profile.action_for(0x00091234) is Action.REMOVE  # a made-up public-looking tag
    assert profile.action_for(0x00180000) is Action.REMOVE  # group lengths are never written back


def test_curves_and_overlays_are_removed() -> None:
    profile = resolve()
    for t in (0x50000010, 0x50023000, 0x60003000, 0x60024000, 0x60000010, 0x60000022):
        assert profile.action_for(t) is Action.REMOVE, hex(t)
    graphics = resolve(DeidOption.CLEAN_GRAPHICS)
    assert graphics.action_for(0x60003000) is Action.CLEAN  # the engine cannot clean a bitmap: it removes it


def test_overrides_by_keyword_tag_and_new_keyword() -> None:
    profile = resolve(overrides={
        "PatientSex": {"action": "keep"},
        "(0008,1030)": {"action": "replace", "value": "RESEARCH STUDY"},
        "00100030": {"action": "shift"},
        "AccessionNumber": {"action": "hash"},
        "NameToUse": {"action": "empty"},  # (0010,0012): newer than pydicom 3.0.2's dictionary
        "Rows": {"action": "remove"},
    })
    assert profile.action_for(tag("PatientSex")) is Action.KEEP
    assert profile.action_for(tag("StudyDescription")) is Action.REPLACE
    assert profile.replacements[tag("StudyDescription")] == "RESEARCH STUDY"
    assert profile.action_for(tag("PatientBirthDate")) is Action.SHIFT
    assert profile.action_for(tag("AccessionNumber")) is Action.HASH
    assert profile.action_for(0x00100012) is Action.EMPTY
    assert profile.action_for(tag("Rows")) is Action.REMOVE
    # an override wins over the attribute's Type as well
    ct = profile.actions_for_sop_class(CT)
    assert ct[tag("PatientSex")] is Action.KEEP


@pytest.mark.parametrize(
    ("key", "override", "message"),
    [
        ("PatientName", {"action": "shift"}, "only dates"),
        ("ContentSequence", {"action": "hash"}, "sequence"),
        ("(0029,1010)", {"action": "keep"}, "private"),
        ("NoSuchKeyword", {"action": "keep"}, "unknown DICOM attribute"),
    ],
)
def test_invalid_overrides_are_refused(key: str, override: dict[str, str], message: str) -> None:
    config = DeidConfig(overrides={key: TagOverride.model_validate(override)})
    with pytest.raises(ValueError, match=message):
        Profile.load().resolve(config)


def test_safe_private_list_is_keyed_by_creator_and_element() -> None:
    profile = resolve(DeidOption.RETAIN_SAFE_PRIVATE)
    assert profile.keeps_private("GEMS_PARM_01", 0x0043, 0x1039)
    assert profile.keeps_private("SIEMENS MR HEADER", 0x0019, 0x100C)
    assert not profile.keeps_private("SOMEONE ELSE", 0x0043, 0x1039)
    assert not resolve().keeps_private("GEMS_PARM_01", 0x0043, 0x1039)  # the option is off


def test_resolved_profile_is_picklable_for_worker_processes() -> None:
    import pickle

    profile = resolve(DeidOption.CLEAN_DESCRIPTORS)
    profile.actions_for_sop_class(CT)
    again = pickle.loads(pickle.dumps(profile))
    assert again.action_for(tag("SeriesDate"), CT) is Action.REMOVE
