"""A labelled free-text set: clinical text with planted PHI, every span's kind known.

The PHI comes from Faker's locale lists (names from 14 locales, US addresses, phones,
e-mails, URLs, SSNs), a different source than the detector's census name tables; the
clinical text around it is written here, by hand, independently of the detector's
allow-list. Each value records its PHI spans (kind, offsets) and the spans of its
clinical words, so recall per kind and the share of clinical words kept can be measured
(``test_freetext_recall.py`` and ``bench/freetext/run.py``).

Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from faker import Faker

__all__ = ["KINDS", "Example", "labelled_set"]

KINDS = ("name", "address", "location", "institution", "phone", "email", "url", "id", "date", "age")
_LOCALES = ("en_US", "en_GB", "nl_NL", "de_DE", "fr_FR", "it_IT", "es_ES", "pl_PL", "sv_SE", "pt_BR", "en_IE", "da_DK", "fi_FI", "cs_CZ")

#: Descriptions as scanners and RIS write them (hand-written for this test, not from the detector's lists).
DESCRIPTORS = (
    "CT CHEST W CONTRAST", "AXIAL 5MM SOFT TISSUE", "CT ABDOMEN PELVIS WITH IV CONTRAST", "MR BRAIN WO/W CONTRAST",
    "PET/CT SKULL BASE TO MID THIGH", "T2 FLAIR AXIAL", "Ax DWI b1000", "US ABDOMEN COMPLETE", "MAMMO SCREENING BILAT",
    "XR CHEST PA AND LATERAL", "CTA CHEST PE PROTOCOL", "SAG T1 SE", "COR T2 HASTE", "LUNG 1.25MM", "BONE WINDOW",
    "Recon 2: Lung", "MIP 10mm axial", "CT HEAD WITHOUT CONTRAST", "MRI PROSTATE MULTIPARAMETRIC", "Chest 3.0 B31f",
    "Abd/Pel Venous Phase", "NM BONE SCAN WHOLE BODY", "DX KNEE 3 VIEWS LEFT", "MR LIVER DYNAMIC", "Breast Tomosynthesis",
    "Localizer", "Scout", "Topogram 0.6 T20f", "Dose Report", "CT COLONOGRAPHY", "PELVIS FOLLOW UP", "RT BREAST US",
    "Ax T1 post gad fat sat", "DTI 30 directions", "PERFUSION", "CT NECK SOFT TISSUE W CONTRAST", "ARTERIAL PHASE",
    "Delayed 3 min", "Sagittal reformat", "Coronal MPR 3mm", "LOW DOSE CT LUNG SCREENING", "HRCT CHEST PRONE",
    "RUL NODULE FOLLOW UP", "left lower lobe nodule", "SPINE LUMBAR WO", "cervical spine trauma", "PET FDG WB",
    "MR PELVIS RECTAL CANCER STAGING", "ECHO PLANAR", "CT LIVER TRIPHASIC",
)

#: Sentences of patient narrative, history and reasons (hand-written for this test).
NARRATIVE = (
    "history of smoking, forty pack years", "follow-up of right upper lobe mass", "known metastatic breast cancer",
    "allergic to iodinated contrast, premedicated", "no prior imaging available", "complains of headache and blurred vision",
    "status post right nephrectomy", "retired carpenter", "currently on chemotherapy", "shortness of breath on exertion",
    "elevated PSA, rule out prostate cancer", "weight loss and night sweats", "fall with left hip pain",
    "persistent cough for three weeks", "hepatitis C with cirrhosis, screening for hepatocellular carcinoma",
    "claustrophobic, needed sedation", "pacemaker in place, MR conditional", "renal insufficiency, no gadolinium",
    "palpable lump in the left breast", "staging of lymphoma", "seizure, new onset", "abdominal pain after meals",
    "former smoker, quit years ago", "penicillin allergy", "diabetic, metformin held", "anemia of unknown cause",
    "enlarged lymph nodes in the neck", "pulmonary embolism suspected", "surveillance after resection",
    "patient was cooperative and tolerated the exam well", "motion artifacts on the late images",
)

_INSTITUTION_FORMS = (
    "{last} Hospital", "{last} Valley Hospital", "{city} General Hospital", "{last} Memorial Medical Center",
    "University of {city}", "{last} Clinic", "St. {first}'s Infirmary", "{city} Cancer Institute", "{last} Health System",
    "{last} Regional Medical Center", "{city} Children's Hospital", "{last} Institute", "{last} Medical Centre",
    "{last} Community Hospital",
)
_DATE_FORMATS = (
    "%Y-%m-%d", "%m/%d/%Y", "%d/%m/%y", "%d %B %Y", "%B %d, %Y", "%b %d %Y", "%Y%m%d", "%d.%m.%Y", "%d-%b-%Y",
    "%B %Y", "%m/%d/%y", "%-d %b %Y", "%b. %-d, %Y", "%Y/%m/%d", "%d-%m-%Y",
)
_ORDINALS = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}


@dataclass
class Example:
    """One value: its text, class, PHI spans ``(start, end, kind)`` and clinical word spans."""

    text: str
    text_class: str
    phi: list[tuple[int, int, str]] = field(default_factory=list)
    clinical: list[tuple[int, int]] = field(default_factory=list)


class _Builder:
    """Appends pieces to a value, recording where the PHI and the clinical text went."""

    def __init__(self, text_class: str) -> None:
        self.example = Example("", text_class)

    def text(self, piece: str) -> None:
        self.example.text += piece

    def clinical(self, piece: str) -> None:
        start = len(self.example.text)
        self.example.text += piece
        self.example.clinical.append((start, start + len(piece)))

    def phi(self, piece: str, kind: str) -> None:
        start = len(self.example.text)
        self.example.text += piece
        self.example.phi.append((start, start + len(piece), kind))


class _Source:
    """PHI values of each kind, from Faker."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fakers = {loc: Faker(loc) for loc in _LOCALES}
        for i, fake in enumerate(self.fakers.values()):
            fake.seed_instance(seed * 100 + i)
        self.us = self.fakers["en_US"]

    def person(self) -> tuple[str, str]:
        fake = self.fakers[self.rng.choice(_LOCALES)]
        return fake.first_name(), fake.last_name()

    def name(self) -> str:
        first, last = self.person()
        return self.rng.choice((f"{first} {last}", f"{first} {last}", last, f"{first[0]}. {last}", f"{last}, {first}", first))

    def address(self) -> str:
        us = self.us
        return self.rng.choice(
            (
                f"{us.building_number()} {us.street_name()}",
                f"{us.building_number()} {us.street_name()}, Apt {self.rng.randint(1, 40)}",
                us.street_address(),
                f"PO Box {self.rng.randint(10, 9999)}",
            )
        )

    def location(self) -> str:
        us = self.us
        return self.rng.choice(
            (f"{us.city()}, {us.state_abbr()}", f"{us.city()}, {us.state_abbr()} {us.zipcode()}", f"{us.city()}, {us.state()}")
        )

    def institution(self) -> str:
        first, last = self.person()
        return self.rng.choice(_INSTITUTION_FORMS).format(first=first, last=last, city=self.us.city())

    def phone(self) -> str:
        if self.rng.random() < 0.2:
            return self.fakers[self.rng.choice(("en_GB", "de_DE", "fr_FR", "nl_NL"))].phone_number()
        return self.us.phone_number()

    def email(self) -> str:
        return self.fakers[self.rng.choice(_LOCALES)].email()

    def url(self) -> str:
        return self.rng.choice((self.us.url(), f"www.{self.us.domain_name()}", f"https://{self.us.domain_name()}/patients/{self.rng.randint(1, 999)}"))

    def identifier(self) -> tuple[str, str]:
        """(label, value): the label is not PHI, the value is."""
        rng = self.rng
        return rng.choice(
            (
                ("MRN ", str(rng.randint(100000, 99999999))),
                ("MRN: ", f"{rng.randint(10, 99)}-{rng.randint(10000, 99999)}"),
                ("SSN ", self.us.ssn()),
                ("Acc# ", f"A{rng.randint(1000000, 9999999)}"),
                ("accession ", f"RAD{rng.randint(100000, 999999)}"),
                ("record no. ", str(rng.randint(1000000, 9999999))),
                ("patient ID ", f"P{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"),
                ("", str(rng.randint(1000000, 999999999))),
            )
        )

    def date(self) -> str:
        day = date(1930, 1, 1) + timedelta(days=self.rng.randint(0, 34000))
        if self.rng.random() < 0.15:
            suffix = _ORDINALS.get(day.day, "th")
            return self.rng.choice(
                (f"the {day.day}{suffix} of {day:%B %Y}", f"{day.day}{suffix} {day:%B}", f"{day:%B} {day.day}{suffix}, {day:%Y}")
            )
        return day.strftime(self.rng.choice(_DATE_FORMATS))

    def age(self) -> str:
        age = self.rng.randint(90, 104)
        return self.rng.choice((f"{age}-year-old", f"{age} yo", f"{age} y/o", f"{age} years old", f"aged {age}", f"age {age}", f"{age}M"))


