"""Staff finding measured against exact truth: engraved pages, photographed, staves scored.

Each page comes from the engine (synth/layout.py) and is photographed by augment.photograph_page,
which moves the truth with the ink. A detected staff is matched to a true one by its centre
line; then its two ends are measured in staff spaces, and the page's systems are compared as
partitions. Tight crops cut a true staff so that it touches the image edge, and check that the
clef stays inside the window the model reads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from omr.staves import DetectedStaff

from .augment import PageShot, page_width_for, photograph_page
from .synth.engrave import FONTS, HELD_OUT_FONT
from .synth.layout import PageLayout, TruthStaff, engrave_page

SAMPLES = 17  # points along each true line, left end to right end


@dataclass(frozen=True)
class PhotoStaff:
    """A true staff in photo pixels: its top and bottom line as SAMPLES points each, the point
    where its clef starts (on the staff's centre line), its system and its label."""

    top: np.ndarray
    bottom: np.ndarray
    clef: np.ndarray
    system: int
    tokens: tuple[str, ...]

    @property
    def centre(self) -> np.ndarray:
        return (self.top + self.bottom) / 2.0

    def space_at(self, k: int) -> float:
        return float(np.linalg.norm(self.bottom[k] - self.top[k]) / 4.0)

    def to_dict(self) -> dict:
        return {"top": self.top.round(2).tolist(), "bottom": self.bottom.round(2).tolist(),
                "clef": self.clef.round(2).tolist(), "system": self.system,
                "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict) -> PhotoStaff:
        return cls(np.array(d["top"]), np.array(d["bottom"]), np.array(d["clef"]), d["system"],
                   tuple(d["tokens"]))


def _line_points(s: TruthStaff) -> np.ndarray:
    xs = np.linspace(s.left, s.right, SAMPLES)
    centre = (s.top + s.bottom) / 2.0
    return np.concatenate([np.stack([xs, np.full_like(xs, s.top)], 1),
                           np.stack([xs, np.full_like(xs, s.bottom)], 1), [[s.clef_x, centre]]])


def font_for(split: str, rng: np.random.Generator) -> str:
    """The test split is engraved in the held-out font only, the others never in it."""
    if split == "test":
        return HELD_OUT_FONT
    return str(rng.choice([f for f in FONTS if f != HELD_OUT_FONT]))


def make_page(index: int, split: str = "test", seed: int = 0, shot: PageShot | None = None,
              layout: PageLayout | None = None) -> tuple[np.ndarray, list[PhotoStaff], dict]:
    """One photographed page, its true staves in photo pixels, and how it was made (`shot`
    and `layout` drawn at random unless given; a given layout's width is the shot's)."""
    rng = np.random.default_rng([seed, index, {"train": 0, "val": 1, "test": 2}[split]])
    shot = shot or PageShot.random(rng)
    font = font_for(split, rng)
    layout = replace(layout, width_px=page_width_for(shot)) if layout else \
        PageLayout.random(rng, font, page_width_for(shot))
    page, truth, layout = engrave_page(layout, rng)
    points = np.concatenate([_line_points(s) for s in truth])
    photo, moved = photograph_page(page, points, shot, rng)
    per = 2 * SAMPLES + 1
    staves = [PhotoStaff(moved[k * per:k * per + SAMPLES], moved[k * per + SAMPLES:(k + 1) * per - 1],
                         moved[(k + 1) * per - 1], s.system, s.tokens) for k, s in enumerate(truth)]
    meta = {"layout": asdict(layout), "shot": asdict(shot)}
    return photo, staves, meta


def write_pages(out: Path, count: int, split: str = "test", seed: int = 0, workers: int = 1,
                progress=None) -> list[Path]:
    """Make (or reuse) `count` pages under out/: NNNNN.jpg or .png (scans) and NNNNN.json."""
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(count) if not (out / f"{i:05d}.json").exists()]
    jobs = [(out, i, split, seed) for i in todo]
    if workers > 1 and jobs:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_write_one, jobs):
                if progress:
                    progress()
    else:
        for job in jobs:
            _write_one(job)
            if progress:
                progress()
    return [out / f"{i:05d}.json" for i in range(count)]


