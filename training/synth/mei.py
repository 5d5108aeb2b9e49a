"""A Snippet as MEI for Verovio, with the clutter real parts carry and the labels ignore.

Pitches are stored as they sound; this module decides which accidentals the reader sees
(key signature and earlier accidentals in the bar apply), writes the rest as gestural
accidentals (`accid.ges`) so Verovio's own MIDI plays what the label says.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from xml.sax.saxutils import escape

import numpy as np
from omr.semantic import key_alter

from .music import STEPS, Event, Snippet, transpose

MEI_DUR = {"quadruple_whole": "long", "double_whole": "breve", "whole": "1", "half": "2",
           "quarter": "4", "eighth": "8", "sixteenth": "16", "thirty_second": "32",
           "sixty_fourth": "64", "hundred_twenty_eighth": "128"}
MEI_ACCID = {-2: "ff", -1: "f", 0: "n", 1: "s", 2: "ss"}
DYNAMICS = ["pp", "p", "mp", "mf", "f", "ff", "sf", "fp", "cresc.", "dim."]
TEMPI = ["Allegro", "Andante", "Moderato", "Adagio", "Presto", "Allegretto", "Largo",
         "Vivace", "dolce", "espressivo", "rit.", "a tempo", "Lento"]
SYLLABLES = ["la", "Herr", "Gott", "dich", "lo", "ben", "wir", "A", "men", "glo", "ri", "a",
             "Ky", "ri", "e", "in", "the", "sing", "and", "my", "heart"]
ARTICS = ["stacc", "acc", "ten", "marc", "stacciss"]


@dataclass(frozen=True)
class Clutter:
    """Probabilities of the marks that real parts carry and labels ignore."""

    slur: float = 0.0
    dynamic: float = 0.0
    tempo: bool = False
    lyrics: bool = False
    fingering: float = 0.0
    artic: float = 0.0
    beam: bool = True
    neighbour_above: bool = False
    neighbour_below: bool = False

    @classmethod
    def random(cls, rng: np.random.Generator) -> Clutter:
        busy = rng.random() < 0.6
        return cls(
            slur=float(rng.choice([0, 0.08, 0.2])) if busy else 0.0,
            dynamic=float(rng.choice([0, 0.05, 0.12])) if busy else 0.0,
            tempo=bool(busy and rng.random() < 0.3),
            lyrics=bool(busy and rng.random() < 0.12),
            fingering=float(rng.choice([0, 0, 0.1])) if busy else 0.0,
            artic=float(rng.choice([0, 0.05, 0.15])) if busy else 0.0,
            beam=bool(rng.random() < 0.9),
            neighbour_above=bool(rng.random() < 0.35),
            neighbour_below=bool(rng.random() < 0.35),
        )


def close_ties(s: Snippet) -> Snippet:
    """Drop ties that lead nowhere or to another pitch: they cannot be engraved or heard."""
    flat = [e for m in s.measures for e in m if not (e.kind == "note" and e.grace)]
    ok: set[int] = set()
    for a, b in pairwise(flat):
        if a.kind == "note" and a.tie and b.kind == "note" and a.midi == b.midi:
            ok.add(id(a))
    measures = tuple(tuple(replace(e, tie=False) if e.tie and id(e) not in ok else e for e in m)
                     for m in s.measures)
    return replace(s, measures=measures)


def _beat(time: str | None) -> float:
    if time == "C/":
        return 2.0
    if time and time != "C":
        num, den = (int(x) for x in time.split("/"))
        if den == 8 and num % 3 == 0:
            return 1.5
        if den == 2 or den == 1:
            return 2.0 if den == 2 else 4.0
    return 1.0


def beam_groups(lengths: list[float], beamable: list[bool], beat: float) -> list[list[int]]:
    """Indices of beamable notes (or chords) that share a beat, two or more to a group;
    `lengths` in quarter notes, one per event."""
    groups: list[list[int]] = []
    current: list[int] = []
    current_beat = -1
    onset = 0.0
    for i, (length, can) in enumerate(zip(lengths, beamable)):
        b = int(onset // beat + 1e-9)
        if can and (b == current_beat or not current):
            current.append(i)
            current_beat = b
        else:
            if len(current) > 1:
                groups.append(current)
            current = [i] if can else []
            current_beat = b
        onset += length
    if len(current) > 1:
        groups.append(current)
    return groups


def _beam_groups(events: tuple[Event, ...], beat: float) -> list[list[int]]:
    return beam_groups([e.quarters for e in events],
                       [e.kind == "note" and not e.grace and e.quarters < 1.0 - 1e-9
                        for e in events], beat)


class _Writer:
    def __init__(self, s: Snippet, clutter: Clutter, rng: np.random.Generator):
        self.s, self.c, self.rng = s, clutter, rng
        self.n = 0
        self.controls: list[str] = []
        self.note_ids: list[tuple[str, int]] = []  # main-staff notes: (id, staff position)

    def id(self) -> str:
        self.n += 1
        return f"e{self.n}"

    def note(self, e: Event, state: dict, tie_in: bool, staff: int, main: bool) -> str:
        i = self.id()
        key = (e.step, e.octave)
        shown = state.get(key, key_alter(self.s.key, e.step))
        attrs = [f'xml:id="{i}"', f'pname="{e.step.lower()}"', f'oct="{e.octave}"',
                 f'dur="{MEI_DUR[e.duration]}"']
        if e.dots:
            attrs.append(f'dots="{e.dots}"')
        if e.alter != shown and not tie_in:
            attrs.append(f'accid="{MEI_ACCID[e.alter]}"')
            state[key] = e.alter
        elif e.alter != 0:
            attrs.append(f'accid.ges="{MEI_ACCID[e.alter]}"')
        if e.grace:
            attrs.append('grace="unacc"' if self.rng.random() < 0.6 else 'grace="acc"')
        if e.tie or tie_in:
            attrs.append(f'tie="{"m" if e.tie and tie_in else "i" if e.tie else "t"}"')
        if main and self.c.artic and not e.grace and self.rng.random() < self.c.artic:
            attrs.append(f'artic="{self.rng.choice(ARTICS)}"')
        inner = ""
        if main and self.c.lyrics and not e.grace and not tie_in:
            inner = f'<verse n="1"><syl>{self.rng.choice(SYLLABLES)}</syl></verse>'
        if main:
            self.note_ids.append((i, e.diatonic))
            self._marks(e, i, staff)
        return f"<note {' '.join(attrs)}>{inner}</note>"

    def _marks(self, e: Event, i: str, staff: int) -> None:
        if e.fermata:
            self.controls.append(f'<fermata staff="{staff}" startid="#{i}" place="above"/>')
        if self.c.fingering and self.rng.random() < self.c.fingering and not e.grace:
            self.controls.append(
                f'<fing staff="{staff}" startid="#{i}" place="above">{self.rng.integers(0, 5)}</fing>')
        if self.c.dynamic and self.rng.random() < self.c.dynamic:
            self.controls.append(f'<dynam staff="{staff}" startid="#{i}" place="below">'
                                 f'{escape(str(self.rng.choice(DYNAMICS)))}</dynam>')

    def rest(self, e: Event, staff: int, main: bool) -> str:
        i = self.id()
        if e.kind == "multirest":
            return f'<multiRest xml:id="{i}" num="{e.count}"/>'
        dots = f' dots="{e.dots}"' if e.dots else ""
        if main and e.fermata:
            self.controls.append(f'<fermata staff="{staff}" startid="#{i}" place="above"/>')
        return f'<rest xml:id="{i}" dur="{MEI_DUR[e.duration]}"{dots}/>'

    def layer(self, events: tuple[Event, ...], staff: int, main: bool, tie_in: bool) -> tuple[str, bool]:
        state: dict = {}
        parts = [""] * len(events)
        for j, e in enumerate(events):
            if e.kind == "note":
                parts[j] = self.note(e, state, tie_in and not e.grace, staff, main)
                if not e.grace:
                    tie_in = e.tie
            else:
                parts[j] = self.rest(e, staff, main)
                tie_in = False
        if self.c.beam:
            for g in _beam_groups(events, _beat(self.s.time)):
                parts[g[0]] = "<beam>" + parts[g[0]]
                parts[g[-1]] = parts[g[-1]] + "</beam>"
        return "".join(parts), tie_in


def _staff_def(n: int, clef: str, key: int, time: str | None, time_shown: bool = True) -> str:
    a = [f'n="{n}"', 'lines="5"', f'clef.shape="{clef[0]}"', f'clef.line="{clef[1]}"']
    if time and not time_shown:  # the metre still groups the beams
        a.append('meter.visible="false"')
    if key:
        a.append(f'key.sig="{abs(key)}{"s" if key > 0 else "f"}"')
    if time == "C":
        a.append('meter.sym="common"')
    elif time == "C/":
        a.append('meter.sym="cut"')
    elif time:
        num, den = time.split("/")
        a.append(f'meter.count="{num}" meter.unit="{den}"')
    return f"<staffDef {' '.join(a)}/>"


def _neighbour(s: Snippet, rng: np.random.Generator) -> Snippet:
    """Another voice with the same rhythm, so its bars line up with the main staff."""
    clef = str(rng.choice(["G2", "G2", "F4", "C3"]))
    shift = {"G2": 0, "F4": -2, "C3": -1}[clef] + int(rng.choice([-1, 0, 0, 1]))
    moved = transpose(s, int(rng.integers(-2, 3)), shift) or transpose(s, 0, shift) or s
    measures = tuple(tuple(replace(e, tie=False, fermata=False) for e in m if not e.grace)
                     for m in moved.measures)
    return replace(moved, clef=clef, key=s.key, measures=measures)


def snippet_to_mei(s: Snippet, clutter: Clutter, rng: np.random.Generator,
                   system_breaks: tuple[int, ...] = ()) -> tuple[str, int]:
    """The MEI document, and the 1-based staff number of the labelled staff.

    system_breaks: measure indices after which a new system starts (whole pages).
    """
    s = close_ties(s)
    w = _Writer(s, clutter, rng)
    staves = [(s, True)]
    if clutter.neighbour_above:
        staves.insert(0, (_neighbour(s, rng), False))
    if clutter.neighbour_below:
        staves.append((_neighbour(s, rng), False))
    main_n = 2 if clutter.neighbour_above else 1
    defs = "".join(_staff_def(i + 1, x.clef, x.key, x.time) for i, (x, _) in enumerate(staves))
    measures = []
    ties = [False] * len(staves)
    for k in range(len(s.measures)):
        body = []
        for i, (x, main) in enumerate(staves):
            layer, ties[i] = w.layer(x.measures[k], i + 1, main, ties[i])
            body.append(f'<staff n="{i + 1}"><layer n="1">{layer}</layer></staff>')
        last = k == len(s.measures) - 1
        right = "" if not last else (' right="invis"' if not s.final_barline else
                                     ' right="end"' if rng.random() < 0.3 else "")
        controls = "".join(w.controls)
        w.controls = []
        if k == 0 and clutter.tempo:
            controls += (f'<tempo staff="{main_n}" tstamp="1" place="above">'
                         f'{rng.choice(TEMPI)}</tempo>')
        measures.append(f'<measure n="{k + 1}"{right}>{"".join(body)}{controls}</measure>'
                        + ("<sb/>" if k in system_breaks else ""))
    if clutter.slur and len(w.note_ids) > 2:
        measures[-1] = measures[-1].replace("</measure>", _slurs(w.note_ids, clutter.slur, rng, main_n) + "</measure>")
    mei = ('<?xml version="1.0" encoding="UTF-8"?>'
           '<mei xmlns="http://www.music-encoding.org/ns/mei" meiversion="5.0"><meiHead><fileDesc>'
           '<titleStmt><title/></titleStmt><pubStmt/></fileDesc></meiHead><music><body><mdiv><score>'
           f'<scoreDef><staffGrp>{defs}</staffGrp></scoreDef><section>{"".join(measures)}'
           '</section></score></mdiv></body></music></mei>')
    return mei, main_n


def _slurs(notes: list[tuple[str, int]], p: float, rng: np.random.Generator, staff: int) -> str:
    out = []
    i = 0
    while i < len(notes) - 1:
        if rng.random() < p:
            j = min(len(notes) - 1, i + int(rng.integers(1, 4)))
            # A slur from a note to the next on the same line or space is engraved as a tie is,
            # yet its label has no `tie`: left in, it teaches the reader to doubt real ties.
            # Skipped after the draws, so that every other staff of a seed stays as it was.
            if not (j == i + 1 and notes[i][1] == notes[j][1]):
                out.append(f'<slur staff="{staff}" startid="#{notes[i][0]}" endid="#{notes[j][0]}"/>')
            i = j
        i += 1
    return "".join(out)


assert list(MEI_ACCID) == [-2, -1, 0, 1, 2] and STEPS