def _narrative_value(src: _Source, kind: str, rng: random.Random) -> Example:
    b = _Builder("narrative")
    b.clinical(rng.choice(NARRATIVE).capitalize())
    b.text(". ")
    first, last = src.person()
    if kind == "name":
        form = rng.randrange(8)
        if form == 0:
            b.text("Discussed with Dr. ")
            b.phi(last, "name")
        elif form == 1:
            b.text(rng.choice(("Neighbour ", "Neighbor ", "His daughter ", "Wife ", "Son ")))
            b.phi(f"{first} {last}", "name")
            b.text(" found him on the floor")
        elif form == 2:
            b.text("Seen by Dr ")
            b.phi(f"{first} {last}", "name")
        elif form == 3:
            b.text("Referred by ")
            b.phi(f"{first[0]}. {last}", "name")
        elif form == 4:
            b.phi(f"{first} {last}", "name")
            b.text(" called to reschedule")
        elif form == 5:
            b.text("Contact: ")
            b.phi(f"{last}, {first}", "name")
        elif form == 6:
            b.text("Spoke with Mrs. ")
            b.phi(last, "name")
            b.text(" about the results")
        else:
            b.text("Per ")
            b.phi(f"{first} {last}", "name")
            b.text(", ")
            b.clinical(rng.choice(NARRATIVE))
    elif kind == "address":
        b.text("Lives at ")
        b.phi(src.address(), "address")
    elif kind == "location":
        b.text(rng.choice(("Moved from ", "Lives in ", "Home: ")))
        b.phi(src.location(), "location")
    elif kind == "institution":
        b.text(rng.choice(("Earlier scans at ", "Transferred from ", "Prior biopsy at ")))
        b.phi(src.institution(), "institution")
    elif kind == "phone":
        b.text(rng.choice(("Call ", "Phone ", "Contact daughter at ", "fax results to ")))
        b.phi(src.phone(), "phone")
    elif kind == "email":
        b.text("Send report to ")
        b.phi(src.email(), "email")
    elif kind == "url":
        b.text("Portal: ")
        b.phi(src.url(), "url")
    elif kind == "id":
        label, value = src.identifier()
        b.text(label)
        b.phi(value, "id")
    elif kind == "date":
        b.text(rng.choice(("Previous scan ", "Biopsy on ", "DOB ", "Admitted ")))
        b.phi(src.date(), "date")
    elif kind == "age":
        b.phi(src.age(), "age")
        b.text(rng.choice((" woman", " man", " patient", "")))
    b.text(".")
    return b.example


