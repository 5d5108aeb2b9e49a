"""Measures read short and held to their metre (omr.parts._played), measured with the rule off
and on: the figures the README gives for it.

    python benchmarks/bench_measures.py [--model auto] [--limit 600]

- The truth alone: how many measures of the real sets' labels (camera-primus, cc-staves,
  ../shared/eval) and of the held-out font's first --limit staves the rule would change (it
  should change none), and how long camera-primus's upbeats are, as a share of their measure.
- The held-out font (data/poly-test-gootville-v5, as bench_models reads it), clean and
  photographed, read by --model: note F1 staff by staff and whole system by whole system (the
  systems --limit leaves whole), rule off and on, and how many measures it holds.
- The real pages of ../shared/eval/pages read by --model: the measures each one has held, and
  where a page has its MusicXML truth (the Bach invention scan), its note F1 on page time.
"""

from __future__ import annotations

import argparse
import warnings
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from bench_models import EVAL, ROOT

HELD_OUT = ROOT / "data" / "poly-test-gootville-v5"


def labels(folder: Path) -> list[list[str]]:
    return [p.read_text().split() for p in sorted(folder.rglob("*.semantic"))]


def truth(limit: int) -> None:
    from omr.parts import arrange, held
    from omr_train.evaluate import EvalOptions, staves_of

    sets = {name: labels(EVAL / name) for name in ("camera-primus", "cc-staves")
            if (EVAL / name).exists()}
    if HELD_OUT.exists():
        samples, _ = staves_of(HELD_OUT, replace(EvalOptions(), split="test", limit=limit))
        sets["held-out font"] = [list(s.tokens) for s in samples]
    for name, staves in sets.items():
        arranged = [arrange([[t]]) for t in staves]
        changed = sum(len(held(a)) for a in arranged)
        total = sum(len(a.measures[0]) for a in arranged)
        upbeats = [_upbeat(a) for a in arranged]
        upbeats = sorted(u for u in upbeats if u is not None)
        print(f"{name} truth: {changed} of {total} measures held; {len(upbeats)} of "
              f"{len(staves)} staves open with an upbeat"
              + (f", {min(upbeats):.3g} to {max(upbeats):.3g} of their measure" if upbeats else ""))


def _upbeat(arranged) -> float | None:
    """The first measure's share of its signature's length, where it is shorter."""
    plan = arranged.plans[0]
    if not plan.metres or plan.metres[0] is None or len(plan.bounds) < 2:
        return None
    share = (plan.bounds[1] - plan.bounds[0]) / plan.metres[0]
    return share if share < 1 - 1e-6 else None


def readings(model: str, limit: int) -> None:
    from omr.parts import arrange, held
    from omr_train.evaluate import EvalOptions, evaluate, load_any, staves_of
    from omr_train.metrics import NoteScore, normalise, system_note_score

    reader = load_any(Path(model))
    for augment, name in ((0.0, "clean"), (1.0, "photographed")):
        opt = replace(EvalOptions(), split="test", augment=augment, limit=limit)
        samples, synthetic = staves_of(HELD_OUT, opt)
        _, rows = evaluate(reader, samples, synthetic, opt)
        systems = defaultdict(list)
        for r in rows:
            stem, k = r["id"].rsplit("-", 1)
            systems[stem].append((int(k), r))
        whole = [[r for _, r in sorted(staves)] for staves in systems.values()
                 if sorted(k for k, _ in staves) == list(range(len(staves)))]
        for hold in (False, True):
            staff = sum((system_note_score([r["prediction"]], [r["reference"]], hold=hold)
                         for r in rows), NoteScore(0, 0, 0, 0))
            system = sum((system_note_score([r["prediction"] for r in s],
                                            [r["reference"] for r in s], hold=hold)
                          for s in whole), NoteScore(0, 0, 0, 0))
            print(f"held-out font, {name}, rule {'on' if hold else 'off'}: note F1 "
                  f"{100 * staff.f1:.2f} % by staff ({len(rows)}), {100 * system.f1:.2f} % by "
                  f"whole system ({len(whole)})")
        count = sum(len(held(arrange([[normalise(r["prediction"])]]))) for r in rows)
        print(f"held-out font, {name}: {count} measures held")


def pages(model: str) -> None:
    from omr.parts import held
    from omr.recognize import Recognizer

    found = sorted(p for p in (EVAL / "pages").glob("*") if p.suffix in (".png", ".jpg"))
    recognizer = Recognizer(None if model == "auto" else model)
    for page in found:
        score = recognizer.read(page)
        changed = held(score.arrangement)
        total = sum(len(m) for m in score.arrangement.measures)
        print(f"{page.name}: {len(changed)} of {total} measures held " + ", ".join(
            f"(system {s + 1}, measure {k + 1}: {x:g} -> {y:g} quarters)" for s, k, x, y in changed))
        if page.with_suffix(".musicxml").exists():
            print("  " + on_page_time(score.system_tokens, page.with_suffix(".musicxml")))


def on_page_time(systems: list, truth: Path) -> str:
    """A page's notes against its MusicXML truth on page time, as the MIDI plays them (as
    bench_piano.py scores them), the rule off and on."""
    from omr.parts import arrange
    from omr_train.metrics import match_notes
    from omr_train.musicxml_read import read_musicxml

    ref = [list(map(list, s)) for s in read_musicxml(truth).systems]
    f1 = [match_notes(arrange(systems, hold).notes, arrange(ref, hold).notes).f1
          for hold in (False, True)]
    return f"note F1 on page time, rule off {100 * f1[0]:.1f} %, on {100 * f1[1]:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="auto", help="auto (omr-run's default), crnn, tromr, "
                                                        "or a checkpoint or ONNX file")
    parser.add_argument("--limit", type=int, default=600)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    truth(args.limit)
    if HELD_OUT.exists():
        readings(args.model, args.limit)
    else:
        print(f"skipped the readings: {HELD_OUT} is absent (docs/DATA.md makes it)")
    if (EVAL / "pages").exists():
        pages(args.model)


if __name__ == "__main__":
    main()
