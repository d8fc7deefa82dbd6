"""QIDO-RS (PS3.18 10.6): searching studies, series and instances by attribute.

Candidates come from the catalog through the request's ``Scope`` (so restricted
collections exist only for a token that grants them): a search naming one study, series
or patient is an indexed lookup; anything else lists the visible versions. Each candidate
becomes its DICOM JSON attributes, which the filters then match:

* UIDs (VR UI): a list, ``,`` or ``\\`` separated, each matched exactly;
* dates and times (DA, TM): a single value or a range ``a-b``, ``a-``, ``-b``;
* text: ``*`` and ``?`` wildcards, ignoring case (``fuzzymatching`` is accepted and
  changes nothing: names are pseudonyms, matched ignoring case anyway);
* numbers: equality; an empty value matches everything.

A search at study level, or for series at top level, whose keys are all catalog columns
(UIDs, StudyDate, PatientID/Name, descriptions, modalities, body part, manufacturer) is
matched, ordered and paged by the catalog (``queries.study_page`` / ``series_page``), and
attributes are built for the page only; a key only the headers hold (StudyTime,
SeriesNumber, ...) is matched here over the version's listing.

A multi-valued attribute (ModalitiesInStudy) matches when any value does. A matching key
the level does not hold is ignored with a ``Warning`` header, as PS3.18 asks. Results are
in a stable order (collection, then the level's UID; a study's series by SeriesNumber)
and paged with ``limit`` / ``offset``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imaging_ingest.api.access import Scope
from imaging_ingest.api.dicomweb.dicom_json import (
    element,
    select_fields,
    series_attributes,
    study_attributes,
    tag_of,
)
from imaging_ingest.api.dicomweb.metadata import MetadataCache
from imaging_ingest.api.queries import Condition, series_page, study_page
from imaging_ingest.api.releases import CollectionView, InstanceView, SeriesView, StudyView

__all__ = ["MAX_RESULTS", "BadQuery", "Query", "parse_query", "search"]

#: The most results one answer holds; more are reached with ``offset`` (a Warning says so).
MAX_RESULTS = 1000
_RESERVED = {"limit", "offset", "includefield", "fuzzymatching", "orderby"}

STUDY_DEFAULT = ("00080020", "00080030", "00080050", "00080061", "00080090", "00081030", "00100010", "00100020",
                 "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208")
SERIES_DEFAULT = ("00080060", "0008103E", "00080021", "00180015", "0020000D", "0020000E", "00200011", "00201209")
INSTANCE_DEFAULT = ("00080016", "00080018", "00083002", "0020000D", "0020000E", "00200013", "00280008",
                    "00280010", "00280011", "00280100")


#: Matching keys the catalog's columns answer, matched and paged in SQL: tag -> (field, how).
STUDY_COLUMNS = {
    "0020000D": ("study_uid", "uids"),
    "00080020": ("study_date", "range"),
    "00100020": ("patient", "text"),
    "00100010": ("patient", "text"),
    "00081030": ("study_description", "text"),
    "00080061": ("modalities_in_study", "text"),
}
SERIES_COLUMNS = {
    **STUDY_COLUMNS,
    "0020000E": ("series_uid", "uids"),
    "00080060": ("modality", "text"),
    "0008103E": ("series_description", "text"),
    "00180015": ("body_part", "text"),
    "00080070": ("manufacturer", "text"),
}


class BadQuery(ValueError):
    """A parameter that is not a DICOM keyword or tag, or a bad limit/offset: a 400."""


@dataclass
class Query:
    filters: dict[str, str] = field(default_factory=dict)
    include: set[str] = field(default_factory=set)
    everything: bool = False
    limit: int | None = None
    offset: int = 0
    warnings: list[str] = field(default_factory=list)


def _number(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadQuery(f"{name} must be a whole number, not {value!r}") from None
    if number < 0:
        raise BadQuery(f"{name} must not be negative")
    return number


def parse_query(params: Iterable[tuple[str, str]]) -> Query:
    """The query string as filters, included fields and paging; BadQuery names what is wrong."""
    query = Query()
    for name, value in params:
        if name == "includefield":
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                if item == "all":
                    query.everything = True
                    continue
                tag = tag_of(item)
                if tag is None:
                    raise BadQuery(f"includefield names {item!r}, which is not a DICOM keyword or tag")
                query.include.add(tag)
        elif name == "limit":
            query.limit = _number("limit", value)
        elif name == "offset":
            query.offset = _number("offset", value)
        elif name in _RESERVED:
            continue  # fuzzymatching, orderby: accepted
        else:
            if "." in name:  # a sequence path: matching inside sequences is not supported
                query.warnings.append(name)
                continue
            tag = tag_of(name)
            if tag is None:
                raise BadQuery(f"{name!r} is not a DICOM keyword or tag, nor a QIDO-RS parameter")
            query.filters[tag] = value
    return query


def _text_match(value: str, pattern: str) -> bool:
    if "*" in pattern or "?" in pattern:
        regex = fnmatch.translate(pattern.upper().replace("[", "[[]"))
        return re.match(regex, value.upper()) is not None
    return value.upper() == pattern.upper()


def _range_match(value: str, pattern: str) -> bool:
    if "-" in pattern:
        low, _, high = pattern.partition("-")
        return (not low or value >= low) and (not high or value[: len(high)] <= high)
    return value.startswith(pattern) if pattern else True


def matches(attribute: Mapping[str, Any] | None, pattern: str) -> bool:
    """One filter against one attribute (its VR says how); an empty pattern matches everything."""
    if pattern == "" or pattern == "*":
        return True
    if attribute is None:
        return False
    vr = attribute.get("vr")
    values = attribute.get("Value") or []
    if vr == "PN":
        values = [v.get("Alphabetic", "") if isinstance(v, dict) else str(v) for v in values]
    if vr == "UI":
        wanted = {p.strip() for p in re.split(r"[,\\]", pattern) if p.strip()}
        return any(str(v) in wanted for v in values)
    if vr in ("DA", "TM", "DT"):
        return any(_range_match(str(v), pattern) for v in values)
    if vr in ("IS", "US", "UL", "SL", "SS", "DS", "FL", "FD"):
        try:
            return any(float(v) == float(pattern) for v in values)
        except ValueError:
            return False
    return any(_text_match(str(v), p) for v in values for p in pattern.split("\\"))


# -- candidates ------------------------------------------------------------------------------


def _studies(scope: Scope, query: Query, study_uid: str | None) -> list[tuple[CollectionView, StudyView]]:
    uid = study_uid or query.filters.get("0020000D")
    if uid and "," not in uid and "\\" not in uid and "*" not in uid:
        found = scope.find_study(uid)
        return [found] if found else []
    patient = query.filters.get("00100020")
    if patient and "*" not in patient and "?" not in patient:
        return [(v, st) for v, p in scope.find_patients(None, patient) for st in p.studies]
    return sorted(scope.studies(), key=lambda pair: (pair[0].id, pair[1].uid))


def _series(scope: Scope, query: Query, study_uid: str | None) -> list[tuple[CollectionView, SeriesView]]:
    uid = query.filters.get("0020000E")
    if uid and "," not in uid and "\\" not in uid and "*" not in uid:
        found = scope.find_series(uid)
        if found is None or (study_uid and found[1].study_uid != study_uid):
            return []
        return [found]
    sop = query.filters.get("00080018")
    if sop and "," not in sop and "\\" not in sop and "*" not in sop:  # one instance: find its series by index
        pairs = [(v, s) for v in scope.visible() if (s := v.series_of_instance(sop)) is not None]
        return [(v, s) for v, s in pairs if not study_uid or s.study_uid == study_uid]
    return [(v, s) for v, st in _studies(scope, query, study_uid) for s in st.series]


def _study_of(view: CollectionView, series: SeriesView) -> StudyView | None:
    return view.studies.get(series.study_uid)


# -- answers ---------------------------------------------------------------------------------


def _check_supported(query: Query, supported: Iterable[str]) -> None:
    known = set(supported)
    for tag in query.filters:
        if tag not in known:
            query.warnings.append(tag)


def _limit(query: Query) -> int:
    if query.limit is not None and query.limit > MAX_RESULTS:
        query.warnings.append(f"limit above {MAX_RESULTS}")
    return MAX_RESULTS if query.limit is None else min(query.limit, MAX_RESULTS)


def _page(items: list[Any], query: Query) -> list[Any]:
    return items[query.offset : query.offset + _limit(query)]


def _single(value: str | None) -> bool:
    return bool(value) and not any(c in (value or "") for c in ",\\*?")


def _conditions(query: Query, columns: Mapping[str, tuple[str, str]], known: set[str]) -> list[Condition] | None:
    """The filters as SQL conditions; None when one of them needs the headers (matched in Python)."""
    out = []
    for tag, pattern in query.filters.items():
        if tag in columns:
            field_name, kind = columns[tag]
            out.append(Condition(field_name, kind, pattern))
        elif tag in known or tag == "00080018":
            return None
    return out


def _study_page(scope: Scope, query: Query, conditions: list[Condition]) -> list[tuple[CollectionView, StudyView]]:
    """A page of matching studies: matched, ordered and paged by the catalog; attributes only for the page."""
    views = {v.id: v for v in scope.visible()}
    if not views:
        return []
    engine = next(iter(views.values())).engine
    keys = study_page(engine, [(v.id, v.version) for v in views.values()], conditions, _limit(query), query.offset)
    found = _by_collection(views, [(cid, uid) for cid, uid in keys])
    return [(views[cid], found[cid][uid]) for cid, uid in keys if uid in found[cid]]


def _by_collection(views: Mapping[str, CollectionView], keys: list[tuple[str, str]]) -> dict[str, dict[str, StudyView]]:
    wanted: dict[str, list[str]] = {}
    for cid, uid in keys:
        wanted.setdefault(cid, []).append(uid)
    found: dict[str, dict[str, StudyView]] = {cid: {} for cid in views}
    for cid, uids in wanted.items():
        found[cid] = views[cid].studies_of(uids)
    return found


def _series_page(scope: Scope, query: Query, conditions: list[Condition]) -> list[dict[str, Any]]:
    """A page of matching series (top level), matched and paged by the catalog, with their studies' attributes."""
    views = {v.id: v for v in scope.visible()}
    if not views:
        return []
    engine = next(iter(views.values())).engine
    keys = series_page(engine, [(v.id, v.version) for v in views.values()], conditions, _limit(query), query.offset)
    studies = _by_collection(views, [(cid, study) for cid, _, study in keys])
    rows = []
    for cid, uid, study_uid in keys:
        study = studies[cid].get(study_uid)
        series = next((s for s in study.series if s.uid == uid), None) if study is not None else None
        if study is None or series is None:
            continue
        attributes = {**study_attributes(views[cid], study), **series_attributes(series)}
        attributes["0020000D"] = element("0020000D", series.study_uid)
        rows.append(attributes)
    return rows


