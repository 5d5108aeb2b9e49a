"""Chords, voices and systems: the polyphonic score model, its labels and the notes it plays.

A staff's measure holds one or two voices (MEI layers); a voice is a gapless run of slots
(a chord of notes that share one duration, or a rest) that fills the measure. The label is the
PrIMuS semantic encoding with one more token, `|`: every slot that starts at one onset, of
every voice, goes into one group, notes from the lowest pitch to the highest, then rests
(shortest first). Because every voice fills its measure, the next group always starts at the
earliest end of what is sounding, which is how the grammar times a group (docs/DATA.md).

A `System` is the staves of one line of music, top to bottom (a grand staff, or one staff);
measure k of every staff sounds together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .music import DURATIONS, Event, header_tokens, note_token, transpose_event

EPS = 1e-6
# Rest lengths for filling a voice, longest first: (quarters, name, dots).
REST_FILL = tuple(sorted(((DURATIONS[n] * (2 - 0.5**d), n, d) for n in
                          ("whole", "half", "quarter", "eighth", "sixteenth", "thirty_second")
                          for d in (0, 1)), reverse=True))


@dataclass(frozen=True)
class Slot:
    """One onset of one voice: a chord (its notes carry the slot's duration) or a rest."""

    duration: str
    dots: int = 0
    notes: tuple[Event, ...] = ()  # empty: a rest
    fermata: bool = False

    @property
    def quarters(self) -> float:
        return DURATIONS[self.duration] * (2.0 - 0.5**self.dots)

    @property
    def is_rest(self) -> bool:
        return not self.notes

    def to_row(self) -> list:
        return [self.duration, self.dots, int(self.fermata),
                [[e.step, e.alter, e.octave, int(e.tie)] for e in self.notes]]

    @classmethod
    def from_row(cls, row: list) -> Slot:
        duration, dots, fermata, notes = row
        return chord(duration, dots, [(s, a, o, bool(t)) for s, a, o, t in notes], bool(fermata))


def chord(duration: str, dots: int, pitches, fermata: bool = False) -> Slot:
    """A slot from (step, alter, octave, tie) tuples, sorted from the lowest pitch up."""
    notes = tuple(Event("note", duration, dots, s, a, o, tie=t, fermata=fermata)
                  for s, a, o, t in pitches)
    return Slot(duration, dots, tuple(sorted(notes, key=lambda e: (e.midi, e.diatonic))), fermata)


def rest(duration: str, dots: int = 0, fermata: bool = False) -> Slot:
    return Slot(duration, dots, (), fermata)


Voice = tuple[Slot, ...]
Measure = tuple[Voice, ...]  # one or two voices, each filling the measure


@dataclass(frozen=True)
class ClefChange:
    """A clef printed inside the staff, before slot `slot` (never the first) of the first voice
    of measure `measure`: where piano music moves a hand to the other clef. Pitches are
    spelled as they sound, so the label gains only the clef's own token."""

    measure: int
    slot: int
    clef: str


@dataclass(frozen=True)
class PolyStaff:
    clef: str
    key: int
    time: str | None  # the metre, which also groups the beams
    measures: tuple[Measure, ...]
    changes: tuple[ClefChange, ...] = ()  # in staff order
    time_shown: bool = True  # False: a later system's staff, with no time signature printed

    def change_onsets(self, k: int) -> dict[float, str]:
        """Measure k's clef changes by onset (quarters from its start)."""
        starts = slot_starts(self.measures[k][0]) if self.measures else []
        return {starts[c.slot]: c.clef for c in self.changes if c.measure == k}

    def clef_at(self, k: int, onset: float) -> str:
        """The clef in force at an onset of measure k: a change governs from its own onset."""
        clef = self.clef
        for c in self.changes:
            if (c.measure, slot_starts(self.measures[c.measure][0])[c.slot]) <= (k, onset + EPS):
                clef = c.clef
        return clef


@dataclass(frozen=True)
class System:
    staves: tuple[PolyStaff, ...]
    source: str = ""  # "chorale", "quartet", "piano" or "texture/<name>"
    piece: str = ""
    final_barline: bool = True


def fill_rests(length: float) -> list[Slot] | None:
    """Rests that fill `length` quarters, longest first; None when no rest spells it."""
    out: list[Slot] = []
    left = length
    while left > EPS:
        fit = next(((q, n, d) for q, n, d in REST_FILL if q <= left + EPS), None)
        if fit is None:
            return None
        out.append(rest(fit[1], fit[2]))
        left -= fit[0]
    return out


def voice_length(v: Voice) -> float:
    return sum(s.quarters for s in v)


def slot_starts(v: Voice) -> list[float]:
    """Each slot's onset in quarters from the measure's start, rounded so onsets compare."""
    out, t = [], 0.0
    for slot in v:
        out.append(round(t, 6))
        t += slot.quarters
    return out


# --- labels --------------------------------------------------------------------------------

def _rest_token(slot: Slot) -> str:
    return f"rest-{slot.duration}{'.' * slot.dots}" + ("_fermata" if slot.fermata else "")


def measure_groups(m: Measure) -> list[tuple[float, list[Slot]]]:
    """The slots of every voice by onset (quarters from the measure's start)."""
    at: dict[float, list[Slot]] = {}
    for v in m:
        for t, slot in zip(slot_starts(v), v):
            at.setdefault(t, []).append(slot)
    return sorted(at.items())


def group_tokens(slots: list[Slot]) -> list[str]:
    """One group: notes lowest first, then rests shortest first, joined by `|`."""
    notes = sorted(((e, s) for s in slots for e in s.notes), key=lambda x: (x[0].midi, x[0].diatonic))
    rests = sorted((s for s in slots if s.is_rest), key=lambda s: s.quarters)
    members = [[note_token(e)] + (["tie"] if e.tie else []) for e, _ in notes]
    members += [[_rest_token(s)] for s in rests]
    out: list[str] = []
    for i, m in enumerate(members):
        if i:
            out.append("|")
        out.extend(m)
    return out


def staff_tokens(staff: PolyStaff, final_barline: bool = True) -> list[str]:
    out = header_tokens(staff.clef, staff.key, staff.time if staff.time_shown else None)
    for i, m in enumerate(staff.measures):
        changes = staff.change_onsets(i)
        for t, slots in measure_groups(m):
            if t in changes:  # read where it is printed: before the group it governs
                out.append(f"clef-{changes[t]}")
            out.extend(group_tokens(slots))
        if i < len(staff.measures) - 1 or final_barline:
            out.append("barline")
    return out


def system_tokens(system: System) -> list[list[str]]:
    return [staff_tokens(s, system.final_barline) for s in system.staves]


# --- ties and the notes a staff plays ------------------------------------------------------

Address = tuple[int, int, int, int]  # measure, voice, slot, note (index in the slot)


def _next_slot(staff: PolyStaff, k: int, v: int, j: int) -> tuple[int, int] | None:
    if j + 1 < len(staff.measures[k][v]):
        return k, j + 1
    if k + 1 < len(staff.measures) and v < len(staff.measures[k + 1]):
        return k + 1, 0
    return None


def tie_targets(staff: PolyStaff) -> dict[Address, Address]:
    """Each playable tie: a note to the same pitch in the next slot of its voice."""
    out: dict[Address, Address] = {}
    for k, m in enumerate(staff.measures):
        for v, voice in enumerate(m):
            for j, slot in enumerate(voice):
                for p, e in enumerate(slot.notes):
                    if not e.tie or (nxt := _next_slot(staff, k, v, j)) is None:
                        continue
                    target = staff.measures[nxt[0]][v][nxt[1]]
                    q = next((q for q, x in enumerate(target.notes) if x.midi == e.midi), None)
                    if q is not None:
                        out[(k, v, j, p)] = (nxt[0], v, nxt[1], q)
    return out


def close_staff_ties(staff: PolyStaff) -> PolyStaff:
    """Drop ties that lead nowhere or to another pitch: they cannot be engraved or heard."""
    ok = tie_targets(staff)
    measures = tuple(
        tuple(tuple(replace(slot, notes=tuple(replace(e, tie=e.tie and (k, v, j, p) in ok)
                                              for p, e in enumerate(slot.notes)))
                    for j, slot in enumerate(voice)) for v, voice in enumerate(m))
        for k, m in enumerate(staff.measures))
    return replace(staff, measures=measures)


def close_ties(system: System) -> System:
    return replace(system, staves=tuple(close_staff_ties(s) for s in system.staves))


def measure_length(m: Measure) -> float:
    return max((voice_length(v) for v in m), default=0.0)


def staff_notes(staff: PolyStaff) -> list[tuple[int, float, float]]:
    """(MIDI pitch, onset, duration) of every note the staff plays, ties merged, sorted."""
    targets = tie_targets(staff)
    continued = set(targets.values())
    start: dict[Address, float] = {}
    t0 = 0.0
    for k, m in enumerate(staff.measures):
        for v, voice in enumerate(m):
            t = t0
            for j, slot in enumerate(voice):
                for p in range(len(slot.notes)):
                    start[(k, v, j, p)] = t
                t += slot.quarters
        t0 += measure_length(m)
    out = []
    for a, onset in start.items():
        if a in continued:
            continue
        end, b = onset, a
        while True:
            end = start[b] + staff.measures[b[0]][b[1]][b[2]].quarters
            if b not in targets:
                break
            b = targets[b]
        out.append((staff.measures[a[0]][a[1]][a[2]].notes[a[3]].midi, onset, end - onset))
    return sorted(out, key=lambda n: (n[1], n[0], n[2]))


def clashes(staff: PolyStaff) -> bool:
    """Two notes of one pitch that overlap: MIDI cannot play them apart, nor a reader see both."""
    last_end: dict[int, float] = {}
    for pitch, onset, duration in staff_notes(staff):
        if onset < last_end.get(pitch, -1.0) - EPS:
            return True
        last_end[pitch] = max(last_end.get(pitch, -1.0), onset + duration)
    return False


def well_formed(system: System) -> bool:
    """Every voice fills its measure, the staves' measures have one length, no unison clash."""
    if len({len(s.measures) for s in system.staves}) != 1:
        return False
    for k in range(len(system.staves[0].measures)):
        lengths = {round(voice_length(v), 6) for s in system.staves for v in s.measures[k]}
        if len(lengths) != 1 or not all(1 <= len(s.measures[k]) <= 2 for s in system.staves):
            return False
    return not any(clashes(s) for s in system.staves)


# --- transposition -------------------------------------------------------------------------

def move_slot(slot: Slot, fifths: int, octaves: int) -> Slot:
    return replace(slot, notes=tuple(transpose_event(e, fifths, octaves) for e in slot.notes))


def transpose_staff(staff: PolyStaff, fifths: int, octaves: int = 0) -> PolyStaff | None:
    """Another key (and octave); None when a note would need a triple accidental."""
    key = staff.key + fifths
    if not -7 <= key <= 7:
        return None
    measures = tuple(tuple(tuple(move_slot(s, fifths, octaves) for s in v) for v in m)
                     for m in staff.measures)
    if any(abs(e.alter) > 2 for m in measures for v in m for s in v for e in s.notes):
        return None
    return replace(staff, key=key, measures=measures)


def transpose_system(system: System, fifths: int, octaves: tuple[int, ...]) -> System | None:
    staves = [transpose_staff(s, fifths, o) for s, o in zip(system.staves, octaves)]
    if any(s is None for s in staves):
        return None
    return replace(system, staves=tuple(staves))


def pitches(staff: PolyStaff) -> list[Event]:
    return [e for m in staff.measures for v in m for s in v for e in s.notes]


def placed_pitches(staff: PolyStaff) -> list[tuple[str, Event]]:
    """Every note with the clef it is printed under."""
    out = []
    for k, m in enumerate(staff.measures):
        for v in m:
            for t, slot in zip(slot_starts(v), v):
                clef = staff.clef_at(k, t)
                out.extend((clef, e) for e in slot.notes)
    return out
