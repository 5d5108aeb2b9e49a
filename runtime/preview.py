"""A picture of what was read: staff boxes and tokens drawn over the page."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .recognize import Score
from .vocab import CHORD
from .writers import write_atomic


def draw_preview(gray: np.ndarray, score: Score) -> np.ndarray:
    """The page in colour with each staff's box, number, confidence and tokens."""
    page = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    scale = max(1.0, page.shape[1] / 1600.0)  # text stays legible on large photos
    colours = [(0, 160, 0) if s.confidence >= 0.8 else (0, 0, 220) for s in score.staves]
    for staff, colour in zip(score.staves, colours):
        x0, y0, x1, y1 = staff.bbox
        cv2.rectangle(page, (x0, y0), (x1, y1), colour, max(1, int(2 * scale)))
    for k, system in enumerate(score.systems):
        _bracket(page, system, k, scale)
    # Labels after all boxes: a model's window reaches into the next staff's, and its box
    # would otherwise be drawn across the label above it. Numbered from 1, as omr-run's
    # warnings number them.
    mixed = len({s.model for s in score.staves}) > 1  # then say which model read each staff
    for k, (staff, colour) in enumerate(zip(score.staves, colours), 1):
        x0, _, _, y1 = staff.bbox
        label = f"{k}: {staff.confidence:.2f}{f' [{staff.model}]' if mixed else ''}  " + _line(staff.tokens)
        _text(page, label, (x0, y1 + int(14 * scale)), 0.45 * scale, colour)
    return page


def _bracket(page: np.ndarray, system: tuple, k: int, scale: float) -> None:
    """A bracket left of the system's staves, numbered from 1: which staves sound together."""
    blue = (200, 80, 0)
    x = max(2, min(s.bbox[0] for s in system) - int(8 * scale))
    y0 = min(s.bbox[1] for s in system) + int(6 * scale)
    y1 = max(s.bbox[3] for s in system) - int(6 * scale)
    width = max(2, int(3 * scale))
    tick = int(8 * scale)
    cv2.polylines(page, [np.array([[x + tick, y0], [x, y0], [x, y1], [x + tick, y1]])], False,
                  blue, width)
    _text(page, f"S{k + 1}", (max(0, x - int(26 * scale)), (y0 + y1) // 2), 0.5 * scale, blue)


def save_preview(path: Path, gray: np.ndarray, score: Score) -> None:
    ok, data = cv2.imencode(".png", draw_preview(gray, score))
    if not ok:
        raise OSError(f"cannot encode preview {path}")
    write_atomic(Path(path), data.tobytes())


_DURATIONS = {"quadruple_whole": "long", "double_whole": "breve", "whole": "1", "half": "2",
              "quarter": "4", "eighth": "8", "sixteenth": "16", "thirty_second": "32",
              "sixty_fourth": "64", "hundred_twenty_eighth": "128"}


def _line(tokens) -> str:
    """A staff's tokens for the picture, a chord's notes joined by "+" (C4/4+E4/4+G4/4):
    the chord joiner and the barline are both "|" in the notation, and a reader of the
    picture must tell them apart at a glance."""
    words: list[str] = []
    joined = False
    for token in tokens:
        if token == CHORD:
            joined = True
            continue
        word = _short(token)
        if joined and words:
            words[-1] += "+" + word
        else:
            words.append(word)
        joined = False
    return " ".join(words)


def _short(token: str) -> str:
    """Compact token text for the picture: note-C#4_quarter. -> C#4/4., rest-half -> r/2."""
    for prefix, mark in (("note-", ""), ("gracenote-", "g"), ("rest-", "r")):
        if token.startswith(prefix):
            body = token[len(prefix):]
            pitch, _, value = body.partition("_") if prefix != "rest-" else ("", "", body)
            fermata, value = value.endswith("_fermata"), value.removesuffix("_fermata")
            name = value.rstrip(".")
            dots = value[len(name):]
            return f"{mark}{pitch}/{_DURATIONS.get(name, name)}{dots}{'^' if fermata else ''}"
    return token.replace("keySignature-", "K").replace("timeSignature-", "T") \
        .replace("barline", "|")


def _text(page: np.ndarray, text: str, origin: tuple[int, int], size: float,
          colour: tuple[int, int, int]) -> None:
    x, y = origin
    y = min(max(y, 12), page.shape[0] - 4)
    thickness = max(1, int(size * 2))
    text = _fit(text, page.shape[1] - x - 4, size, thickness)
    # On paper, as the next staff's box or notes may run under it.
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, thickness)
    cv2.rectangle(page, (x - 2, y - h - 2), (x + w + 2, y + base), (255, 255, 255), -1)
    cv2.putText(page, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, colour, thickness,
                cv2.LINE_AA)


def _fit(text: str, width: int, size: float, thickness: int) -> str:
    """The longest start of `text` that fits `width` pixels, ending in "..." when cut."""
    def wide(t: str) -> int:
        return cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, size, thickness + 2)[0][0]

    if wide(text) <= width:
        return text
    lo, hi = 0, len(text)  # text[:lo] + "..." fits; text[:hi] + "..." does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if wide(text[:mid] + "...") <= width else (lo, mid)
    return text[:lo].rstrip() + "..."
