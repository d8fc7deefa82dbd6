"""Person names, institutions and places, found from words and the cues around them.

Shapes do not define a name; context does. The rules, strongest first:

- a title or relation cue (``Dr``, ``Mrs``, ``daughter``, ``neighbour``) followed by
  capitalised words: a name (``phi``), unless the word is clinical (``DR CHEST`` is digital
  radiography, ``MR BRAIN`` a modality); an accented word there is a name even where its
  folded spelling is a clinical word (``Dr Vitória Nogueira``: ``vitoria`` is in PS3.16);
- a phrase cue (``discussed with``, ``per``, ``seen by``, ``referred by``) followed by a word
  in a name table or in no list: a name; followed by an everyday word (``per Bill``): suspect;
- words from the census name tables that are not also everyday or clinical words
  (``Ottilie``, ``Quist``), a first name followed by a capitalised word (``John Smith``),
  an accented word before a surname (``Vitória Nogueira``), ``Lastname, Firstname`` (also
  with an eponym, a surname that is a clinical but not an everyday word: ``Robinson, Maria``,
  and, in mixed case, where both are everyday words too: ``Smith, John``),
  initials before a capitalised word (``J. Smith``);
- in narrative, capitalised words in no list: two or more in a row are a name, one alone is
  a suspect;
- an institution head word (Hospital, Clinic, Medical Center, University...) with the
  capitalised words before it (``Ridgemont Valley Hospital``) or ``University of ...``;
- a place cue (``lives in``, ``moved to``) followed by capitalised words.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from imaging_ingest.deid.freetext.lexicons import Lexicons, lexicons
from imaging_ingest.deid.freetext.spans import Certainty, Kind, Span, TextClass
from imaging_ingest.deid.freetext.tokens import Token, tokenize

__all__ = ["word_spans"]

#: Titles that are also modality or disease abbreviations when written in capitals.
_AMBIGUOUS_TITLES = frozenset({"dr", "mr", "ms", "pa", "np", "rn"})
_MAX_NAME_WORDS = 4
#: Words after which an ambiguous title (DR, MR, MS) is a title.
_PERSON_CONTEXT = frozenset({"for", "by", "per", "with", "to", "cc", "attn", "from", "and", "called", "paged", "informed"})


def _joined(text: str, a: Token, b: Token, allow: str = "") -> bool:
    """Only spaces (and the characters in ``allow``, e.g. an initial's period) between two words."""
    gap = text[a.end : b.start]
    return len(gap) <= 3 and all(c == " " or c in allow for c in gap) and bool(gap)


def _name_word(tok: Token, upper: bool) -> bool:
    """Can this word continue a name already started?"""
    if tok.initial:
        return True
    if upper:
        return (tok.names and not tok.clinical) or tok.unknown
    return tok.cap and (tok.names or not tok.vocab)


def _extend(text: str, tokens: Sequence[Token], i: int, upper: bool, lex: Lexicons) -> int:
    """The index after the last word of a name that starts at ``tokens[i]``.

    A name goes on over capitalised name words, initials, particles before a capitalised
    word (``van den Hoek``), a capitalised word after a first name (``Xavier Bigot``) and,
    after its first word, ``, Firstname`` (``Quintana, Rómulo``).
    """
    j = i + 1
    while j < len(tokens) and j - i < _MAX_NAME_WORDS:
        tok, prev = tokens[j], tokens[j - 1]
        if tok.low in lex.titles or tok.low in lex.relations:
            break
        if tok.low in lex.particles and (upper or not tok.cap):
            k = _start_with_particles(text, tokens, j, lex)  # "van de Ven": past every particle
            if k > j and (tokens[k].names or tokens[k].unknown) and _joined(text, prev, tok, "."):
                j = k + 1
                continue
            break
        if tok.low in lex.stop:
            break
        gap = text[prev.end : tok.start]
        if gap in (", ", ",") and j == i + 1:
            if tok.cap and (tok.first or tok.unknown) and not tok.clinical and (upper or not text[tok.start : tok.end].isupper()):
                j += 1
                continue
            break
        if not _joined(text, prev, tok, "."):
            break
        if _name_word(tok, upper) or (prev.first and tok.cap and (tok.names or (not upper and not tok.clinical and not tok.sentence_start))):
            j += 1
            continue
        break
    return j


def _start_with_particles(text: str, tokens: Sequence[Token], i: int, lex: Lexicons) -> int:
    """Past leading particles (``van``, ``da``) to the capitalised word they introduce, or ``i``."""
    j = i
    upper = not any(c.islower() for c in text)
    while j < len(tokens) - 1 and tokens[j].low in lex.particles and (upper or not tokens[j].cap) and _joined(text, tokens[j], tokens[j + 1]):
        j += 1
    return j if j > i and tokens[j].cap else i


def _cue_end(tokens: Sequence[Token], i: int, lex: Lexicons) -> tuple[int, str] | None:
    """If a cue starts at ``tokens[i]``, the index of its last word and its kind."""
    low = tokens[i].low
    if i + 1 < len(tokens):
        pair = f"{low} {tokens[i + 1].low}"
        if pair in lex.phrases:
            return i + 1, "phrase"
        if pair in lex.location_cues:
            return i + 1, "location"
    if low in lex.titles:
        return i, "title"
    if low in lex.relations:
        return i, "relation"
    if low in lex.phrases:
        return i, "phrase"
    if low in lex.location_cues and low not in ("in", "from"):
        return i, "location"
    return None


def _after_cue(text: str, tokens: Sequence[Token], cue: int, kind: str, upper: bool) -> Span | None:
    """The name (or place) a cue introduces, if the next word looks like one."""
    nxt = cue + 1
    if nxt >= len(tokens):
        return None
    tok, cue_tok = tokens[nxt], tokens[cue]
    gap = text[cue_tok.end : tok.start]
    if len(gap) > 3 or any(c not in " .,:" for c in gap):
        return None
    lex = lexicons()
    if tok.low in lex.titles or (tok.low in lex.stop and tok.low not in lex.particles):
        return None
    first_word = _start_with_particles(text, tokens, nxt, lex)
    if first_word != nxt:
        end = _extend(text, tokens, first_word, upper, lex)
        sure = tokens[first_word].names or tokens[first_word].unknown
        return Span(tok.start, tokens[end - 1].end, Kind.NAME, Certainty.PHI if sure else Certainty.SUSPECT, f"name.{kind}")
    after = tokens[nxt + 1] if nxt + 1 < len(tokens) else None
    if after is not None and after.low in lex.particles:
        after = tokens[_start_with_particles(text, tokens, nxt + 1, lex)]
    if tok.initial and after is not None and after.cap and _joined(text, tok, tokens[nxt + 1], ".") and (after.names or not after.clinical):
        end = _extend(text, tokens, nxt, upper, lex)
        return Span(tok.start, tokens[end - 1].end, Kind.NAME, Certainty.PHI, f"name.{kind}")  # "by L. da Cruz"
    cue_upper = text[cue_tok.start : cue_tok.end].isupper()
    certainty: Certainty | None = None
    if kind in ("title", "relation") and tok.cap and tok.accented:
        certainty = Certainty.PHI  # English clinical words carry no accents: "Dr Vitória", "DR VITÓRIA"
    elif kind in ("title", "relation"):
        before = tokens[cue - 1].low if cue > 0 else ""
        ambiguous = (
            kind == "title" and cue_tok.low in _AMBIGUOUS_TITLES and cue_upper and not gap.startswith(".")
            and before not in _PERSON_CONTEXT  # "FOR DR CASTRO" is a person, "DR CHEST" an X-ray
        )
        if ambiguous and (upper or not tok.cap or text[tok.start : tok.end].isupper()):
            if tok.initial or ((tok.names or tok.unknown) and not tok.clinical):
                certainty = Certainty.PHI
            elif tok.names and not tok.everyday:
                certainty = Certainty.SUSPECT  # "DR LEWIS" or digital radiography of something?
        elif upper:
            if tok.initial or tok.names or tok.unknown:
                certainty = Certainty.PHI
        elif tok.cap and (tok.names or not tok.clinical):
            certainty = Certainty.PHI
    elif kind == "phrase":
        if upper:
            if tok.names and not tok.everyday:
                certainty = Certainty.PHI
            elif tok.unknown and len(tok.low) > 2:
                certainty = Certainty.SUSPECT
        elif tok.cap and (tok.names or not tok.clinical):
            certainty = Certainty.PHI if (tok.names and not tok.everyday) or tok.unknown or tok.initial else Certainty.SUSPECT
    elif kind == "location" and (tok.cap and not upper) and not tok.clinical:
        end = _extend(text, tokens, nxt, upper, lex)
        return Span(tok.start, tokens[end - 1].end, Kind.LOCATION, Certainty.PHI, "location.cue")
    if certainty is None:
        return None
    end = _extend(text, tokens, nxt, upper, lex)
    words = tokens[nxt:end]
    if certainty is Certainty.SUSPECT and len(words) >= 2 and (
        any(t.unknown or (t.names and not t.vocab) for t in words)
        or (words[0].first and words[1].names)
        or (not upper and words[1].first and text[words[0].end : words[1].start] in (", ", ","))
    ):
        certainty = Certainty.PHI  # "per Bill Quist", "contact: King, Mary", "seen by Smith, John"
    return Span(tok.start, tokens[end - 1].end, Kind.NAME, certainty, f"name.{kind}")


def _institutions(text: str, tokens: Sequence[Token], upper: bool, lex: Lexicons) -> Iterator[Span]:
    n = len(tokens)
    for i, tok in enumerate(tokens):
        head_end = None
        if i + 1 < n and f"{tok.low} {tokens[i + 1].low}" in lex.institution_heads and _joined(text, tok, tokens[i + 1]):
            head_end = i + 1
        elif tok.low in lex.institution_heads:
            head_end = i
        if head_end is None:
            continue
        # words before the head: capitalised (in lower-case text: any that is not a stop word)
        j = i
        while j > 0 and i - j < 5:
            prev = tokens[j - 1]
            if prev.low in lex.particles and (upper or not prev.cap):
                j -= 1
                continue
            if prev.low in lex.stop and prev.low not in ("of", "and", "the"):
                break
            if prev.low in lex.location_cues or prev.low in lex.phrases or (upper and prev.low in lex.protocol):
                break
            if not _joined(text, prev, tokens[j], ".'&,") or (tok.cap and not prev.cap):
                break
            if upper and not (prev.names or prev.unknown or prev.low in lex.institution_parts or prev.low in ("of", "and", "the")):
                break  # capitals say nothing: only name-like words before the head
            j -= 1
        while j < i and tokens[j].low in ("of", "and", "the"):
            j += 1
        if not tok.cap:  # lower-case text: a name is there only if some word is in no word list
            while j < i and tokens[j].vocab:
                j += 1
        # "University of Keene", "Hospital of the University of Pennsylvania"
        k = head_end + 1
        if tok.low in lex.institution_leads and k + 1 < n and tokens[k].low == "of":
            m = k + 1
            while m < n and m - k < 6 and (tokens[m].cap or tokens[m].low in ("of", "the", "and")) and _joined(text, tokens[m - 1], tokens[m], "&"):
                m += 1
            while m > k + 1 and tokens[m - 1].low in ("of", "the", "and"):
                m -= 1
            if m > k + 1:
                k = m
        if j == i and k == head_end + 1:
            continue  # a head word alone ("the hospital") names nothing
        before = tokens[j:i]
        if k == head_end + 1 and not any(t.low in lex.institution_parts for t in before):
            if upper and all(t.vocab and not t.names for t in before):
                continue  # "OUTSIDE HOSPITAL": everyday words before the head
            if all(t.clinical and not t.names for t in before):
                continue  # "Heart Institute", "Cancer Clinic": what, not who
        yield Span(tokens[j].start, tokens[k - 1].end, Kind.INSTITUTION, Certainty.PHI, "institution.head")


def word_spans(text: str, text_class: TextClass) -> Iterator[Span]:
    """Names, institutions and places in ``text`` (overlapping; the detector merges them)."""
    lex = lexicons()
    tokens = tokenize(text, lex)
    if not tokens:
        return
    upper = not any(c.islower() for c in text)
    narrative = text_class == TextClass.NARRATIVE
    covered = -1
    n = len(tokens)
    for i, tok in enumerate(tokens):
        cue = _cue_end(tokens, i, lex)
        if cue is not None:
            span = _after_cue(text, tokens, cue[0], cue[1], upper)
            if span is not None:
                yield span
                covered = max(covered, span.end)
                continue
            if tok.cap:
                continue  # a cue word ("Neighbour [NAME]") is never itself a name
        if tok.start < covered:
            continue
        nxt = tokens[i + 1] if i + 1 < n else None
        # Lastname, Firstname
        if nxt is not None and tok.cap and nxt.first and nxt.cap and not nxt.clinical and (
            tok.names or (tok.unknown and not tok.clinical)
        ) and (
            not nxt.vocab or tok.unknown or not tok.vocab or not tok.everyday or (not upper and not tok.clinical)
        ) and text[tok.end : nxt.start] in (", ", ","):
            end = _extend(text, tokens, i + 1, upper, lex)
            yield Span(tok.start, tokens[end - 1].end, Kind.NAME, Certainty.PHI, "name.last_first")
            covered = tokens[end - 1].end
            continue
        if upper:
            if tok.names and not tok.vocab and len(tok.low) > 2:
                end = _extend(text, tokens, i, upper, lex)
                yield Span(tok.start, tokens[end - 1].end, Kind.NAME, Certainty.PHI, "name.lexicon")
                covered = tokens[end - 1].end
            elif narrative and tok.unknown and len(tok.low) > 3:
                yield Span(tok.start, tok.end, Kind.NAME, Certainty.SUSPECT, "name.unknown_word")
            continue
        if not tok.cap:
            continue
        if tok.initial and nxt is not None and nxt.cap and _joined(text, tok, nxt, ".") and (nxt.names or nxt.unknown) and not nxt.clinical:
            end = _extend(text, tokens, i + 1, upper, lex)
            yield Span(tok.start, tokens[end - 1].end, Kind.NAME, Certainty.PHI, "name.initial")
            covered = tokens[end - 1].end
            continue
        pair = (
            nxt is not None and nxt.cap and _joined(text, tok, nxt) and not (tok.everyday and nxt.everyday)
            and not (nxt.end - nxt.start <= 4 and text[nxt.start : nxt.end].isupper())  # an acronym: "Iowa QIN"
            and (
                (tok.first and (nxt.names or (nxt.unknown and not nxt.clinical)))
                or (tok.unknown and not tok.clinical and nxt.names)
                or (tok.accented and nxt.names and not nxt.vocab)
            )
        )  # "John Smith", "Lewis Taylor", "Ulrik Danielsen", "Vitória Nogueira"
        acronym = tok.end - tok.start <= 4 and text[tok.start : tok.end].isupper()  # QIN, PACS in mixed-case text
        if pair or (tok.names and not tok.vocab and not tok.initial and not acronym):
            end = _extend(text, tokens, i, upper, lex)
            yield Span(tok.start, tokens[end - 1].end, Kind.NAME, Certainty.PHI, "name.lexicon")
            covered = tokens[end - 1].end
            continue
        if narrative and tok.unknown and not tok.initial and not (tok.end - tok.start <= 5 and text[tok.start : tok.end].isupper()):
            end = i + 1
            while end < n and tokens[end].cap and tokens[end].unknown and _joined(text, tokens[end - 1], tokens[end]):
                end += 1
            certainty = Certainty.PHI if end - i >= 2 else Certainty.SUSPECT
            yield Span(tok.start, tokens[end - 1].end, Kind.NAME, certainty, "name.unknown_words" if end - i >= 2 else "name.unknown_word")
            covered = tokens[end - 1].end
    yield from _institutions(text, tokens, upper, lex)
