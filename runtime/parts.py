"""A page's staves as parts: staff j of every system is part j (right hand, left hand).

The staves of one system sound together measure by measure: measure k of every staff of a
system starts at the same time, and lasts as long as the longest of them. So a staff that was
misread (a duration wrong, a note missed) falls back into step at its next barline instead of
drifting against the other hand for the rest of the page. Where every staff read a measure a
little short of the time signature (a note missed, a sixteenth read as a thirty-second), the
measure lasts as the signature says, so that the page keeps its beat and the MIDI file's bars
after it (_played). A part is read as one sequence, its staves one after the other, so a tie at the end
of one staff reaches the next staff's first note.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from . import semantic as sem
from .decode import EPS, PAGE_REACH


@dataclass(frozen=True)
class PageNote:
    """A note as played on the page: onset and duration in quarter notes from the page's start,
    the staff it is written on (0-based, reading order), its part and its voice on that staff."""

    pitch: int
    onset: float
    duration: float
    staff: int
    part: int
    voice: int = 1


@dataclass(frozen=True)
class Measure:
    start: float  # quarter notes from the page's start
    length: float


@dataclass(frozen=True)
class StaffPlan:
    """Where one staff sits: its system, part, tokens and measure bounds in its part's own time
    (bounds[k] starts measure k of its system; the last bound is where the staff ends)."""

    staff: int
    system: int
    part: int
    first_token: int  # where its tokens start in its part's sequence
    bounds: tuple[float, ...]
    metres: tuple[float | None, ...] = ()  # each measure's signed length; None: none signed yet


@dataclass(frozen=True)
class Arrangement:
    notes: tuple[PageNote, ...]  # in onset order
    metas: tuple[tuple[sem.MetaEvent, ...], ...]  # per part, page time
    measures: tuple[tuple[Measure, ...], ...]  # per system
    plans: tuple[StaffPlan, ...]  # per staff, reading order
    sequences: tuple[tuple[str, ...], ...]  # per part: its staves' tokens, one after the other
    layouts: tuple[sem.Layout, ...]  # per part
    length: float

    @property
    def parts(self) -> int:
        return len(self.sequences)

    def page_time(self, plan: StaffPlan, t: float) -> float:
        """A time of `plan`'s part sequence as page time, through the measure it falls in."""
        k = min(max(bisect.bisect_right(plan.bounds, t) - 1, 0),
                len(self.measures[plan.system]) - 1)
        return self.measures[plan.system][k].start + t - plan.bounds[k]


def arrange(systems: Sequence[Sequence[Sequence[str]]], hold: bool = True) -> Arrangement:
    """Systems (each a list of staff labels, top to bottom) to parts aligned measure by measure;
    `hold`: measures read a little short last as their metre says (_played; off: as read, which
    benchmarks/bench_measures.py compares)."""
    parts = max((len(s) for s in systems), default=0)
    sequences: list[list[str]] = [[] for _ in range(parts)]
    starts: list[tuple[int, int, int, int]] = []  # staff, system, part, first token
    for s, system in enumerate(systems):
        for j, tokens in enumerate(system):
            starts.append((len(starts), s, j, len(sequences[j])))
            sequences[j] += tokens
    layouts = [sem.layout(seq) for seq in sequences]
    plans = [StaffPlan(staff, s, j, first, *_bounds(layouts[j], first, _next_first(starts, j, staff)))
             for staff, s, j, first in starts]
    measures = _measures(plans, len(systems), hold)
    arranged = Arrangement((), (), measures, tuple(plans), tuple(map(tuple, sequences)),
                           tuple(layouts), 0.0)
    notes: list[PageNote] = []
    metas = []
    for j in range(parts):
        mine = [p for p in plans if p.part == j]
        notes += _part_notes(arranged, j, mine)
        metas.append(tuple(sem.MetaEvent(arranged.page_time(_plan_of(mine, e.token), e.onset), e.item)
                           for e in layouts[j].events
                           if isinstance(e.item, (sem.KeySignature, sem.TimeSignature))))
    length = max([m.start + m.length for ms in measures for m in ms] +
                 [n.onset + n.duration for n in notes], default=0.0)
    notes.sort(key=lambda n: (n.onset, n.part, n.pitch))
    return Arrangement(tuple(notes), tuple(metas), measures, tuple(plans),
                       tuple(map(tuple, sequences)), tuple(layouts), length)


