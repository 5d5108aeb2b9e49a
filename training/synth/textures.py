"""Piano textures over the real harmonies of Bach's chorales, two staves each.

A chorale window gives, beat by beat, its bass, the chord tones that sound (spelled as Bach
spelled them) and the soprano's melody. Over those a texture lays out what a piano part does:
block chords, Alberti and broken-chord basses, arpeggios, a melody over chords (two voices on
the treble staff), octave basses and the hymn-style reduction. Everything is labelled by
construction; what would clash (a unison between voices) is rejected by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .music import STEPS, Event
from .poly import Measure, PolyStaff, Slot, System, chord, fill_rests, rest

TREBLE_FLOOR = 31  # F4: the lowest note of a right-hand chord (diatonic, C0 = 0)
BASS_FLOOR = 15  # D2: the lowest bass note
TENOR_FLOOR = 22  # B2: left-hand chords and figures start here


@dataclass(frozen=True)
class Harmony:
    """What sounds at one beat: the bass, the chord tones (step, alter) and each voice's note
    (None where the voice rests), top voice first."""

    bass: Event
    tones: tuple[tuple[str, int], ...]
    voices: tuple[Event | None, ...]


def _sounding(voice: list[Slot], t: float) -> Slot | None:
    start = 0.0
    for s in voice:
        if start <= t + 1e-6 < start + s.quarters:
            return s
        start += s.quarters
    return None


def harmonies(measure: list[list[list[Slot]]], beats: int) -> list[Harmony | None]:
    """One Harmony a quarter-note beat of a reduced chorale measure (staves of voices)."""
    voices = [v for staff in measure for v in staff]
    out: list[Harmony | None] = []
    for b in range(beats):
        heard = []
        for v in voices:
            s = _sounding(v, float(b))
            heard.append(s.notes[0] if s is not None and s.notes else None)
        notes = [e for e in heard if e is not None]
        if not notes:
            out.append(None)
            continue
        bass = min(notes, key=lambda e: e.midi)
        tones = tuple(dict.fromkeys((e.step, e.alter) for e in sorted(notes, key=lambda e: e.midi)))
        out.append(Harmony(bass, tones, tuple(heard)))
    return out


def _at(step: str, alter: int, floor: int) -> tuple[str, int, int, bool]:
    """The (step, alter, octave, tie) of `step` at the lowest octave on or above `floor`."""
    return step, alter, math.ceil((floor - STEPS.index(step)) / 7), False


def _diatonic(p: tuple[str, int, int, bool]) -> int:
    return p[2] * 7 + STEPS.index(p[0])


def _voicing(h: Harmony, floor: int, size: int) -> list[tuple[str, int, int, bool]]:
    """A close-position chord of up to `size` tones from `floor` up, one note a line."""
    out: list[tuple[str, int, int, bool]] = []
    for step, alter in h.tones[:size]:
        out.append(_at(step, alter, floor))
    return sorted(out, key=_diatonic)


def _bass(h: Harmony, floor: int = BASS_FLOOR) -> tuple[str, int, int, bool]:
    return _at(h.bass.step, h.bass.alter, floor)


def _rests(beats: float) -> list[Slot]:
    return fill_rests(beats) or [rest("quarter")]


def _per_beat(hs, make) -> list[Slot]:
    """make(harmony, beat) for every beat; a beat where every voice rests, rests."""
    out: list[Slot] = []
    for b, h in enumerate(hs):
        out += _rests(1.0) if h is None else make(h, b)
    return out


def block(hs, rng, melody) -> tuple[Measure, Measure]:
    """Chords in the right hand, the bass under them, a beat or two beats each."""
    half = rng.random() < 0.4
    rh: list[Slot] = []
    lh: list[Slot] = []
    b = 0
    size = int(rng.integers(3, 5))
    while b < len(hs):
        h = hs[b]
        two = half and b + 1 < len(hs) and hs[b + 1] == h
        d = "half" if two else "quarter"
        if h is None:
            rh.append(rest(d))
            lh.append(rest(d))
        else:
            rh.append(chord(d, 0, _voicing(h, TREBLE_FLOOR, size)))
            lh.append(chord(d, 0, [_bass(h)]))
        b += 2 if two else 1
    return (tuple(rh),), (tuple(lh),)


def _figure(h: Harmony, floor: int, order: list[int], duration: str) -> list[Slot]:
    tones = [_bass(h, floor)] + [_at(s, a, _diatonic(_bass(h, floor)) + 1) for s, a in h.tones
                                 if (s, a) != (h.bass.step, h.bass.alter)]
    tones = sorted(dict.fromkeys(tones), key=_diatonic)
    return [chord(duration, 0, [tones[i % len(tones)]]) for i in order]


def alberti(hs, rng, melody) -> tuple[Measure, Measure]:
    """The melody alone in the right hand; low-high-middle-high eighths in the left."""
    def figure(h: Harmony, b: int) -> list[Slot]:
        if len(h.tones) < 3:
            return _figure(h, TENOR_FLOOR - 2, [0, 1], "eighth")
        return _figure(h, TENOR_FLOOR - 2, [0, 2] if b % 2 == 0 else [1, 2], "eighth")

    return (melody,), (tuple(_per_beat(hs, figure)),)


def broken(hs, rng, melody) -> tuple[Measure, Measure]:
    """Block chords above a left hand broken upwards through the chord, in eighths or
    sixteenths."""
    fast = rng.random() < 0.4
    order, d = ([0, 1, 2, 3], "sixteenth") if fast else ([0, 2], "eighth")
    lh = _per_beat(hs, lambda h, b: _figure(h, BASS_FLOOR, order, d))
    rh, _ = block(hs, rng, melody)
    return rh, (tuple(lh),)


def arpeggio(hs, rng, melody) -> tuple[Measure, Measure]:
    """Sixteenths up (or up and down) through the chord in the right hand; the bass held."""
    down = rng.random() < 0.5
    order = [0, 1, 2, 1] if down else [0, 1, 2, 3]
    rh = _per_beat(hs, lambda h, b: _figure(h, TREBLE_FLOOR - 1, order, "sixteenth"))
    lh = _per_beat(hs, lambda h, b: [chord("quarter", 0, [_bass(h)])])
    return (tuple(rh),), (tuple(lh),)


def melody_chords(hs, rng, melody) -> tuple[Measure, Measure]:
    """Two voices on the treble staff: the melody above, chords below it on the beats."""
    def below(h: Harmony, b: int) -> list[Slot]:
        top = h.voices[0]
        ceiling = top.diatonic - 1 if top is not None else TREBLE_FLOOR + 6
        notes = [p for p in _voicing(h, TREBLE_FLOOR - 3, 3) if _diatonic(p) < ceiling]
        return [chord("quarter", 0, notes[-2:])] if notes else [rest("quarter")]

    inner = _per_beat(hs, below)
    lh = _per_beat(hs, lambda h, b: [chord("quarter", 0, [_bass(h)])])
    return (melody, tuple(inner)), (tuple(lh),)


def octave_bass(hs, rng, melody) -> tuple[Measure, Measure]:
    """Octaves in the left hand under chords in the right."""
    def octave(h: Harmony, b: int) -> list[Slot]:
        s, a, o, _ = _bass(h, BASS_FLOOR + 4)
        return [chord("quarter", 0, [(s, a, o - 1, False), (s, a, o, False)])]

    rh, _ = block(hs, rng, melody)
    return rh, (tuple(_per_beat(hs, octave)),)


def hymn(hs, rng, melody) -> tuple[Measure, Measure]:
    """Soprano and alto as chords of one voice, tenor and bass likewise, on every beat."""
    def pair(h: Harmony, voices: slice) -> list[Slot]:
        notes = [(e.step, e.alter, e.octave, False) for e in h.voices[voices] if e is not None]
        notes = list({(s, o): (s, a, o, t) for s, a, o, t in notes}.values())
        return [chord("quarter", 0, notes)] if notes else [rest("quarter")]

    rh = _per_beat(hs, lambda h, b: pair(h, slice(0, 2)))
    lh = _per_beat(hs, lambda h, b: pair(h, slice(2, 4)))
    return (tuple(rh),), (tuple(lh),)


TEXTURES = {"block": block, "alberti": alberti, "broken": broken, "arpeggio": arpeggio,
            "melody_chords": melody_chords, "octave_bass": octave_bass, "hymn": hymn}


def texture_system(name: str, rows: list[dict], rng: np.random.Generator, piece: str) -> System:
    """A two-staff piano texture over the harmonies of consecutive chorale measures."""
    first = rows[0]
    treble: list[Measure] = []
    bass: list[Measure] = []
    for row in rows:
        staves = [[[Slot.from_row(s) for s in v] for v in st] for st in row["staves"]]
        beats = round(sum(s.quarters for s in staves[0][0]))
        melody = tuple(staves[0][0])
        rh, lh = TEXTURES[name](harmonies(staves, beats), rng, melody)
        treble.append(rh)
        bass.append(lh)
    staves = (PolyStaff("G2", first["key"], first["time"], tuple(treble)),
              PolyStaff("F4", first["key"], first["time"], tuple(bass)))
    return System(staves, f"texture/{name}", piece)
