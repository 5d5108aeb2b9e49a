"""The staff token grammar: parsing, repair, and the notes a staff plays (docs/NOTATION.md).

A monophonic staff is PrIMuS *semantic*. Chords and voices add one token, `|`: `a | b` starts b
at a's onset. A *group* is a run of notes and rests joined by `|`. After a group that starts at
t, the next one starts at the earliest end after t of everything that started by t, so two
voices of different rhythms need no voice tokens; voices are derived from the rhythm.

Pitches are spelled as they sound (key signature already applied), so a note token alone gives
its MIDI pitch. Durations are measured in quarter notes throughout.

Grace notes take no notated time. We let each grace steal a little from the note that follows
it (the way it is played): every grace lasts GRACE_DURATION quarter notes, capped so that the
graces before a note take at most half of it, and that note starts later and ends on time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
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


@dataclass(frozen=True)
class Join:
    """`|`: the next note or rest starts together with the one before it."""


JOIN = "|"
Symbol = Clef | KeySignature | TimeSignature | Note | Rest | MultiRest | Barline | Tie | Join


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


SHARP_ORDER = "FCGDAEB"  # the order a key signature adds sharps; flats go the other way


def key_alter(fifths: int, letter: str) -> int:
    """The alteration a key signature of `fifths` (flats negative) gives to the letter."""
    if fifths >= 0:
        return int(letter in SHARP_ORDER[:fifths])
    return -int(letter in SHARP_ORDER[::-1][:-fifths])


def parse_token(token: str) -> Symbol | None:
    """One token to its symbol, or None when the token is not in the grammar."""
    if token == "barline":
        return Barline()
    if token == "tie":
        return Tie()
    if token == JOIN:
        return Join()
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



# Layout: when every group starts ------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """A note or rest of a group. Token positions index the sequence given to `layout`."""

    symbol: Note | Rest
    token: int
    tie: int = -1  # the `tie` token after it; -1 when untied
    tied_to: int = -1  # the token of the note its tie continues into; -1 when none does

    @property
    def duration(self) -> float:
        return self.symbol.duration


@dataclass(frozen=True)
class Group:
    """Notes and rests that start together, and the grace groups written just before them."""

    members: tuple[Member, ...]
    graces: tuple[tuple[Member, ...], ...] = ()

    @property
    def notes(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if isinstance(m.symbol, Note))


Item = Group | Clef | KeySignature | TimeSignature | Barline | MultiRest


@dataclass(frozen=True)
class Event:
    onset: float  # quarter notes from the start of the sequence
    token: int  # position of its (first) token
    item: Item


@dataclass(frozen=True)
class Layout:
    events: tuple[Event, ...]
    length: float  # quarter notes: where the last sound (or multirest) ends


def layout(tokens: Sequence[str]) -> Layout:
    """Every group, signature, barline and multirest of a staff with its onset, in token order.

    A `|` joins like with like only (notes and rests, or graces), and a `tie` counts only
    directly after a note; repair drops the others, here they are ignored.
    """
    walk = _Walk()
    for i, token in enumerate(tokens):
        symbol = parse_token(token)
        if symbol is not None:
            walk.feed(i, symbol)
    return walk.finish()


class _Walk:
    """The time rule, one symbol at a time."""

    def __init__(self) -> None:
        self.raw: list[Event | tuple] = []  # groups stay raw until every tie is resolved
        self.time = 0.0  # the onset of the next group
        self.ends: list[float] = []  # ends after `time` of everything started so far
        self.measure = 4.0  # a multirest with no time signature counts 4/4 measures
        self.group: list[list] = []  # the open group: [symbol, token, tie token]
        self.grace = False  # the open group holds graces
        self.graces: list[list[tuple]] = []  # grace groups waiting for the group they precede
        self.joined = False  # a `|` came after the open group's last member
        self.after_member = False  # nothing but ties since the open group's last member
        self.waiting: dict[tuple[int, float], int] = {}  # (pitch, end) -> token of a tied note
        self.links: dict[int, int] = {}  # token of a tied note -> token of its continuation

    def feed(self, i: int, symbol: Symbol) -> None:
        if isinstance(symbol, Join):
            self.joined, self.after_member = self.after_member, False
        elif isinstance(symbol, Tie):
            last = self.group[-1] if self.group and self.after_member else None
            if last is not None and isinstance(last[0], Note) and not last[0].grace and last[2] < 0:
                last[2] = i
        elif isinstance(symbol, (Note, Rest)):
            grace = isinstance(symbol, Note) and symbol.grace
            if not (self.joined and self.group and self.grace == grace):
                self._close()
                self.grace = grace
            self.group.append([symbol, i, -1])
            self.joined, self.after_member = False, True
        else:
            self._close()
            self.joined = self.after_member = False
            self._place(i, symbol)

    def _place(self, i: int, symbol: Symbol) -> None:
        if isinstance(symbol, MultiRest):
            # A multirest waits until nothing sounds; a tie or grace cannot reach across it.
            start = max([self.time, *self.ends])
            self.raw.append(Event(start, i, symbol))
            self.time, self.ends = start + symbol.measures * self.measure, []
            self.waiting, self.graces = {}, []
            return
        self.raw.append(Event(self.time, i, symbol))
        if isinstance(symbol, TimeSignature):
            self.measure = symbol.measure

    def _close(self) -> None:
        members, self.group = [tuple(m) for m in self.group], []
        if not members:
            return
        if self.grace:
            self.graces.append(members)
            return
        t = self.time
        if not self.graces:  # a grace between two tied notes is struck: the tie breaks
            for symbol, token, _ in members:
                if isinstance(symbol, Note) and (symbol.pitch, t) in self.waiting:
                    self.links[self.waiting.pop((symbol.pitch, t))] = token
        self.waiting = {k: v for k, v in self.waiting.items() if k[1] > t}
        for symbol, token, tie in members:
            if tie >= 0:
                self.waiting[(symbol.pitch, t + symbol.duration)] = token
        self.raw.append((t, members, self.graces))
        self.graces = []
        self.ends += [t + symbol.duration for symbol, _, _ in members]
        self.time = min(e for e in self.ends if e > t)
        self.ends = [e for e in self.ends if e > self.time]

    def finish(self) -> Layout:
        self._close()
        events = []
        for raw in self.raw:
            if isinstance(raw, Event):
                events.append(raw)
                continue
            onset, members, graces = raw
            group = Group(tuple(Member(s, k, tie, self.links.get(k, -1)) for s, k, tie in members),
                          tuple(tuple(Member(s, k) for s, k, _ in g) for g in graces))
            events.append(Event(onset, members[0][1], group))
        return Layout(tuple(events), max([self.time, *self.ends]))


# Voices: derived from the rhythm -------------------------------------------------------------

def voices(events: Sequence[Event]) -> dict[int, int]:
    """Member token -> voice (1, 2, ...), so that each voice's chords follow one another.

    The notes of a group that share a duration are one chord in one voice; each rest is a
    voice of its own. Higher chords take lower voice numbers; a voice that ends exactly at the
    onset is preferred, then one that ended earlier, then a new one. Graces take the voice of
    the first chord after them.
    """
    ends: list[float] = []  # ends[v - 1]: where voice v's last chord ends
    out: dict[int, int] = {}
    for event in events:
        item = event.item
        if isinstance(item, MultiRest):
            ends = [0.0] * len(ends)
        if not isinstance(item, Group):
            continue
        first = 0
        for chord in chords(item):
            voice = _free_voice(ends, event.onset)
            ends[voice - 1] = event.onset + chord[0].duration
            out.update({m.token: voice for m in chord})
            first = first or voice
        out.update({m.token: first for g in item.graces for m in g})
    return out


def chords(group: Group) -> list[list[Member]]:
    """A group's chords, as voices() sees them: notes by duration (and fermata: a fermata sits
    on a whole chord), highest chord first, then each rest alone."""
    by_length: dict[tuple[float, bool], list[Member]] = {}
    for m in group.notes:
        by_length.setdefault((m.duration, m.symbol.fermata), []).append(m)
    chords = sorted(by_length.values(), key=lambda c: (-max(m.symbol.pitch for m in c),
                                                        c[0].duration))
    return chords + [[m] for m in group.members if isinstance(m.symbol, Rest)]


def _free_voice(ends: list[float], onset: float) -> int:
    exact = [v for v, end in enumerate(ends, 1) if end == onset]
    idle = [v for v, end in enumerate(ends, 1) if end <= onset]
    if exact or idle:
        return (exact or idle)[0]
    ends.append(onset)
    return len(ends)


# Playing: the notes a staff sounds ------------------------------------------------------------

@dataclass(frozen=True)
class StaffNote:
    """A note as played (tied notes merged), with the voice it is written in on its staff."""

    pitch: int
    onset: float  # quarter notes
    duration: float
    voice: int = 1


def play(tokens: Sequence[str], placed: Layout | None = None) -> list[StaffNote]:
    """The notes of one staff in onset order, ties merged, graces before their note, voiced."""
    return [note for note, _ in play_placed(placed or layout(tokens))]


def play_placed(placed: Layout, clock: Callable[[Event], float] | None = None
                ) -> list[tuple[StaffNote, int]]:
    """`play`, each note with the token of the group it starts in; `clock` moves a group's
    onset (omr.parts puts the staves of a system in step measure by measure)."""
    voice = voices(placed.events)
    notes: list[tuple[StaffNote, int]] = []
    heads: dict[int, int] = {}  # token of a tie's continuation -> index in `notes` of its head
    for event in placed.events:
        if isinstance(event.item, Group):
            onset = clock(event) if clock else event.onset
            _sound(onset, event.token, event.item, voice, notes, heads)
    return notes


def _sound(onset: float, token: int, group: Group, voice: dict[int, int],
           notes: list[tuple[StaffNote, int]], heads: dict[int, int]) -> None:
    sounding = group.notes
    if not sounding:
        return  # graces before a rest are not played (nothing to steal their time from)
    steal = 0.0
    if group.graces:
        # Every grace lasts GRACE_DURATION, capped so that the graces take at most half of the
        # shortest note after them; those notes start later and end on time.
        each = min(GRACE_DURATION, min(m.duration for m in sounding) / 2.0 / len(group.graces))
        for k, graces in enumerate(group.graces):
            notes += [(StaffNote(m.symbol.pitch, onset + k * each, each, voice.get(m.token, 1)),
                       token) for m in graces]
        steal = each * len(group.graces)
    for m in sounding:
        if m.token in heads:
            index = heads.pop(m.token)
            head, at = notes[index]
            notes[index] = (StaffNote(head.pitch, head.onset, onset + m.duration - head.onset,
                                      head.voice), at)
        else:
            index = len(notes)
            notes.append((StaffNote(m.symbol.pitch, onset + steal, m.duration - steal,
                                    voice.get(m.token, 1)), token))
        if m.tied_to >= 0:
            heads[m.tied_to] = index


def timeline(tokens: Sequence[str]) -> tuple[list[NoteEvent], list[MetaEvent], float]:
    """Notes, key/time signature events and the total length (quarter notes) of `tokens`."""
    placed = layout(tokens)
    notes = [NoteEvent(n.pitch, n.onset, n.duration) for n in play(tokens, placed)]
    metas = [MetaEvent(e.onset, e.item) for e in placed.events
             if isinstance(e.item, (KeySignature, TimeSignature))]
    return notes, metas, placed.length


def notes_from_tokens(tokens: Sequence[str]) -> list[NoteEvent]:
    """The notes a token sequence plays, tied notes merged, onsets in quarter notes."""
    return timeline(tokens)[0]


# Repair: keep what can be played --------------------------------------------------------------

def repair(tokens: Sequence[str], open_end: bool = False) -> list[str]:
    """Keep what can be played: drop unknown tokens, stray `|`, ties and graces, a note written
    twice in one group, double barlines; put every group in the canonical order.

    A `|` survives only between two notes or rests (or two graces). A tie survives only when it
    ties its note to a note of the same pitch that starts where the first ends (barlines and
    signature changes may sit between them). With `open_end`, a tie whose note ends the staff
    is kept: the next staff of the page may continue it.
    """
    kept = _clean_joins([t for t in tokens if parse_token(t) is not None])
    placed = layout(kept)
    ties = {m.tie: (e.onset, m) for e in placed.events if isinstance(e.item, Group)
            for m in e.item.members if m.tie >= 0}
    out: list[str] = []
    for i, token in enumerate(kept):
        symbol = parse_token(token)
        if isinstance(symbol, Tie) and not _tie_kept(kept, i, ties.get(i), placed, open_end):
            continue
        if isinstance(symbol, Note) and symbol.grace and not _sounds_after(kept, i):
            continue
        if isinstance(symbol, Barline) and (not out or out[-1] == "barline"):
            continue
        out.append(token)
    return canonical(_clean_joins(out))


def _tie_kept(kept: list[str], i: int, tied: tuple[float, Member] | None, placed: Layout,
              open_end: bool) -> bool:
    if tied is None:
        return False  # not directly after a note, or a second tie
    onset, member = tied
    if member.tied_to >= 0:
        return True
    return open_end and onset + member.duration >= placed.length and not any(
        isinstance(s, (Clef, KeySignature, TimeSignature, MultiRest)) or _is_grace(s)
        for s in map(parse_token, kept[i + 1:]))


def _sounds_after(kept: list[str], i: int) -> bool:
    """A note, rest or multirest (not a grace) comes after position i."""
    return any(isinstance(s, (Note, Rest, MultiRest)) and not _is_grace(s)
               for s in map(parse_token, kept[i + 1:]))


def _is_grace(symbol: object) -> bool:
    return isinstance(symbol, Note) and symbol.grace


def _is_member(symbol: object) -> bool:
    return isinstance(symbol, (Note, Rest))


def _clean_joins(tokens: list[str]) -> list[str]:
    """Drop a `|` that does not stand between two members of one kind, and a note that
    repeats a note of its group (with its ties and the `|` before it); two voices' rests stay."""
    out: list[str] = []
    group: set[str] = set()  # the tokens of the group being read
    skipping = False  # the ties of a dropped member go with it
    for i, token in enumerate(tokens):
        symbol = parse_token(token)
        if isinstance(symbol, Join):
            before = next((parse_token(t) for t in reversed(out) if t != "tie"), None)
            after = parse_token(tokens[i + 1]) if i + 1 < len(tokens) else None
            if (out and out[-1] != JOIN and _is_member(before) and _is_member(after)
                    and _is_grace(before) == _is_grace(after)):
                out.append(token)
            continue
        if isinstance(symbol, Tie):
            if not skipping:
                out.append(token)
            continue
        skipping = False
        if _is_member(symbol):
            if not (out and out[-1] == JOIN):
                group = set()
            elif token in group and isinstance(symbol, Note):
                out.pop()
                skipping = True
                continue
            group.add(token)
        else:
            group = set()
        out.append(token)
    return out


