"""Symbol error rate, the measure of the PrIMuS and TrOMR papers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


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


def ctc_greedy(log_probs: np.ndarray, length: int) -> list[int]:
    """Best path over the first `length` frames: the runtime's decoder, so training scores
    exactly what `omr-run` would read."""
    from omr.decode import greedy_decode

    return greedy_decode(log_probs[:length])[0]
