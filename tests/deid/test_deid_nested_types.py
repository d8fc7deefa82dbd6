"""Combined codes inside sequences follow the standard's Type there; identifying codes say nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging_ingest.config import DeidOption
from imaging_ingest.deid import Action
from imaging_ingest.deid.profile import NestedTypes, Profile

from .conftest import RoundTrip
from .deid_helpers import code_item, ct_dataset, resolve

REPO = Path(__file__).resolve().parents[2]
XRF = "1.2.840.10008.5.1.4.1.1.12.2"  # a SOP class iod_attribute_types.csv does not list
REQUEST, REFERENCED_STUDY = 0x00400275, 0x00081110


def _request(ds: Dataset) -> Dataset:
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    referenced.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    request = Dataset()
    request.RequestedProcedureID = "RP-4471"
    request.ReferencedStudySequence = Sequence([referenced])
    request.RequestedProcedureDescription = "CT CHEST"
    ds.RequestAttributesSequence = Sequence([request])
    return ds


def test_type3_sequence_inside_request_attributes_is_removed_not_emptied(deid_roundtrip: RoundTrip) -> None:
    profile = resolve(DeidOption.CLEAN_DESCRIPTORS)
    out, _ = deid_roundtrip(_request(ct_dataset()), profile)
    item = out.RequestAttributesSequence[0]
    assert "ReferencedStudySequence" not in item  # X/Z, Type 3 there: X (an empty sequence would be invalid)
    assert item.RequestedProcedureDescription == "CT CHEST"
    assert profile.nested_actions((REQUEST,))[REFERENCED_STUDY] is Action.REMOVE


def test_unknown_paths_keep_the_conservative_choice() -> None:
    profile = resolve()
    unknown = profile.nested_actions((0x00091010,))
    assert unknown[REFERENCED_STUDY] is profile.actions[REFERENCED_STUDY] is Action.EMPTY  # X/Z: Z, not known


def test_nested_types_by_path_then_by_innermost_sequence_and_through_functional_groups() -> None:
    types = NestedTypes.from_rows(
        [
            {"path": "(0040,0275)", "tag": "(0008,1110)", "type": "3"},
            {"path": "(0008,1111)/(0040,0275)", "tag": "(0008,1110)", "type": "1"},
            {"path": "(0020,9111)", "tag": "(0018,9074)", "type": "2"},
        ]
    )
    assert types.types_at((REQUEST,)) == {REFERENCED_STUDY: "3"}
    assert types.types_at((0x00081111, REQUEST)) == {REFERENCED_STUDY: "1"}
    assert types.types_at((0x00081199, REQUEST)) == {REFERENCED_STUDY: "1"}  # the strictest of its contexts
    assert types.types_at((0x52009230, 0x00209111)) == {0x00189074: "2"}  # per-frame group: the macro's own path
    assert types.types_at(()) == {}


def test_shipped_table_has_the_request_attributes_rows() -> None:
    nested = Profile.load().nested_types
    assert nested is not None
    assert nested.types_at((REQUEST,))[REFERENCED_STUDY] == "3"
    assert nested.types_at((0x00081072,))[0x00080082] == "1C"  # Institution Code Sequence in a person's identification


def _operator(badge: str, name: str) -> Dataset:
    item = Dataset()
    item.PersonIdentificationCodeSequence = Sequence([code_item(badge, "99STAFF", name)])
    item.InstitutionCodeSequence = Sequence([code_item("QXH-001", "99QXHOSP", "QUIXWORTH GENERAL HOSPITAL")])
    return item


def _with_operator() -> Dataset:
    ds = ct_dataset(XRF)
    ds.Modality = "RF"
    ds.OperatorIdentificationSequence = Sequence([_operator("BADGE-77193", "QUILLFEATHER^ODALYS")])
    return ds


def test_identifying_codes_lose_value_and_meaning_under_basic(deid_roundtrip: RoundTrip) -> None:
    out, _ = deid_roundtrip(_with_operator(), resolve())
    item = out.OperatorIdentificationSequence[0]  # X/D in an unlisted IOD: kept, items de-identified
    person = item.PersonIdentificationCodeSequence[0]
    institution = item.InstitutionCodeSequence[0]
    for code in (person, institution):
        assert code.CodeValue == "ANONYMIZED" and code.CodeMeaning == "ANONYMIZED"
        assert code.CodingSchemeDesignator == "ANONYMIZED"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"  # other codes are untouched
    text = repr(out)
    assert "BADGE-77193" not in text and "QUILLFEATHER" not in text and "QUIXWORTH" not in text


def test_retain_institution_identity_keeps_the_institution_code_only(deid_roundtrip: RoundTrip) -> None:
    out, _ = deid_roundtrip(_with_operator(), resolve(DeidOption.RETAIN_INSTITUTION_IDENTITY))
    item = out.OperatorIdentificationSequence[0]
    assert item.InstitutionCodeSequence[0].CodeMeaning == "QUIXWORTH GENERAL HOSPITAL"
    assert item.PersonIdentificationCodeSequence[0].CodeValue == "ANONYMIZED"


def test_script_derives_the_tables_from_the_standards_json(tmp_path: Path) -> None:
    """scripts/derive_standard_tables.py on a small extract in innolitics' format."""
    standard = tmp_path / "standard"
    standard.mkdir()
    modules = [
        {"path": "general-series:00400275", "type": "3"},
        {"path": "general-series:00400275:00081110", "type": "3"},
        {"path": "general-series:00400275:00401001", "type": "1C"},
        {"path": "rt-series:00400275:00081110", "type": "1"},
        {"path": "general-series:00400275:00080100", "type": "1"},  # not a combined code: left out
    ]
    (standard / "module_to_attributes.json").write_text(json.dumps(modules))
    (standard / "macro_to_attributes.json").write_text(json.dumps([{"path": "pid:00081072:00080082", "type": "1C"}]))
    (standard / "attributes.json").write_text(
        json.dumps([{"tag": "(0008,1110)", "keyword": "ReferencedStudySequence"}])
    )
    terms = "".join(f"<dt>\n<span>{t}</span>\n</dt>\n<dd>\n<p>\nTerm {t}</p>\n</dd>" for t in range(60))
    section = f"<p><strong>Defined Terms:</strong></p><dl>{terms}</dl><p>Retired Defined Terms:</p><dl>" + (
        "<dt>\n<span>ST</span>\n</dt>\n<dd>\n<p>\nSPECT</p>\n</dd></dl>"
    )
    (standard / "references.json").write_text(json.dumps({"x/part03/sect_C.7.3.html#sect_C.7.3.1.1.1": section}))
    out = tmp_path / "data"
    out.mkdir()
    data = REPO / "include/imaging_ingest/data"
    for name in ("ps3_15_table_e1_1.csv", "deid_supplement.csv"):
        (out / name).write_text((data / name).read_text(encoding="utf-8"), encoding="utf-8")
    script = str(REPO / "scripts/derive_standard_tables.py")
    subprocess.run([sys.executable, script, str(standard / "module_to_attributes.json"), "--out", str(out)], check=True)
    rows = (out / "nested_attribute_types.csv").read_text().splitlines()
    assert rows[1] == "path,tag,keyword,type"
    body = "\n".join(rows[2:]).replace('"', "")
    assert "(0008,1072),(0008,0082),,1C" in body  # from the macro table
    assert "(0040,0275),(0008,1110),ReferencedStudySequence,1" in body  # strictest of general- and rt-series
    assert "(0040,1001)" not in body  # Requested Procedure ID is not a combined code
    assert "(0008,0100)" not in body
    modalities = (out / "modalities.csv").read_text().splitlines()
    assert modalities[-1] == "ST,SPECT,Y" and len(modalities) == 2 + 61
