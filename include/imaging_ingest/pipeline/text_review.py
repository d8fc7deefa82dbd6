"""Review of distinct free-text values, once per collection: the catalog's half of the review flow.

The engine (``deid/review.py``) applies the collection's decisions to every kept
free-text value and reports each value it saw. Here:

1. ``load_policy``: before a batch is de-identified, the collection's decisions are read
   from the catalog once and handed to the workers as plain data (a dict of value hash to
   ``safe``/``unsafe``), with the collection's ``free_text_flags`` and the detector;
2. ``BatchTexts``: a batch's values are kept in the restricted staging tier
   (``texts/<batch>``), never in the manifests, which feed gates and public projections;
3. ``record_texts``: once every batch is done (the ``screen`` stage), the submission's
   values are counted per attribute into the catalog (``freetext_values``: one row per
   distinct normalised value of the collection, with its decision;
   ``freetext_occurrences``: count, flag and action per submission and attribute): the
   submission's review report;
4. ``decide``: a curator marks a value ``safe`` or ``unsafe`` (CLI ``imaging-ingest
   text-review``, the plugin's *Free text* page), audited; reruns and later submissions of
   the collection apply it, so the same text is never reviewed twice.

The catalog is restricted; curators see the text there. Nothing here logs a value, and the
audit trail names a value by its id and hash prefix only.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import delete, select

from imaging_ingest.catalog.models import AuditEvent, utcnow
from imaging_ingest.catalog.textreview import FreeTextOccurrence, FreeTextValue
from imaging_ingest.deid.review import (
    ACTION_HELD,
    ACTION_KEPT,
    ACTION_REMOVED,
    SAFE,
    UNSAFE,
    Detector,
    SeenText,
    TextPolicy,
    suspect_flagged,
)

__all__ = [
    "PENDING",
    "AUDIT_EVENT",
    "BatchTexts",
    "TextDecisionError",
    "ValueRow",
    "decide",
    "default_detector",
    "load_decisions",
    "load_policy",
    "record_submission_texts",
    "record_texts",
    "submission_report",
    "value",
    "values",
]

log = logging.getLogger(__name__)

PENDING = "pending"
AUDIT_EVENT = "freetext-review"
MAX_NOTE_LENGTH = 2000
_ACTION_RANK = {ACTION_KEPT: 0, ACTION_REMOVED: 1, ACTION_HELD: 2}
TEXT_COLUMNS = ("file_id", "tag", "attribute", "value_hash", "text", "flagged", "action")


class TextDecisionError(ValueError):
    """A decision that cannot be taken (no such value, not safe/unsafe, no curator name)."""


def default_detector() -> Detector | None:
    """The free-text detector (``deid/freetext``) where it is installed; None flags nothing (decisions still apply).

    It is ``deid.review.suspect_flagged``: it goes to every de-identification worker by
    reference, and a worker that unpickles it imports its module, so that module stays light
    (this one imports pandas and SQLAlchemy: over a second per worker, per batch).
    """
    if importlib.util.find_spec("imaging_ingest.deid.freetext") is None:
        return None
    return suspect_flagged


def load_decisions(catalog: Any, collection_id: str) -> dict[str, str]:
    """The collection's decided values: value hash -> ``safe`` or ``unsafe`` (one query)."""
    with catalog.session() as s:
        rows = s.execute(
            select(FreeTextValue.value_hash, FreeTextValue.state).where(
                FreeTextValue.collection_id == collection_id, FreeTextValue.state.in_([SAFE, UNSAFE])
            )
        ).all()
    return {digest: state for digest, state in rows}


def load_policy(catalog: Any, config: Any, detector: Detector | None = None) -> TextPolicy:
    """What a batch's workers need: decisions, the collection's ``free_text_flags``, the detector."""
    return TextPolicy(
        decisions=load_decisions(catalog, config.id),
        flags=config.free_text_flags,
        detector=detector if detector is not None else default_detector(),
    )


