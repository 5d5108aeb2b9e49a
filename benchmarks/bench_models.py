"""The project's models side by side on the same staves of every test set: SER, note F1, and
whether the difference is more than each set's noise.

    python benchmarks/bench_models.py MODEL [MODEL ...] [--limit 600] [--out benchmarks/results/models]

Each MODEL is a checkpoint (CRNN or TrOMR, read with PyTorch), an exported ONNX model, read
as `omr-eval` reads it (training/evaluate.py), or `auto`, `crnn` or `tromr`: the packaged
models as `omr-run` reads with them (`auto`, the default: the CRNN, and TrOMR's reading of
each staff where it reads chords or a clef change). The sets: the synthetic monophonic test split,
clean and photographed; camera-primus clean and distorted and cc-staves from ../shared/eval
(skipped when absent); the polyphonic test split in the held-out font, clean and photographed,
as first engraved (data/poly-test-gootville-v5) and as today's engine engraves it
(data/poly-test-gootville), and the test split with the engine's later marks of a piano page in
all five fonts (data/poly-test-printed). The first --limit staves of each synthetic set; the real sets whole.
Writes OUT.md (the table) and OUT.json (every figure).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"


@dataclass(frozen=True)
class TestSet:
    name: str
    folder: Path
    options: dict  # EvalOptions fields
    synthetic: bool = True  # the first --limit staves; a real set is read whole


SETS = (
    TestSet("synthetic monophonic", ROOT / "data" / "synth", {"split": "test"}),
    TestSet("synthetic monophonic, photographed", ROOT / "data" / "synth",
            {"split": "test", "augment": 1.0}),
    TestSet("camera-primus clean", EVAL / "camera-primus", {}, False),
    TestSet("camera-primus distorted", EVAL / "camera-primus", {"variant": "distorted"}, False),
    TestSet("cc-staves (phone photos)", EVAL / "cc-staves", {"drop_tie": True}, False),
    # The held-out font's test split as the engine drew it before the piano-page marks (clef
    # changes, hidden metres, ornaments; commit 682a037), where issue 22's bars were first
    # measured; docs/DATA.md says how to engrave it again. Skipped when absent.
    TestSet("polyphonic, held-out font", ROOT / "data" / "poly-test-gootville-v5",
            {"split": "test"}),
    TestSet("polyphonic, held-out font, photographed", ROOT / "data" / "poly-test-gootville-v5",
            {"split": "test", "augment": 1.0}),
    # The same command with today's engine: the same pieces' split, with the piano-page marks.
    TestSet("polyphonic, held-out font, with the piano-page marks",
            ROOT / "data" / "poly-test-gootville", {"split": "test"}),
    TestSet("polyphonic, held-out font, with the piano-page marks, photographed",
            ROOT / "data" / "poly-test-gootville", {"split": "test", "augment": 1.0}),
    # The engine's piano-page marks (clef changes inside a staff, later systems with no time
    # signature, ornaments), in all five fonts: omr-synth --poly --seed 3 --split test.
    TestSet("polyphonic as printed on a page", ROOT / "data" / "poly-test-printed",
            {"split": "test"}),
)


def run_set(models: list, test: TestSet, limit: int) -> dict:
    """Every model's score on one set's staves, and each later model's paired difference from
    the first."""
    from omr_train.evaluate import EvalOptions, counts, evaluate, staves_of
    from omr_train.metrics import NoteScore, ser_interval

    opt = replace(EvalOptions(), **test.options, limit=limit if test.synthetic else 0)
    samples, synthetic = staves_of(test.folder, opt)
    out = {"set": test.name, "folder": str(test.folder), "options": asdict(opt), "models": []}
    first = None
    for path, model in models:
        with tqdm(total=len(samples), desc=f"{test.name}: {path.name}", unit="staff",
                  leave=False) as bar:
            result, rows = evaluate(model, samples, synthetic, opt, bar.update)
        notes = sum((NoteScore(**r["notes"]) for r in rows), NoteScore(0, 0, 0, 0))
        mine = [counts(r) for r in rows]
        row = {"model": str(path), "ser": result.ser, "staves": result.staves,
               "interval": asdict(ser_interval(mine)), "note_f1": notes.f1,
               "note_f1_duration": notes.prf(duration=True)[2]}
        if first is None:
            first = mine
        else:
            gap = ser_interval(mine, first)
            row["minus_first"] = {"points": 100 * (result.ser - out["models"][0]["ser"]),
                                  "low": 100 * gap.low, "high": 100 * gap.high}
        out["models"].append(row)
    return out


def table(results: list[dict], names: list[str]) -> str:
    head = "| set | staves | " + " | ".join(f"{n}: SER / note F1" for n in names)
    if len(names) > 1:
        head += " | " + " | ".join(f"{n} − {names[0]} (95 % interval)" for n in names[1:])
    lines = [head + " |", "|" + "---|" * (2 + len(names) + max(0, len(names) - 1))]
    for r in results:
        cells = [f"{100 * m['ser']:.2f} % / {100 * m['note_f1']:.1f} %" for m in r["models"]]
        cells += [f"{m['minus_first']['points']:+.2f} ({m['minus_first']['low']:+.2f} to "
                  f"{m['minus_first']['high']:+.2f})" for m in r["models"][1:]]
        lines.append(f"| {r['set']} | {r['models'][0]['staves']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=600, help="staves of each synthetic set")
    parser.add_argument("--sets", default="", help="only the sets whose name holds this text")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "models")
    args = parser.parse_args()
    from omr_train.evaluate import load_any

    try:
        models = [(p, load_any(p)) for p in args.models]
    except (ValueError, RuntimeError) as err:
        sys.exit(f"bench_models: {str(err).splitlines()[0]}")
    results = []
    for test in SETS:
        if args.sets not in test.name:
            continue
        if not test.folder.exists():
            print(f"skipped {test.name}: {test.folder} is absent")
            continue
        results.append(run_set(models, test, args.limit))
        print(table(results[-1:], [p.name for p in args.models]).splitlines()[-1], flush=True)
    text = table(results, [p.name for p in args.models])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
