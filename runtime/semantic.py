"""The PrIMuS semantic token grammar: parsing, repair, and the note list a staff plays.

Pitches are spelled as they sound (key signature already applied), so a note token alone gives
its MIDI pitch. Durations are measured in quarter notes throughout.

Grace notes take no notated time. We let each grace steal a little from the note that follows
it (the way it is played): every grace lasts GRACE_DURATION quarter notes, capped so that the
graces before a note take at most half of it, and that note starts later and ends on time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DURATIONS: dict[str, float] = {
    "quadruple_whole": 16.0,
    "double_whole": 8.0,
    "whole": 4.0,
    "half": 2.0,
    "quarter": 1.0,
    "eighth": 0.5,
    "sixteenth": 0.25,
    "thirty_second": 0.125,
    "sixty_fourth": 0.0625,
    "hundred_twenty_eighth": 0.03125,
}
DOT_FACTOR = {0: 1.0, 1: 1.5, 2: 1.75}
STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
ALTERS = {"": 0, "#": 1, "b": -1, "##": 2, "bb": -2}
CLEFS = ("G2", "G1", "C1", "C2", "C3", "C4", "C5", "F3", "F4", "F5")
# Major keys by number of sharps (positive) or flats (negative).
KEYS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7,
        "F": -1, "Bb": -2, "Eb": -3, "Ab": -4, "Db": -5, "Gb": -6, "Cb": -7}
GRACE_DURATION = 0.125

_DUR = "|".join(sorted(DURATIONS, key=len, reverse=True))
_NOTE_RE = re.compile(rf"^(note|gracenote)-([A-G])(##|bb|#|b)?(-?\d)_({_DUR})(\.{{0,2}})(_fermata)?$")
_REST_RE = re.compile(rf"^rest-({_DUR})(\.{{0,2}})(_fermata)?$")
_TIME_RE = re.compile(r"^timeSignature-(?:(\d{1,2})/(\d{1,2})|(C/?))$")


@dataclass(frozen=True)
class Clef:
    sign: str  # "G2", "F4", ...


@dataclass(frozen=True)
class KeySignature:
    key: str  # major key name, "Bb"

    @property
    def fifths(self) -> int:
        return KEYS[self.key]


@dataclass(frozen=True)
class TimeSignature:
    numerator: int
    denominator: int
    symbol: str = ""  # "C" or "C/" when written as a symbol

    @property
    def measure(self) -> float:
        """Length of one measure in quarter notes."""
        return self.numerator * 4.0 / self.denominator


@dataclass(frozen=True)
class Note:
    step: str
    alter: int
    octave: int
    kind: str  # a DURATIONS key
    dots: int
    fermata: bool = False
    grace: bool = False

    @property
    def pitch(self) -> int:
        return 12 * (self.octave + 1) + STEPS[self.step] + self.alter

    @property
    def duration(self) -> float:
        return 0.0 if self.grace else DURATIONS[self.kind] * DOT_FACTOR[self.dots]


@dataclass(frozen=True)
class Rest:
    kind: str
    dots: int
    fermata: bool = False

    @property
    def duration(self) -> float:
        return DURATIONS[self.kind] * DOT_FACTOR[self.dots]


@dataclass(frozen=True)
class MultiRest:
    measures: int


@dataclass(frozen=True)
class Barline:
    pass


@dataclass(frozen=True)
class Tie:
    pass


Symbol = Clef | KeySignature | TimeSignature | Note | Rest | MultiRest | Barline | Tie


@dataclass(frozen=True)
class NoteEvent:
    pitch: int  # MIDI note number
    onset: float  # quarter notes from the start
    duration: float  # quarter notes


@dataclass(frozen=True)
class MetaEvent:
    """A key or time signature change at `onset` (quarter notes)."""

    onset: float
    symbol: KeySignature | TimeSignature


def parse_token(token: str) -> Symbol | None:
    """One token to its symbol, or None when the token is not in the grammar."""
    if token == "barline":
        return Barline()
    if token == "tie":
        return Tie()
    if token.startswith("clef-"):
        sign = token[5:]
        return Clef(sign) if sign in CLEFS else None
    if token.startswith("keySignature-"):
        name = token[13:]
        return KeySignature(name[:-1]) if name.endswith("M") and name[:-1] in KEYS else None
    if token.startswith("timeSignature-"):
        return _parse_time(token)
    if token.startswith("multirest-"):
        count = token[10:]
        return MultiRest(int(count)) if count.isdigit() and 0 < int(count) < 1000 else None
    if m := _NOTE_RE.match(token):
        kind, step, acc, octave, dur, dots, fermata = m.groups()
        note = Note(step, ALTERS[acc or ""], int(octave), dur, len(dots), bool(fermata),
                    kind == "gracenote")
        return note if 0 <= note.pitch <= 127 else None
    if m := _REST_RE.match(token):
        dur, dots, fermata = m.groups()
        return Rest(dur, len(dots), bool(fermata))
    return None


def _parse_time(token: str) -> TimeSignature | None:
    m = _TIME_RE.match(token)
    if not m:
        return None
    num, den, symbol = m.groups()
    if symbol == "C":
        return TimeSignature(4, 4, "C")
    if symbol == "C/":
        return TimeSignature(2, 2, "C/")
    n, d = int(num), int(den)
    # MIDI and MusicXML need a power-of-two denominator.
    return TimeSignature(n, d) if n > 0 and d in (1, 2, 4, 8, 16, 32, 64) else None


def parse(tokens: Iterable[str]) -> list[Symbol]:
    """Tokens to symbols, silently dropping tokens outside the grammar."""
    return [s for s in map(parse_token, tokens) if s is not None]


def repair(tokens: Sequence[str], open_end: bool = False) -> list[str]:
    """Keep what can be played: drop unknown tokens, stray ties and graces, double barlines.

    A tie survives only between a note and the next note (barlines and signature changes may
    sit between them) of the same pitch. With `open_end`, a tie at the very end is kept: the
    next staff of the page may continue it.
    """
    kept = [(t, s) for t in tokens if (s := parse_token(t)) is not None]
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


def notes_from_tokens(tokens: Sequence[str]) -> list[NoteEvent]:
    """The notes a token sequence plays, tied notes merged, onsets in quarter notes."""
    return timeline(tokens)[0]


def timeline(tokens: Sequence[str]) -> tuple[list[NoteEvent], list[MetaEvent], float]:
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


def note_token(note: Note) -> str:
    """The token that spells `note` (inverse of parse_token for notes)."""
    acc = {v: k for k, v in ALTERS.items()}[note.alter]
    head = "gracenote" if note.grace else "note"
    tail = "_fermata" if note.fermata else ""
    return f"{head}-{note.step}{acc}{note.octave}_{note.kind}{'.' * note.dots}{tail}"