class BatchTexts:
    """A batch's kept free-text values, file by file, for the restricted ``texts/<batch>`` object."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, file_id: int, texts: tuple[SeenText, ...]) -> None:
        for t in texts:
            self.rows.append(
                {"file_id": file_id, "tag": t.tag, "attribute": t.keyword, "value_hash": t.value_hash,
                 "text": t.text, "flagged": t.flagged, "action": t.action}
            )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(TEXT_COLUMNS)).astype({"tag": "int64", "flagged": "bool"})

    def write(self, manifests: Any, batch_name: str) -> str:
        """Into the staging tier (restricted), beside the batch's manifest: ``texts/<batch>``."""
        return str(manifests.write(texts_name(batch_name), self.frame()))


def texts_name(batch_name: str) -> str:
    """``deid/0003`` -> ``texts/0003``: where a batch's values are kept."""
    return "texts/" + batch_name.rsplit("/", 1)[-1].removesuffix(".parquet")


def record_texts(catalog: Any, collection_id: str, submission_id: str, frames: Iterable[pd.DataFrame]) -> dict[str, int]:
    """Count a submission's values into the catalog (replacing an earlier count of it); PHI-free counts back."""
    parts = [f for f in frames if not f.empty]
    if not parts:
        return {"values": 0, "flagged": 0, "removed": 0, "held": 0, "pending": 0, "pending_flagged": 0}
    texts = pd.concat(parts, ignore_index=True)
    texts["rank"] = texts["action"].map(_ACTION_RANK).fillna(0).astype(int)
    grouped = (
        texts.groupby(["value_hash", "attribute"], sort=True)
        .agg(count=("file_id", "size"), flagged=("flagged", "any"), rank=("rank", "max"), text=("text", "first"))
        .reset_index()
    )
    actions = {rank: action for action, rank in _ACTION_RANK.items()}
    with catalog.session() as s:
        known = {
            row.value_hash: row
            for row in s.scalars(select(FreeTextValue).where(FreeTextValue.collection_id == collection_id))
        }
        flagged_now = grouped.groupby("value_hash")["flagged"].any().to_dict()
        for digest, text in grouped.groupby("value_hash")["text"].first().items():
            row = known.get(str(digest))
            if row is None:
                row = FreeTextValue(
                    collection_id=collection_id, value_hash=str(digest), text=str(text), state=PENDING,
                    flagged=bool(flagged_now[digest]), first_submission_id=submission_id,
                )
                s.add(row)
                known[str(digest)] = row
            else:
                row.flagged = bool(flagged_now[digest])
        s.flush()
        s.execute(delete(FreeTextOccurrence).where(FreeTextOccurrence.submission_id == submission_id))
        for r in grouped.itertuples(index=False):
            s.add(
                FreeTextOccurrence(
                    submission_id=submission_id, value_id=known[str(r.value_hash)].id, attribute=str(r.attribute),
                    count=int(r.count), flagged=bool(r.flagged), action=actions[int(r.rank)],
                )
            )
        undecided = [digest for digest in flagged_now if known[str(digest)].state == PENDING]
        pending, pending_flagged = len(undecided), sum(bool(flagged_now[d]) for d in undecided)
    counts = {
        "values": int(grouped["value_hash"].nunique()),
        "flagged": int(sum(bool(v) for v in flagged_now.values())),
        "removed": int((texts["action"] == ACTION_REMOVED).sum()),
        "held": int((texts["action"] == ACTION_HELD).sum()),
        "pending": pending,
        "pending_flagged": pending_flagged,
    }
    log.info("free-text review of %s: %s", submission_id, counts)
    return counts


def record_submission_texts(ingest: Any, submission_id: str, batch_results: Iterable[str]) -> dict[str, int]:
    """The ``screen`` stage's hook: count every batch's values (``texts/<batch>``) into the catalog."""
    manifests = ingest.manifests(submission_id)
    names = [texts_name(key) for key in batch_results]
    frames = (manifests.read(name) for name in names if manifests.exists(name))
    return record_texts(ingest.catalog, ingest.config.id, submission_id, frames)