def canonical(tokens: Sequence[str]) -> list[str]:
    """Each group in the canonical order: notes from the lowest pitch up, then rests, each
    member with its `tie`. A group that holds anything else between its members is left as it
    is."""
    out = list(tokens)
    placed = [e.item for e in layout(tokens).events if isinstance(e.item, Group)]
    groups = [g.members for g in placed] + [run for g in placed for run in g.graces]
    for members in groups:
        if len(members) < 2:
            continue
        spans = [[m.token] + ([m.tie] if m.tie >= 0 else []) for m in members]
        first, last = members[0].token, max(spans[-1])
        if last - first + 1 != sum(map(len, spans)) + len(members) - 1:
            continue  # stray ties or repeated joins inside: not a group in the grammar's form
        ordered = sorted(zip(members, spans), key=lambda p: member_order(p[0].symbol))
        body: list[str] = []
        for k, (_, span) in enumerate(ordered):
            body += ([JOIN] if k else []) + [tokens[j] for j in span]
        out[first:last + 1] = body
    return out


def member_order(symbol: Symbol | None) -> tuple:
    """The canonical order of a group: notes from the lowest pitch up, then rests."""
    if isinstance(symbol, Note):
        return (0, symbol.pitch, symbol.duration, symbol.step)
    return (1, 0, symbol.duration if isinstance(symbol, Rest) else 0.0, "")


