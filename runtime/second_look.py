"""A second look at the staves TrOMR was unsure of: each is read again moved a few pixels up and
a few down, and the likeliest of its readings kept.

A transformer reads a staff through fixed patches, so where the patch rows fall across the
staff lines decides some of what it reads. A staff shifted by a fraction of a staff space is
the same music seen through other patch rows; where the first reading was unsure, one of the
shifted ones is often surer, and then more often right. The decoder's own mean log-probability
per token picks among them, so no truth is needed. Staves it read confidently are not read
again, which keeps the cost to the doubtful ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .autoregressive import Reading


def shifted(crop: np.ndarray, dy: int) -> np.ndarray:
    """The crop moved dy rows down (up when negative), the rows it uncovers paper white."""
    out = np.full_like(crop, 255)
    if dy > 0:
        out[dy:] = crop[:-dy]
    elif dy < 0:
        out[:dy] = crop[-dy:]
    else:
        out[:] = crop
    return out


def second_look(read: Callable[[Sequence[np.ndarray]], list[Reading]],
                crops: Sequence[np.ndarray], below: float, shifts: Sequence[int],
                look: Callable[[int, Reading], bool] | None = None) -> list[Reading]:
    """`read`'s readings of the crops; for each one whose mean log-probability per token is
    under `below` (and that `look` allows, given its index and first reading; None: all), the
    likeliest of it and its readings shifted by each of `shifts` rows. The shifted crops of all
    doubtful staves are read as one batch."""
    first = read(crops)
    doubtful = [k for k, r in enumerate(first)
                if r.logprob < below and (look is None or look(k, r))]
    if not doubtful or not shifts:
        return first
    again = read([shifted(crops[k], dy) for dy in shifts for k in doubtful])
    best = list(first)
    for j, reading in enumerate(again):
        k = doubtful[j % len(doubtful)]
        if reading.logprob > best[k].logprob:
            best[k] = reading
    return best
