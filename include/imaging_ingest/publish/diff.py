"""What changed between two versions of a collection: patients, studies, series, instances, files."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from imaging_ingest.catalog import Catalog
from imaging_ingest.publish.versions import Listing, is_dicom_entry, open_release, release_objects
from imaging_ingest.storage.objects import ObjectStore

__all__ = ["LEVELS", "Change", "VersionDiff", "diff_listings", "diff_versions"]


LEVELS = ("patient", "study", "series", "instance", "file")


@dataclass(frozen=True, order=True)
class Change:
    """One difference between two versions: a patient, study, series or instance added, removed or replaced.

    Instances and series are ``replaced`` (same UID, different bytes); patients and studies
    holding a changed series are ``changed``.
    """

    level: str
    change: str
    id: str


@dataclass(frozen=True)
class VersionDiff:
    collection_id: str
    a: int
    b: int
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def ids(self, level: str, change: str) -> list[str]:
        return [c.id for c in self.changes if c.level == level and c.change == change]

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {level: {} for level in LEVELS}
        for c in self.changes:
            out[c.level][c.change] = out[c.level].get(c.change, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection_id,
            "a": self.a,
            "b": self.b,
            "counts": self.counts(),
            "changes": [asdict(c) for c in self.changes],
        }


def diff_listings(a: Listing, b: Listing) -> list[Change]:
    """What changed from listing ``a`` to listing ``b``, level by level."""

    def tree(
        listing: Listing,
    ) -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, set[str]], dict[str, set[str]]]:
        dicom = [e for e in listing.values() if is_dicom_entry(e)]
        instances = {e["sop_uid"]: e["sha256"] for e in dicom}
        series: dict[str, dict[str, str]] = defaultdict(dict)
        studies: dict[str, set[str]] = defaultdict(set)
        patients: dict[str, set[str]] = defaultdict(set)
        for e in dicom:
            series[e["series_uid"]][e["sop_uid"]] = e["sha256"]
            studies[e["study_uid"]].add(e["series_uid"])
            patients[e["patient"]].add(e["study_uid"])
        return instances, series, studies, patients

    ia, sa, ta, pa = tree(a)
    ib, sb, tb, pb = tree(b)
    changes: list[Change] = []

    def compare(
        level: str, old: Mapping[str, Any], new: Mapping[str, Any], differs: Callable[[str], bool], word: str
    ) -> set[str]:
        touched = set()
        for uid in sorted(new.keys() - old.keys()):
            changes.append(Change(level, "added", uid))
            touched.add(uid)
        for uid in sorted(old.keys() - new.keys()):
            changes.append(Change(level, "removed", uid))
            touched.add(uid)
        for uid in sorted(old.keys() & new.keys()):
            if differs(uid):
                changes.append(Change(level, word, uid))
                touched.add(uid)
        return touched

    compare("instance", ia, ib, lambda uid: ia[uid] != ib[uid], "replaced")
    changed_series = compare("series", sa, sb, lambda uid: sa[uid] != sb[uid], "replaced")
    changed_studies = compare(
        "study", ta, tb, lambda uid: bool((ta[uid] | tb[uid]) & changed_series), "changed"
    )
    compare("patient", pa, pb, lambda uid: bool((pa[uid] | pb[uid]) & changed_studies), "changed")
    fa = {k: e["sha256"] for k, e in a.items() if not is_dicom_entry(e)}
    fb = {k: e["sha256"] for k, e in b.items() if not is_dicom_entry(e)}
    compare("file", fa, fb, lambda key: fa[key] != fb[key], "replaced")
    return sorted(changes, key=lambda c: (LEVELS.index(c.level), c.change, c.id))


def diff_versions(store: ObjectStore, catalog: Catalog, collection_id: str, a: int, b: int) -> VersionDiff:
    _, release_a = open_release(store, catalog, collection_id, a)
    _, release_b = open_release(store, catalog, collection_id, b)
    return VersionDiff(
        collection_id, a, b, tuple(diff_listings(release_objects(release_a), release_objects(release_b)))
    )


# -- getting a version out ----------------------------------------------------------------
