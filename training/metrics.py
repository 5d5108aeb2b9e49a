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
    dist = toks = wrong = n = 0
    for pred, ref in pairs:
        p, r = normalise(pred, drop_tie), normalise(ref, drop_tie)
        d = edit_distance(p, r)
        dist += d
        toks += len(r)
        wrong += d > 0
        n += 1
    return Score(dist / max(toks, 1), wrong / max(n, 1), n, toks)


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
