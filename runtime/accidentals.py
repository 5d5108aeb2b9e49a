"""A note's alteration held to what its key and its measure imply, where TrOMR was unsure.

TrOMR reads a note as a letter and octave plus a lift, the alteration the note sounds with
(omr.vocab.factorise). Most notes print no accidental: their lift comes from the key signature,
from an accidental earlier in the measure at the same place on the staff, or from the note a
tie holds over the barline. The decoder learns that bookkeeping from the tokens before, and
slips: on held-out polyphonic staves a right letter with the wrong lift is most of what it
reads wrong, and two in three of those are a lift that nothing printed implies. So where the
lift read is not the implied one and the decoder weighed the implied one as nearly as likely,
the implied one is taken; a printed accidental, which the decoder reads with confidence, stays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from . import semantic as sem


def implied(tokens: Sequence[str]) -> list[int | None]:
    """Each token's implied alteration (None where it is not a note): that of the last note at
    its letter and octave earlier in its measure, of the note tied to it over a barline, or of
    the key signature."""
    return _walk(tokens, None, 0.0)[1]


def fix_accidentals(tokens: Sequence[str], costs: Sequence[Mapping[int, float]],
                    max_cost: float) -> list[str]:
    """`tokens` with each note's alteration replaced by the implied one where that costs at most
    `max_cost` nats against the one read (`costs[i]`: alteration -> cost, for note tokens).
    Later notes of the measure follow the alteration kept."""
    return _walk(tokens, costs, max_cost)[0]


def _walk(tokens: Sequence[str], costs: Sequence[Mapping[int, float]] | None,
          max_cost: float) -> tuple[list[str], list[int | None]]:
    key, carry, tied = 0, {}, {}
    out, implied_out = list(tokens), []
    last: tuple[tuple[str, int], int] | None = None  # the last note's place and alteration
    for i, token in enumerate(tokens):
        symbol = sem.parse_token(token)
        want = None
        if isinstance(symbol, sem.KeySignature):
            key, carry = symbol.fifths, {}
        elif isinstance(symbol, sem.Barline):
            carry = {}
        elif isinstance(symbol, sem.Tie) and last is not None:
            tied[last[0]] = last[1]
        elif isinstance(symbol, sem.Note):
            place = (symbol.step, symbol.octave)
            held = place in tied
            want = tied.pop(place) if held else carry.get(place, sem.key_alter(key, symbol.step))
            alter = symbol.alter
            if costs is not None and alter != want and costs[i].get(want, max_cost + 1) <= max_cost:
                out[i], alter = sem.note_token(replace(symbol, alter=want)), want
            if not held:  # a tie holds its alteration over the barline, not for later notes
                carry[place] = alter
            last = place, alter
        implied_out.append(want)
    return out, implied_out

