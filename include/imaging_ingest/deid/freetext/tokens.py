"""Words of a text with what the word lists say about each: the input of the name and place rules."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from imaging_ingest.deid.freetext.lexicons import Lexicons

__all__ = ["Token", "tokenize"]

_TOKEN = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*(?:-[^\W\d_]+)*")
_SENTENCE_END = frozenset(".!?:;\n\r\t|\"(")


@dataclass(frozen=True, slots=True)
class Token:
    """A word at ``text[start:end]``.

    ``cap``: starts with a capital; ``initial``: one capital letter (``J``, ``J.``);
    ``names``: in a census name table; ``first``: a first name; ``vocab``: a word with a
    meaning of its own (clinical or common English); ``clinical``: on the clinical
    allow-list; ``everyday``: common English or a hand-curated protocol word (unlike the
    eponyms among PS3.16's words: Robinson, Cruz); ``sentence_start``: nothing but
    punctuation before it in its sentence; ``accented``: written with letters outside ASCII
    (``Vitória``), which the English word lists only match once folded.
    """

    start: int
    end: int
    low: str
    cap: bool
    initial: bool
    first: bool
    names: bool
    vocab: bool
    clinical: bool
    sentence_start: bool
    everyday: bool = False
    accented: bool = False

    @property
    def unknown(self) -> bool:
        """In no list: no name table, no vocabulary."""
        return not (self.names or self.vocab)


def _fold(word: str) -> str:
    """``rémy`` -> ``remy``: the census tables are written without accents."""
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode("ascii")


def _lookup(word: str, lex: Lexicons) -> tuple[bool, bool, bool, bool]:
    """(first name, any name table, vocabulary, clinical) for a word; hyphenated words by parts."""
    low = word.lower().replace("’", "'")
    if not low.isascii():
        low = _fold(low) or low
    if low in lex.clinical:
        return low in lex.first_names, low in lex.first_names or low in lex.last_names, True, True
    first = low in lex.first_names
    names = first or low in lex.last_names
    vocab = low in lex.common
    if not (names or vocab) and ("-" in low or "'" in low):
        parts = [p for p in re.split(r"[-']", low) if len(p) > 1]
        if parts:
            clinical = all(p in lex.clinical for p in parts)
            vocab = clinical or all(p in lex.common or p in lex.clinical for p in parts)
            names = any(p in lex.first_names or p in lex.last_names for p in parts)
            return any(p in lex.first_names for p in parts), names, vocab, clinical
    return first, names, vocab, False


def _everyday(word: str, lex: Lexicons) -> bool:
    """An everyday English or hand-curated protocol word (PS3.16's eponyms and organisms are not)."""
    low = word.lower()
    return low in lex.common or low in lex.protocol


def tokenize(text: str, lex: Lexicons) -> list[Token]:
    """The words of ``text`` with their list memberships."""
    tokens: list[Token] = []
    previous_end = 0
    for match in _TOKEN.finditer(text):
        start, end = match.span()
        if (end < len(text) and text[end].isdigit()) or (start and text[start - 1].isdigit()):
            continue  # part of a code (T2, B30f, MRN123456): not a word
        word = match.group(0)
        gap = text[previous_end:start]
        if not tokens:
            sentence_start = True
        elif any(c in _SENTENCE_END for c in gap):
            sentence_start = not (gap.strip() == "." and (tokens[-1].initial or tokens[-1].low in lex.titles))
        else:
            sentence_start = False
        first, names, vocab, clinical = _lookup(word, lex)
        tokens.append(
            Token(
                start=start,
                end=end,
                low=word.lower(),
                cap=word[0].isupper(),
                initial=len(word) == 1 and word.isupper(),
                first=first,
                names=names,
                vocab=vocab,
                clinical=clinical,
                sentence_start=sentence_start,
                everyday=_everyday(word, lex),
                accented=not word.isascii(),
            )
        )
        previous_end = end
    return tokens
