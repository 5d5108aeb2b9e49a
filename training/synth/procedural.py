"""A procedural melody generator for what folk tunes lack.

Corpus tunes are nearly all treble clef, simple metres and quarter-to-sixteenth rhythms.
Real incipits (Camera-PrIMuS) also carry C clefs, `C/` metres, multirests, breves, sixty-fourths,
grace notes and far ledger lines: this generator covers all of those, with labels by construction.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
from omr.semantic import CLEFS, key_alter

from .music import DURATIONS, STEPS, Event, Snippet

TIMES = ["C", "C/", "2/4", "3/4", "4/4", "6/8", "3/8", "2/2", "3/2", "9/8", "12/8", "6/4",
         "5/4", "3/1", "2/1", "4/2", "2/8", "7/8"]
TIME_WEIGHTS = np.array([12, 10, 8, 10, 6, 6, 4, 4, 3, 2, 2, 2, 1, 1.5, 1, 1, 0.5, 0.5])
CLEF_WEIGHTS = np.array([30, 2, 12, 3, 8, 6, 2, 2, 15, 1.5])  # order of omr.semantic.CLEFS
DUR_NAMES = ["quadruple_whole", "double_whole", "whole", "half", "quarter", "eighth", "sixteenth", "thirty_second",
             "sixty_fourth"]
DUR_WEIGHTS = np.array([0.1, 1.0, 2, 6, 12, 12, 6, 1.5, 0.4])
# Diatonic index (C0 = 0) of the bottom staff line for each clef.
CLEF_BOTTOM = {"G2": 30, "G1": 32, "C1": 28, "C2": 26, "C3": 24, "C4": 22, "C5": 20,
               "F3": 20, "F4": 18, "F5": 16}


def measure_quarters(time: str | None) -> float:
    if time in (None, "C"):
        return 4.0
    if time == "C/":
        return 4.0
    num, den = time.split("/")
    return int(num) * 4.0 / int(den)


def _pitch(rng, clef: str, prev: int) -> int:
    """Random walk over staff positions, mostly on the staff, sometimes on far ledger lines."""
    bottom = CLEF_BOTTOM[clef]
    if rng.random() < 0.04:
        return bottom + int(rng.choice([-7, -6, -5, -4, 12, 13, 14, 15]))
    step = int(rng.choice([-4, -3, -2, -1, 0, 1, 2, 3, 4, -7, 7],
                          p=[.04, .08, .16, .2, .06, .2, .14, .06, .04, .01, .01]))
    return int(np.clip(prev + step, bottom - 4, bottom + 12))


def _duration(rng, room: float, strict: bool) -> tuple[str, int]:
    for _ in range(20):
        name = str(rng.choice(DUR_NAMES, p=DUR_WEIGHTS / DUR_WEIGHTS.sum()))
        dots = int(rng.choice([0, 1, 2], p=[.78, .19, .03]))
        q = DURATIONS[name] * (2 - 0.5**dots)
        if not strict or q <= room + 1e-9:
            return name, dots
    return "sixty_fourth", 0


def _note(rng, clef: str, key: int, d: int, dur: str, dots: int) -> Event:
    step, octave = STEPS[d % 7], d // 7
    alter = key_alter(key, step)
    if rng.random() < 0.08:  # an accidental against the key
        alter = int(np.clip(alter + rng.choice([-1, 1]), -2, 2))
    return Event("note", dur, dots, step, alter, octave, fermata=bool(rng.random() < 0.02))


def _measure(rng, clef: str, key: int, length: float, prev: int) -> tuple[list[Event], int]:
    events: list[Event] = []
    room = length
    strict = rng.random() < 0.9
    while room > 1e-9 and len(events) < 24:
        dur, dots = _duration(rng, room, strict)
        if rng.random() < 0.14:
            events.append(Event("rest", dur, dots, fermata=bool(rng.random() < 0.01)))
        else:
            grace_at = None
            if rng.random() < 0.03:
                grace_at = _pitch(rng, clef, prev)
                grace_at = prev = grace_at + (grace_at == prev)
                grace = _note(rng, clef, key, prev, str(rng.choice(["eighth", "sixteenth"])), 0)
                events.append(replace(grace, grace=True, fermata=False))
            prev = _pitch(rng, clef, prev)
            if prev == grace_at:  # a grace note leans on another pitch, never its own
                prev += 1
            events.append(_note(rng, clef, key, prev, dur, dots))
        room -= events[-1].quarters
        if not strict and rng.random() < 0.15:
            break
    return events, prev


def _add_ties(rng, measures: list[list[Event]]) -> None:
    """Tie some notes to a following note, which then takes the same pitch."""
    flat = [(i, j) for i, m in enumerate(measures) for j, e in enumerate(m)]
    for (i, j), (k, l) in pairwise(flat):
        a, b = measures[i][j], measures[k][l]
        if a.kind == b.kind == "note" and not a.grace and not b.grace and rng.random() < 0.07:
            measures[i][j] = replace(a, tie=True, fermata=False)
            measures[k][l] = replace(b, step=a.step, alter=a.alter, octave=a.octave)


def _drop_clashing_graces(measures: list[list[Event]]) -> list[list[Event]]:
    """A grace note sounding the same key as its neighbour (E#4 then F4) cannot be played apart."""
    flat = [e for m in measures for e in m]
    clash = set()
    for i, e in enumerate(flat):
        if e.grace:
            near = [x for x in flat[max(0, i - 1):i + 2] if x is not e and x.kind == "note"]
            if any(x.midi == e.midi for x in near):
                clash.add(id(e))
    return [[e for e in m if id(e) not in clash] for m in measures]


def random_snippet(rng: np.random.Generator, piece: str) -> Snippet:
    clef = str(rng.choice(CLEFS, p=CLEF_WEIGHTS / CLEF_WEIGHTS.sum()))
    key = int(rng.integers(-7, 8)) if rng.random() < 0.85 else 0
    time = None if rng.random() < 0.05 else str(rng.choice(TIMES, p=TIME_WEIGHTS / TIME_WEIGHTS.sum()))
    length = measure_quarters(time)
    if time in ("C/", "2/2", "3/2", "C", None) and rng.random() < 0.15:
        length *= 2  # breve-length bars, as in the early-music incipits of RISM
    prev = CLEF_BOTTOM[clef] + int(rng.integers(0, 9))
    measures: list[list[Event]] = []
    for _ in range(int(rng.integers(1, 8))):
        if rng.random() < 0.08:
            count = int(rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 18, 24, 32],
                                   p=[.3, .15, .12, .1, .06, .05, .05, .04, .03, .03, .02, .02, .03]))
            measures.append([Event("multirest", "whole", count=count)])
            continue
        events, prev = _measure(rng, clef, key, length, prev)
        measures.append(events)
    if not any(e.kind == "note" for m in measures for e in m):
        events, prev = _measure(rng, clef, key, length, prev)
        measures.append(events)
    _add_ties(rng, measures)
    measures = _drop_clashing_graces(measures)
    return Snippet(clef, key, time, tuple(tuple(m) for m in measures), "procedural", piece,
                   final_barline=bool(rng.random() < 0.6))
