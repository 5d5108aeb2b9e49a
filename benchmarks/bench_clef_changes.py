"""Notes after a clef change inside a staff: how many a model reads at the wrong height, and how
many omr.clef.after_changes puts right, for a grid of its two thresholds (FAR, NEAR).

    python benchmarks/bench_clef_changes.py data/poly5 [--split val] [--model tromr]

The staves are those of FOLDER's split whose truth changes clef (`omr-synth --poly` engraves
them); each is read once, the network's best path and metre check (the moving turned off), and
the rule is then run on what it read. Then the clefs read inside a staff, and their
probabilities: on those staves, and on melodies, which never change clef (SURE_CHANGE). A note counts as wrong when its letter and octave are
not the truth's (the note it is aligned with by the SER's edit script), before any change of
clef and after one; SER is over those staves alone.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

GRID = ((None, None), (9, 6), (10, 6), (10, 7), (11, 7), (10, 8), (8, 6))


def aligned(pred: list[str], ref: list[str]) -> list[tuple[int, int]]:
    """(reference index, prediction index) of the tokens a shortest edit script keeps or misreads."""
    from omr_train.metrics import _edit_costs

    d = _edit_costs(ref, pred)
    out, i, j = [], len(ref), len(pred)
    while i and j:
        if d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != pred[j - 1]):
            out.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif d[i][j] == d[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return out[::-1]


def staff_position(token: str) -> int | None:
    """A note's letter and octave as diatonic steps from C0 (None for anything else)."""
    from omr import semantic as sem
    from omr.clef import diatonic_step

    note = sem.parse_token(token)
    return diatonic_step(note) if isinstance(note, sem.Note) else None


def after_a_change(ref: list[str]) -> list[bool]:
    """For each reference token: is a clef other than the staff's first in force?"""
    first = current = None
    out = []
    for token in ref:
        if token.startswith("clef-"):
            current = token
            first = first or token
        out.append(current != first)
    return out


def tally(rows: list[tuple[list[str], list[str]]]) -> Counter:
    from omr_train.metrics import staff_edits

    c: Counter = Counter()
    for pred, ref in rows:
        edits, tokens = staff_edits(pred, ref)
        c["edits"] += edits
        c["tokens"] += tokens
        after = after_a_change(ref)
        for i, j in aligned(pred, ref):
            a, b = staff_position(ref[i]), staff_position(pred[j])
            if a is not None and b is not None:
                where = "after" if after[i] else "before"
                c[where] += 1
                c[where + " wrong"] += a != b
    return c


def readings(model: str, folder: Path, split: str, augment: float, limit: int, changing: bool):
    """(tokens as decoded without moving, rhythm probabilities, truth) for the staves of a
    synthetic folder's split whose truth changes clef (`changing`) or all of them."""
    from omr.decode import DecodeOptions
    from omr.readers import AutoregressiveReader, decoded_reading
    from omr.recognize import Recognizer
    from omr_train.dataset import read_folder
    from omr_train.evaluate import EvalOptions, model_view

    rec = Recognizer(model, decoding=DecodeOptions(clef_changes=False))
    if not isinstance(rec.reader, AutoregressiveReader):
        raise SystemExit(f"{model} is not an autoregressive model (TrOMR's ONNX export)")
    staves = read_folder(folder, split=split)[:limit or None]
    chosen = [(k, s) for k, s in enumerate(staves)
              if not changing or sum(t.startswith("clef-") for t in s.tokens) > 1]
    opt, out = EvalOptions(augment=augment), []
    for start in range(0, len(chosen), opt.batch_size):
        chunk = chosen[start:start + opt.batch_size]
        crops = [model_view(s, rec.info.input_height, True, opt, k, rec.info.staff_fraction)
                 for k, s in chunk]
        for (_, s), r in zip(chunk, rec.reader.readings(crops)):
            read = decoded_reading(r, rec.reader.seq2seq.vocab, rec.decoding).tokens
            out.append((read, r.rhythm_probs, list(s.tokens)))
    return out, len(staves)


def inside_clefs(read: list[tuple[list[str], tuple[float, ...], list[str]]]) -> list[float]:
    """The probabilities of the clefs read after a staff's first note or rest."""
    from omr.clef import SOUNDING

    out = []
    for tokens, probs, _ in read:
        first = next((i for i, t in enumerate(tokens) if t.startswith(SOUNDING)), len(tokens))
        out += [probs[i] for i in range(first, len(tokens)) if tokens[i].startswith("clef-")]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="polyphonic staves (omr-synth --poly)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--model", default="tromr", help="tromr or a TrOMR ONNX encoder")
    parser.add_argument("--melodies", type=Path, default=Path("data/synth"),
                        help="monophonic staves (their test split), which never change clef")
    parser.add_argument("--limit", type=int, default=600, help="melody staves per reading")
    args = parser.parse_args()
    from omr import clef

    read, total = readings(args.model, args.folder, args.split, 0.0, 0, True)
    print(f"{len(read)} of {total} {args.split} staves of {args.folder} change clef ({args.model})")
    print("| FAR, NEAR | notes wrong before a change | after a change | SER of these staves |")
    print("|---|---:|---:|---:|")
    sure = clef.SURE_CHANGE
    for far, near in GRID:
        if far is None:
            rows, name = [(t, r) for t, _, r in read], "not moved"
        else:
            clef.FAR, clef.NEAR = far, near
            rows, name = [(clef.after_changes(t, p), r) for t, p, r in read], f"{far}, {near}"
        c = tally(rows)
        print(f"| {name} | {c['before wrong']} / {c['before']} "
              f"({100 * c['before wrong'] / max(1, c['before']):.1f} %) "
              f"| {c['after wrong']} / {c['after']} ({100 * c['after wrong'] / max(1, c['after']):.1f} %) "
              f"| {100 * c['edits'] / max(1, c['tokens']):.2f} % |")
    true = inside_clefs(read)
    print(f"clefs read inside these staves: {len(true)}, {sum(p < sure for p in true)} below "
          f"SURE_CHANGE {sure} (5th percentile {np.percentile(true, 5):.3f})" if true else "")
    if args.melodies.exists():
        for augment in (0.0, 1.0):
            mel, n = readings(args.model, args.melodies, "test", augment, args.limit, False)
            false = inside_clefs(mel)
            print(f"clefs read inside {n and len(mel)} melody staves of {args.melodies} (augment "
                  f"{augment}): {len(false)}, at {', '.join(f'{p:.2f}' for p in sorted(false))}; "
                  f"{sum(p < sure for p in false)} below SURE_CHANGE")


if __name__ == "__main__":
    main()