# Writing: the tokens of notes placed in time -----------------------------------------------

@dataclass(frozen=True)
class Placed:
    """A token to write at a time (quarter notes): a note or rest (with the tie after it), a
    grace (at the onset of the note it precedes; `joined` to the grace before it makes a grace
    chord) or a token that takes no time (barline, clef, signatures: they go before the group
    that starts with them, in the order given)."""

    onset: float
    token: str
    tie: bool = False
    joined: bool = False
    length: float = 0.0  # a multirest's, in quarter notes (its token does not say)


def write(placed: Iterable[Placed], length: float = 0.0) -> list[str]:
    """The staff label of notes placed in time: groups in canonical order, and a rest wherever
    the time rule needs one to reach the next onset (a voice that falls silent, a measure
    that starts late or ends early). With `length`, the label lasts at least that long."""
    groups: dict[float, list[Placed]] = {}
    graces: dict[float, list[list[Placed]]] = {}
    marks: dict[float, list[str]] = {}
    for p in placed:
        symbol = parse_token(p.token)
        if _is_grace(symbol):
            runs = graces.setdefault(p.onset, [])
            if p.joined and runs:
                runs[-1].append(p)
            else:
                runs.append([p])
        elif _is_member(symbol) or isinstance(symbol, MultiRest):
            groups.setdefault(p.onset, []).append(p)
        elif symbol is not None:
            marks.setdefault(p.onset, []).append(p.token)
    targets = sorted(set(groups) | set(marks) | ({length} if length > 0 else set()))
    out: list[str] = []
    for onset, members in _fill(groups, targets):
        out += marks.pop(onset, [])
        for run in graces.pop(onset, []):
            out += _group_tokens(run)
        out += _group_tokens(members)
    for onset in sorted(marks):  # after the last sound (a final barline)
        out += marks[onset]
    return out


