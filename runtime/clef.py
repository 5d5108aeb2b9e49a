"""Clefs the network reads wrongly: a staff's first clef it cannot see, read again with a
treble clef painted before it (`reread_doubtful`); notes after a clef change inside a staff,
read through the staff's first clef, moved to where the new clef puts them (`after_changes`).

A staff whose clef the network cannot see. Every pitch on a staff is read through its clef.
When the clef is smeared or cut off by the photo, the network guesses one from what is left,
and reads some notes through that guess and some through others, so naming a clef afterwards
cannot put the pitches right. Painting a clef it can see before the staff does: it then reads
every note through that clef. G2 is the one painted because it is the commonest clef, and a
better guess than the network's own: on the synthetic test with every staff's start damaged
(`omr-eval ... --augment 1 --damaged-start 1`), of the 256 clefs read below CLEF_DOUBT the
network named 78 right, where G2 was right for 122 (and G2 is commoner in real music than in
that set). Where the staff's own clef is visible after all, the network reads it after the
painted one, and that reading is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from . import semantic as sem
from .decode import CLEF_DOUBT, Decoded

PATCH = Path(__file__).parent / "models" / "clef-G2.png"  # omr_train.synth.clef_patch
PATCH_FRACTION = 0.30  # its staff span / its height
PAINTED = "clef-G2"
# The network emits a clef at a frame near the glyph's middle; its ink goes on past that frame.
BARE_SPACES = 2.0
SOUNDING = ("note-", "rest-", "multirest-")  # the tokens that take time
# A note after a clef change is taken to be read through the staff's first clef when, under the
# clef it follows, it would sit at least FAR steps (lines and spaces) from the middle line, more
# than three ledger lines out, and under the first clef at most NEAR, on the staff or a ledger
# line and a half past it. Chosen on the 181 validation staves of data/poly5 that change clef
# (`python benchmarks/bench_clef_changes.py data/poly5 [--model FILE.onnx]`): notes after a
# change read at the wrong height, unmoved / moved, 53.7 / 30.0 % with TrOMR step 18,250 and
# 25.7 / 20.1 % with step 24,000, 18.5 / 16.7 % with step 31,000, 16.2 / 15.3 % with step
# 37,000 (16.8 / 15.8 % with the second look, omr.second_look); the best of the grid for all
# four (10 and 7: 30.6, 22.2, 19.2 and 17.9 %; 9 and 6 moved more right notes than wrong ones
# from step 24,000 on).
FAR, NEAR = 11, 7
# A clef read inside a staff below this probability is taken for a misreading and dropped. It
# is set just above the highest such clef TrOMR reads on the synthetic melodies, which never
# change clef: step 18,250 read 6 on 600 staves clean and 600 photographed, at 0.21-0.61, step
# 24,000 one, at 0.59, step 31,000 one, at 0.37, step 37,000 one, at 0.36; 5 of the 227 clefs
# step 24,000 read on data/poly5's validation staves that do change clef are below it, 6 of 230
# for step 31,000, 6 of 232 for step 37,000 (the same bench; with the second look, none on
# the melodies and 3 of 231 on data/poly5). A true change lost costs every note after it on a
# piano page; a false one kept costs a melody the CRNN's reading.
SURE_CHANGE = 0.65
_CLEF_NOTE = {"G": 4 * 7 + 4, "F": 3 * 7 + 3, "C": 4 * 7}  # the note each sign names, as steps
_LETTERS = "CDEFGAB"


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
            remetre = second.remetre and (lambda n: second.remetre(n)[1:])
            return replace(second, tokens=tokens[1:], clef=first.clef,
                           clef_confidence=first.clef_confidence, remetre=remetre)
        if token.startswith(SOUNDING):
            break
    return replace(second, clef=first.clef, clef_confidence=first.clef_confidence,
                   clef_assumed=PAINTED)


def after_changes(tokens: Sequence[str], probs: Sequence[float] | None = None) -> list[str]:
    """`tokens` with each note after a clef change inside the staff that the network read
    through the staff's first clef (FAR, NEAR) moved to where the clef it follows puts it, and
    each clef inside the staff read below SURE_CHANGE (`probs`, one per token) dropped.

    TrOMR reads the clef change, and then often the notes after it as if it had not: on the
    piano-page test staves that change clef, 44 % of the notes after a change were read wrong,
    most of them by exactly the two clefs' distance, against 3 % before it. Which notes went
    wrong cannot be told from the tokens, but where they land can: far off the staff under the
    new clef, on it under the old one, where a composer who changed clef would not have put
    them. A note's accidental goes with it when it was printed (it differs from the key's), and
    becomes the key's for its new letter when it was the key's (an accidental earlier in the
    measure is not followed). The staff's first clef is the one in force at its first note or
    rest: clefs read before it (a painted clef and the staff's own, omr.clef) are no change."""
    out, first, clef, fifths = [], None, None, 0
    for k, token in enumerate(tokens):
        symbol = sem.parse_token(token)
        if isinstance(symbol, sem.Clef):
            if first and probs is not None and probs[k] < SURE_CHANGE:
                continue
            clef = symbol.sign
        elif isinstance(symbol, sem.KeySignature):
            fifths = symbol.fifths
        elif token.startswith(SOUNDING) and first is None:
            first = clef
        if isinstance(symbol, sem.Note) and first and clef != first:
            token = _moved(symbol, first, clef, fifths) or token
        out.append(token)
    return out


def diatonic_step(note: sem.Note) -> int:
    """A note's letter and octave as steps (lines and spaces) from C0, its accidental aside."""
    return note.octave * 7 + _LETTERS.index(note.step)


def _middle(sign: str) -> int:
    """The middle line of a clef's staff, in diatonic steps from C0."""
    return _CLEF_NOTE[sign[0]] + (3 - int(sign[1])) * 2


def _moved(note: sem.Note, first: str, clef: str, fifths: int) -> str | None:
    step = diatonic_step(note)
    if abs(step - _middle(clef)) < FAR or abs(step - _middle(first)) > NEAR:
        return None
    step += _middle(clef) - _middle(first)
    letter = _LETTERS[step % 7]
    printed = note.alter != sem.key_alter(fifths, note.step)
    alter = note.alter if printed else sem.key_alter(fifths, letter)
    moved = replace(note, step=letter, octave=step // 7, alter=alter)
    return sem.note_token(moved) if 0 <= moved.pitch <= 127 else None
