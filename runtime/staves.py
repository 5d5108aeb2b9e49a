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
from dataclasses import dataclass, replace
from itertools import pairwise

import cv2
import numpy as np

from .geometry import STAFF_FRACTION, StaffBox, crop_window, flattening_size
from .image import flatten_illumination

WORK_SIZE = 2000  # detection runs with the page's long side at most this many pixels
MARGIN = 0.02  # paper added round the page before detection, as a share of its long side


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
    system: int = 0  # 0-based, reading order: staves joined by a start barline, brace or bracket

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
    gray: np.ndarray  # the reduced, deskewed page itself
    depth: float  # how much darker than the paper beside it a faint line must be (grey levels)


def detect_staves(gray: np.ndarray) -> list[DetectedStaff]:
    """Every five-line staff on the page, in reading order (top to bottom)."""
    return (_detect(gray, 0) or _detect(gray, max(8, round(MARGIN * max(gray.shape))))
            or _detect(gray, 0, space_factor=2.0))


def _detect(gray: np.ndarray, margin: int, space_factor: float = 1.0) -> list[DetectedStaff]:
    """The staves found with `margin` pixels of paper added round the page, and the staff
    space measured times `space_factor`. A tight crop cut at its top or bottom line shows that
    line only with paper beyond it; on a whole page the margin's edge against grey paper or a
    desk would be ink to the threshold, so it is tried only where nothing is found without it.
    Where tiny print is blurred its lines vanish in the threshold and the space is measured on
    beams and noteheads, about half the lines' pitch: a last try doubles it."""
    if margin:
        gray = cv2.copyMakeBorder(gray, margin, margin, margin, margin, cv2.BORDER_CONSTANT,
                                  value=_paper_level(gray))
    work = _working_frame(gray, space_factor)
    if work is None:
        return []
    if margin:
        to_page = work.to_page.copy()
        to_page[:, 2] -= margin
        work = replace(work, to_page=to_page)
    # Strips four spaces wide, summed in columns half a space wide (their profiles are then
    # taken along a few slopes by shifting those columns, not by warping the strip).
    group = max(2, round(work.space / 2))
    per_strip = max(2, round(4 * work.space / group))
    strip = group * per_strip
    h, w = work.lines.shape
    columns = cv2.resize(work.lines[:, :w // group * group], (w // group, h),
                         interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    candidates = [_five_line_groups(work, *peaks) for peaks in
                  _row_peaks(_sheared_profiles(columns, per_strip, group), work.space)]
    found = [_choose(c, work.space) for c in candidates]
    table = _candidate_table(candidates)
    tracks = [_refill(t, table, strip, work.space) for t in _link(found, strip, work.space)]
    staves = [_finish(track, work) for track in tracks]
    staves = sorted((s for s in staves if s is not None), key=lambda s: float(np.median(s.tops)))
    return _systems(work, staves)


def _systems(work: _Work, staves: list[DetectedStaff]) -> list[DetectedStaff]:
    """Number the systems: a staff joins the one above when a straight stroke (the system's
    start barline, a bracket) runs unbroken from the upper staff's bottom line to the lower's
    top line near their left ends. A single-staff system has no such line; a grand staff
    always has.

    The staves of a system start at that barline: a brace or a bracket left of it, which the
    lines' walk may have reached across their narrow gap, is not staff.
    """
    starts: list[list[float]] = [[] for _ in staves]
    system, out = 0, staves[:1]
    for k, (upper, lower) in enumerate(pairwise(staves)):
        join = _joined(work, upper, lower)
        if join is None:
            system += 1
        else:
            starts[k].append(join[0])
            starts[k + 1].append(join[1])
        out.append(replace(lower, system=system))
    return [_start_at(s, float(np.mean(x)), work.space) if x else s for s, x in zip(out, starts)]


def _joined(work: _Work, upper: DetectedStaff, lower: DetectedStaff) -> tuple[float, float] | None:
    """Where the rightmost line that joins the two staves near their left ends meets the upper
    staff's bottom line and the lower staff's top line (x, x), if there is one.

    The line may lean: perspective slants a system's barline as it tilts its staves."""
    if abs(upper.left - lower.left) > 2 * work.space:
        return None
    h, w = work.binary.shape
    x0 = int(max(0, min(upper.left, lower.left) - 2 * work.space))
    x1 = int(min(w, max(upper.left, lower.left) + 2.0 * work.space)) + 1
    xs = np.arange(x0, x1)
    y0 = np.interp(xs, upper.xs, upper.bottoms)
    y1 = np.interp(xs, lower.xs, lower.tops)
    gap = _median(y1 - y0)
    if gap < work.space:
        return None
    t = np.linspace(0.0, 1.0, 48)[:, None]
    rows = np.clip(np.round(y0[None, :] + t * (y1 - y0)[None, :]).astype(int), 0, h - 1)
    reach = int(np.ceil(0.08 * gap))  # a lean of up to about 4.5 degrees
    leans = np.arange(-reach, reach + 1)
    fill = _stroke_fill(work, np.broadcast_to(rows, (len(leans), *rows.shape)),
                        xs[None, None, :] + t[None] * leans[:, None, None])
    # The rightmost thin stroke at the upper staff, then the lean it runs down best along:
    # a lean that slides from the barline onto a brace beside it fills the gap less well.
    x = _thin_stroke(fill >= 0.8, 0.6 * work.space)
    if x is None:
        return None
    lean = leans[int(np.argmax(fill[:, x] - 1e-3 * np.abs(leans)))]
    return float(xs[x]), float(xs[x] + lean)


def _stroke_fill(work: _Work, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """For paths down the gap (rows and columns: [..., point, path], pixels), the share of
    each path that is ink: black in the threshold, or a thin vertical line darker than the
    paper a third of a space either side of it (a faint barline in a blurred photo)."""
    w = work.binary.shape[1]
    c = np.clip(np.round(cols).astype(int), 0, w - 1)
    # Gathered by flat index (np.take), much cheaper than indexing rows and columns.
    row = rows * w
    binary, gray = work.binary.reshape(-1), work.gray.reshape(-1)
    ink = np.take(binary, row + c) > 0
    side = max(2, round(work.space / 3))
    line = np.take(gray, row + c).astype(np.float32)
    paper = np.minimum(np.take(gray, row + np.clip(c - side, 0, w - 1)),
                       np.take(gray, row + np.clip(c + side, 0, w - 1))).astype(np.float32)
    depth = paper - line
    depth[..., 1:-1, :] = (depth[..., :-2, :] + depth[..., 1:-1, :] + depth[..., 2:, :]) / 3
    return (ink | (depth > 0.6 * work.depth)).mean(axis=-2)


def _thin_stroke(filled: np.ndarray, widest: float) -> int | None:
    """The right edge of the rightmost run of filled columns no wider than `widest`, over the
    rows of `filled` (one per lean): a barline or a bracket, not the shadow of a page's edge or
    a photo's dark border."""
    edges = np.diff(np.pad(filled, ((0, 0), (1, 1))).view(np.int8), axis=1)
    starts, ends = np.nonzero(edges == 1)[1], np.nonzero(edges == -1)[1]  # paired, row by row
    thin = ends[ends - starts <= max(2.0, widest)]
    return int(thin.max()) - 1 if len(thin) else None


def _start_at(staff: DetectedStaff, x: float, space: float) -> DetectedStaff:
    """The staff with its left end moved to x (the system's barline), if x is near it."""
    if abs(x - staff.left) > 2.5 * space or x >= staff.right:
        return staff
    xs, tops, bottoms = (np.array(v) for v in (staff.xs, staff.tops, staff.bottoms))
    top, bottom = (float(_extend(xs, v, np.array([x]))[0]) for v in (tops, bottoms))
    keep = xs > x
    return replace(staff, xs=(x, *xs[keep].tolist()), tops=(top, *tops[keep].tolist()),
                   bottoms=(bottom, *bottoms[keep].tolist()), left=x)


def _working_frame(gray: np.ndarray, space_factor: float = 1.0) -> _Work | None:
    scale = min(1.0, WORK_SIZE / max(gray.shape))
    small, binary, space = _reduced(gray, scale)
    if space is not None:
        space *= space_factor
    # Work where a staff space is about 10 pixels: small print in a 3-megapixel photo needs
    # more than the long side at WORK_SIZE, large print much less (and is faster).
    if space is not None and (space < 7 and scale < 1.0 or space > 14):
        wanted = min(1.0, scale * 10.0 / space)
        if abs(wanted - scale) > 0.1 * scale:
            expected = space * wanted / scale
            scale = wanted
            small, binary, space = _reduced(gray, scale)
            # At the new size the grain may look like lines where it did not before: keep
            # the first measure, scaled, unless the new one agrees with it.
            if space is None or abs(space - expected) > 0.2 * expected:
                space = expected
    if space is None:
        return None
    angle = _skew_angle(_long_strokes(binary, space), space)
    rotation = np.eye(3)
    if abs(angle) > 0.1:
        h, w = small.shape
        rotation[:2] = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        paper = _paper_level(small)
        small = cv2.warpAffine(small, rotation[:2], (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=paper)
        binary = _binarise(small)
    # Working frame -> reduced page (undo rotation) -> page pixels (undo scale).
    to_page = (np.diag([1.0 / scale, 1.0 / scale, 1.0]) @ np.linalg.inv(rotation))[:2]
    # Faint lines (blur, a shadow, thin grey print) break up in the threshold; as ridges that
    # are darker than the paper half a space above and below them they stay whole.
    ridges, depth = _line_ridges(small, space)
    binary = _without_bands(cv2.bitwise_or(binary, ridges), space)
    # Breaks of up to half a space closed first: a faint line in a noisy photo comes out of
    # the threshold as a row of dots.
    closed = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, cv2.getStructuringElement(
        cv2.MORPH_RECT, (max(3, int(0.5 * space)), 1)))
    return _Work(binary, _long_strokes(closed, space), space, to_page, small, depth)


def _reduced(gray: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, float | None]:
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale,
                                                 interpolation=cv2.INTER_AREA)
    binary = _binarise(small)
    return small, binary, _staff_space(binary)


def _binarise(gray: np.ndarray) -> np.ndarray:
    # A local threshold copes with the uneven light of phone photos; its margin stays above
    # the grain of a noisy photo, which would otherwise come out as ink everywhere.
    block = max(15, (min(gray.shape) // 40) | 1)
    # cv2.adaptiveThreshold(MEAN_C, BINARY_INV) bit for bit, at a third of its cost: ink where
    # the pixel is at least floor(margin) darker than its block's (rounded) mean.
    mean = cv2.boxFilter(gray, -1, (block, block), borderType=cv2.BORDER_REPLICATE)
    margin = math.floor(max(12.0, 3.5 * _grain(gray)))
    return cv2.threshold(cv2.subtract(mean, gray), margin - 1, 255, cv2.THRESH_BINARY)[1]


def _grain(gray: np.ndarray) -> float:
    """The photo's pixel noise (grey levels): the spread of each pixel's difference from its
    neighbour, on a sample of rows, robust to the ink."""
    rows = gray[:: max(1, gray.shape[0] // 200)]
    step = cv2.absdiff(rows[:, 1:], rows[:, :-1])
    return 1.4826 * _median_int(step) / np.sqrt(2.0)


def _median_int(values: np.ndarray) -> float:
    """np.median of an array of whole numbers in a short range (grey levels and their
    differences), from their histogram: no sort."""
    if values.size == 0:
        return math.nan
    least, most = int(values.min()), int(values.max())
    counts = cv2.calcHist([(values - least).astype(np.uint16)], [0], None, [most - least + 1],
                          [0, most - least + 1])  # whole counts, in float32: exact below 2**24
    below = np.cumsum(counts.ravel().astype(np.int64))
    n = int(below[-1])
    # The (n-1)//2-th and n//2-th smallest, averaged (the same one when n is odd).
    lo, hi = np.searchsorted(below, [(n - 1) // 2 + 1, n // 2 + 1], side="left")
    return (int(lo) + int(hi)) / 2.0 + least


def _median(values: np.ndarray) -> float:
    """np.median of a short 1-D array, without its overhead: the same middle value, or the
    same mean of the two middle ones."""
    ordered = sorted(values.tolist())
    n = len(ordered)
    if n == 0:
        return math.nan
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2.0


def _staff_space(binary: np.ndarray) -> float | None:
    """The most common line-to-line distance: black run + white run in vertical columns.

    Counted on horizontal strokes only (15 pixels or longer, once breaks of a few pixels are
    closed), and where three pitches in a row agree, as the four of a staff's five lines do:
    the grain of a noisy photo and a desk's texture around the page have pitches too, more
    of them than the lines, but irregular ones. Where too few pitches agree, all count.
    """
    # Closing (1x5) then opening (1x15), with the two erosions in a row done as one (1x19).
    strokes = cv2.dilate(cv2.erode(cv2.dilate(binary, np.ones((1, 5), np.uint8)),
                                   np.ones((1, 19), np.uint8)), np.ones((1, 15), np.uint8))
    cols = strokes[:, :: max(1, binary.shape[1] // 200)] > 0
    # Rising edges of every sampled column at once, column by column (transposed, so that
    # flatnonzero orders them by column, then row); a pitch is two edges of one column.
    starts = np.diff(np.pad(cols.T, ((0, 0), (1, 0))).astype(np.int8), axis=1) == 1
    column, row = np.divmod(np.flatnonzero(starts), starts.shape[1])
    pitch = np.diff(row)
    same = column[1:] == column[:-1]
    every = pitch[same]
    # Three pitches in a row of one column that agree: the middle one counts.
    window = same[:-2] & same[1:-1] & same[2:] if len(same) >= 3 else np.zeros(0, bool)
    runs = np.lib.stride_tricks.sliding_window_view(pitch, 3) if len(pitch) >= 3 \
        else np.zeros((0, 3), int)
    agree = window & (runs.max(axis=1) - runs.min(axis=1) <= 1)
    regular = runs[agree, 1]
    top = binary.shape[0] // 4 + 4
    for values in (regular, every):
        values = values[(values >= 4) & (values <= top)]
        if len(values) >= 20:
            counts = np.bincount(values)
            best = int(np.argmax(counts))
            # Refine to sub-pixel with the neighbouring bins.
            lo, hi = max(best - 1, 0), min(best + 2, len(counts))
            return float(np.average(np.arange(lo, hi), weights=counts[lo:hi]))
    return None


def _without_bands(binary: np.ndarray, space: float) -> np.ndarray:
    """The ink less solid bands half a space wide and 20 tall: the dark edge of a page or of a
    photo, a book's gutter. Staff lines run into such a band and would be walked out along
    it; a barline is thinner, a bracket or a final barline rarely that tall.

    Looked for at half the size: a band is large, and this runs on every page."""
    h, w = binary.shape
    small = cv2.resize(binary, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    size = (max(1, round(0.5 * space / 2)), max(1, round(20 * space / 2)))
    if size[1] >= small.shape[0]:
        return binary
    solid = cv2.compare(cv2.blur(small, size), 216, cv2.CMP_GT)  # over 0.85 * 255, as 255
    if not cv2.countNonZero(solid):
        return binary
    band = cv2.dilate(solid, cv2.getStructuringElement(cv2.MORPH_RECT, (size[0] + 2, size[1])))
    band = cv2.resize(band, (w, h), interpolation=cv2.INTER_NEAREST)
    return cv2.subtract(binary, band)  # 255 in the band: paper there


def _line_ridges(gray: np.ndarray, space: float) -> tuple[np.ndarray, float]:
    """Thin horizontal dark lines: rows darker than both rows `reach` above and below them,
    after smoothing along the line so that noise and JPEG blocks average out; and the depth
    that counts as a line on this page."""
    along = max(3, int(space)) | 1
    smooth = cv2.blur(gray, (along, 1))
    reach = max(2, round(0.35 * space))
    # Deeper than the paper's own grain: a blurred line in a dim photo is only 10-20 grey
    # levels deep, a noisy page's grain almost as much (measured on every fourth pixel).
    s = smooth[::4, ::4].astype(np.int16)
    r = max(1, reach // 4)
    signed = np.minimum(s[:-2 * r], s[2 * r:]) - s[r:-r]
    # The median absolute deviation, in whole numbers: the median is m / 2 for a whole m.
    m = round(2 * _median_int(signed))
    noise = 1.4826 * _median_int(np.abs(2 * signed - m)) / 2.0
    least = max(6.0, 4.0 * noise)
    depth = np.zeros_like(smooth)  # saturating: rows lighter than their paper are 0
    depth[reach:-reach] = cv2.subtract(cv2.min(smooth[:-2 * reach], smooth[2 * reach:]),
                                       smooth[reach:-reach])
    # Only the darkest row of each ridge: a line is as thin here as it is printed. (Compared
    # in uint8, 255 where true: depth > least is depth > floor(least) for whole grey levels.)
    peak = cv2.compare(depth, math.floor(least), cv2.CMP_GT)
    np.bitwise_and(peak[1:], cv2.compare(depth[1:], depth[:-1], cv2.CMP_GE), out=peak[1:])
    np.bitwise_and(peak[:-1], cv2.compare(depth[:-1], depth[1:], cv2.CMP_GT), out=peak[:-1])
    return peak, least


def _long_strokes(binary: np.ndarray, space: float, spaces: float = 3.0) -> np.ndarray:
    """Ink that is part of a stroke at least `spaces` long and near level: longer than a
    notehead or a text glyph.

    The stroke is thickened by a fifth of a space up and down before it is measured, so that a
    thin line that still slopes after deskewing (perspective, a curl) keeps its length, and
    thinned as much again after: noteheads on the line are not part of it.
    """
    length = max(9, int(spaces * space))
    column = np.ones((2 * max(1, round(0.2 * space)) + 1, 1), np.uint8)
    long = cv2.morphologyEx(cv2.dilate(binary, column), cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_RECT, (length, 1)))
    return cv2.erode(long, column)


def _skew_angle(lines: np.ndarray, space: float) -> float:
    """The page's rotation in degrees: the shear that makes the row profile of lines sharpest.

    Staff lines project onto few rows only when the projection follows their slope; the sum of
    squared row counts measures that. Coarse search to 10 degrees (a page photographed by hand
    tilts up to 8), then two finer ones.
    """
    count = cv2.countNonZero(lines)
    if count < 100:
        return 0.0
    # The ink's (x, y) in row-major order, as np.nonzero gives them, at a quarter of its cost.
    points = cv2.findNonZero(lines).reshape(-1, 2)[:: max(1, count // 10000)].astype(np.float64)
    ys, xs = points[:, 1], points[:, 0] - lines.shape[1] / 2.0

    def sharpest(angles: np.ndarray) -> float:
        """The first of the angles with the highest sharpness, all measured at once."""
        tans = np.array([math.tan(math.radians(a)) for a in angles])
        rows = np.round(ys[None, :] - xs[None, :] * tans[:, None]).astype(np.int64)
        rows -= rows.min(axis=1, keepdims=True)
        span = int(rows.max()) + 1
        counts = np.bincount((rows + span * np.arange(len(angles))[:, None]).ravel(),
                             minlength=span * len(angles)).reshape(len(angles), span)
        return float(angles[int(np.argmax(np.einsum("ij,ij->i", counts, counts)))])

    best = sharpest(np.arange(-10.0, 10.01, 1.0))
    best = sharpest(np.arange(best - 1.0, best + 1.01, 0.25))
    best = sharpest(np.arange(best - 0.25, best + 0.26, 0.05))
    # cv2.getRotationMatrix2D turns counter-clockwise for positive angles; lines sloping down
    # to the right (positive here, y grows downwards) need exactly that.
    return float(best)


def _row_peaks(profiles: list[np.ndarray],
               space: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each strip's row profile: the centres of thin runs of rows where most of the strip is
    line, and the thick runs (start, end). All strips' runs are found at once.

    Runs thicker than a third of a space are beams, or a line under a beam: two stacked beams of
    semiquavers are spaced like staff lines and must not pass for two of them, but a line
    hidden under a beam may still be a staff line.
    """
    if not profiles:
        return []
    on = np.pad(np.stack(profiles) > 0.45, ((0, 0), (1, 1)))
    edges = np.diff(on.view(np.int8), axis=1)
    strip, starts = np.nonzero(edges == 1)  # row by row: each run's start, then its end
    ends = np.nonzero(edges == -1)[1]
    thin = (ends - starts) <= max(3.0, 0.34 * space)
    centres = (starts + ends - 1) / 2.0
    thick = np.stack([starts, ends], 1)
    bounds = np.searchsorted(strip, np.arange(len(profiles) + 1))
    return [(centres[a:b][thin[a:b]], thick[a:b][~thin[a:b]]) for a, b in pairwise(bounds)]


# The residual slopes along which a strip's profile is taken.
SHEARS = (0.0, -0.035, 0.035, -0.07, 0.07, -0.105, 0.105)


def _sheared_profiles(columns: np.ndarray, per_strip: int, width: int) -> list[np.ndarray]:
    """Each strip's row profile (0..1) along the slope that makes it sharpest, from the
    profiles of the page's column groups (`width` pixels each, `per_strip` to a strip; the
    last strip may have fewer).

    One rotation cannot level every staff of a photographed page: perspective tilts the top
    staves one way and the bottom ones the other, and a curl bends each. Measured along its own
    slope, a strip's lines stay thin peaks.
    """
    h, total = columns.shape
    full = total // per_strip * per_strip
    out = _sheared_batch(columns[:, :full].reshape(h, -1, per_strip), width) if full else []
    if full < total:
        out += _sheared_batch(columns[:, None, full:], width)
    return out


def _sheared_batch(columns: np.ndarray, width: int) -> list[np.ndarray]:
    """_sheared_profiles for strips of the same number of column groups ([row, strip, group]):
    every strip is shifted at once, one column group and slope at a time."""
    h, n, m = columns.shape
    offsets = (np.arange(m) - (m - 1) / 2.0) * width
    groups = np.ascontiguousarray(columns.transpose(2, 0, 1))  # [group, row, strip]
    profiles = np.zeros((len(SHEARS), h, n), np.float32)
    for profile, shear in zip(profiles, SHEARS):
        for group, d in zip(groups, np.round(shear * offsets).astype(int)):
            if d >= 0:
                profile[:h - d] += group[d:]
            else:
                profile[-d:] += group[:h + d]
    profiles /= m
    out = []
    for sheared in np.ascontiguousarray(profiles.transpose(2, 0, 1)):  # [strip, shear, row]
        best, best_score = sheared[0], -1.0
        for profile in sheared:
            score = float(profile @ profile)
            if score > best_score * 1.05:  # level unless a slope is clearly sharper
                best, best_score = profile, score
        out.append(best)
    return out


def _five_line_groups(work: _Work, peaks: np.ndarray,
                      thick: np.ndarray) -> list[tuple[float, float, float]]:
    """(cost, top, bottom) of every plausible group of five evenly spaced lines in a strip,
    given as the thin peaks and thick runs of its row profile (_row_peaks).

    At least three lines must be thin peaks; the others may hide under thick runs (beams).
    """
    if len(peaks) < 3:
        return []
    # Every (top line, a later thin peak 1-4 peaks down, 1 or 2 spaces below) at once.
    n = len(peaks)
    first = np.repeat(np.arange(n), 8)
    second = first + np.tile(np.repeat(np.arange(1, 5), 2), n)
    steps = np.tile([1.0, 2.0], 4 * n)
    keep = second < n
    first, second, steps = first[keep], second[keep], steps[keep]
    spacing = (peaks[second] - peaks[first]) / steps
    keep = (spacing >= 0.6 * work.space) & (spacing <= 1.5 * work.space)
    first, spacing = first[keep], spacing[keep]
    if not len(first):
        return []
    index = np.arange(5.0)
    expected = peaks[first][:, None] + spacing[:, None] * index  # candidate x line
    gaps = np.abs(peaks[None, None, :] - expected[:, :, None])
    hit = gaps.min(axis=2) < 0.3 * spacing[:, None]
    hidden = ((thick[None, None, :, 0] <= expected[:, :, None])
              & (expected[:, :, None] < thick[None, None, :, 1])).any(axis=2)
    ok = (hit.sum(axis=1) >= 3) & (hit | hidden).all(axis=1)
    hit, spacing, gaps = hit[ok], spacing[ok], gaps[ok]
    matched = peaks[gaps.argmin(axis=2)]
    # A straight line through the matched peaks (weights: hit or not), in closed form.
    w = hit.astype(np.float64)
    count = w.sum(axis=1)
    mean_i = (w * index).sum(axis=1) / count
    mean_y = (w * matched).sum(axis=1) / count
    di = index[None, :] - mean_i[:, None]
    slope = (w * di * (matched - mean_y[:, None])).sum(axis=1) / (w * di * di).sum(axis=1)
    offset = mean_y - slope * mean_i
    error = (w * np.abs(offset[:, None] + slope[:, None] * index - matched)).sum(axis=1) / count
    cost = error / spacing + np.abs(slope - work.space) / work.space + 0.3 * (5 - count)
    return list(zip(cost.tolist(), offset.tolist(), (offset + 4 * slope).tolist()))


def _choose(candidates: list[tuple[float, float, float]], space: float) -> list[tuple[float, float]]:
    """The best non-overlapping groups."""
    chosen: list[tuple[float, float]] = []
    for _, top, bottom in sorted(candidates):
        if all(bottom < t - 0.5 * space or top > b + 0.5 * space for t, b in chosen):
            chosen.append((top, bottom))
    return chosen


def _candidate_table(candidates: list[list[tuple[float, float, float]]]) -> np.ndarray:
    """[strip, group, (cost, top, bottom)]: every strip's candidate groups, padded with NaN."""
    table = np.full((len(candidates), max([1, *map(len, candidates)]), 3), np.nan)
    for k, options in enumerate(candidates):
        if options:
            table[k, :len(options)] = options
    return table


def _refill(track: list[tuple[float, float, float]], table: np.ndarray,
            strip: int, space: float) -> list[tuple[float, float, float]]:
    """Re-pick, strip by strip, the candidate group nearest the track's path (`table`: the
    strips' candidates, _candidate_table).

    The first pass keeps only each strip's best groups and can be fooled by beams; knowing where
    the staff runs, the right group is the one on its path.
    """
    xs = np.array([x for x, _, _ in track])
    centres = np.array([(t + b) / 2.0 for _, t, b in track])
    at = (np.arange(len(table)) + 0.5) * strip
    path = _extend(xs, centres, at)
    cost, top, bottom = table[..., 0], table[..., 1], table[..., 2]
    off = np.abs((top + bottom) / 2.0 - path[:, None])
    near = off < 0.5 * space  # padding (NaN) is never near
    # Of the near groups, the first with the least offset (in spaces) plus cost.
    pick = np.where(near, off / space + cost, np.inf).argmin(axis=1)
    used = (at >= xs[0] - 3 * strip) & (at <= xs[-1] + 3 * strip) & near.any(axis=1)
    out = [(float(at[k]), float(top[k, pick[k]]), float(bottom[k, pick[k]]))
           for k in np.flatnonzero(used)]
    return out if len(out) >= len(track) // 2 else track


def _link(found: list[list[tuple[float, float]]], strip: int,
          space: float) -> list[list[tuple[float, float, float]]]:
    """Chain per-strip staves into tracks of (x, top, bottom), following each track's slope."""
    tracks: list[list[tuple[float, float, float]]] = []
    for k, groups in enumerate(found):
        x = (k + 0.5) * strip
        taken: set[int] = set()
        # Where each track so far runs at x: one that gains a point here is taken for this strip.
        predicted = [_predict(track, x) for track in tracks]
        for top, bottom in groups:
            centre = (top + bottom) / 2.0
            best, best_gap = None, 0.75 * space
            for t, at in enumerate(predicted):
                gap = abs(at - centre)
                if t not in taken and tracks[t][-1][0] < x and gap < best_gap:
                    best, best_gap = t, gap
            if best is None:
                tracks.append([(x, top, bottom)])
                taken.add(len(tracks) - 1)
            else:
                tracks[best].append((x, top, bottom))
                taken.add(best)
    tracks = _merge(sorted(tracks, key=lambda t: t[0][0]), space)
    # Two strips (8 spaces) of five lines is already a staff: a short last system, or a part
    # whose systems stop short of the margin, is no less one than the longest staff.
    tracks = [t for t in tracks if len(t) >= 2]
    return _combine(tracks, space)


def _combine(tracks: list[list[tuple[float, float, float]]],
             space: float) -> list[list[tuple[float, float, float]]]:
    """Pool tracks on the same staff, then drop stray points.

    A shorter track is on a longer one's staff when it continues that staff's line, within
    half a space; one a space or two off it is that staff's lines matched onto ledger lines
    or beams, and is dropped (no two staves are that close); further off, another staff."""
    groups: list[list[tuple[float, float, float]]] = []
    for track in sorted(tracks, key=len, reverse=True):
        for group in groups:
            off = _offset(track, group)
            if off < 3 * space:
                if off < 0.5 * space:
                    group.extend(track)
                break
        else:
            groups.append(list(track))
    cleaned = [_without_strays(sorted(group), space) for group in groups]
    return [track for track in cleaned if track]


def _offset(track: list[tuple[float, float, float]], group: list[tuple[float, float, float]]) -> float:
    """Median distance of the track's centres from the line through the group's six points
    nearest it in x."""
    gx = np.array([x for x, _, _ in group])
    gc = np.array([(t + b) / 2.0 for _, t, b in group])
    tx = np.array([x for x, _, _ in track])
    tc = np.array([(t + b) / 2.0 for _, t, b in track])
    near = np.argsort(np.abs(gx - _median(tx)))[:6]
    if len(near) >= 2 and np.ptp(gx[near]) > 0:
        line = np.polyval(np.polyfit(gx[near], gc[near], 1), tx)
    else:
        line = np.full_like(tx, gc[near].mean())
    return _median(np.abs(tc - line))


def _without_strays(track: list[tuple[float, float, float]],
                    space: float) -> list[tuple[float, float, float]]:
    """Drop points off the running median of the centre (a group shifted onto beams), then
    points off a smooth curve through the rest: at a track's end, a group of lines shifted a
    space or two onto ledger lines can outnumber the true ones in any running median."""
    centres = np.array([(t + b) / 2.0 for _, t, b in track])
    padded = np.pad(centres, 2, mode="edge")  # a running median of five, ends held
    smooth = np.sort(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1)[:, 2]
    keep = np.abs(centres - smooth) < 0.75 * space
    xs = np.array([x for x, _, _ in track])
    for _ in range(3):
        if keep.sum() < 6:
            break
        fit = np.polyfit(xs[keep], centres[keep], 2)
        keep = keep & (np.abs(np.polyval(fit, xs) - centres) < 0.5 * space)
    return [p for p, k in zip(track, keep) if k]


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
    good = np.abs(spans - _median(spans)) < 0.3 * work.space
    xs, tops, bottoms = xs[good], tops[good], bottoms[good]
    if len(xs) == 0:
        return None
    xs, tops, bottoms = _on_curve(*_extent(work, xs, tops, bottoms), work.space)
    left, right = float(xs[0]), float(xs[-1])
    if right - left < 6 * work.space:  # too short for a clef and a bar: not a staff
        return None
    if right - left < SHORT_STAFF * work.space and \
            _line_cover(work, xs, tops, bottoms) < MIN_LINE_COVER:  # a word, not a staff
        return None
    return DetectedStaff(tuple(xs.tolist()), tuple(tops.tolist()), tuple(bottoms.tolist()),
                         left, right, tuple(map(tuple, work.to_page.tolist())))


_PAIRS = np.triu_indices(8, 1)  # every pair of a staff end's eight points

# Share of a staff's columns where 4 of its 5 lines are long strokes (`_Work.lines`), asked
# of short staves only. A word of bold text whose glyphs happen to stack five level strokes a
# space apart passes the walk as a staff 10 spaces long, at 0.59. Every staff of the seven
# real pages and the example page is at 0.85 or more (most at 0.97-1.00: a line runs under
# notes and signs), but blur, low resolution and 1-bit scans break the strokes of some long
# photographed staves: 11 of 354 on 40 bench_staves test pages are at 0.28-0.65, all 27
# spaces long or more, where no word reaches.
MIN_LINE_COVER = 0.7
SHORT_STAFF = 20  # staff spaces


def _line_cover(work: _Work, xs: np.ndarray, tops: np.ndarray, bottoms: np.ndarray) -> float:
    """The share of the columns from the staff's start to its end where at least 4 of the 5
    lines, as the track places them (within a row), are long horizontal strokes."""
    h, w = work.lines.shape
    cols = np.arange(int(xs[0]), int(xs[-1]) + 1)
    top, bottom = np.interp(cols, xs, tops), np.interp(cols, xs, bottoms)
    cols = np.clip(cols, 0, w - 1)
    hits = np.zeros(len(cols), int)
    for k in range(5):
        row = np.round(top + (bottom - top) * k / 4).astype(int)
        ink = np.zeros(len(cols), bool)
        for d in (-1, 0, 1):
            ink |= work.lines[np.clip(row + d, 0, h - 1), cols] > 0
        hits += ink
    return float(np.mean(hits >= 4)) if len(cols) else 0.0


def _on_curve(xs: np.ndarray, tops: np.ndarray, bottoms: np.ndarray,
              space: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points near either end whose centre is more than half a space off a robust line
    through the staff's last eight points put back on it, span kept.

    At a staff's ends the lines can be matched a space or two off, onto ledger lines under
    beamed high notes, or walked there where beams ink every row; the x where the staff ends
    is still right. The line is Theil-Sen's (the median of pairwise slopes), which a few such
    points do not tilt."""
    centres = (tops + bottoms) / 2.0
    if len(xs) < 8:
        return xs, tops, bottoms
    for window in (np.arange(8), np.arange(len(xs) - 8, len(xs))):
        x, c = xs[window], centres[window]
        i, j = _PAIRS
        ok = x[j] != x[i]
        slope = _median((c[j] - c[i])[ok] / (x[j] - x[i])[ok])
        offset = _median(c - slope * x)
        line = offset + slope * x
        bad = np.abs(c - line) >= 0.5 * space
        centres[window[bad]] = line[bad]
    shift = centres - (tops + bottoms) / 2.0
    return xs, tops + shift, bottoms + shift


def _extend(xs: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Values at `at`: interpolated inside the track, extrapolated past its ends along a curve.

    The curve is a parabola through the whole track when it is long enough: a page's curl and
    perspective bend a staff smoothly, and the few points at a track's end are the noisiest.
    """
    out = np.interp(at, xs, values)
    if len(xs) >= 2:
        degree = 2 if len(xs) >= 6 and xs[-1] - xs[0] > 0 else 1
        fit = np.polyfit(xs - xs[0], values, degree)
        head = np.polyval(fit, at - xs[0]) + (values[0] - np.polyval(fit, 0.0))
        tail = np.polyval(fit, at - xs[0]) + (values[-1] - np.polyval(fit, xs[-1] - xs[0]))
        out = np.where(at < xs[0], head, out)
        out = np.where(at > xs[-1], tail, out)
    return out


ROW_STEP = 0.1  # the straightened strip's rows, in staff spaces
SHIFT = 6  # rows the lines may drift from their prediction within one stretch of the walk
STRETCH = 4.0  # staff spaces walked on one prediction before it is made again
PAD = SHIFT + 6  # strip rows above the top line: the drift, and half a space of paper beyond
_LINE_ROWS = (np.arange(5) / ROW_STEP + PAD).round().astype(int)
_BETWEEN_ROWS = ((np.arange(4) + 0.5) / ROW_STEP + PAD).round().astype(int)
_DRIFTS = range(-SHIFT, SHIFT + 1)
# [drift, line]: the rows of the 5 lines (and of the 4 spaces between) at each drift.
_LINE_COMB = _LINE_ROWS[None, :] + np.array(_DRIFTS)[:, None]
_BETWEEN_COMB = _BETWEEN_ROWS[None, :] + np.array(_DRIFTS)[:, None]


def _extent(work: _Work, xs: np.ndarray, tops: np.ndarray,
            bottoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The track followed out to both ends of the staff lines: xs, tops, bottoms with the
    walked points added (every few blocks, and the two ends)."""
    left = _follow(work, xs, tops, bottoms, -1)
    right = _follow(work, xs, tops, bottoms, 1)
    lo, hi = left[-1][0], right[-1][0]
    walked = set(left[:-1:4] + right[:-1:4] + list(zip(xs, tops, bottoms)))
    out = [left[-1]] + sorted(p for p in walked if lo < p[0] < hi) + [right[-1]]
    return tuple(np.array(v, dtype=np.float64) for v in zip(*out))


def _follow(work: _Work, xs: np.ndarray, tops: np.ndarray, bottoms: np.ndarray,
            direction: int) -> list[tuple[float, float, float]]:
    """Walk the staff's lines out from one end of its track, block by block (a third of a
    space): (x, top, bottom) of each block on the staff, outwards; the last is the end.

    A block is on the staff where 4 of its 5 lines have ink, or are faint lines in the grey
    page. Under a clef, a key or a time signature the line and the sign are both ink, so the
    walk goes through them; a gap in the lines longer than 3 spaces (paper, a word) ends it.
    The lines are predicted a stretch at a time along the slope of what was walked last, and
    may drift from the prediction block by block: a curled or foreshortened staff bends away
    from any one straight line. A brace or bracket the walk reaches is cut off later, at the
    system's barline (_systems).
    """
    w = work.binary.shape[1]
    space = work.space
    block = max(2, round(space / 3))
    count = max(2, int(STRETCH * space / block))
    bridge = int(3.0 * space / block) + 1
    end = 0 if direction < 0 else -1
    points = [(float(xs[end]), float(tops[end]), float(bottoms[end]))]
    u = np.arange(-PAD * ROW_STEP, 4 + (PAD + 0.5) * ROW_STEP, ROW_STEP)
    slope = _end_slope(xs, tops, bottoms, end, space)
    closing = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, int(0.7 * space)), 1))
    gap = 0
    while gap <= bridge:
        x, top, bottom = points[-1]
        cols = x + direction * (np.arange(count * block) + 1.0)
        cols = cols[(cols >= 0) & (cols <= w - 1)]
        blocks = len(cols) // block
        if blocks == 0:
            break
        cols = cols[:blocks * block]
        t = top + slope[0] * (cols - x)
        b = bottom + slope[1] * (cols - x)
        grid = (np.broadcast_to(cols[None, :], (len(u), len(cols))).astype(np.float32),
                (t[None, :] + (b - t)[None, :] * u[:, None] / 4.0).astype(np.float32))
        # Short breaks in a line (a faint line in a blurred photo breaks up in the threshold)
        # are closed before the lines are counted; paper beyond the staff's end stays paper.
        raw = cv2.remap(work.binary, *grid, cv2.INTER_LINEAR)
        strip = cv2.morphologyEx(raw, cv2.MORPH_CLOSE, closing)
        hits = _line_hits(strip / 255.0, blocks)
        gray = None
        if hits.max(axis=0).min() < 4:  # some block lacks a line: look for faint ones too
            gray = cv2.remap(work.gray, *grid, cv2.INTER_LINEAR)
            faint = _faint_lines(gray, space, work.depth)
            hits = _line_hits(np.maximum(strip / 255.0, faint), blocks)
        inked = dark = None
        drift, found = 0, len(points)
        for k, column in enumerate(hits.T.tolist()):  # plain floats: cheap to index one by one
            # The drift within a row of the last one that finds the most (the first of equals).
            best = max(range(max(0, drift - 1 + SHIFT), min(2 * SHIFT, drift + 1 + SHIFT) + 1),
                       key=column.__getitem__)
            if column[best] >= 4:
                inked = _ink_profile(raw, blocks) if inked is None else inked
                if not _inked(*inked, best - SHIFT, k):
                    if dark is None:
                        if gray is None:
                            gray = cv2.remap(work.gray, *grid, cv2.INTER_LINEAR)
                        dark = _dark_lines(gray, blocks, work.depth)
                    if not dark[best, k]:
                        column[best] = 0
            if column[best] < 4:
                gap += 1
                if gap > bridge:
                    break
                continue
            if column[drift + SHIFT] < column[best]:
                drift = best - SHIFT
            c = (k + 0.5) * block
            i = min(len(cols) - 1, int(c))
            offset = drift * ROW_STEP * (b[i] - t[i]) / 4.0
            points.append((float(cols[i]), float(t[i] + offset), float(b[i] + offset)))
            gap = 0
        if len(points) == found:
            break
        slope = _walked_slope(points, space, slope)
    return points


def _end_slope(xs: np.ndarray, tops: np.ndarray, bottoms: np.ndarray, end: int,
               space: float) -> tuple[float, float]:
    """The top and bottom lines' slope at the track's `end`: a line through the track's points
    within 12 spaces of it, or through its four nearest when those are sparser."""
    order = np.argsort(np.abs(xs - xs[end]))
    near = np.abs(xs - xs[end]) <= 12 * space
    pick = order[:max(4, int(near.sum()))]
    if len(pick) < 2 or np.ptp(xs[pick]) < space:
        return 0.0, 0.0
    return (float(np.polyfit(xs[pick], tops[pick], 1)[0]),
            float(np.polyfit(xs[pick], bottoms[pick], 1)[0]))


def _walked_slope(points: list, space: float, old: tuple[float, float]) -> tuple[float, float]:
    recent = np.array([p for p in points if abs(p[0] - points[-1][0]) <= 8 * space])
    if len(recent) < 3 or np.ptp(recent[:, 0]) < 2 * space:
        return old
    return float(np.polyfit(recent[:, 0], recent[:, 1], 1)[0]), \
        float(np.polyfit(recent[:, 0], recent[:, 2], 1)[0])


def _faint_lines(gray: np.ndarray, space: float, depth: float) -> np.ndarray:
    """1 where a row of the straightened strip is a line too faint for the threshold: darker,
    once smoothed along the line, than the rows half a space above and below it."""
    smooth = cv2.blur(gray.astype(np.float32), (max(3, int(space)) | 1, 1))
    half = round(0.5 / ROW_STEP)
    h = len(smooth)
    out = np.zeros(smooth.shape)
    if h > 2 * half + 2:  # rows half a space and more inside both of the strip's ends
        dark = np.minimum(np.minimum(smooth[half:h - half - 2], smooth[half + 1:h - half - 1]),
                          smooth[half + 2:h - half])
        paper = np.minimum(smooth[1:h - 2 * half - 1], smooth[2 * half + 1:h - 1])
        out[half + 1:h - half - 1] = (paper - dark) > 0.6 * depth
    return out


def _ink_profile(raw: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The unclosed strip's ink per row and block, and [drift, block]: whether 4 of the 5
    lines are ink, thickened by a row."""
    ink = cv2.resize(raw.astype(np.float32) / 255.0, (n, raw.shape[0]), interpolation=cv2.INTER_AREA)
    thick = cv2.dilate(ink, np.ones((3, 1), np.uint8))
    return ink, (thick[_LINE_COMB] > 0.5).sum(axis=1) >= 4


def _inked(ink: np.ndarray, lines: np.ndarray, drift: int, k: int) -> bool:
    """Whether block k's lines at `drift` are 4 lines of ink before closing, or ink covers the
    staff's height (under a sign). Lines that only closing and faint ridges made are checked
    against the grey page (_dark_lines): a walk out over grainy paper to a dark desk would
    read a bass clef as a treble one."""
    staff = ink[_LINE_ROWS[0] + drift:_LINE_ROWS[-1] + drift + 1, k]
    return bool(lines[drift + SHIFT, k] or staff.mean() > 0.45)


def _dark_lines(gray: np.ndarray, n: int, depth: float) -> np.ndarray:
    """[drift, block]: whether the 5 line rows are darker than the paper between them."""
    shade = cv2.resize(gray.astype(np.float32), (n, gray.shape[0]), interpolation=cv2.INTER_AREA)
    darkest = cv2.erode(shade, np.ones((3, 1), np.uint8))  # a line may sit a row off
    return shade[_BETWEEN_COMB].mean(axis=1) - darkest[_LINE_COMB].mean(axis=1) > 0.5 * depth


def _line_hits(presence: np.ndarray, n: int) -> np.ndarray:
    """[drift, block]: how many of the 5 lines are present in each block, at each drift (rows
    off the prediction), from the strip's per-row line presence (0..1)."""
    profile = cv2.resize(presence.astype(np.float32), (n, presence.shape[0]),
                         interpolation=cv2.INTER_AREA)
    thick = cv2.dilate(profile, np.ones((3, 1), np.uint8))  # a line is thicker than a row
    on = thick[_LINE_COMB]
    # The count of lines, plus a fraction for how squarely the comb sits on them: of two
    # drifts that both find every line, the centred one wins.
    centred = profile[_LINE_COMB]
    return (on > 0.5).sum(axis=1) + 0.1 * centred.mean(axis=1)


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