def shared_rests(system: Sequence[Sequence[str]]) -> list[list[str]]:
    """A system's staves with each multirest that only one of them reads shortened by the
    measures it puts that staff ahead of the others: the staves of a system hold the same
    measures, so a rest of several measures in one hand while the other plays is a misreading
    (TrOMR reads a trill or a mordent and rests so), and left as read it moves every later
    measure of that hand against the other's, to the page's end. A multirest that shares its
    measure with notes or rests cannot be a rest of whole measures, so it goes altogether
    where the staff holds the others' measures without it; one alone between barlines is
    kept to one measure at least."""
    staves = [list(tokens) for tokens in system]
    rests = [_multirests(tokens) for tokens in staves]
    if len(staves) < 2 or not any(rests):  # most systems: no measures to count
        return staves
    counts = [_measure_count(tokens) for tokens in staves]
    for j, tokens in enumerate(staves):
        if any(rests[i] for i in range(len(staves)) if i != j):
            continue
        others = max(counts[i] for i in range(len(staves)) if i != j)
        for k in reversed(rests[j]):  # from the end, so earlier indices hold
            if _shares_measure(tokens, k):
                kept = tokens[:k] + tokens[k + 1:]
                if _measure_count(kept) >= others:
                    tokens[:] = kept
        excess = _measure_count(tokens) - others
        for k in _multirests(tokens):
            if excess <= 0:
                break
            rest = sem.parse_token(tokens[k])
            cut = min(excess, rest.measures - 1)
            tokens[k] = f"multirest-{rest.measures - cut}"
            excess -= cut
    return staves


def _multirests(tokens: Sequence[str]) -> list[int]:
    return [k for k, t in enumerate(tokens) if isinstance(sem.parse_token(t), sem.MultiRest)]


def _measure_count(tokens: Sequence[str]) -> int:
    return len(arrange([[tokens]]).measures[0])


def _shares_measure(tokens: Sequence[str], k: int) -> bool:
    """Whether a note or rest stands between the multirest at k and the barlines around it."""
    def sounding(t: str) -> bool:
        return isinstance(sem.parse_token(t), (sem.Note, sem.Rest, sem.MultiRest))

    for step in (-1, 1):
        i = k + step
        while 0 <= i < len(tokens) and not isinstance(sem.parse_token(tokens[i]), sem.Barline):
            if sounding(tokens[i]):
                return True
            i += step
    return False


def _next_first(starts: list[tuple[int, int, int, int]], part: int, staff: int) -> int | None:
    return next((first for st, _, j, first in starts if j == part and st > staff), None)


def _bounds(placed: sem.Layout, first: int, end: int | None
            ) -> tuple[tuple[float, ...], tuple[float | None, ...]]:
    """Measure bounds of the staff whose tokens are [first, end) of its part: its start, every
    barline after some sound, a multirest's inner bars, and its end if a barline is not there;
    and the length the part's time signature gives each measure (None before any)."""
    events = [e for e in placed.events if e.token >= first and (end is None or e.token < end)]
    later = [e for e in placed.events if end is not None and e.token >= end]
    start = events[0].onset if events else (later[0].onset if later else placed.length)
    stop = later[0].onset if later else placed.length
    signed = [e.item.measure for e in placed.events
              if e.token < first and isinstance(e.item, sem.TimeSignature)]
    measure = signed[-1] if signed else None  # a later system keeps its part's signature
    bounds, metres, sounded = [start], [measure], False
    for e in events:
        if isinstance(e.item, sem.TimeSignature):
            measure = e.item.measure
            if not sounded:
                metres[-1] = measure
        elif isinstance(e.item, sem.MultiRest):
            inner = [e.onset + k * (measure or 4.0) for k in range(1, e.item.measures)]
            bounds += inner
            metres += [measure] * len(inner)
            sounded = True
        elif isinstance(e.item, sem.Group):
            sounded = True
        elif isinstance(e.item, sem.Barline) and sounded:
            # A barline with no sound since the last one (right after the clef) starts nothing.
            bounds.append(e.onset)
            metres.append(measure)
            sounded = False
    # Only the ring of a note held over the last barline (a chord read with members of two
    # lengths) after it: no measure starts there.
    if stop > bounds[-1] and sounded:
        return tuple(bounds + [stop]), tuple(metres)
    return tuple(bounds), tuple(metres[:-1])


