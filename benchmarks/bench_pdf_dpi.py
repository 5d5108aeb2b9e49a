"""PDF render resolution: SER and time of engraved pages read from a PDF rendered at several dpi.

    python benchmarks/bench_pdf_dpi.py [--pages 8] [--space-mm 1.2] [--dpi 150 200 300]

The engine engraves A4 parts at 300 dpi (2480 pixels wide; staff spaces of 1.2, 1.5, 1.75 and
2.0 mm in turn, or all --space-mm), they go into a PDF as a scanner writes one (a JPEG a page),
and omr.pdf renders them at each dpi (its page-size clamp off) for the packaged model to read.
SER counts every token of a page whose staff count is wrong as an error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--space-mm", type=float, default=None)
    parser.add_argument("--dpi", type=float, nargs="+", default=[150, 200, 300])
    args = parser.parse_args()

    from omr import Recognizer, pdf
    from omr_train.metrics import edit_distance
    from omr_train.synth.layout import PageLayout, engrave_page
    from test_pdf import pdf_of

    rng = np.random.default_rng(7)
    pages, truth = [], []
    for k in range(args.pages):
        space = args.space_mm or [1.2, 1.5, 1.75, 2.0][k % 4]
        layout = PageLayout(width_px=2480, space_mm=space, systems=6, measures=4,
                            key=int(rng.integers(-3, 4)))
        page, staves, _ = engrave_page(layout, np.random.default_rng(100 + k))
        pages.append(page)
        truth.append([s.tokens for s in staves])
    data = pdf_of(pages)
    reader = Recognizer("crnn")  # the model its figures were set with: dpi is what varies
    pdf.MIN_SIDE = 1  # the measurement is of the dpi itself
    for dpi in args.dpi:
        edits = total = wrong = 0
        clock = time.perf_counter()
        for page, true in zip(pdf.render_pages(data, dpi=dpi), truth):
            read = reader.read_array(page.gray)
            tokens = sum(len(t) for t in true)
            total += tokens
            if len(read.staves) != len(true):
                wrong, edits = wrong + 1, edits + tokens
                continue
            edits += sum(edit_distance(list(s.tokens), list(t)) for s, t in zip(read.staves, true))
        seconds = (time.perf_counter() - clock) / len(pages)
        print(f"{dpi:.0f} dpi: SER {100 * edits / total:.2f} % over {total} tokens, "
              f"{wrong}/{len(pages)} pages with a wrong staff count, {seconds:.2f} s a page")


if __name__ == "__main__":
    main()
