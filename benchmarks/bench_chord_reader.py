"""Where the default keeps TrOMR's reading of a staff, and whether that is where chords and clef
changes are printed: both packaged models read the same staves of bench_models' sets, and each
set's staves are counted (chords and clef changes printed, read by TrOMR, read where none is
printed) and scored under each rule for picking a staff's reading.

    python benchmarks/bench_chord_reader.py [--limit 600] [--sets TEXT]

Rules: the CRNN's reading, TrOMR's, the default (TrOMR's where the staff shares its system with
another, or where omr.recognize.needs_chord_reader), "chords" (the default until the eighth
session: TrOMR's only where it reads a chord or a clef change), and "metre": "chords", or else
whichever reading has fewer measures that do not add up (tried for the default and dropped:
ahead on chords, behind on melodies). Each set's staves are also split by their system's size
(one staff, or shared) and by whether TrOMR reads a chord or clef change, each group's SER
with either model.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import replace

from bench_models import ROOT, SETS

MODELS = ROOT / "runtime" / "models"


def broken_measures(tokens: list[str]) -> int:
    """Complete measures whose length is not the staff's commonest (or not its signature's)."""
    from omr import semantic as sem
    from omr.decode import complete_measures, fits

    measures = complete_measures([sem.parse_token(t) for t in tokens], unmetred=True)
    lengths = [round(sem.layout(tokens[a:b]).length, 6) for a, b, _ in measures]
    if not lengths:
        return 0
    usual = Counter(lengths).most_common(1)[0][0]
    return sum(x != usual or (ts is not None and not fits(x, ts))
               for x, (_, _, ts) in zip(lengths, measures))


def clef_change(tokens: list[str]) -> bool:
    from omr.clef import SOUNDING

    first = next((i for i, t in enumerate(tokens) if t.startswith(SOUNDING)), len(tokens))
    return any(t.startswith("clef-") for t in tokens[first:])


def groups(rows: list[tuple[dict, dict]]) -> str:
    """SER of each model on the staves of each kind: alone in their system or sharing it, and
    with or without a chord or clef change in TrOMR's reading."""
    from omr.recognize import needs_chord_reader

    out = []
    for sh in (False, True):
        for chord in (False, True):
            sel = [(c, t) for c, t in rows
                   if t["shared"] == sh and needs_chord_reader(t["prediction"]) == chord]
            if sel:
                n = sum(t["tokens"] for _, t in sel)
                crnn, tromr = (100 * sum(x[i]["edits"] for x in sel) / n for i in (0, 1))
                out.append(f"{'shared' if sh else 'alone'}, {'chord/clef' if chord else 'plain'} "
                           f"({len(sel)}): CRNN {crnn:.2f} / TrOMR {tromr:.2f} %")
    return "; ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--sets", default="")
    args = parser.parse_args()
    from omr.recognize import needs_chord_reader
    from omr.vocab import CHORD
    from omr_train.evaluate import EvalOptions, evaluate, load_any, staves_of
    from omr_train.metrics import staff_edits

    crnn, tromr = load_any(MODELS / "crnn.onnx"), load_any(MODELS / "tromr.onnx")
    rules = {"crnn": lambda c, t, shared: c, "tromr": lambda c, t, shared: t,
             "default": lambda c, t, shared: t if shared or needs_chord_reader(t) else c,
             "chords": lambda c, t, shared: t if needs_chord_reader(t) else c,
             "metre": lambda c, t, shared: t if needs_chord_reader(t)
             or broken_measures(t) < broken_measures(c) else c}
    for test in SETS:
        if args.sets not in test.name or not test.folder.exists():
            continue
        opt = replace(EvalOptions(), **test.options, limit=args.limit if test.synthetic else 0)
        samples, synthetic = staves_of(test.folder, opt)
        rows = list(zip(evaluate(crnn, samples, synthetic, opt)[1],
                        evaluate(tromr, samples, synthetic, opt)[1]))
        refs = [c["reference"] for c, _ in rows]
        reads = [t["prediction"] for _, t in rows]
        line = [f"{test.name} ({len(rows)}):"]
        for name, printed in (("chords", lambda x: CHORD in x), ("clef changes", clef_change)):
            hit = sum(printed(r) and printed(p) for r, p in zip(refs, reads))
            false = sum(printed(p) and not printed(r) for r, p in zip(refs, reads))
            line.append(f"{name} printed on {sum(map(printed, refs))}, read on {hit} of them "
                        f"and on {false} others;")
        scores = []
        for name, rule in rules.items():
            edits = [staff_edits(rule(c["prediction"], t["prediction"], t["shared"]),
                                 c["reference"], opt.drop_tie) for c, t in rows]
            scores.append(f"{name} {100 * sum(e for e, _ in edits) / sum(n for _, n in edits):.2f} %")
        print(" ".join(line), "SER:", ", ".join(scores), flush=True)
        print("   ", groups(rows), flush=True)


if __name__ == "__main__":
    main()