def _descriptor_value(src: _Source, kind: str, rng: random.Random) -> Example:
    b = _Builder("descriptor")
    upper = rng.random() < 0.5
    desc = rng.choice(DESCRIPTORS)
    b.clinical(desc.upper() if upper else desc)
    b.text(" ")
    first, last = src.person()
    case: Callable[[str], str] = str.upper if upper else str
    if kind == "name":
        b.text(case(rng.choice(("per Dr. ", "for Dr ", "read by Dr. "))))
        b.phi(case(rng.choice((last, f"{first} {last}"))), "name")
    elif kind == "date":
        b.phi(src.date(), "date")
    elif kind == "id":
        label, value = src.identifier()
        b.text(label)
        b.phi(value, "id")
    elif kind == "institution":
        b.text(case("outside read "))
        b.phi(case(src.institution()), "institution")
    elif kind == "age":
        b.phi(src.age().upper() if upper else src.age(), "age")
    else:
        b.phi(getattr(src, kind)(), kind)
    return b.example


def labelled_set(n: int = 2400, seed: int = 14) -> list[Example]:
    """``n`` labelled values, two thirds narrative, one third descriptors, every kind planted."""
    src = _Source(seed)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        if i % 3 == 2 and kind in ("name", "date", "id", "institution", "age", "phone", "email"):
            out.append(_descriptor_value(src, kind, rng))
        else:
            out.append(_narrative_value(src, kind, rng))
    return out


def _covered(start: int, end: int, text: str, spans: list[tuple[int, int]]) -> bool:
    """Every letter and digit of ``text[start:end]`` is inside some span."""
    for pos in range(start, end):
        if text[pos].isalnum() and not any(s <= pos < e for s, e in spans):
            return False
    return True


def evaluate(examples: list[Example]) -> dict[str, object]:
    """Recall per kind (phi alone; phi or suspect), share of clinical words kept, share of values flagged."""
    import re

    from imaging_ingest.deid.freetext import Certainty, detect

    found = {k: [0, 0, 0] for k in KINDS}  # planted, caught as phi, caught as phi or suspect
    words_total = words_kept = flagged = 0
    word = re.compile(r"[A-Za-z][A-Za-z'/-]*")
    for ex in examples:
        spans = detect(ex.text, text_class=ex.text_class)
        phi = [(s.start, s.end) for s in spans if s.certainty is Certainty.PHI]
        every = [(s.start, s.end) for s in spans]
        flagged += any(s.certainty is Certainty.SUSPECT for s in spans)
        for start, end, kind in ex.phi:
            found[kind][0] += 1
            found[kind][1] += _covered(start, end, ex.text, phi)
            found[kind][2] += _covered(start, end, ex.text, every)
        for start, end in ex.clinical:
            for m in word.finditer(ex.text, start, end):
                words_total += 1
                words_kept += not any(s < m.end() and m.start() < e for s, e in phi)
    planted = sum(v[0] for v in found.values())
    return {
        "values": len(examples),
        "planted": planted,
        "recall": sum(v[1] for v in found.values()) / planted,
        "recall_with_suspects": sum(v[2] for v in found.values()) / planted,
        "recall_by_kind": {k: round(v[1] / v[0], 4) for k, v in found.items() if v[0]},
        "recall_with_suspects_by_kind": {k: round(v[2] / v[0], 4) for k, v in found.items() if v[0]},
        "planted_by_kind": {k: v[0] for k, v in found.items()},
        "clinical_words": words_total,
        "clinical_words_kept": words_kept / words_total,
        "values_flagged": flagged / len(examples),
    }
