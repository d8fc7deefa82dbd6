"""Fake patients, staff and visits: long, unusual names so that a leak scan finds exactly the leaks."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass

# Word lists. Names are long and unusual on purpose: a leak scan for "ANN" or "LEE" would
# drown in false positives, one for "QUARTERMAINE" finds exactly the leaks.
_FAMILY_NAMES = (
    "ABERNATHY",
    "BRAMWELL",
    "CASTELLANO",
    "DELACROIX",
    "EVERSOLE",
    "FAIRWEATHER",
    "GALLOWAY",
    "HARTWELL",
    "IRONSIDE",
    "JANKOWSKI",
    "KESSELRING",
    "LINDQVIST",
    "MACALLISTER",
    "NORTHCOTT",
    "OSTERMANN",
    "PEMBERTON",
    "QUARTERMAINE",
    "ROSENTHAL",
    "SILVERTHORN",
    "TREMBLAY",
    "UNDERHILL",
    "VANDERMEER",
    "WHITLOCK",
    "YARBOROUGH",
    "ZIMMERLI",
    "ASHCROFT",
    "BLACKWOOD",
    "CROMWELL",
    "DUNWOODY",
    "ELLINGTON",
    "FORTESCUE",
    "GRIMSHAW",
)


_GIVEN_NAMES = {
    "M": (
        "THEODORE",
        "AUGUSTINE",
        "BARNABY",
        "CORNELIUS",
        "DESMOND",
        "EZEKIEL",
        "FITZGERALD",
        "GIDEON",
        "HORATIO",
        "LEOPOLD",
        "MORDECAI",
        "PERCIVAL",
        "RUPERT",
        "SEBASTIAN",
        "THADDEUS",
        "WINSTON",
    ),
    "F": (
        "MARGARETHE",
        "ANASTASIA",
        "BEATRIX",
        "CLEMENTINE",
        "DELPHINE",
        "ESMERALDA",
        "FREDERICA",
        "GWENDOLYN",
        "HENRIETTA",
        "ISADORA",
        "JOSEPHINE",
        "LUCINDA",
        "OTTILIE",
        "PERPETUA",
        "ROSALIND",
        "WILHELMINA",
    ),
}


_STAFF_FAMILY = (
    "HOLLOWAY",
    "KINGSBURY",
    "MONTGOMERY",
    "PRESCOTT",
    "RADCLIFFE",
    "STANHOPE",
    "THORNBURY",
    "WAVERLEY",
    "ALDRIDGE",
    "BECKWITH",
    "CALLOWAY",
    "DRUMMOND",
)


_STAFF_GIVEN = (
    "BRENDAN",
    "CORDELIA",
    "EVANGELINE",
    "FLETCHER",
    "GRISELDA",
    "LANCELOT",
    "MARISOL",
    "OSWALD",
    "PRUDENCE",
    "REGINALD",
)


_STREETS = (
    "WEXFORD LANE",
    "BRAMBLEWOOD COURT",
    "QUILLFEATHER ROAD",
    "HAWTHORNE TERRACE",
    "JUNIPER HOLLOW WAY",
    "KESTREL RIDGE DRIVE",
    "MARIGOLD CRESCENT",
    "ORCHARDVALE AVENUE",
)


_CITIES = (
    ("MILLBROOK", "OH", "43210"),
    ("CEDARVALE", "PA", "17011"),
    ("FOXBOROUGH", "WI", "53703"),
    ("GLENHAVEN", "CO", "80302"),
    ("PINECLIFF", "NC", "27514"),
    ("SILVERLAKE", "MN", "55414"),
)


_AREA_CODES = ("614", "717", "608", "303", "919", "612")


_INSTITUTIONS = (
    ("MAPLECREST REGIONAL CANCER CENTER", "4100 LARKSPUR BOULEVARD, FAIRHAVEN, OR 97321", "MRCC"),
    ("SAINT BARTHOLOMEW MEMORIAL HOSPITAL", "77 COBBLESTONE ROW, ASHBURY, VT 05401", "SBMH"),
    ("RIVERBEND UNIVERSITY MEDICAL CENTER", "2600 WILLOWMERE DRIVE, OAKHAVEN, KS 66044", "RUMC"),
)


_DIAGNOSES = (
    "Non-small cell lung carcinoma",
    "Lung adenocarcinoma",
    "Squamous cell carcinoma of the lung",
    "Small cell lung carcinoma",
)


_BIRTH_RANGE = (dt.date(1940, 1, 1), dt.date(1985, 12, 31))


_FOLLOW_UP_DAYS = (60, 400)


# The follow-up must still fall in 2015-2023, so the baseline ends 400 days before 2023 does.
_BASELINE_RANGE = (dt.date(2015, 1, 1), dt.date(2023, 12, 31) - dt.timedelta(days=_FOLLOW_UP_DAYS[1]))


@dataclass(frozen=True)
class Person:
    family: str
    given: str

    @property
    def pn(self) -> str:
        return f"{self.family}^{self.given}"

    @property
    def text(self) -> str:
        """The name as free text writes it, e.g. in a description."""
        return f"{self.family} {self.given}"


@dataclass(frozen=True)
class Study:
    index: int
    start: dt.datetime
    accession: str
    study_id: str
    requested_procedure_id: str
    sps_id: str

    @property
    def date(self) -> str:
        return dicom_date(self.start)


@dataclass(frozen=True)
class Patient:
    index: int
    person: Person
    mrn: str
    other_ids: tuple[tuple[str, str], ...]  # (id, issuer)
    sex: str
    birth: dt.date
    address: str
    phone: str
    institution: tuple[str, str, str]
    referring: Person
    performing: Person
    operator: Person
    ct_serial: str
    mr_serial: str
    diagnosis: str
    diagnosis_date: dt.date
    studies: tuple[Study, ...]

    @property
    def tag(self) -> str:
        """The name and MRN together, as a site's free text tends to write them."""
        return f"{self.person.text} {self.mrn}"

    @property
    def folder(self) -> str:
        return f"{self.person.family}_{self.person.given}_{self.mrn}"