@dataclass(frozen=True)
class ValueRow:
    """A distinct value as curators review it: the text (restricted), its flag, decision and counts."""

    id: int
    collection_id: str
    text: str
    flagged: bool
    state: str
    decided_by: str | None
    decided_at: datetime | None
    attributes: dict[str, int]
    action: str | None = None

    @property
    def count(self) -> int:
        return sum(self.attributes.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "collection": self.collection_id, "text": self.text, "flagged": self.flagged,
            "state": self.state, "decided_by": self.decided_by, "decided_at": self.decided_at,
            "attributes": self.attributes, "count": self.count, "action": self.action,
        }


def submission_report(catalog: Any, submission_id: str) -> list[ValueRow]:
    """Every distinct value of a submission: per attribute counts, flag, what the run did, the decision."""
    return _rows(catalog, FreeTextOccurrence.submission_id == submission_id)


def values(catalog: Any, collection_id: str, *, state: str | None = PENDING, flagged_only: bool = False) -> list[ValueRow]:
    """A collection's values (default: pending), flagged ones first, then by how often they occur."""
    rows = _rows(catalog, FreeTextValue.collection_id == collection_id)
    rows = [r for r in rows if (state is None or r.state == state) and (r.flagged or not flagged_only)]
    return sorted(rows, key=lambda r: (not r.flagged, -r.count, r.id))


def _rows(catalog: Any, where: Any) -> list[ValueRow]:
    with catalog.session() as s:
        found = s.execute(
            select(FreeTextValue, FreeTextOccurrence.attribute, FreeTextOccurrence.count, FreeTextOccurrence.action)
            .join(FreeTextOccurrence, FreeTextOccurrence.value_id == FreeTextValue.id)
            .where(where)
            .order_by(FreeTextValue.id, FreeTextOccurrence.attribute)
        ).all()
        out: dict[int, ValueRow] = {}
        for value, attribute, count, action in found:
            row = out.get(value.id)
            if row is None:
                row = out[value.id] = ValueRow(value.id, value.collection_id, value.text, value.flagged, value.state,
                                               value.decided_by, value.decided_at, {}, action)
            row.attributes[attribute] = row.attributes.get(attribute, 0) + int(count)
            if _ACTION_RANK.get(action, 0) > _ACTION_RANK.get(row.action or ACTION_KEPT, 0):
                out[value.id] = ValueRow(**{**row.__dict__, "action": action})
    return list(out.values())


def value(catalog: Any, value_id: int) -> ValueRow:
    """One value with its counts over every submission."""
    rows = _rows(catalog, FreeTextValue.id == value_id)
    if rows:
        return rows[0]
    with catalog.session() as s:
        v = s.get(FreeTextValue, value_id)
        if v is None:
            raise TextDecisionError(f"no free-text value {value_id}")
        return ValueRow(v.id, v.collection_id, v.text, v.flagged, v.state, v.decided_by, v.decided_at, {})


def decide(catalog: Any, value_id: int, decision: str, user: str, note: str | None = None) -> ValueRow:
    """Mark a value ``safe`` or ``unsafe`` for its collection; audited. Later runs apply it.

    Every front end checks first that the user is a curator (``curators.require_curator``).
    The same decision again is a no-op; a different one replaces it (also audited).
    """
    if decision not in (SAFE, UNSAFE):
        raise TextDecisionError(f"decision must be {SAFE} or {UNSAFE}, not {decision!r}")
    user = (user or "").strip()
    if not user:
        raise TextDecisionError("a decision needs the curator's user name")
    note = (note or "").strip()[:MAX_NOTE_LENGTH] or None
    with catalog.session() as s:
        row = s.get(FreeTextValue, value_id)
        if row is None:
            raise TextDecisionError(f"no free-text value {value_id}")
        if row.state != decision:
            previous = row.state
            row.state, row.decided_by, row.decided_at, row.note = decision, user, utcnow(), note
            s.add(
                AuditEvent(
                    event_type=AUDIT_EVENT, agent=f"curator:{user}", outcome=decision,
                    object_id=f"freetext/{row.collection_id}/{row.id}/{row.value_hash[:16]}",
                    object_type="freetext", collection_id=row.collection_id,
                    detail=f"was {previous}" + (f"; {note}" if note else ""),
                )
            )
    return value(catalog, value_id)
