"""The treble clef the runtime paints before a staff whose own clef it cannot see (omr.clef).

`python -m omr_train.synth.clef_patch` engraves it with Verovio, the way the training staves
are engraved, and writes runtime/models/clef-G2.png: paper, the G2 clef on a short stretch of
staff, the staff lines spanning omr.clef.PATCH_FRACTION of the height.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from omr.clef import PATCH, PATCH_FRACTION

from .engrave import Engraver, RenderStyle, engrave
from .mei import Clutter, snippet_to_mei
from .music import Event, Snippet

PATCH_HEIGHT = 240


def clef_patch(font: str = "Leipzig") -> np.ndarray:
    snippet = Snippet("G2", 0, None, ((Event("rest", "whole"),),), final_barline=False)
    mei, main = snippet_to_mei(snippet, Clutter(), np.random.default_rng(0))
    style = RenderStyle(font=font, fraction=PATCH_FRACTION, side_spaces=1.0)
    image = engrave(Engraver(), mei, main, style, height=PATCH_HEIGHT, fonts=False)
    return image[:, :_clef_end(image)]


def _clef_end(image: np.ndarray) -> int:
    """A staff space past the clef's last column: the patch ends on bare staff lines, which
    the staff it is painted before continues."""
    ink = image < 128
    lines = ink.mean(axis=1) > 0.6  # staff-line rows: ink across the whole width
    glyph = ink[~lines].any(axis=0)
    space = PATCH_FRACTION * image.shape[0] / 4
    start = int(np.flatnonzero(glyph)[0])
    gaps = np.flatnonzero(~glyph[start:])  # the first blank column after the clef
    return min(image.shape[1], start + int(gaps[0]) + round(space))


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else PATCH
    cv2.imwrite(str(out), clef_patch())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