def _write_one(job: tuple[Path, int, str, int]) -> None:
    out, index, split, seed = job
    photo, staves, meta = make_page(index, split, seed)
    name = f"{index:05d}" + (".png" if meta["shot"]["scan"] else ".jpg")
    cv2.imwrite(str(out / name), photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    record = {"image": name, "staves": [s.to_dict() for s in staves], **meta}
    tmp = out / f"{index:05d}.json.tmp"
    tmp.write_text(json.dumps(record))
    tmp.replace(out / f"{index:05d}.json")


def load_page(path: Path) -> tuple[np.ndarray, list[PhotoStaff], dict]:
    record = json.loads(path.read_text())
    photo = cv2.imread(str(path.parent / record["image"]), cv2.IMREAD_GRAYSCALE)
    return photo, [PhotoStaff.from_dict(d) for d in record["staves"]], record


def detected_lines(staff: DetectedStaff) -> tuple[np.ndarray, np.ndarray]:
    """A detected staff's top and bottom line as SAMPLES points each, in page pixels."""
    xs = np.linspace(staff.left, staff.right, SAMPLES)
    affine = np.asarray(staff.to_page)

    def page(values) -> np.ndarray:
        pts = np.stack([xs, np.interp(xs, staff.xs, values)], 1)
        return pts @ affine[:, :2].T + affine[:, 2]

    return page(staff.tops), page(staff.bottoms)


@dataclass(frozen=True)
class PageScore:
    truth: int
    found: int
    matched: int
    end_errors: tuple[tuple[float, float], ...]  # (left, right) in staff spaces, per match
    systems_exact: bool
    seconds: float = 0.0

    @property
    def ends_ok(self) -> int:
        return sum(1 for a, b in self.end_errors if a <= 1.0 and b <= 1.0)


def _cost(truth: PhotoStaff, top: np.ndarray, bottom: np.ndarray) -> float:
    """Mean distance from the true centre line to the detected one, in staff spaces, over the
    true points that lie within the detected staff's span; inf when none do."""
    centre = (top + bottom) / 2.0
    tc = truth.centre
    inside = (tc[:, 0] >= centre[0, 0]) & (tc[:, 0] <= centre[-1, 0])
    if not inside.any():
        return float("inf")
    dy = np.abs(np.interp(tc[inside, 0], centre[:, 0], centre[:, 1]) - tc[inside, 1])
    return float(dy.mean() / truth.space_at(SAMPLES // 2))


def score_page(truth: list[PhotoStaff], found: list[DetectedStaff], seconds: float = 0.0) -> PageScore:
    lines = [detected_lines(s) for s in found]
    pairs = sorted((_cost(t, *lines[j]), i, j) for i, t in enumerate(truth)
                   for j in range(len(found)))
    match: dict[int, int] = {}
    for cost, i, j in pairs:
        if cost < 1.0 and i not in match and j not in match.values():
            match[i] = j
    errors = []
    for i, j in sorted(match.items()):
        t, (top, bottom) = truth[i], lines[j]
        left = np.linalg.norm((top[0] + bottom[0]) / 2 - t.centre[0]) / t.space_at(0)
        right = np.linalg.norm((top[-1] + bottom[-1]) / 2 - t.centre[-1]) / t.space_at(-1)
        errors.append((float(left), float(right)))
    exact = len(match) == len(truth) == len(found) and _same_partition(
        [truth[i].system for i in sorted(match)],
        [getattr(found[match[i]], "system", 0) for i in sorted(match)])  # older trackers: none
    return PageScore(len(truth), len(found), len(match), tuple(errors), exact, seconds)


def _same_partition(a: list[int], b: list[int]) -> bool:
    pairs = set(zip(a, b))
    return len(pairs) == len(set(a)) == len(set(b))


def tight_crop(photo: np.ndarray, staff: PhotoStaff, rng: np.random.Generator,
               both: bool) -> tuple[np.ndarray, float]:
    """A crop of one staff whose left end (and right end, if `both`) touches the image edge,
    as a user cuts it; and where the clef starts in the crop (x)."""
    space = staff.space_at(0)
    x0 = min(staff.top[0, 0], staff.bottom[0, 0]) + rng.uniform(-0.3, 0.3) * space
    x1r = max(staff.top[-1, 0], staff.bottom[-1, 0])
    x1 = x1r + (rng.uniform(-0.3, 0.3) if both else rng.uniform(1, 4)) * space
    ys = np.concatenate([staff.top[:, 1], staff.bottom[:, 1]])
    y0 = ys.min() - rng.uniform(1.5, 5) * space
    y1 = ys.max() + rng.uniform(1.5, 5) * space
    h, w = photo.shape
    box = [int(max(0, x0)), int(max(0, y0)), int(min(w, x1)), int(min(h, y1))]
    return photo[box[1]:box[3], box[0]:box[2]].copy(), float(staff.clef[0] - box[0])


def clef_inside(found: DetectedStaff, clef_x: float, space: float, fraction: float) -> bool:
    """Whether the window a model reading `found` over `fraction` of its height sees starts
    before the clef (a tenth of a space's slack) and reaches past it."""
    x0, _, x1, _ = found.window(fraction)
    return x0 <= clef_x + 0.1 * space < x1


def truth_staff(staff: PhotoStaff) -> DetectedStaff:
    """A true staff in the detector's own form, so that the same crop code cuts it: the
    recognizer then reads what a perfect detector would give it. Its frame is the page turned
    by the staff's own slope, where top and bottom line points share their x."""
    dx, dy = staff.centre[-1] - staff.centre[0]
    c, s = dx / np.hypot(dx, dy), dy / np.hypot(dx, dy)
    to_page = np.array([[c, -s, 0.0], [s, c, 0.0]])  # frame -> page: a rotation
    top, bottom = staff.top @ to_page[:, :2], staff.bottom @ to_page[:, :2]  # page -> frame
    xs = (top[:, 0] + bottom[:, 0]) / 2
    return DetectedStaff(tuple(xs), tuple(top[:, 1]), tuple(bottom[:, 1]), float(xs[0]),
                         float(xs[-1]), tuple(map(tuple, to_page.tolist())), staff.system)