def _fill(groups: dict[float, list[Placed]], targets: list[float]) -> list[tuple[float, list]]:
    """Groups at every onset the time rule reaches, a rest added where it would overshoot."""
    out = []
    time, ends = 0.0, []
    while True:
        members = list(groups.get(time, []))
        later = [t for t in targets if t > time]
        reach = [e for e in ends + [time + _length(p) for p in members] if e > time]
        if later and (not members or min(reach, default=later[0] + 1) > later[0]):
            rest = _rest_within(later[0] - time)
            if rest is None:  # a gap no rest can fill (tuplets): jump, out of step
                time, ends = later[0], [e for e in reach if e > later[0]]
                out.append((time, []))
                continue
            members.append(Placed(time, rest))
            reach.append(time + _length(members[-1]))
        out.append((time, members))
        if not reach:
            return out
        ends, time = reach, min(reach)
        ends = [e for e in ends if e > time]
        if not later and not groups.keys() - {t for t, _ in out} and not ends:
            return out


def _length(p: Placed) -> float:
    symbol = parse_token(p.token)
    return symbol.duration if isinstance(symbol, (Note, Rest)) else p.length


def _rest_within(gap: float) -> str | None:
    """The longest rest token no longer than `gap` quarter notes (None when gap < a 128th)."""
    best = None
    for kind, base in DURATIONS.items():
        for dots, factor in DOT_FACTOR.items():
            if base * factor <= gap + 1e-9 and (best is None or base * factor > best[0]):
                best = (base * factor, f"rest-{kind}{'.' * dots}")
    return best[1] if best else None


