"""Whole pages read end to end against their truth: the engraved, photographed test pages of
bench_staves.py (data/pages/test: single lines in systems of one to four, the time signature on
the first system only), every staff scored as omr-run reads it.

    python benchmarks/bench_pages.py [--model auto|crnn|tromr] [--pages 40]

Prints, for pages whose staves were all found: SER and note F1 with the page metre off and on
(omr.page_metre); the same pages cut in two between systems, the lower half read alone and
after the upper one (a PDF's next page, which prints no signature either); and, by system
size, each staff's SER with the CRNN and with TrOMR where TrOMR reads no chord (what the
default's choice of reader rests on). Make the pages first with `python
benchmarks/bench_staves.py --pages 40` (they are written to data/pages/test, outside git).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Tally:
    edits: int = 0
    tokens: int = 0
    notes: list = field(default_factory=list)  # NoteScore per staff

    def add(self, predicted, truth) -> None:
        from omr_train.metrics import staff_edits, staff_note_score

        e, n = staff_edits(list(predicted), list(truth))
        self.edits, self.tokens = self.edits + e, self.tokens + n
        self.notes.append(staff_note_score(list(predicted), list(truth)))

    def __str__(self) -> str:
        from omr_train.metrics import NoteScore

        f1 = sum(self.notes, NoteScore(0, 0, 0, 0)).f1
        return f"SER {100 * self.edits / max(1, self.tokens):.2f} % ({self.edits}/{self.tokens}), note F1 {100 * f1:.1f} %"


def load(path: Path):
    from omr.image import load_gray

    record = json.loads(path.read_text())
    return load_gray(path.parent / record["image"]), record["staves"], record["layout"]


def halves(gray: np.ndarray, staves: list[dict]):
    """The page cut between its middle systems, and the lower half's true staves (None where
    no straight cut separates them: a tilted photo)."""
    systems = sorted({s["system"] for s in staves})
    if len(systems) < 2:
        return None
    k = next(i for i, s in enumerate(staves) if s["system"] == systems[len(systems) // 2])
    above = max(np.array(s["bottom"])[:, 1].max() for s in staves[:k])
    below = min(np.array(s["top"])[:, 1].min() for s in staves[k:])
    if above >= below:
        return None
    y = int((above + below) / 2)
    return gray[:y], gray[y:], [s["tokens"] for s in staves[k:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="auto", help="auto (omr-run's default), crnn or tromr")
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "pages" / "test")
    args = parser.parse_args()
    paths = sorted(args.data.glob("*.json"))[:args.pages]
    if not paths:
        sys.exit(f"bench_pages: no pages in {args.data} (python benchmarks/bench_staves.py "
                 f"--pages {args.pages} makes them)")
    from omr.decode import DecodeOptions
    from omr.page_metre import Metres
    from omr.recognize import Recognizer, needs_chord_reader

    warnings.simplefilter("ignore")
    model = None if args.model == "auto" else args.model
    off, on = (Recognizer(model, decoding=DecodeOptions(page_metre=x)) for x in (False, True))
    readers = {"crnn": Recognizer("crnn"), "tromr": Recognizer("tromr")}
    metre = {"off": Tally(), "on": Tally()}
    cut = {"alone": Tally(), "after the upper half": Tally()}
    sizes = defaultdict(lambda: {"crnn": Tally(), "tromr": Tally()})
    used = used_cut = 0
    for path in tqdm(paths, desc="pages", unit="page"):
        gray, staves, layout = load(path)
        truth = [s["tokens"] for s in staves]
        read = {name: r.read_array(gray) for name, r in
                (("off", off), ("on", on), *readers.items())}
        if any(len(score.staves) != len(truth) for score in read.values()):
            continue
        used += 1
        for name in ("off", "on"):
            for staff, t in zip(read[name].staves, truth):
                metre[name].add(staff.tokens, t)
        for c, r, t in zip(read["crnn"].staves, read["tromr"].staves, truth):
            if not needs_chord_reader(r.tokens):
                sizes[layout["system_size"]]["crnn"].add(c.tokens, t)
                sizes[layout["system_size"]]["tromr"].add(r.tokens, t)
        parts = halves(gray, staves)
        if parts is None:
            continue
        upper, lower, lower_truth = parts
        metres = Metres()
        on.read_array(upper, metres=metres)
        pair = {"alone": on.read_array(lower), "after the upper half": on.read_array(lower, metres=metres)}
        if all(len(s.staves) == len(lower_truth) for s in pair.values()):
            used_cut += 1
            for name, score in pair.items():
                for staff, t in zip(score.staves, lower_truth):
                    cut[name].add(staff.tokens, t)
    print(f"{args.model}: {used} of {len(paths)} pages with every staff found")
    for name, tally in metre.items():
        print(f"  page metre {name}: {tally}")
    print(f"the same pages cut in two ({used_cut}), the lower halves:")
    for name, tally in cut.items():
        print(f"  read {name}: {tally}")
    print("staves where TrOMR reads no chord, by system size (CRNN / TrOMR):")
    for size in sorted(sizes):
        print(f"  systems of {size} ({len(sizes[size]['crnn'].notes)} staves): "
              f"{sizes[size]['crnn']} / {sizes[size]['tromr']}")


if __name__ == "__main__":
    main()