def search(scope: Scope, level: str, query: Query, metadata: MetadataCache, *, study_uid: str | None = None,
           series_uid: str | None = None) -> list[dict[str, Any]]:
    """The DICOM JSON answer of a search at ``level`` (studies, series, instances), nested or not."""
    if level == "studies":
        named = _single(query.filters.get("0020000D")) or _single(query.filters.get("00100020"))
        conditions = None if named else _conditions(query, STUDY_COLUMNS, study_attributes_tags())
        if conditions is not None:
            _check_supported(query, study_attributes_tags())
            return [select_fields(study_attributes(view, study), STUDY_DEFAULT, query.include, query.everything)
                    for view, study in _study_page(scope, query, conditions)]
        rows = []
        for view, study in _studies(scope, query, None):
            attributes = study_attributes(view, study)
            rows.append(attributes)
        _check_supported(query, rows[0] if rows else study_attributes_tags())
        found = [r for r in rows if all(matches(r.get(t), p) for t, p in query.filters.items() if t in r)]
        return [select_fields(r, STUDY_DEFAULT, query.include, query.everything) for r in _page(found, query)]

    if series_uid:
        query.filters.setdefault("0020000E", series_uid)
    if level == "series" and study_uid is None and not _single(query.filters.get("0020000E")):
        conditions = _conditions(query, SERIES_COLUMNS, series_attributes_tags(True))
        if conditions is not None:
            _check_supported(query, series_attributes_tags(True))
            return [select_fields(a, SERIES_DEFAULT + STUDY_DEFAULT, query.include, query.everything)
                    for a in _series_page(scope, query, conditions)]
    pairs = _series(scope, query, study_uid)
    if level == "series" and study_uid is None:  # the order the catalog pages in: collection, then series UID
        pairs.sort(key=lambda pair: (pair[0].id, pair[1].uid))
    series_rows = []
    for view, series in pairs:
        attributes = series_attributes(series)
        attributes["0020000D"] = element("0020000D", series.study_uid)
        if not study_uid or level == "instances":
            parent = _study_of(view, series)
            if parent is not None:
                attributes = {**study_attributes(view, parent), **attributes}
        series_rows.append((view, series, attributes))

    if level == "series":
        _check_supported(query, series_rows[0][2] if series_rows else series_attributes_tags(study_uid is None))
        found = [a for _, _, a in series_rows if all(matches(a.get(t), p) for t, p in query.filters.items() if t in a)]
        defaults = SERIES_DEFAULT if study_uid else SERIES_DEFAULT + STUDY_DEFAULT
        return [select_fields(a, defaults, query.include, query.everything) for a in _page(found, query)]

    return _instances(series_rows, query, metadata, nested=bool(study_uid))


