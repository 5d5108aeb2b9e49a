"""Symbol error rate, the measure of the PrIMuS and TrOMR papers, and a note-level score."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


def _edit_costs(a: Sequence[str], b: Sequence[str]) -> list[list[int]]:
    """costs[i][j]: the edit distance between a[:i] and b[:j] (Levenshtein)."""
    costs = [list(range(len(b) + 1))]
    for i, x in enumerate(a, 1):
        prev, cur = costs[-1], [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        costs.append(cur)
    return costs


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    return _edit_costs(a, b)[-1][-1]


def normalise(tokens: Iterable[str], drop_tie: bool = False) -> list[str]:
    """Scorers drop keySignature-CM on both sides (some datasets write it, PrIMuS does not)."""
    return [t for t in tokens if t != "keySignature-CM" and not (drop_tie and t == "tie")]


@dataclass(frozen=True)
class Score:
    ser: float  # total edit distance / total reference tokens
    sequence_error: float  # fraction of staves with any error
    staves: int
    tokens: int

    def __str__(self) -> str:
        return (f"SER {100 * self.ser:.2f}%  sequence error {100 * self.sequence_error:.1f}%  "
                f"({self.staves} staves, {self.tokens} tokens)")


def score(pairs: Iterable[tuple[Sequence[str], Sequence[str]]], drop_tie: bool = False) -> Score:
    """pairs: (prediction, reference) token sequences."""
    return score_counts([staff_edits(pred, ref, drop_tie) for pred, ref in pairs])


def staff_edits(pred: Sequence[str], ref: Sequence[str], drop_tie: bool = False) -> tuple[int, int]:
    """(edit distance, reference tokens) of one staff, as the SER counts them."""
    r = normalise(ref, drop_tie)
    return edit_distance(normalise(pred, drop_tie), r), len(r)


def score_counts(counts: Sequence[tuple[int, int]]) -> Score:
    dist = sum(d for d, _ in counts)
    toks = sum(n for _, n in counts)
    wrong = sum(d > 0 for d, _ in counts)
    return Score(dist / max(toks, 1), wrong / max(len(counts), 1), len(counts), toks)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float

    def __str__(self) -> str:
        return f"{100 * self.level:.0f}% interval {100 * self.low:.2f}-{100 * self.high:.2f}%"


def ser_interval(counts: Sequence[tuple[int, int]], other: Sequence[tuple[int, int]] | None = None,
                 level: float = 0.95, draws: int = 2000, seed: int = 0) -> Interval:
    """Bootstrap interval of the SER over staves, or of SER - other's SER on the same staves.

    Errors cluster: one misread clef spoils a whole staff. So the unit resampled is the staff,
    not the token, and a difference between two models is resampled in pairs: both models'
    edits on the same drawn staves. A paired interval that holds 0 says the test set cannot
    tell the two apart.
    """
    edits, tokens = np.array(counts, float).reshape(-1, 2).T
    if other is not None:
        theirs, their_tokens = np.array(other, float).reshape(-1, 2).T
        if len(theirs) != len(edits) or (their_tokens != tokens).any():
            raise ValueError("a paired interval needs both models scored on the same staves")
    if not len(edits):
        return Interval(0.0, 0.0, level)
    draw = np.random.default_rng(seed).integers(0, len(edits), (draws, len(edits)))
    total = np.maximum(tokens[draw].sum(axis=1), 1)
    sers = edits[draw].sum(axis=1) / total
    if other is not None:
        sers -= theirs[draw].sum(axis=1) / total
    low, high = np.quantile(sers, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(low), float(high), level)


@dataclass(frozen=True)
class Edit:
    op: str  # "missed" (in the reference, not read), "extra" (read, not there), "misread"
    reference: str  # "" for extra
    prediction: str  # "" for missed


def align(pred: Sequence[str], ref: Sequence[str]) -> list[Edit]:
    """One shortest edit script from ref to pred: len(align(p, r)) == edit_distance(p, r)."""
    n, m = len(ref), len(pred)
    cost = np.array(_edit_costs(ref, pred))
    # Among the shortest scripts, prefer a match, then a misread within one symbol class, then a
    # missed or extra symbol: `tie rest` read as `rest barline` is one tie missed and one
    # barline extra, not two misreads.
    edits, i, j = [], n, m
    while i or j:
        diag = i and j and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != pred[j - 1])
        if diag and (ref[i - 1] == pred[j - 1] or kind(ref[i - 1]) == kind(pred[j - 1])):
            if ref[i - 1] != pred[j - 1]:
                edits.append(Edit("misread", ref[i - 1], pred[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            edits.append(Edit("missed", ref[i - 1], ""))
            i -= 1
        elif j and cost[i, j] == cost[i, j - 1] + 1:
            edits.append(Edit("extra", "", pred[j - 1]))
            j -= 1
        else:
            edits.append(Edit("misread", ref[i - 1], pred[j - 1]))
            i, j = i - 1, j - 1
    return edits[::-1]


def kind(token: str) -> str:
    """The symbol class of a semantic token: `note-F#4_eighth.` -> `note`."""
    return token.split("-", 1)[0]


def error_kind(e: Edit) -> str:
    """What went wrong, in words a reader of the score would use."""
    if e.op != "misread":
        return f"{e.op} {kind(e.reference or e.prediction)}"
    a, b = kind(e.reference), kind(e.prediction)
    if a != b:
        return f"{a} read as {b}"
    if a in ("note", "gracenote"):
        (p1, _, d1), (p2, _, d2) = (t.partition("-")[2].partition("_") for t in (e.reference, e.prediction))
        wrong = [w for w, bad in (("pitch", p1 != p2), ("duration", d1 != d2)) if bad]
        return f"{a} {' and '.join(wrong)}"
    return f"{a} misread"


def error_summary(pairs: Iterable[tuple[Sequence[str], Sequence[str]]],
                  drop_tie: bool = False) -> tuple[Counter, Counter]:
    """Counts of error kinds, and of exact confusions (reference, prediction), over all staves;
    the edits are those the SER counts."""
    kinds, confusions = Counter(), Counter()
    for pred, ref in pairs:
        for e in align(normalise(pred, drop_tie), normalise(ref, drop_tie)):
            kinds[error_kind(e)] += 1
            confusions[(e.reference or "-", e.prediction or "-")] += 1
    return kinds, confusions


# Notes: a score that does not depend on the token format ---------------------------------------

GRID = 1024  # per quarter note: every onset and duration of the notation is a multiple of 1/32


@dataclass(frozen=True)
class NoteScore:
    """Notes matched between a prediction and its truth, exactly: by (onset, pitch), and by
    (onset, pitch, duration). A note matches at most one note (multisets)."""

    predicted: int
    reference: int
    matched: int  # (onset, pitch)
    matched_duration: int  # (onset, pitch, duration)

    def __add__(self, other: NoteScore) -> NoteScore:
        return NoteScore(self.predicted + other.predicted, self.reference + other.reference,
                         self.matched + other.matched,
                         self.matched_duration + other.matched_duration)

    def prf(self, duration: bool = False) -> tuple[float, float, float]:
        """Precision, recall and F1; all 1 when both sides have no notes."""
        hit = self.matched_duration if duration else self.matched
        if not self.predicted and not self.reference:
            return 1.0, 1.0, 1.0
        p, r = hit / max(self.predicted, 1), hit / max(self.reference, 1)
        return p, r, 2 * p * r / (p + r) if p + r else 0.0

    @property
    def f1(self) -> float:
        return self.prf()[2]

    def __str__(self) -> str:
        (p, r, f), (pd, rd, fd) = self.prf(), self.prf(duration=True)
        return (f"onset+pitch P {100 * p:.1f} R {100 * r:.1f} F1 {100 * f:.1f}%, "
                f"+duration P {100 * pd:.1f} R {100 * rd:.1f} F1 {100 * fd:.1f}% "
                f"({self.reference} notes)")


def match_notes(pred: Iterable, ref: Iterable) -> NoteScore:
    """Notes are anything with pitch, onset and duration in quarter notes (omr.semantic.NoteEvent,
    or omr.parts.PageNote, which matches only on its own part).

    The match is exact, on the notation's own grid: mir_eval's transcription metrics would
    match within tolerance windows in seconds, which in score time (every onset a multiple of
    1/32 of a quarter) finds the same pairs, less plainly."""
    def key(n) -> tuple[int, ...]:  # a page's note matches only on its own part
        return getattr(n, "part", 0), round(n.onset * GRID), n.pitch, round(n.duration * GRID)

    return _match(map(key, pred), map(key, ref))


def _match(pred: Iterable[tuple[int, ...]], ref: Iterable[tuple[int, ...]]) -> NoteScore:
    """Multiset match of note keys whose last field is the duration."""
    p, r = Counter(pred), Counter(ref)
    onsets = sum((Counter(k[:-1] for k in p.elements()) & Counter(k[:-1] for k in r.elements()))
                 .values())
    return NoteScore(sum(p.values()), sum(r.values()), onsets, sum((p & r).values()))


def measure_note_score(pred, ref) -> NoteScore:
    """Two arrangements of a page (omr.parts.Arrangement) matched measure by measure: a note's
    onset counts from the start of its own measure, the measures numbered through the page.

    A page's notes are matched on page time by `match_notes`, where one misread duration moves
    every later note of its part, to the page's end, and the page scores as if unread. Here it
    costs its own measure; a lost or an extra barline still shifts what follows it."""
    def keys(arranged) -> list[tuple[int, ...]]:
        starts = [m.start for system in arranged.measures for m in system]
        out = []
        for n in arranged.notes:
            k = max(0, bisect.bisect_right(starts, n.onset + 0.5 / GRID) - 1)
            out.append((n.part, k, round((n.onset - starts[k]) * GRID) if starts else
                        round(n.onset * GRID), n.pitch, round(n.duration * GRID)))
        return out

    return _match(keys(pred), keys(ref))


def staff_note_score(pred: Sequence[str], ref: Sequence[str], drop_tie: bool = False) -> NoteScore:
    """The notes of one staff label against its truth's (ties dropped on both sides with
    `drop_tie`, as the SER drops them), placed as the MIDI and MusicXML writers place them: a
    system of one staff (`system_note_score`), whose measures read a little short of their
    metre last as the metre says (omr.parts)."""
    return system_note_score([pred], [ref], drop_tie)


def system_note_score(pred: Sequence[Sequence[str]], ref: Sequence[Sequence[str]],
                      drop_tie: bool = False, hold: bool = True) -> NoteScore:
    """A system's staves (top to bottom) against its truth's, the staves in step measure by
    measure (omr.parts): a misread staff loses only the notes of the measures it misreads.
    A note matches only a note of the same staff of the system. `hold` as omr.parts.arrange
    takes it."""
    from omr.parts import arrange

    def notes(staves):
        return arrange([[normalise(s, drop_tie) for s in staves]], hold).notes

    return match_notes(notes(pred), notes(ref))


def ctc_greedy(log_probs: np.ndarray, length: int) -> list[int]:
    """Best path over the first `length` frames: the runtime's decoder, so training scores
    exactly what `omr-run` would read."""
    from omr.decode import greedy_decode

    return greedy_decode(log_probs[:length])[0]