def dicom_date(value: dt.date | dt.datetime) -> str:
    return value.strftime("%Y%m%d")


def dicom_time(value: dt.datetime) -> str:
    return value.strftime("%H%M%S")


def _random_date(rng: random.Random, span: tuple[dt.date, dt.date]) -> dt.date:
    return span[0] + dt.timedelta(days=rng.randint(0, (span[1] - span[0]).days))


def age_on(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


def _staff(rng: random.Random) -> Person:
    return Person(rng.choice(_STAFF_FAMILY), rng.choice(_STAFF_GIVEN))


def _make_study(rng: random.Random, index: int, day: dt.date) -> Study:
    start = dt.datetime.combine(day, dt.time(rng.randint(7, 16), rng.randint(0, 59), rng.randint(0, 59)))
    return Study(
        index=index,
        start=start,
        accession=f"A{_digits(rng, 8)}",
        study_id=f"ST{_digits(rng, 6)}",
        requested_procedure_id=f"RP{_digits(rng, 7)}",
        sps_id=f"SPS{_digits(rng, 7)}",
    )


def _make_patient(rng: random.Random, index: int, person: Person, sex: str, mrn: str) -> Patient:
    """Draw one patient's identity and visits; the draw order is part of the determinism contract."""
    birth = _random_date(rng, _BIRTH_RANGE)
    baseline = _random_date(rng, _BASELINE_RANGE)
    follow_up = baseline + dt.timedelta(days=rng.randint(*_FOLLOW_UP_DAYS))
    city, state, zip_code = rng.choice(_CITIES)
    institution = rng.choice(_INSTITUTIONS)
    return Patient(
        index=index,
        person=person,
        mrn=mrn,
        other_ids=(
            (f"E{_digits(rng, 9)}", f"{institution[2]} ENTERPRISE MPI"),
            (f"H{_digits(rng, 7)}", f"{institution[2]} LEGACY HIS"),
        ),
        sex=sex,
        birth=birth,
        address=f"{rng.randint(100, 9899)} {rng.choice(_STREETS)}, {city}, {state} {zip_code}",
        phone=f"({rng.choice(_AREA_CODES)}) 555-01{_digits(rng, 2)}",
        institution=institution,
        referring=_staff(rng),
        performing=_staff(rng),
        operator=_staff(rng),
        ct_serial=f"CT{_digits(rng, 7)}",
        mr_serial=f"MR{_digits(rng, 7)}",
        diagnosis=rng.choice(_DIAGNOSES),
        diagnosis_date=baseline - dt.timedelta(days=rng.randint(5, 60)),
        studies=(_make_study(rng, 0, baseline), _make_study(rng, 1, follow_up)),
    )


def _fresh(rng: random.Random, pool: Sequence[str], used: set[str]) -> str:
    """A name not used yet while the pool lasts, so most leaks point at a single patient."""
    unused = [name for name in pool if name not in used]
    return rng.choice(unused or list(pool))


def make_patients(seed: int, count: int) -> list[Patient]:
    """Draw ``count`` patients with distinct names and MRNs, so a leak is attributable to one.

    Each patient has an RNG of its own, so patient ``i`` is the same person whatever
    ``count`` is: a 2-patient and a 20-patient run with one seed agree on the first two.
    """
    capacity = len(_FAMILY_NAMES) * min(len(names) for names in _GIVEN_NAMES.values())
    if count > capacity:
        raise ValueError(f"at most {capacity} distinct synthetic patients, asked for {count}")
    names: set[Person] = set()
    mrns: set[str] = set()
    patients = []
    for index in range(count):
        rng = random.Random(f"imaging_ingest.synth|{seed}|{index}")
        sex = rng.choice("MF")
        person = Person(
            _fresh(rng, _FAMILY_NAMES, {n.family for n in names}),
            _fresh(rng, _GIVEN_NAMES[sex], {n.given for n in names}),
        )
        while person in names:
            person = Person(rng.choice(_FAMILY_NAMES), rng.choice(_GIVEN_NAMES[sex]))
        mrn = f"MRN{rng.randint(100000, 999999)}"
        while mrn in mrns:
            mrn = f"MRN{rng.randint(100000, 999999)}"
        names.add(person)
        mrns.add(mrn)
        patients.append(_make_patient(rng, index, person, sex, mrn))
    return patients
