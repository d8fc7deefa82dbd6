"""The free-text detector: each kind of PHI, the clinical words it keeps, suspects, classes, data."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.datadict import keyword_for_tag

from imaging_ingest.deid.freetext import (
    Certainty,
    Kind,
    TextClass,
    attribute_class,
    attribute_classes,
    class_treatment,
    clean_text,
    detect,
)
from imaging_ingest.deid.freetext.element import clean_element, format_counts, parse_counts
from imaging_ingest.deid.freetext.lexicons import data_path, lexicons

pytestmark = pytest.mark.freetext

ISSUE_EXAMPLES = [
    (
        "Neighbour Ottilie Brandsma found him on the floor at 88 Wexford Lane, Keene, NH",
        TextClass.NARRATIVE,
        "Neighbour [NAME] found him on the floor at [ADDRESS], [LOCATION]",
    ),
    ("Earlier scans at Ridgemont Valley Hospital", TextClass.NARRATIVE, "Earlier scans at [INSTITUTION]"),
    ("Discussed with Dr. Anselm Quist", TextClass.DESCRIPTOR, "Discussed with Dr. [NAME]"),
    ("CT ABDOMEN per Dr. Quist", TextClass.DESCRIPTOR, "CT ABDOMEN per Dr. [NAME]"),
]


@pytest.mark.parametrize(("text", "text_class", "expected"), ISSUE_EXAMPLES)
def test_the_issues_examples_are_cleaned(text: str, text_class: TextClass, expected: str) -> None:
    assert clean_text(text, text_class=text_class).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "CT CHEST W CONTRAST",
        "AXIAL 5MM SOFT TISSUE",
        "left lower lobe nodule",
        "MR BRAIN W WO",
        "DR CHEST PA AND LAT",
        "XR CHEST, PA",
        "2 LUNG CT",
        "T1 MPRAGE SAG 1.0mm b1000 TR 2000",
        "JPEG 2000 irreversible (lossy) 2097:1",
        "compression ratio 0.084906",
        "512x512 matrix",
        "Hodgkin lymphoma, Bosniak 2 cyst, Gleason 3+4",
        "Iowa QIN segmentation result",
        "Ax T2 FLAIR post gad",
    ],
)
def test_clinical_descriptions_are_kept_intact(text: str) -> None:
    for text_class in TextClass:
        cleaned = clean_text(text, text_class=text_class)
        assert cleaned.text is text and not cleaned.changed


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("seen by Dr Smith", Kind.NAME),
        ("wife Rosalind called", Kind.NAME),
        ("Contact: Quintana, Rómulo", Kind.NAME),
        ("Referred by J. van den Hoek", Kind.NAME),
        ("CT HEAD PER DR. QUIST", Kind.NAME),
        ("lives at 1446 Daniel Neck, Apt 4", Kind.ADDRESS),
        ("PO Box 1234", Kind.ADDRESS),
        ("moved from Lake Davidchester, PW 58319", Kind.LOCATION),
        ("home in Keene, New Hampshire", Kind.LOCATION),
        ("transferred from St. Mary's Infirmary", Kind.INSTITUTION),
        ("prior study at University of Keene", Kind.INSTITUTION),
        ("OUTSIDE READ REID HOSPITAL", Kind.INSTITUTION),
        ("call (614) 555-0123 x204", Kind.PHONE),
        ("fax +44 20 7946 0958", Kind.PHONE),
        ("mail jane.doe@example.org", Kind.EMAIL),
        ("portal https://example.org/p/123", Kind.URL),
        ("MRN: 12-34567", Kind.ID),
        ("SSN 123-45-6789", Kind.ID),
        ("accession RAD123456", Kind.ID),
        ("on the 3rd of May 2019", Kind.DATE),
        ("May 4th, 2020", Kind.DATE),
        ("2019-03-02T10:15", Kind.DATE),
        ("20190302", Kind.DATE),
        ("03/02/1931", Kind.DATE),
        ("02-MAR-2019", Kind.DATE),
        ("a 93-year-old woman", Kind.AGE),
        ("AGED 97", Kind.AGE),
        ("in her 90s", Kind.AGE),
    ],
)
def test_each_kind_is_found(text: str, kind: Kind) -> None:
    spans = [s for s in detect(text, text_class=TextClass.NARRATIVE) if s.certainty is Certainty.PHI]
    assert kind in {s.kind for s in spans}, (text, spans)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # an accented first name whose folded spelling is a PS3.16 word ("vitoria"): still a name
        ("Dr Vitória Nogueira", "Dr [NAME]"),
        ("Discussed with Dr. Vitória Nogueira today", "Discussed with Dr. [NAME] today"),
        ("DR VITÓRIA NOGUEIRA", "DR [NAME]"),
        ("Vitória Nogueira called", "[NAME] called"),
        ("wife Conceição Albuquerque", "wife [NAME]"),
        # eponyms (PS3.16 words that are surnames: Robinson, Cruz) in "Lastname, Firstname" form
        ("Robinson, Maria", "[NAME]"),
        ("Cruz, Maria called", "[NAME] called"),
        ("contact Robinson, Elizabeth", "contact [NAME]"),
        ("CT CHEST reviewed by Robinson, Maria", "CT CHEST reviewed by [NAME]"),
        # surname and first name that are everyday words too, in mixed case
        ("Smith, John", "[NAME]"),
        ("seen by Smith, John", "seen by [NAME]"),
        ("Baker, Grace called", "[NAME] called"),
    ],
)
def test_accented_first_names_and_eponymous_surnames_are_whole_names(text: str, expected: str) -> None:
    for text_class in TextClass:
        assert clean_text(text, text_class=text_class).text == expected, text_class


@pytest.mark.parametrize(
    "text", ["Robinson 2 cyst", "Cruz trypanosomiasis", "Ménière disease", "CHEST, MAY", "Left lung, Mark lesion"]
)
def test_eponyms_alone_stay(text: str) -> None:
    assert clean_text(text, text_class=TextClass.DESCRIPTOR).text == text


def test_ages_up_to_89_are_kept() -> None:
    assert not detect("an 89-year-old man, aged 45")


def test_an_unknown_capitalised_word_in_narrative_is_a_suspect_not_removed() -> None:
    cleaned = clean_text("Patient visited Zorbulak yesterday", text_class=TextClass.NARRATIVE)
    assert cleaned.text == "Patient visited Zorbulak yesterday" and cleaned.flagged and not cleaned.changed
    (span,) = cleaned.suspects
    assert cleaned.text[span.start : span.end] == "Zorbulak" and span.certainty is Certainty.SUSPECT
    assert not clean_text("AXIAL Zorbulak", text_class=TextClass.DESCRIPTOR).flagged  # descriptors: cues only


def test_suspect_offsets_point_into_the_cleaned_text() -> None:
    cleaned = clean_text("DOB 03/02/1931. Visited Zorbulak with Dr. Quist.", text_class=TextClass.NARRATIVE)
    assert cleaned.removed == {"date": 1, "name": 1}
    assert [cleaned.text[s.start : s.end] for s in cleaned.suspects] == ["Zorbulak"]
    removed = clean_text("DOB 03/02/1931. Visited Zorbulak", text_class=TextClass.NARRATIVE, replacement="remove")
    assert [removed.text[s.start : s.end] for s in removed.suspects] == ["Zorbulak"]


def test_the_files_own_identifiers_always_go() -> None:
    assert clean_text("brain for doe", identifiers=("DOE",)).text == "brain for [NAME]"
    assert clean_text("SCAN QX778899", identifiers=("QX778899",)).text == "SCAN [ID]"
    assert clean_text("DOESKIN series", identifiers=("DOE",)).text == "DOESKIN series"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_handled_deterministically(text: str) -> None:
    for text_class in TextClass:
        first = clean_text(text, text_class=text_class)
        assert first == clean_text(text, text_class=text_class)
        spans = detect(text, text_class=text_class)
        assert all(0 <= a.start < a.end <= len(text) for a in spans)
        assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
        assert all(0 <= s.start < s.end <= len(first.text) for s in first.suspects)


def test_element_cleaning_respects_the_vr() -> None:
    assert clean_element(["AXIAL Dr. Quist"], 0x0008103E, "LO", ()).values == ["AXIAL Dr. [NAME]"]
    # a short string with no room for a token loses the span instead
    short = clean_element(["PER DR QUISTEN"], 0x00081010, "SH", ())
    assert short.values == ["PER DR [NAME]"] and short.removed == 1
    assert clean_element(["DR QUIST AXIAL"], 0x00181030, "CS", ()).values == ["DR AXIAL"]


def test_counts_round_trip_and_name_attributes_only() -> None:
    counts = {"StudyDescription": 2, "ImageComments": 1}
    assert format_counts(counts) == "ImageComments:1,StudyDescription:2"
    assert parse_counts(format_counts(counts)) == counts and parse_counts(None) == {}


def test_attribute_classes_are_data_with_pydicom_keywords() -> None:
    classes = attribute_classes()
    for tag, entry in classes.items():
        assert keyword_for_tag(tag) == entry.keyword
    narrative = {e.keyword for e in classes.values() if e.text_class is TextClass.NARRATIVE}
    assert {"PatientComments", "AdditionalPatientHistory", "MedicalAlerts", "Allergies", "Occupation"} <= narrative
    descriptors = {e.keyword for e in classes.values() if e.text_class is TextClass.DESCRIPTOR}
    assert {"StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments", "RequestedProcedureDescription"} <= descriptors
    assert attribute_class(0x00081090) is TextClass.DESCRIPTOR  # not listed: a descriptor
    assert class_treatment() == {TextClass.NARRATIVE: "clean", TextClass.DESCRIPTOR: "clean"}


def test_every_data_file_has_its_provenance_in_the_readme() -> None:
    folder = data_path("README.md").parent
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for path in sorted(folder.iterdir()):
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name
            first = path.read_text(encoding="utf-8").splitlines()[0]
            assert first.startswith("#") or path.name.startswith("COPYING"), path.name
    lex = lexicons()
    assert len(lex.first_names) > 5000 and len(lex.last_names) > 80000 and len(lex.clinical) > 9000


def test_the_data_files_are_the_build_scripts_output_format() -> None:
    for name in ("first_names.txt", "last_names.txt", "common_words.txt", "clinical_terms.txt"):
        lines = data_path(name).read_text(encoding="utf-8").splitlines()[1:]
        assert lines == sorted(set(lines)) and all(line == line.lower() for line in lines), name
    with data_path("attribute_classes.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert len({r["tag"] for r in rows}) == len(rows)
    assert Path(__file__).name  # keeps the Path import honest
