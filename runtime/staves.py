"""Staff detection on a page, and the straightened canonical crop of each staff.

Detection works on a reduced copy of the page: binarise, estimate the staff space from vertical
run lengths, deskew, keep long horizontal strokes, then find five evenly spaced lines in each
vertical strip and link those across strips. Tracking a staff strip by strip follows gentle
curvature and perspective in phone photos, and the crop is resampled along that track, so a
bent staff comes out straight with the layout of geometry.crop_window.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import STAFF_FRACTION, StaffBox, crop_window, flattening_size
from .image import flatten_illumination

WORK_SIZE = 2000  # detection runs with the page's long side at most this many pixels


class StaffError(ValueError):
    """No staff could be found; the message is shown to the user."""


@dataclass(frozen=True)
class DetectedStaff:
    """A staff's top and bottom line tracked along x, in the working frame of its page.

    `to_page` maps working-frame points to page pixels (a 2x3 affine: deskew and scale).
    """

    xs: tuple[float, ...]
    tops: tuple[float, ...]
    bottoms: tuple[float, ...]
    left: float
    right: float
    to_page: tuple[tuple[float, ...], ...]

    @property
    def box(self) -> StaffBox:
        """The staff's median box in the working frame."""
        return StaffBox(float(np.median(self.tops)), float(np.median(self.bottoms)),
                        self.left, self.right)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """The canonical crop window's bounding box in page pixels (x0, y0, x1, y1)."""
        return self.window(STAFF_FRACTION)

    def window(self, fraction: float) -> tuple[int, int, int, int]:
        """The page pixels (x0, y0, x1, y1) that a model reading the staff over `fraction` of
        its input height sees: a taller window takes in more of the notes above and below."""
        x0, _, x1, _ = crop_window(self.box, fraction)
        xs = np.linspace(x0, x1, 16)
        centre = (self._at(xs, self.tops) + self._at(xs, self.bottoms)) / 2.0
        half = (self._at(xs, self.bottoms) - self._at(xs, self.tops)) / fraction / 2.0
        points = np.concatenate([np.stack([xs, centre - half], 1), np.stack([xs, centre + half], 1)])
        page = _apply(np.asarray(self.to_page), points)
        (px0, py0), (px1, py1) = page.min(0), page.max(0)
        return math.floor(px0), math.floor(py0), math.ceil(px1), math.ceil(py1)

    def _at(self, x: np.ndarray, values: tuple[float, ...]) -> np.ndarray:
        return np.interp(x, self.xs, values)


@dataclass(frozen=True)
class _Work:
    """The reduced, deskewed page that detection runs on."""

    binary: np.ndarray  # ink = 255
    lines: np.ndarray  # long horizontal strokes only
    space: float
    to_page: np.ndarray  # 2x3 affine, working frame -> page pixels


def detect_staves(gray: np.ndarray) -> list[DetectedStaff]:
    """Every five-line staff on the page, in reading order (top to bottom)."""
    work = _working_frame(gray)
    if work is None:
        return []
    strip = max(32, int(8 * work.space))
    candidates = [_five_line_groups(work, x0, min(x0 + strip, work.lines.shape[1]))
                  for x0 in range(0, work.lines.shape[1], strip)]
    found = [_choose(c, work.space) for c in candidates]
    tracks = [_refill(t, candidates, strip, work.space)
              for t in _link(found, strip, work.space)]
    staves = [_finish(track, work) for track in tracks]
    staves = [s for s in staves if s is not None]
    return sorted(staves, key=lambda s: float(np.median(s.tops)))


