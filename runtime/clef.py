"""A staff whose clef the network cannot see, read again with a treble clef painted before it.

Every pitch on a staff is read through its clef. When the clef is smeared or cut off by the
photo, the network guesses one from what is left, and reads some notes through that guess and
some through others, so naming a clef afterwards cannot put the pitches right. Painting a clef
it can see before the staff does: it then reads every note through that clef. G2 is the one
painted because it is the commonest clef, and a better guess than the network's own: on the
synthetic test with every staff's start damaged (`omr-eval ... --augment 1 --damaged-start 1`),
of the 256 clefs read below CLEF_DOUBT the network named 78 right, where G2 was right for 122
(and G2 is commoner in real music than in that set). Where the staff's own clef is visible
after all, the network reads it after the painted one, and that reading is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from .decode import CLEF_DOUBT, Decoded

PATCH = Path(__file__).parent / "models" / "clef-G2.png"  # omr_train.synth.clef_patch
PATCH_FRACTION = 0.30  # its staff span / its height
PAINTED = "clef-G2"
# The network emits a clef at a frame near the glyph's middle; its ink goes on past that frame.
BARE_SPACES = 2.0
SOUNDING = ("note-", "rest-", "multirest-")  # the tokens that take time


@cache
def _patch() -> np.ndarray:
    patch = cv2.imread(str(PATCH), cv2.IMREAD_GRAYSCALE)
    if patch is None:
        raise FileNotFoundError(f"clef patch missing: {PATCH}")
    return patch


def painted(crop: np.ndarray, fraction: float, clef_end: float = 0.0) -> np.ndarray:
    """`crop` (a staff in the model's layout, its lines spanning `fraction` of the height) with
    the treble clef before it, scaled and centred to the crop's staff. What the network took
    for the clef (the crop's first `clef_end` of its width, Decoded.clef_end) becomes bare
    staff, and BARE_SPACES staff spaces more: left there, a smear reads as a key signature
    after the painted clef."""
    crop = _bare_start(crop, clef_end, BARE_SPACES * fraction * crop.shape[0] / 4)
    patch = _patch()
    height = crop.shape[0]
    scale = fraction * height / (PATCH_FRACTION * patch.shape[0])
    size = (max(1, round(patch.shape[1] * scale)), max(1, round(patch.shape[0] * scale)))
    scaled = cv2.resize(patch, size, interpolation=cv2.INTER_AREA)
    # The ink at the level of the crop's own paper and ink, so that the seam is not an edge.
    paper, ink = float(np.percentile(crop, 90)), float(np.percentile(crop, 1))
    scaled = (ink + (paper - ink) * (scaled.astype(np.float32) / 255.0)).astype(crop.dtype)
    canvas = np.full((height, scaled.shape[1]), paper, crop.dtype)
    top = (scaled.shape[0] - height) // 2  # centre on centre; clip or pad with paper
    src0, dst0 = max(0, top), max(0, -top)
    rows = min(height - dst0, scaled.shape[0] - src0)
    canvas[dst0:dst0 + rows] = scaled[src0:src0 + rows]
    return np.hstack([canvas, crop])


def _bare_start(crop: np.ndarray, clef_end: float, margin: float) -> np.ndarray:
    if clef_end <= 0:
        return crop
    # The median column of a staff is its lines on paper: notes and signs fill few columns.
    bare = np.median(crop, axis=1).astype(crop.dtype)
    end = round(clef_end * crop.shape[1] + margin)
    out = crop.copy()
    out[:, :end] = bare[:, None]
    return out


def reread_doubtful(crops: Sequence[np.ndarray], reads: list[Decoded], fraction: float,
                    read: Callable[[list[np.ndarray]], list[Decoded]]) -> list[Decoded]:
    """`reads`, with each staff whose first clef is read below CLEF_DOUBT read again with the
    treble clef painted before it (`read` decodes a batch of crops)."""
    doubtful = [k for k, r in enumerate(reads) if r.clef_confidence < CLEF_DOUBT]
    if not doubtful:
        return reads
    again = read([painted(crops[k], fraction, reads[k].clef_end) for k in doubtful])
    out = list(reads)
    for k, second in zip(doubtful, again):
        out[k] = _adopt(reads[k], second)
    return out


def _adopt(first: Decoded, second: Decoded) -> Decoded:
    tokens = second.tokens
    if not tokens or tokens[0] != PAINTED:
        return first  # the painted clef itself was not read: nothing to go by
    for token in tokens[1:]:
        if token.startswith("clef-"):  # the staff's own clef, seen after the painted one
            return replace(second, tokens=tokens[1:], clef=first.clef,
                           clef_confidence=first.clef_confidence)
        if token.startswith(SOUNDING):
            break
    return replace(second, clef=first.clef, clef_confidence=first.clef_confidence,
                   clef_assumed=PAINTED)