def _measures(plans: list[StaffPlan], systems: int, hold: bool = True
              ) -> tuple[tuple[Measure, ...], ...]:
    """Each system's measures: measure k lasts as long as the longest staff's measure k, or, where
    that was read a little short of the part's time signature and the part's measures bear the
    signature out, as the signature says (_played)."""
    trusted = _trusted_metres(plans) if hold else set()
    rows = [[p for p in plans if p.system == s] for s in range(systems)]
    read = [_read_lengths(mine) for mine in rows]
    out, start = [], 0.0
    for s, mine in enumerate(rows):
        row = []
        for k, length in enumerate(read[s] or [0.0]):
            metre = max((p.metres[k] for p in mine if k < len(p.metres)
                         and (p.part, p.metres[k]) in trusted), default=None)
            if metre is not None:
                length = _played(s, k, read, metre)
            row.append(Measure(start, length))
            start += length
        out.append(tuple(row))
    return tuple(out)


def held(arranged: Arrangement) -> list[tuple[int, int, float, float]]:
    """(system, measure, length read, length played) of each measure held to its metre."""
    out = []
    for s, row in enumerate(arranged.measures):
        read = _read_lengths([p for p in arranged.plans if p.system == s])
        out += [(s, k, x, m.length) for k, (x, m) in enumerate(zip(read, row))
                if abs(m.length - x) > EPS]
    return out


def _read_lengths(staves: list[StaffPlan]) -> list[float]:
    count = max((len(p.bounds) - 1 for p in staves), default=0)
    return [max((p.bounds[k + 1] - p.bounds[k] for p in staves if k + 1 < len(p.bounds)),
                default=0.0) for k in range(count)]


def _played(s: int, k: int, read: list[list[float]], metre: float) -> float:
    """How long measure k of system s lasts as played, read `read[s][k]` under a signature of
    `metre`. A measure read a little short of its metre (a note missed, a sixteenth read as a
    thirty-second) is a misreading, not a shorter measure: held to its metre, the part keeps
    the beat after it, in step with the bars of the MIDI file, instead of running early to the
    page's end (MusicXML fills it with an invisible rest). A measure read long keeps its length:
    its notes are all there to be played, and MusicXML can only show it overfull. Measures
    read short keep their length too where they were more likely printed so: more than a
    quarter short (decode.PAGE_REACH), as an upbeat mostly is (the 8 of camera-primus's 100
    incipits that open with one: 1/8 to 2/3 of their measure); a system's last and the next
    one's first that make one measure together (old music breaks measures over a system's end);
    the page's last (which completes an upbeat)."""
    length, last = read[s][k], len(read) - 1
    if length >= metre or length < (1 - PAGE_REACH) * metre - EPS:
        return length
    if (s, k) == (last, len(read[last]) - 1):
        return length
    if k == 0 and s and read[s - 1] and abs(read[s - 1][-1] + length - metre) <= EPS:
        return length
    if k == len(read[s]) - 1 and s < last and read[s + 1] and \
            abs(read[s + 1][0] + length - metre) <= EPS:
        return length
    return metre


def _trusted_metres(plans: list[StaffPlan]) -> set[tuple[int, float]]:
    """(part, length) of each signature that at least as many of the part's measures read as
    any other length: a signature misread (4/4 on a page in 3/4) would otherwise add a rest
    to every measure."""
    counts: dict[tuple[int, float], Counter] = {}
    for p in plans:
        for k, metre in enumerate(p.metres):
            if metre is not None:  # the first and last measures bear it out too
                length = round((p.bounds[k + 1] - p.bounds[k]) * 1024) / 1024
                counts.setdefault((p.part, metre), Counter())[length] += 1
    return {key for key, seen in counts.items()
            if seen[key[1]] and seen[key[1]] >= max(seen.values())}


def _plan_of(plans: list[StaffPlan], token: int) -> StaffPlan:
    firsts = [p.first_token for p in plans]
    return plans[max(bisect.bisect_right(firsts, token) - 1, 0)]


def _part_notes(arranged: Arrangement, part: int, plans: list[StaffPlan]) -> list[PageNote]:
    placed = arranged.layouts[part]
    # The voices and ties of the part's sequence, each staff's times mapped through its measures.
    staff_of = {e.token: _plan_of(plans, e.token) for e in placed.events}
    out = []
    for note, token in sem.play_placed(placed, lambda e: arranged.page_time(staff_of[e.token],
                                                                            e.onset)):
        plan = staff_of[token]
        out.append(PageNote(note.pitch, note.onset, note.duration, plan.staff, part, note.voice))
    return out


def page_notes(systems: Sequence[Sequence[Sequence[str]]]) -> list[sem.NoteEvent]:
    """The notes of the page as (pitch, onset, duration), all parts together."""
    return [sem.NoteEvent(n.pitch, n.onset, n.duration) for n in arrange(systems).notes]
