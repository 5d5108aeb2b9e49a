"""Monophonic staves read exactly as before `|` came: the old walk, frozen here (copied from
the last monophonic revision of omr.semantic), against the new one on random sequences and on
every label of ../shared/eval."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omr.semantic import (
    DOT_FACTOR,
    DURATIONS,
    GRACE_DURATION,
    Barline,
    KeySignature,
    MetaEvent,
    MultiRest,
    Note,
    NoteEvent,
    Rest,
    Symbol,
    Tie,
    TimeSignature,
    parse,
    parse_token,
    placed_tokens,
    play,
    repair,
    timeline,
    write,
)
from test_semantic import ANY_TOKEN

EVAL = Path(__file__).parents[1] / ".." / "shared" / "eval"
LABELS = sorted(EVAL.glob("*/*.semantic")) if EVAL.exists() else []


def _read(path: Path) -> list[str]:
    return path.read_text().split()


@settings(max_examples=400, deadline=None)
@given(st.lists(ANY_TOKEN, max_size=40))
def test_repair_of_a_monophonic_sequence_is_as_before(tokens):
    assert repair(tokens) == old_repair(tokens)
    assert repair(tokens, open_end=True) == old_repair(tokens, open_end=True)


@settings(max_examples=400, deadline=None)
@given(st.lists(ANY_TOKEN, max_size=40))
def test_a_repaired_monophonic_sequence_plays_as_before(tokens):
    fixed = old_repair(tokens)
    assert timeline(fixed) == old_timeline(fixed)


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_TOKEN, max_size=40))
def test_a_monophonic_staff_is_one_voice(tokens):
    assert {n.voice for n in play(repair(tokens))} <= {1}


@pytest.mark.skipif(not LABELS, reason="../shared/eval is absent")
def test_every_eval_label_parses_and_plays_as_before():
    for path in LABELS:
        tokens = _read(path)
        assert all(parse_token(t) is not None for t in tokens), path
        assert timeline(tokens) == old_timeline(tokens), path
        assert repair(tokens) == old_repair(tokens), path
        assert write(placed_tokens(tokens)) == tokens, path


# The old walk, verbatim ----------------------------------------------------------------------

def old_repair(tokens: Sequence[str], open_end: bool = False) -> list[str]:
    """Keep what can be played: drop unknown tokens, stray ties and graces, double barlines.

    A tie survives only between a note and the next note (barlines and signature changes may
    sit between them) of the same pitch. With `open_end`, a tie at the very end is kept: the
    next staff of the page may continue it.
    """
    # `|` was not in the grammar then: an unknown token.
    kept = [(t, s) for t in tokens if (s := parse_token(t)) is not None and t != "|"]
    out: list[str] = []
    for i, (token, symbol) in enumerate(kept):
        if isinstance(symbol, Tie):
            if not _tie_is_playable(kept, i, open_end) or (out and out[-1] == "tie"):
                continue
        elif isinstance(symbol, Note) and symbol.grace:
            if _next_sounding(kept, i + 1) is None:
                continue
        elif isinstance(symbol, Barline) and (not out or out[-1] == "barline"):
            continue
        out.append(token)
    return out


def _tie_is_playable(kept: list[tuple[str, Symbol]], i: int, open_end: bool) -> bool:
    before = kept[i - 1][1] if i > 0 else None
    if not isinstance(before, Note) or before.grace:
        return False
    after = _next_sounding(kept, i + 1, skip_graces=False)
    if after is None:
        return open_end and all(isinstance(s, (Barline, Tie)) for _, s in kept[i + 1:])
    return isinstance(after, Note) and not after.grace and after.pitch == before.pitch


def _next_sounding(kept: list[tuple[str, Symbol]], start: int,
                   skip_graces: bool = True) -> Note | Rest | MultiRest | None:
    """The next note or rest after `start`, looking past barlines, ties and signatures."""
    for _, symbol in kept[start:]:
        if isinstance(symbol, Note) and symbol.grace and skip_graces:
            continue
        if isinstance(symbol, (Note, Rest, MultiRest)):
            return symbol
    return None


def old_timeline(tokens: Sequence[str]) -> tuple[list[NoteEvent], list[MetaEvent], float]:
    """Notes, key/time signature events and the total length (quarter notes) of `tokens`."""
    notes: list[NoteEvent] = []
    metas: list[MetaEvent] = []
    time = 0.0
    measure = 4.0  # a multirest with no time signature counts 4/4 measures
    graces: list[Note] = []
    tied: int | None = None  # index in `notes` of a note that the next one continues
    for symbol in parse(tokens):
        if isinstance(symbol, (KeySignature, TimeSignature)):
            metas.append(MetaEvent(time, symbol))
            if isinstance(symbol, TimeSignature):
                measure = symbol.measure
        elif isinstance(symbol, Tie):
            tied = len(notes) - 1 if notes else None
        elif isinstance(symbol, Note) and symbol.grace:
            graces.append(symbol)
        elif isinstance(symbol, Note):
            length = DURATIONS[symbol.kind] * DOT_FACTOR[symbol.dots]
            steal = _grace_notes(graces, time, length, notes)
            prev = notes[tied] if tied is not None else None
            if prev is not None and prev.pitch == symbol.pitch and not graces:
                notes[tied] = NoteEvent(prev.pitch, prev.onset, time + length - prev.onset)
            else:
                notes.append(NoteEvent(symbol.pitch, time + steal, length - steal))
            graces, tied = [], None
            time += length
        elif isinstance(symbol, Rest):
            time += symbol.duration
            graces, tied = [], None
        elif isinstance(symbol, MultiRest):
            time += symbol.measures * measure
            graces, tied = [], None
    return notes, metas, time


def _grace_notes(graces: list[Note], time: float, length: float, notes: list[NoteEvent]) -> float:
    """Append the graces before a note at `time`; return how much of the note they took."""
    if not graces:
        return 0.0
    each = min(GRACE_DURATION, length / 2.0 / len(graces))
    for k, grace in enumerate(graces):
        notes.append(NoteEvent(grace.pitch, time + k * each, each))
    return each * len(graces)


