"""A picture of what was read: staff boxes and tokens drawn over the page."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .recognize import Score
from .writers import write_atomic


def draw_preview(gray: np.ndarray, score: Score) -> np.ndarray:
    """The page in colour with each staff's box, number, confidence and tokens."""
    page = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    scale = max(1.0, page.shape[1] / 1600.0)  # text stays legible on large photos
    for k, staff in enumerate(score.staves):
        x0, y0, x1, y1 = staff.bbox
        colour = (0, 160, 0) if staff.confidence >= 0.8 else (0, 0, 220)
        cv2.rectangle(page, (x0, y0), (x1, y1), colour, max(1, int(2 * scale)))
        label = f"{k}: {staff.confidence:.2f}  " + " ".join(_short(t) for t in staff.tokens)
        _text(page, label[:200], (x0, y1 + int(14 * scale)), 0.45 * scale, colour)
    return page


def save_preview(path: Path, gray: np.ndarray, score: Score) -> None:
    ok, data = cv2.imencode(".png", draw_preview(gray, score))
    if not ok:
        raise OSError(f"cannot encode preview {path}")
    write_atomic(Path(path), data.tobytes())


def _short(token: str) -> str:
    """Compact token text for the picture: note-C#4_quarter -> C#4/4."""
    for prefix in ("note-", "gracenote-"):
        if token.startswith(prefix):
            pitch, _, rest = token[len(prefix):].partition("_")
            return pitch + "/" + rest.replace("quarter", "4").replace("eighth", "8") \
                .replace("sixteenth", "16").replace("half", "2").replace("whole", "1")
    return token.replace("keySignature-", "K").replace("timeSignature-", "T") \
        .replace("barline", "|").replace("rest-", "r")


def _text(page: np.ndarray, text: str, origin: tuple[int, int], size: float,
          colour: tuple[int, int, int]) -> None:
    x, y = origin
    y = min(max(y, 12), page.shape[0] - 4)
    thickness = max(1, int(size * 2))
    cv2.putText(page, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 255),
                thickness + 2, cv2.LINE_AA)
    cv2.putText(page, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, colour, thickness,
                cv2.LINE_AA)
