"""Symbol error rate, the measure of the PrIMuS and TrOMR papers."""

from __future__ import annotations

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


def ctc_greedy(log_probs: np.ndarray, length: int) -> list[int]:
    """Best path over the first `length` frames: the runtime's decoder, so training scores
    exactly what `omr-run` would read."""
    from omr.decode import greedy_decode

    return greedy_decode(log_probs[:length])[0]