def _instances(series_rows: list[tuple[CollectionView, SeriesView, dict[str, Any]]], query: Query,
               metadata: MetadataCache, *, nested: bool) -> list[dict[str, Any]]:
    candidates: list[tuple[InstanceView, dict[str, Any]]] = []
    for _view, series, attributes in series_rows:
        # Only the series' own attributes filter here; instance keys are matched below.
        if not all(matches(attributes.get(t), p) for t, p in query.filters.items() if t in attributes):
            continue
        for instance in series.instances:
            own = {"00080016": element("00080016", instance.sop_class_uid),
                   "00080018": element("00080018", instance.sop_uid)}
            candidates.append((instance, {**attributes, **own}))
    catalog_filters = {t: p for t, p in query.filters.items() if t in ("00080016", "00080018")}
    candidates = [(i, a) for i, a in candidates if all(matches(a.get(t), p) for t, p in catalog_filters.items())]
    header_filters = {t: p for t, p in query.filters.items()
                      if t not in catalog_filters and (not candidates or t not in candidates[0][1])}
    if header_filters:  # matching on the instances' own headers (InstanceNumber, ...) reads them all first
        documents = metadata.get_many((i.tier, i.key, i.size) for i, _ in candidates)
        candidates = [(i, a) for i, a in candidates
                      if all(matches(documents.get(i.key, {}).get(t), p) for t, p in header_filters.items())]
    page = _page(candidates, query)
    documents = metadata.get_many((i.tier, i.key, i.size) for i, _ in page) if page else {}
    defaults = INSTANCE_DEFAULT if nested else INSTANCE_DEFAULT + SERIES_DEFAULT + STUDY_DEFAULT
    out = []
    for instance, attributes in page:
        own = {t: v for t, v in documents.get(instance.key, {}).items() if "BulkDataURI" not in v}
        out.append(select_fields({**own, **attributes}, defaults, query.include, query.everything))
    return out


def study_attributes_tags() -> set[str]:
    return set(STUDY_DEFAULT) | {"00101010", "00120010", "00120020", "00081190"}


def series_attributes_tags(with_study: bool) -> set[str]:
    tags = set(SERIES_DEFAULT) | {"00080070", "00081090", "00181030"}
    return tags | study_attributes_tags() if with_study else tags
