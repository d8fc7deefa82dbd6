"""Acceptance on the labelled set: recall per PHI kind and the share of clinical words kept."""

from __future__ import annotations

import pytest
from labelled import KINDS, Example, evaluate, labelled_set

pytestmark = pytest.mark.freetext


def test_the_labelled_set_is_large_and_plants_every_kind(labelled: list[Example]) -> None:
    assert len(labelled) >= 2000
    planted = {kind for ex in labelled for _, _, kind in ex.phi}
    assert planted == set(KINDS)
    assert min(sum(1 for ex in labelled for *_, k in ex.phi if k == kind) for kind in KINDS) >= 100
    assert {ex.text_class for ex in labelled} == {"narrative", "descriptor"}


def test_names_come_from_another_source_than_the_lexicons(labelled: list[Example]) -> None:
    from imaging_ingest.deid.freetext.lexicons import lexicons

    lex = lexicons()
    words = {w.lower() for ex in labelled for s, e, k in ex.phi if k == "name" for w in ex.text[s:e].replace(",", " ").split()}
    unknown = {w for w in words if w.strip(".") not in lex.first_names and w.strip(".") not in lex.last_names}
    assert len(unknown) / len(words) > 0.2  # Faker's 14 locales: many names the census tables never saw


def test_recall_and_clinical_words_kept(labelled: list[Example]) -> None:
    result = evaluate(labelled)
    assert result["recall"] >= 0.995, result
    assert result["clinical_words_kept"] >= 0.95, result
    assert all(recall >= 0.95 for recall in result["recall_by_kind"].values()), result


def test_recall_on_a_set_the_detector_was_not_tuned_on() -> None:
    result = evaluate(labelled_set(2000, seed=31))
    assert result["recall"] >= 0.99, result
    assert result["clinical_words_kept"] >= 0.95, result