def _working_frame(gray: np.ndarray) -> _Work | None:
    scale = min(1.0, WORK_SIZE / max(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale,
                                                 interpolation=cv2.INTER_AREA)
    binary = _binarise(small)
    space = _staff_space(binary)
    if space is None:
        return None
    angle = _skew_angle(_long_strokes(binary, space), space)
    rotation = np.eye(3)
    if abs(angle) > 0.1:
        h, w = small.shape
        rotation[:2] = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        paper = float(np.percentile(small, 90))
        small = cv2.warpAffine(small, rotation[:2], (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=paper)
        binary = _binarise(small)
    # Working frame -> reduced page (undo rotation) -> page pixels (undo scale).
    to_page = (np.diag([1.0 / scale, 1.0 / scale, 1.0]) @ np.linalg.inv(rotation))[:2]
    return _Work(binary, _long_strokes(binary, space), space, to_page)


def _binarise(gray: np.ndarray) -> np.ndarray:
    # A local threshold copes with the uneven light of phone photos.
    block = max(15, (min(gray.shape) // 40) | 1)
    return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV,
                                 block, 12)


def _staff_space(binary: np.ndarray) -> float | None:
    """The most common line-to-line distance: black run + white run in vertical columns."""
    cols = binary[:, :: max(1, binary.shape[1] // 200)] > 0
    padded = np.pad(cols, ((1, 1), (0, 0))).astype(np.int8)
    edges = np.diff(padded, axis=0)
    pitches: list[np.ndarray] = []
    for c in range(cols.shape[1]):
        starts = np.flatnonzero(edges[:, c] == 1)
        if len(starts) > 2:
            pitches.append(np.diff(starts))
    if not pitches:
        return None
    values = np.concatenate(pitches)
    values = values[(values >= 4) & (values <= binary.shape[0] // 4 + 4)]
    if len(values) < 20:
        return None
    counts = np.bincount(values)
    best = int(np.argmax(counts))
    # Refine to sub-pixel with the neighbouring bins.
    lo, hi = max(best - 1, 0), min(best + 2, len(counts))
    return float(np.average(np.arange(lo, hi), weights=counts[lo:hi]))


def _long_strokes(binary: np.ndarray, space: float) -> np.ndarray:
    # Longer than a notehead or a text glyph, short enough to survive a little skew.
    length = max(9, int(3 * space))
    return cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(
        cv2.MORPH_RECT, (length, 1)))


def _skew_angle(lines: np.ndarray, space: float) -> float:
    """The page's rotation in degrees: the shear that makes the row profile of lines sharpest.

    Staff lines project onto few rows only when the projection follows their slope; the sum of
    squared row counts measures that. Coarse search to 5 degrees, then a fine one.
    """
    ys, xs = np.nonzero(lines)
    if len(ys) < 100:
        return 0.0
    pick = slice(None, None, max(1, len(ys) // 60000))
    ys, xs = ys[pick].astype(np.float64), xs[pick].astype(np.float64) - lines.shape[1] / 2.0

    def sharpness(angle: float) -> float:
        rows = np.round(ys - xs * math.tan(math.radians(angle))).astype(np.int64)
        counts = np.bincount(rows - rows.min())
        return float(np.dot(counts, counts))

    best = max(np.arange(-5.0, 5.01, 0.5), key=sharpness)
    best = max(np.arange(best - 0.5, best + 0.51, 0.05), key=sharpness)
    # cv2.getRotationMatrix2D turns counter-clockwise for positive angles; lines sloping down
    # to the right (positive here, y grows downwards) need exactly that.
    return float(best)


def _row_peaks(profile: np.ndarray, space: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres of thin runs of rows where most of the strip is line, and the thick runs.

    Runs thicker than a third of a space are beams, or a line under a beam: two stacked beams of
    semiquavers are spaced like staff lines and must not pass for two of them, but a line
    hidden under a beam may still be a staff line.
    """
    on = np.concatenate([[False], profile > 0.45, [False]])
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]
    thin = (ends - starts) <= max(3.0, 0.34 * space)
    return (starts[thin] + ends[thin] - 1) / 2.0, np.stack([starts[~thin], ends[~thin]], 1)


def _five_line_groups(work: _Work, x0: int, x1: int) -> list[tuple[float, float, float]]:
    """(cost, top, bottom) of every plausible group of five evenly spaced lines in x0..x1.

    At least three lines must be thin peaks; the others may hide under thick runs (beams).
    """
    profile = work.lines[:, x0:x1].mean(axis=1) / 255.0
    peaks, thick = _row_peaks(profile, work.space)
    candidates: list[tuple[float, float, float]] = []
    if len(peaks) < 3:
        return candidates
    for i, top in enumerate(peaks):
        for d in peaks[i + 1:i + 5] - top:
            for step in (1, 2):  # the next thin peak may be the second line below
                spacing = d / step
                if not 0.6 * work.space <= spacing <= 1.5 * work.space:
                    continue
                expected = top + spacing * np.arange(5)
                gaps = np.abs(peaks[None, :] - expected[:, None])
                hit = gaps.min(axis=1) < 0.3 * spacing
                hidden = ((thick[None, :, 0] <= expected[:, None])
                          & (expected[:, None] < thick[None, :, 1])).any(axis=1)
                if hit.sum() < 3 or not (hit | hidden).all():
                    continue
                matched = peaks[gaps.argmin(axis=1)][hit]
                slope, offset = np.polyfit(np.arange(5)[hit], matched, 1)
                error = float(np.abs(offset + slope * np.arange(5)[hit] - matched).mean())
                cost = error / spacing + abs(slope - work.space) / work.space + 0.3 * (5 - hit.sum())
                candidates.append((cost, offset, offset + 4 * slope))
    return candidates


def _choose(candidates: list[tuple[float, float, float]], space: float) -> list[tuple[float, float]]:
    """The best non-overlapping groups."""
    chosen: list[tuple[float, float]] = []
    for _, top, bottom in sorted(candidates):
        if all(bottom < t - 0.5 * space or top > b + 0.5 * space for t, b in chosen):
            chosen.append((top, bottom))
    return chosen


def _refill(track: list[tuple[float, float, float]], candidates: list[list[tuple[float, float, float]]],
            strip: int, space: float) -> list[tuple[float, float, float]]:
    """Re-pick, strip by strip, the candidate group nearest the track's path.

    The first pass keeps only each strip's best groups and can be fooled by beams; knowing where
    the staff runs, the right group is the one on its path.
    """
    xs = np.array([x for x, _, _ in track])
    centres = np.array([(t + b) / 2.0 for _, t, b in track])
    out: list[tuple[float, float, float]] = []
    for k, options in enumerate(candidates):
        x = (k + 0.5) * strip
        if x < xs[0] - 3 * strip or x > xs[-1] + 3 * strip:
            continue
        predicted = float(_extend(xs, centres, np.array([x]))[0])
        near = [(abs((t + b) / 2.0 - predicted), cost, t, b) for cost, t, b in options
                if abs((t + b) / 2.0 - predicted) < 0.5 * space]
        if near:
            _, _, top, bottom = min(near, key=lambda n: n[0] / space + n[1])
            out.append((x, top, bottom))
    return out if len(out) >= len(track) // 2 else track


def _link(found: list[list[tuple[float, float]]], strip: int,
          space: float) -> list[list[tuple[float, float, float]]]:
    """Chain per-strip staves into tracks of (x, top, bottom), following each track's slope."""
    tracks: list[list[tuple[float, float, float]]] = []
    for k, groups in enumerate(found):
        x = (k + 0.5) * strip
        taken: set[int] = set()
        for top, bottom in groups:
            centre = (top + bottom) / 2.0
            best, best_gap = None, 1.5 * space
            for t, track in enumerate(tracks):
                gap = abs(_predict(track, x) - centre)
                if t not in taken and track[-1][0] < x and gap < best_gap:
                    best, best_gap = t, gap
            if best is None:
                tracks.append([(x, top, bottom)])
                taken.add(len(tracks) - 1)
            else:
                tracks[best].append((x, top, bottom))
                taken.add(best)
    tracks = _merge(sorted(tracks, key=lambda t: t[0][0]), space)
    longest = max((len(t) for t in tracks), default=0)
    tracks = [t for t in tracks if len(t) >= max(2, 0.2 * longest)]
    return _combine(tracks, space)


def _combine(tracks: list[list[tuple[float, float, float]]],
             space: float) -> list[list[tuple[float, float, float]]]:
    """Pool tracks on the same staff (centres within 3 spaces), then drop stray points."""
    def centre(track: list[tuple[float, float, float]]) -> float:
        return float(np.median([(t + b) / 2.0 for _, t, b in track]))

    groups: list[list[tuple[float, float, float]]] = []
    for track in sorted(tracks, key=len, reverse=True):
        for group in groups:
            if abs(centre(track) - centre(group)) < 3 * space:
                group.extend(track)
                break
        else:
            groups.append(list(track))
    return [_without_strays(sorted(group), space) for group in groups]


def _without_strays(track: list[tuple[float, float, float]],
                    space: float) -> list[tuple[float, float, float]]:
    """Drop points off the running median of the centre: a group shifted onto beams."""
    centres = np.array([(t + b) / 2.0 for _, t, b in track])
    smooth = np.array([np.median(centres[max(0, i - 2):i + 3]) for i in range(len(centres))])
    return [p for p, c, m in zip(track, centres, smooth) if abs(c - m) < 0.75 * space]


def _predict(track: list[tuple[float, float, float]], x: float) -> float:
    """The track's centre extrapolated to x from its last few points (curved, tilted pages)."""
    tail = track[-4:]
    centres = [(t + b) / 2.0 for _, t, b in tail]
    if len(tail) < 2:
        return centres[-1]
    slope = (centres[-1] - centres[0]) / (tail[-1][0] - tail[0][0])
    return centres[-1] + slope * (x - tail[-1][0])


def _merge(tracks: list[list[tuple[float, float, float]]],
           space: float) -> list[list[tuple[float, float, float]]]:
    """Join a track that ends where a later one starts: one staff broken by a gap."""
    merged: list[list[tuple[float, float, float]]] = []
    for track in tracks:
        x, top, bottom = track[0]
        for other in merged:
            if other[-1][0] < x and abs(_predict(other, x) - (top + bottom) / 2.0) < 2 * space:
                other.extend(track)
                break
        else:
            merged.append(list(track))
    return merged


def _finish(track: list[tuple[float, float, float]], work: _Work) -> DetectedStaff | None:
    xs, tops, bottoms = (np.array(v) for v in zip(*track))
    spans = bottoms - tops
    good = np.abs(spans - np.median(spans)) < 0.3 * work.space
    xs, tops, bottoms = xs[good], tops[good], bottoms[good]
    if len(xs) == 0:
        return None
    left, right = _extent(work, xs, tops, bottoms)
    # Pin the track at both ends of the staff so that later interpolation stays on the lines.
    ends = np.array([left, right])
    tops = np.concatenate([[0.0], tops, [0.0]])
    bottoms = np.concatenate([[0.0], bottoms, [0.0]])
    tops[[0, -1]] = _extend(xs, tops[1:-1], ends)
    bottoms[[0, -1]] = _extend(xs, bottoms[1:-1], ends)
    xs = np.concatenate([[left - 1e-3], xs, [right + 1e-3]])
    return DetectedStaff(tuple(xs.tolist()), tuple(tops.tolist()), tuple(bottoms.tolist()),
                         left, right, tuple(map(tuple, work.to_page.tolist())))


def _extend(xs: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Values at `at`: interpolated inside the track, extrapolated along its end slopes."""
    out = np.interp(at, xs, values)
    if len(xs) >= 2:
        head = np.polyfit(xs[:4], values[:4], 1)
        tail = np.polyfit(xs[-4:], values[-4:], 1)
        out = np.where(at < xs[0], np.polyval(head, at), out)
        out = np.where(at > xs[-1], np.polyval(tail, at), out)
    return out


def _extent(work: _Work, xs: np.ndarray, tops: np.ndarray,
            bottoms: np.ndarray) -> tuple[float, float]:
    """Left and right end of the staff lines: columns where at least 3 of the 5 lines have ink."""
    h, w = work.lines.shape
    thick = cv2.dilate(work.lines, np.ones((3, 1), np.uint8))
    cols = np.arange(w)
    top, bottom = _extend(xs, tops, cols), _extend(xs, bottoms, cols)
    rows = top[None, :] + (bottom - top)[None, :] * np.arange(5)[:, None] / 4.0
    rows = np.clip(np.round(rows).astype(int), 0, h - 1)
    covered = (thick[rows, cols[None, :]] > 0).sum(axis=0) >= 3
    # Walk out from the detected range, bridging gaps shorter than two spaces.
    bridge = int(2 * work.space) + 1
    left = int(xs[0])
    while left > 0:
        window = np.flatnonzero(covered[max(0, left - bridge):left])
        if len(window) == 0:
            break
        left = max(0, left - bridge) + int(window[0])
    right = int(xs[-1])
    while right < w - 1:
        window = np.flatnonzero(covered[right + 1:right + 1 + bridge])
        if len(window) == 0:
            break
        right = right + 1 + int(window[-1])
    return float(left), float(right)


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


def staff_crop(gray: np.ndarray, staff: DetectedStaff, height: int,
               fraction: float = STAFF_FRACTION) -> np.ndarray:
    """The staff straightened into the canonical crop layout, `height` pixels tall, its lines
    spanning `fraction` of them (the model's own, from its metadata)."""
    box = staff.box
    x0, y0, x1, y1 = crop_window(box, fraction)
    step = (y1 - y0) / height  # working-frame pixels per output pixel, both axes
    width = max(1, round((x1 - x0) / step))
    xs = x0 + (np.arange(width) + 0.5) * step
    top, bottom = np.interp(xs, staff.xs, staff.tops), np.interp(xs, staff.xs, staff.bottoms)
    centre, window = (top + bottom) / 2.0, (bottom - top) / fraction
    v = (np.arange(height) + 0.5) / height - 0.5
    ys = centre[None, :] + v[:, None] * window[None, :]
    grid = np.stack([np.broadcast_to(xs[None, :], ys.shape), ys], axis=-1)
    page = _apply(np.asarray(staff.to_page), grid.reshape(-1, 2)).reshape(height, width, 2)
    paper = _paper_level(gray)
    src, page = _source_region(gray, page, step * abs(np.asarray(staff.to_page)[0, 0]))
    crop = cv2.remap(src, page[..., 0].astype(np.float32), page[..., 1].astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=paper)
    return flatten_illumination(crop, ink_size=flattening_size(height, fraction))


def _source_region(gray: np.ndarray, page: np.ndarray,
                   shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """The page pixels under `page` (sample points), shrunk with area averaging when sampling
    down a lot, so thin lines do not alias away; `page` moved into the region's coordinates.

    Working on the staff's own region keeps this cheap on a 12-megapixel photo.
    """
    h, w = gray.shape
    x0 = int(np.clip(np.floor(page[..., 0].min()) - 2, 0, w - 1))
    x1 = int(np.clip(np.ceil(page[..., 0].max()) + 3, x0 + 1, w))
    y0 = int(np.clip(np.floor(page[..., 1].min()) - 2, 0, h - 1))
    y1 = int(np.clip(np.ceil(page[..., 1].max()) + 3, y0 + 1, h))
    region = gray[y0:y1, x0:x1]
    page = page - np.array([x0, y0], dtype=page.dtype)
    if shrink > 1.5:
        factor = 1.0 / shrink
        small = cv2.resize(region, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        scale = np.array([small.shape[1] / region.shape[1], small.shape[0] / region.shape[0]])
        # Pixel centres: x_small + 0.5 = (x + 0.5) * scale.
        return small, (page + 0.5) * scale - 0.5
    return region, page


def _paper_level(gray: np.ndarray) -> float:
    sample = gray[:: max(1, gray.shape[0] // 64), :: max(1, gray.shape[1] // 64)]
    return float(np.percentile(sample, 90))


def normalize_staff_crop(gray: np.ndarray, height: int,
                         fraction: float = STAFF_FRACTION) -> np.ndarray:
    """A single-staff crop, tight or loose, brought to the canonical layout at `height`.

    The main staff is the five-line group nearest the vertical centre; fragments of
    neighbouring staves at the edges are ignored. With no staff found the whole crop is resized
    (with a warning): a crop that is already canonical still reads.
    """
    staff = main_staff(gray)
    if staff is None:
        warnings.warn("no staff lines found in the crop; using the whole image", stacklevel=2)
        width = max(1, round(gray.shape[1] * height / gray.shape[0]))
        resized = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
        return flatten_illumination(resized, ink_size=flattening_size(height, fraction))
    return staff_crop(gray, staff, height, fraction)


def main_staff(gray: np.ndarray) -> DetectedStaff | None:
    """The staff of a single-staff crop: the one whose centre is nearest the image centre."""
    staves = detect_staves(gray)
    if not staves:
        return None
    mid = gray.shape[0] / 2.0

    def distance(staff: DetectedStaff) -> float:
        x0, y0, x1, y1 = staff.bbox
        return abs((y0 + y1) / 2.0 - mid) - 0.05 * (x1 - x0)

    return min(staves, key=distance)
