"""The engine's own small score model, and its PrIMuS semantic labels.

Every melody source (the music21 corpus, the procedural generator) produces a `Snippet`; the
engraver turns it into MEI and the labeller into semantic tokens. Pitches are stored as they
sound (step, alter, octave), which is what the semantic encoding spells.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

STEPS = "CDEFGAB"
SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Key signatures in circle-of-fifths order, named by their major key as PrIMuS does.
MAJOR_KEYS = {-7: "Cb", -6: "Gb", -5: "Db", -4: "Ab", -3: "Eb", -2: "Bb", -1: "F", 0: "C",
              1: "G", 2: "D", 3: "A", 4: "E", 5: "B", 6: "F#", 7: "C#"}
DURATIONS = {  # semantic name -> length in quarter notes
    "quadruple_whole": 16.0, "double_whole": 8.0, "whole": 4.0, "half": 2.0, "quarter": 1.0,
    "eighth": 0.5, "sixteenth": 0.25, "thirty_second": 0.125, "sixty_fourth": 0.0625,
    "hundred_twenty_eighth": 0.03125,
}
ACCIDENTALS = {-2: "bb", -1: "b", 0: "", 1: "#", 2: "##"}


@dataclass(frozen=True)
class Event:
    """One note, rest or multirest. `tie` means tied to the next note."""

    kind: str  # "note" | "rest" | "multirest"
    duration: str = "quarter"
    dots: int = 0
    step: str = "C"
    alter: int = 0
    octave: int = 4
    tie: bool = False
    grace: bool = False
    fermata: bool = False
    count: int = 1  # measures, for a multirest

    @property
    def quarters(self) -> float:
        if self.grace or self.kind == "multirest":
            return 0.0
        base = DURATIONS[self.duration]
        return base * (2.0 - 0.5**self.dots)

    @property
    def diatonic(self) -> int:
        """Diatonic index (C0 = 0), used for staff positions and transposition."""
        return self.octave * 7 + STEPS.index(self.step)

    @property
    def midi(self) -> int:
        return 12 * (self.octave + 1) + SEMITONES[self.step] + self.alter


@dataclass(frozen=True)
class Snippet:
    clef: str
    key: int  # fifths; 0 engraves no key signature
    time: str | None  # "3/4", "C", "C/" or None for no time signature
    measures: tuple[tuple[Event, ...], ...]
    source: str = ""
    piece: str = ""
    final_barline: bool = True
    extras: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Snippet:
        measures = tuple(tuple(Event(**e) for e in m) for m in d["measures"])
        return cls(**{**d, "measures": measures})

    def notes(self):
        return [e for m in self.measures for e in m if e.kind == "note"]


def note_token(e: Event) -> str:
    name = f"{e.step}{ACCIDENTALS[e.alter]}{e.octave}_{e.duration}{'.' * e.dots}"
    if e.fermata:
        name += "_fermata"
    return ("gracenote-" if e.grace else "note-") + name


def event_token(e: Event) -> str:
    if e.kind == "multirest":
        return f"multirest-{e.count}"
    if e.kind == "rest":
        return f"rest-{e.duration}{'.' * e.dots}" + ("_fermata" if e.fermata else "")
    return note_token(e)


def header_tokens(clef: str, key: int, time: str | None) -> list[str]:
    """A staff's opening tokens: its clef, key (sharps, flats negative; none for C major) and
    time signature (None: not printed, as on a part's later staves)."""
    out = [f"clef-{clef}"]
    if key != 0:
        out.append(f"keySignature-{MAJOR_KEYS[key]}M")
    if time:
        out.append(f"timeSignature-{time}")
    return out


def semantic_tokens(s: Snippet) -> list[str]:
    """The PrIMuS semantic label of a snippet, as engraved by engrave.py."""
    out = header_tokens(s.clef, s.key, s.time)
    for i, measure in enumerate(s.measures):
        for e in measure:
            out.append(event_token(e))
            if e.kind == "note" and e.tie:
                out.append("tie")
        if i < len(s.measures) - 1 or s.final_barline:
            out.append("barline")
    return out


def transpose_event(e: Event, fifths: int, octaves: int) -> Event:
    """Move a note by `fifths` steps round the circle of fifths (re-spelled), then by octaves."""
    if e.kind != "note":
        return e
    steps = (4 * fifths) % 7
    semis = (7 * fifths) % 12
    d = e.diatonic + steps + 7 * octaves
    step, octave = STEPS[d % 7], d // 7
    target = e.midi + semis + 12 * octaves
    alter = target - (12 * (octave + 1) + SEMITONES[step])
    return replace(e, step=step, octave=octave, alter=alter)


def transpose(s: Snippet, fifths: int, octaves: int = 0) -> Snippet | None:
    """Transpose to another key; None when a note would need a triple accidental."""
    key = s.key + fifths
    if not -7 <= key <= 7:
        return None
    measures = tuple(tuple(transpose_event(e, fifths, octaves) for e in m) for m in s.measures)
    if any(abs(e.alter) > 2 for m in measures for e in m if e.kind == "note"):
        return None
    return replace(s, key=key, measures=measures)
