"""A System as MEI for Verovio: chords, two layers a staff, ties, a braced grand staff.

Which accidentals the reader sees is decided per staff and measure in time order across both
voices (an accidental holds for its line or space to the end of the bar, whatever the voice);
every other note carries its pitch as a gestural accidental (`accid.ges`, naturals included),
so that Verovio's own MIDI plays exactly the label's pitches.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np
from omr.semantic import key_alter

from .mei import ARTICS, DYNAMICS, MEI_ACCID, MEI_DUR, TEMPI, _beat, _staff_def, beam_groups
from .poly import Address, Measure, PolyStaff, Slot, System, slot_starts, tie_targets

# Over a chord: the ornaments of Baroque and Classical keyboard music (a Bach invention has
# one every bar or two), which the labels ignore as PrIMuS's do.
ORNAMENTS = ('mordent form="upper"', 'mordent form="lower"', "trill", 'turn form="upper"')


@dataclass(frozen=True)
class PolyClutter:
    """Marks the labels ignore: dynamics, tempo text, slurs, ornaments, articulations and
    fingerings; beams on or off."""

    dynamic: float = 0.0
    tempo: bool = False
    slur: float = 0.0
    beam: bool = True
    ornament: float = 0.0
    artic: float = 0.0
    fingering: float = 0.0

    @classmethod
    def random(cls, rng: np.random.Generator) -> PolyClutter:
        busy = rng.random() < 0.6
        return cls(dynamic=float(rng.choice([0, 0.04, 0.1])) if busy else 0.0,
                   tempo=bool(busy and rng.random() < 0.3),
                   slur=float(rng.choice([0, 0.06, 0.15])) if busy else 0.0,
                   beam=bool(rng.random() < 0.92),
                   ornament=float(rng.choice([0, 0.04, 0.1])) if busy else 0.0,
                   artic=float(rng.choice([0, 0.05, 0.15])) if busy else 0.0,
                   fingering=float(rng.choice([0, 0, 0.08])) if busy else 0.0)


def _shown_accidentals(m: Measure, key: int, tied_in: set[tuple[int, int, int]]) -> dict:
    """(voice, slot, note) -> the accidental to print, for the notes that need one."""
    notes = []
    for v, voice in enumerate(m):
        for j, (t, slot) in enumerate(zip(slot_starts(voice), voice)):
            for p, e in enumerate(slot.notes):
                notes.append((t, v, j, p, e))
    notes.sort(key=lambda x: (x[0], x[4].midi, x[1]))
    # Two spellings of one line at one onset (F and F# together) both print theirs.
    seen: dict[tuple, set[int]] = {}
    for t, _, _, _, e in notes:
        seen.setdefault((t, e.step, e.octave), set()).add(e.alter)
    state: dict[tuple[str, int], int] = {}
    shown = {}
    for t, v, j, p, e in notes:
        line = (e.step, e.octave)
        current = state.get(line, key_alter(key, e.step))
        if (v, j, p) in tied_in:
            continue  # a tied note keeps its accidental unprinted
        if e.alter != current or len(seen[(t, e.step, e.octave)]) > 1:
            shown[(v, j, p)] = e.alter
            state[line] = e.alter
    return shown


def _beam_groups(voice: tuple[Slot, ...], beat: float) -> list[list[int]]:
    return beam_groups([s.quarters for s in voice],
                       [not s.is_rest and s.quarters < 1.0 - 1e-9 for s in voice], beat)


class _PolyWriter:
    def __init__(self, system: System, clutter: PolyClutter, rng: np.random.Generator):
        self.system, self.c, self.rng = system, clutter, rng
        self.ties = [tie_targets(s) for s in system.staves]
        self.controls: list[str] = []
        self.slot_ids: dict[tuple[int, int], list[str]] = {}  # (staff, voice): chords, for slurs

    @staticmethod
    def nid(n: int, a: Address) -> str:
        return f"n{n}m{a[0]}v{a[1]}s{a[2]}p{a[3]}"

    def note(self, e, n: int, a: Address, shown: int | None, dur: bool, artic: str = "") -> str:
        attrs = [f'xml:id="{self.nid(n, a)}"', f'pname="{e.step.lower()}"', f'oct="{e.octave}"']
        if dur:
            attrs.append(f'dur="{MEI_DUR[e.duration]}"')
            if e.dots:
                attrs.append(f'dots="{e.dots}"')
        if shown is not None:
            attrs.append(f'accid="{MEI_ACCID[shown]}"')
        else:
            attrs.append(f'accid.ges="{MEI_ACCID[e.alter]}"')
        return f"<note {' '.join(attrs)}{artic}/>"

    def slot(self, s: Slot, n: int, k: int, v: int, j: int, shown: dict, layers: int) -> str:
        # A lone note is its own element; a chord's notes sit in a <chord> of their slot's id.
        sid = self.nid(n, (k, v, j, 0)) if len(s.notes) == 1 else f"c{n}m{k}v{v}s{j}"
        place = "below" if layers == 2 and v == 1 else "above"
        if s.fermata:
            self.controls.append(f'<fermata staff="{n}" startid="#{sid}" place="{place}"/>')
        if s.is_rest:
            dots = f' dots="{s.dots}"' if s.dots else ""
            return f'<rest xml:id="{sid}" dur="{MEI_DUR[s.duration]}"{dots}/>'
        self.slot_ids.setdefault((n, v), []).append(sid)
        if self.c.dynamic and self.rng.random() < self.c.dynamic:
            self.controls.append(f'<dynam staff="{n}" startid="#{sid}" place="below">'
                                 f'{escape(str(self.rng.choice(DYNAMICS)))}</dynam>')
        self._marks(n, sid, place)
        artic = (f' artic="{self.rng.choice(ARTICS)}"'
                 if self.c.artic and self.rng.random() < self.c.artic else "")
        for p in range(len(s.notes)):
            target = self.ties[n - 1].get((k, v, j, p))
            if target is not None:
                self.controls.append(f'<tie staff="{n}" startid="#{self.nid(n, (k, v, j, p))}" '
                                     f'endid="#{self.nid(n, target)}"/>')
        if len(s.notes) == 1:
            return self.note(s.notes[0], n, (k, v, j, 0), shown.get((v, j, 0)), True, artic)
        dots = f' dots="{s.dots}"' if s.dots else ""
        inner = "".join(self.note(e, n, (k, v, j, p), shown.get((v, j, p)), False)
                        for p, e in enumerate(s.notes))
        return f'<chord xml:id="{sid}" dur="{MEI_DUR[s.duration]}"{dots}{artic}>{inner}</chord>'

    def _marks(self, n: int, sid: str, place: str) -> None:
        """An ornament or a fingering over (or, for the lower voice, under) a chord."""
        if self.c.ornament and self.rng.random() < self.c.ornament:
            self.controls.append(f'<{self.rng.choice(ORNAMENTS)} staff="{n}" startid="#{sid}" '
                                 f'place="{place}"/>')
        if self.c.fingering and self.rng.random() < self.c.fingering:
            self.controls.append(f'<fing staff="{n}" startid="#{sid}" place="{place}">'
                                 f'{self.rng.integers(1, 6)}</fing>')

    def staff(self, staff: PolyStaff, n: int, k: int) -> str:
        m = staff.measures[k]
        tied_in = {(b[1], b[2], b[3]) for b in self.ties[n - 1].values() if b[0] == k}
        shown = _shown_accidentals(m, staff.key, tied_in)
        layers = []
        for v, voice in enumerate(m):
            parts = [self.slot(s, n, k, v, j, shown, len(m)) for j, s in enumerate(voice)]
            if self.c.beam:
                for g in _beam_groups(voice, _beat(staff.time)):
                    parts[g[0]] = "<beam>" + parts[g[0]]
                    parts[g[-1]] = parts[g[-1]] + "</beam>"
            if v == 0:  # after the beams, so that a change at a beam's first note precedes it
                for c in staff.changes:
                    if c.measure == k:
                        parts[c.slot] = f'<clef shape="{c.clef[0]}" line="{c.clef[1]}"/>' + parts[c.slot]
            layers.append(f'<layer n="{v + 1}">{"".join(parts)}</layer>')
        return f'<staff n="{n}">{"".join(layers)}</staff>'


def system_mei(system: System, clutter: PolyClutter, rng: np.random.Generator) -> str:
    """The MEI document of one system: its staves braced when there are two."""
    w = _PolyWriter(system, clutter, rng)
    staves = system.staves
    defs = "".join(_staff_def(i + 1, s.clef, s.key, s.time, s.time_shown)
                   for i, s in enumerate(staves))
    group = ' symbol="brace" bar.thru="true"' if len(staves) == 2 else ""
    count = len(staves[0].measures)
    measures = []
    for k in range(count):
        body = "".join(w.staff(s, i + 1, k) for i, s in enumerate(staves))
        right = "" if k < count - 1 else (' right="invis"' if not system.final_barline else
                                           ' right="end"' if rng.random() < 0.3 else "")
        controls = "".join(w.controls)
        w.controls = []
        if k == 0 and clutter.tempo:
            controls += f'<tempo staff="1" tstamp="1" place="above">{rng.choice(TEMPI)}</tempo>'
        measures.append(f'<measure n="{k + 1}"{right}>{body}{controls}</measure>')
    slurs = "".join(_slurs(ids, clutter.slur, rng, n) for (n, _), ids in sorted(w.slot_ids.items()))
    if slurs:
        measures[-1] = measures[-1].replace("</measure>", slurs + "</measure>")
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<mei xmlns="http://www.music-encoding.org/ns/mei" meiversion="5.0"><meiHead><fileDesc>'
            '<titleStmt><title/></titleStmt><pubStmt/></fileDesc></meiHead><music><body><mdiv>'
            f'<score><scoreDef><staffGrp{group}>{defs}</staffGrp></scoreDef>'
            f'<section>{"".join(measures)}</section></score></mdiv></body></music></mei>')


def _slurs(ids: list[str], p: float, rng: np.random.Generator, staff: int) -> str:
    """Slurs over three or four chords of one voice, never over two: a slur between two notes
    of one pitch is drawn as a tie is, and its label has no `tie`."""
    out = []
    i = 0
    while p and i < len(ids) - 2:
        if rng.random() < p:
            j = min(len(ids) - 1, i + int(rng.integers(2, 4)))
            out.append(f'<slur staff="{staff}" startid="#{ids[i]}" endid="#{ids[j]}"/>')
            i = j
        i += 1
    return "".join(out)