def _group_tokens(members: list[Placed]) -> list[str]:
    """One group in canonical order, each note once (a unison of two voices is one note; two
    voices' rests are two rests)."""
    ties: dict[str, bool] = {}
    rests: list[str] = []
    for p in members:
        if isinstance(parse_token(p.token), Note):
            ties[p.token] = ties.get(p.token, False) or p.tie
        else:
            rests.append(p.token)
    ordered = sorted(list(ties) + rests, key=lambda t: member_order(parse_token(t)))
    out: list[str] = []
    for k, token in enumerate(ordered):
        out += ([JOIN] if k else []) + [token] + (["tie"] if ties.get(token) else [])
    return out


def placed_tokens(tokens: Sequence[str]) -> list[Placed]:
    """`write`'s input for a staff label: write(placed_tokens(t)) == t for a canonical label."""
    out = []
    measure = 4.0
    for e in layout(tokens).events:
        if isinstance(e.item, TimeSignature):
            measure = e.item.measure
        if isinstance(e.item, MultiRest):
            out.append(Placed(e.onset, tokens[e.token], length=e.item.measures * measure))
        elif isinstance(e.item, Group):
            for run in e.item.graces:
                out += [Placed(e.onset, tokens[m.token], joined=k > 0) for k, m in enumerate(run)]
            out += [Placed(e.onset, tokens[m.token], m.tie >= 0) for m in e.item.members]
        else:
            out.append(Placed(e.onset, tokens[e.token]))
    return out


def note_token(note: Note) -> str:
    """The token that spells `note` (inverse of parse_token for notes)."""
    acc = {v: k for k, v in ALTERS.items()}[note.alter]
    head = "gracenote" if note.grace else "note"
    tail = "_fermata" if note.fermata else ""
    return f"{head}-{note.step}{acc}{note.octave}_{note.kind}{'.' * note.dots}{tail}"
