"""Camera-like augmentation, seeded, applied on the fly by the data loader (OpenCV + numpy).

Input: a stored engraved crop (white paper, black ink, staff lines spanning
engrave.STORE_FRACTION of the height). Output: the model's view of it, the staff brought to the
runtime's canonical layout (omr.geometry) with jitter, after a simulated phone photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from omr.geometry import STAFF_FRACTION, flattening_size
from omr.image import flatten_illumination
from omr_train.synth.engrave import STORE_FRACTION


@dataclass(frozen=True)
class AugmentOptions:
    strength: float = 1.0  # 0 = clean canonical crop only
    p_perspective: float = 0.6
    p_curl: float = 0.3
    p_blur: float = 0.5
    p_motion: float = 0.15
    p_light: float = 0.6
    p_shadow: float = 0.25
    p_texture: float = 0.4
    p_noise: float = 0.5
    p_jpeg: float = 0.5
    p_lowres: float = 0.3
    p_binarise: float = 0.1
    p_erode: float = 0.2
    p_damaged_start: float = 0.0  # omr-train --damaged-start; tried at 0.12, 0.05, 0.1: not kept (models/README.md)


def canonical_crop(img: np.ndarray, height: int, rng: np.random.Generator | None = None,
                   jitter: float = 0.0, fraction: float = STAFF_FRACTION) -> np.ndarray:
    """Re-crop a stored image to the model's staff fraction, optionally jittered."""
    h, w = img.shape
    frac = fraction
    cy = h / 2.0
    x0, x1 = 0.0, float(w)
    if rng is not None and jitter:
        frac *= rng.uniform(1 - 0.18 * jitter, 1 + 0.15 * jitter)
        cy += rng.uniform(-0.06, 0.06) * jitter * h
        span = STORE_FRACTION * h
        x0 += rng.uniform(-0.1, 0.25) * jitter * span
        x1 -= rng.uniform(-0.1, 0.25) * jitter * span
    span = STORE_FRACTION * h
    win = span / frac
    y0 = cy - win / 2
    scale = height / win
    width = max(16, round((x1 - x0) * scale))
    m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
    return cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def _perspective(img: np.ndarray, rng, s: float) -> np.ndarray:
    h, w = img.shape
    d = 0.04 * s * h
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-d, d, (4, 2)).astype(np.float32)
    angle = rng.normal(0, 1.2 * s)  # degrees
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m = np.vstack([rot, [0, 0, 1]]) @ cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def _damaged_start(img: np.ndarray, rng, s: float) -> np.ndarray:
    """The staff's start cut off by the photo's edge, smeared, twisted, or under a thumb or glare.

    The clef and key signature sit there, and every pitch after them depends on them: the
    network must learn to read what is left of them and the melody's range, not give up.
    """
    h, w = img.shape
    span = STORE_FRACTION * h
    cols = np.flatnonzero((img < 128).any(axis=0))
    if not len(cols):
        return img
    start = int(cols[0])
    end = min(w - 1, int(start + rng.uniform(0.3, 1.4) * span))  # into the clef, up to the key
    # Half of them twisted: Camera-PrIMuS's distortions swirl some staves' starts into a fan of
    # streaks that leaves only the clef's lower part, and that is all there is to read.
    mode = rng.choice(4, p=(1 / 6, 1 / 6, 1 / 6, 1 / 2))
    if mode == 3:
        return _twist(img, start, span, rng, s)
    if mode == 0:  # cut
        return img[:, min(end, start + int(0.7 * span)):].copy()
    mask = np.zeros((h, w), np.float32)
    mask[:, :end] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.08 * span))
    if mode == 1:  # smear: a long directional blur, as a slipping camera or a page-edge stretch
        k = int(rng.uniform(0.3, 0.9) * span) | 1
        other = cv2.filter2D(img, -1, _line_kernel(k, rng.uniform(20, 160)),
                             borderType=cv2.BORDER_REPLICATE)
    else:  # a blot: glare that bleaches the ink, or a shadow that darkens the paper
        glare = rng.random() < 0.5
        other = np.full_like(img, 255) if glare else (img * rng.uniform(0.35, 0.7)).astype(np.uint8)
        keep = rng.uniform(0.0, 0.5 * s)  # how much of the ink survives
        other = (keep * img + (1 - keep) * other).astype(np.uint8)
    out = mask * other.astype(np.float32) + (1 - mask) * img.astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _twist(img: np.ndarray, start: int, span: float, rng, s: float) -> np.ndarray:
    """A swirl about a point near the clef's top: full turn at the centre, none at its rim."""
    h, w = img.shape
    top = (h - span) / 2
    cx = start + rng.uniform(0.0, 0.6) * span
    cy = top + rng.uniform(-0.3, 0.4) * span
    radius = rng.uniform(0.7, 1.2) * span
    turn = np.deg2rad(rng.uniform(120, 300) * max(s, 0.5)) * rng.choice((-1, 1))
    # A point turns about the centre at its own distance, so nothing right of the circle moves
    # or is read: only the columns up to its rim are remapped (the loader runs this per staff).
    x1 = min(w, int(np.ceil(cx + radius)) + 2)
    ys, xs = np.mgrid[0:h, 0:x1].astype(np.float32)
    dx, dy = xs - cx, ys - cy
    r = np.sqrt(dx * dx + dy * dy)
    angle = turn * np.clip(1 - r / radius, 0, 1) ** 2
    cos, sin = np.cos(angle), np.sin(angle)
    map_x = (cx + cos * dx - sin * dy).astype(np.float32)
    map_y = (cy + sin * dx + cos * dy).astype(np.float32)
    out = img.copy()
    out[:, :x1] = cv2.remap(img[:, :x1], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def _line_kernel(k: int, angle: float) -> np.ndarray:
    """Motion blur: a k-pixel line at `angle` degrees, summing to 1."""
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), angle, 1)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    return kernel / max(kernel.sum(), 1e-6)


def _curl(img: np.ndarray, rng, s: float) -> np.ndarray:
    """Page curl and warp: a smooth vertical displacement that varies along the staff."""
    h, w = img.shape
    amp = rng.uniform(0.5, 3.0) * s * h / 64
    period = rng.uniform(0.6, 2.5) * w
    phase = rng.uniform(0, 2 * np.pi)
    xs = np.arange(w, dtype=np.float32)
    dy = amp * np.sin(2 * np.pi * xs / period + phase)
    map_x = np.tile(xs, (h, 1))
    map_y = np.arange(h, dtype=np.float32)[:, None] + dy[None, :]
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _lighting(img: np.ndarray, rng, s: float, shadow: bool) -> np.ndarray:
    h, w = img.shape
    f = img.astype(np.float32) / 255.0
    gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    light = 1.0 - 0.25 * s * rng.random() * (rng.uniform(-1, 1) * gx + rng.uniform(-1, 1) * gy + 1) / 2
    if shadow:
        edge = rng.uniform(0.1, 0.9) * w
        soft = rng.uniform(5, 60)
        light = light * (1 - rng.uniform(0.15, 0.45) * s / (1 + np.exp(-(np.arange(w) - edge) / soft)))[None, :]
    paper = rng.uniform(0.75, 1.0)
    ink = rng.uniform(0.0, 0.3)
    f = ink + (paper - ink) * f
    return np.clip(f * light * 255, 0, 255).astype(np.uint8)


def _texture(img: np.ndarray, rng, s: float) -> np.ndarray:
    h, w = img.shape
    small = rng.normal(0, 1, (max(2, h // 8), max(2, w // 8))).astype(np.float32)
    tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img.astype(np.float32) + tex * 6 * s, 0, 255).astype(np.uint8)


def augment(img: np.ndarray, height: int, rng: np.random.Generator,
            opt: AugmentOptions = AugmentOptions(),
            fraction: float = STAFF_FRACTION) -> np.ndarray:
    """A stored crop to the model's input, as if photographed by a phone."""
    # The runtime flattens every crop it reads (omr.image.flatten_illumination); so does the
    # loader, so the model sees photographs and renders the same way in training and in use.
    return flatten_illumination(_photograph(img, height, rng, opt, fraction),
                                ink_size=flattening_size(height, fraction))


def _photograph(img: np.ndarray, height: int, rng: np.random.Generator,
                opt: AugmentOptions, fraction: float) -> np.ndarray:
    s = opt.strength
    if s <= 0:
        return canonical_crop(img, height, fraction=fraction)
    # No draw when it is off, so the seeded test views stay those of the earlier camera model.
    if opt.p_damaged_start and rng.random() < opt.p_damaged_start * s:
        img = _damaged_start(img, rng, s)
    if rng.random() < opt.p_perspective:
        img = _perspective(img, rng, s)
    if rng.random() < opt.p_curl:
        img = _curl(img, rng, s)
    out = canonical_crop(img, height, rng, jitter=s, fraction=fraction)
    if rng.random() < opt.p_lowres:
        f = rng.uniform(0.45, 0.85)
        h, w = out.shape
        small = cv2.resize(out, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < opt.p_erode:
        k = np.ones((2, 2), np.uint8)
        out = cv2.erode(out, k) if rng.random() < 0.5 else cv2.dilate(out, k)
    if rng.random() < opt.p_blur:
        sigma = rng.uniform(0.3, 1.4) * s
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if rng.random() < opt.p_motion:
        k = int(rng.integers(3, 7))
        out = cv2.filter2D(out, -1, _line_kernel(k, rng.uniform(0, 180)))
    if rng.random() < opt.p_light:
        out = _lighting(out, rng, s, rng.random() < opt.p_shadow)
    if rng.random() < opt.p_texture:
        out = _texture(out, rng, s)
    if rng.random() < opt.p_noise:
        noise = rng.normal(0, rng.uniform(2, 12) * s, out.shape)
        out = np.clip(out + noise, 0, 255).astype(np.uint8)
    if rng.random() < opt.p_binarise:
        out = cv2.adaptiveThreshold(out, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 15, 8)
    if rng.random() < opt.p_jpeg:
        _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 90))])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out


@dataclass(frozen=True)
class PageShot:
    """How a whole page was photographed (or scanned): drawn by `PageShot.random`."""

    megapixels: float = 12.0
    fill: float = 0.9  # the page's height over the photo's
    angle: float = 0.0  # degrees
    corners: tuple[float, ...] = (0.0,) * 8  # perspective: corner moves, as page fractions
    bend: float = 0.0  # page curl: the lines' sag at the bound edge, in page heights
    fan: float = 0.0  # how much more the top and bottom of the page curl than its middle
    spine: int = 1  # the bound edge, where the page curls: -1 left, 1 right
    scan: bool = False  # a 1-bit scan: flat, nearly straight, A4-shaped, thresholded
    desk: float = 90.0
    light: float = 0.2
    shadow: float = 0.0  # darkness of a hard shadow across part of the page
    blur: float = 0.0  # sigma in pixels
    noise: float = 4.0
    lowres: float = 1.0  # <1: taken at this fraction of the size, then enlarged
    jpeg: int = 90

    @classmethod
    def random(cls, rng: np.random.Generator) -> PageShot:
        scan = bool(rng.random() < 0.12)
        tilt = rng.uniform(-8, 8) if rng.random() < 0.4 else rng.normal(0, 2.0)
        return cls(
            megapixels=float(rng.uniform(3, 12)), fill=float(rng.uniform(0.72, 0.95)),
            angle=float(rng.normal(0, 0.6) if scan else np.clip(tilt, -8, 8)),
            corners=(0.0,) * 8 if scan else _tilt(rng),
            bend=0.0 if scan else float(rng.choice([0, 1, 1]) * rng.uniform(-0.02, 0.02)),
            fan=0.0 if scan else float(rng.uniform(-0.02, 0.02)),
            spine=int(rng.choice([-1, 1])),
            scan=scan, desk=float(rng.uniform(30, 200)), light=float(rng.uniform(0, 0.45)),
            shadow=float(rng.uniform(0.25, 0.6)) if not scan and rng.random() < 0.25 else 0.0,
            blur=float(rng.uniform(0, 1.6)) if rng.random() < 0.6 else 0.0,
            noise=float(rng.uniform(0, 10)),
            lowres=float(rng.uniform(0.45, 0.8)) if rng.random() < 0.2 else 1.0,
            jpeg=int(rng.integers(30, 95)))

    def size(self) -> tuple[int, int]:
        """(width, height) of the photo: portrait 3:4, or an A4 scan."""
        if self.scan:
            h = int(np.sqrt(self.megapixels * 1e6 * 1.414))
            return round(h / 1.414), h
        h = int(np.sqrt(self.megapixels * 1e6 * 4 / 3))
        return round(h * 3 / 4), h


def _tilt(rng: np.random.Generator) -> tuple[float, ...]:
    """Corner moves (page fractions) of a phone held a little off square to the page: the far
    edge comes out shorter by up to 8 % (tilted forward or back), and the far side by up to
    6 % (turned left or right, which makes a page's staves converge), plus a little jitter."""
    pitch, yaw = rng.uniform(-0.08, 0.08), rng.uniform(-0.06, 0.06)
    # Corners: top-left, top-right, bottom-right, bottom-left, as (dx, dy).
    moves = np.zeros((4, 2))
    top, bottom = (0, 1), (3, 2)
    left, right = (0, 3), (1, 2)
    a, b = top if pitch > 0 else bottom
    moves[a, 0] += abs(pitch) / 2
    moves[b, 0] -= abs(pitch) / 2
    a, b = left if yaw > 0 else right
    moves[a, 1] += abs(yaw) / 2
    moves[b, 1] -= abs(yaw) / 2
    return tuple((moves.reshape(-1) + rng.uniform(-0.01, 0.01, 8)).tolist())


def page_width_for(shot: PageShot) -> int:
    """The width to engrave a page at, so that the photo samples it at about its own scale."""
    _, h = shot.size()
    return max(600, round(h * (1.0 if shot.scan else shot.fill) / 1.414))


def photograph_page(page: np.ndarray, points: np.ndarray, shot: PageShot,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The page as `shot` takes it, and where `points` (N x 2, page pixels) land in the photo.

    The page is bent first (a curl that sags the lines and fans them towards the page's top and
    bottom), then set on a desk by one homography (scale, rotation, perspective): both have
    closed forms, so the points move exactly as the ink does.
    """
    h, w = page.shape
    bent, points = _bend(page, points, shot)
    width, height = shot.size()
    matrix = _placement(w, h, width, height, shot)
    photo = cv2.warpPerspective(bent, matrix, (width, height), flags=cv2.INTER_AREA
                                if shot.scan else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=255 if shot.scan else shot.desk)
    if not shot.scan:
        mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), matrix, (width, height))
        photo = _desk(photo, mask, shot, rng)
    moved = cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), matrix)
    return _camera(photo, shot, rng), moved.reshape(-1, 2)


def _bend(page: np.ndarray, points: np.ndarray, shot: PageShot) -> tuple[np.ndarray, np.ndarray]:
    """y' = y + d(x) + c(x) (y - h/2): sag d and fan c grow to the page's edges as a parabola."""
    if not shot.bend and not shot.fan:
        return page, points
    h, w = page.shape
    # The curl grows from nothing at the page's free edge to its most at the bound one.
    u = np.arange(w, dtype=np.float64) / w
    u = u if shot.spine > 0 else 1 - u
    sag, fan = shot.bend * h * u**2, shot.fan * u**2
    ys = np.arange(h, dtype=np.float64)[:, None]
    # Inverse of y' = y + sag + fan (y - h/2), which is linear in y.
    src_y = (ys - sag[None, :] + fan[None, :] * h / 2) / (1 + fan[None, :])
    map_x = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], (h, w))
    bent = cv2.remap(page, map_x, src_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=255)
    pu = points[:, 0] / w if shot.spine > 0 else 1 - points[:, 0] / w
    moved = points.astype(np.float64).copy()
    moved[:, 1] = points[:, 1] + shot.bend * h * pu**2 + shot.fan * pu**2 * (points[:, 1] - h / 2)
    return bent, moved


def _placement(w: int, h: int, width: int, height: int, shot: PageShot) -> np.ndarray:
    """Page pixels to photo pixels: perspective on the page, then rotate and fit into the frame."""
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    moves = np.asarray(shot.corners, np.float32).reshape(4, 2) * np.float32([w, h])
    persp = cv2.getPerspectiveTransform(src, src + moves)
    corners = cv2.perspectiveTransform(src.reshape(-1, 1, 2), persp).reshape(-1, 2)
    theta = np.deg2rad(shot.angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    turned = corners @ rot.T
    span = turned.max(0) - turned.min(0)
    fill = 1.0 if shot.scan else shot.fill
    scale = min(fill * height / span[1], 0.97 * width / span[0], 0.99 * height / span[1])
    centre = (turned.max(0) + turned.min(0)) / 2
    place = np.eye(3)
    place[:2, :2] = scale * rot
    place[:2, 2] = np.array([width / 2, height / 2]) - scale * centre
    return place @ persp


def _desk(photo: np.ndarray, mask: np.ndarray, shot: PageShot, rng) -> np.ndarray:
    """Texture on the desk around the page, and a page edge that is not a perfect step."""
    h, w = photo.shape
    small = rng.normal(0, 1, (max(2, h // 32), max(2, w // 32))).astype(np.float32)
    desk = shot.desk + 18 * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    alpha = cv2.GaussianBlur(mask, (0, 0), 1.5).astype(np.float32) / 255.0
    return np.clip(alpha * photo + (1 - alpha) * desk, 0, 255).astype(np.uint8)


def _camera(photo: np.ndarray, shot: PageShot, rng) -> np.ndarray:
    h, w = photo.shape
    if shot.scan:
        _, out = cv2.threshold(photo, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        return out
    f = photo.astype(np.float32)
    gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    f *= 1.0 - shot.light * (rng.uniform(-1, 1) * gx + rng.uniform(-1, 1) * gy + 1) / 2
    if shot.shadow:
        # A hard shadow (a hand, a phone) across part of the page: a half-plane, softly edged.
        angle = rng.uniform(0, np.pi)
        across = np.cos(angle) * gx + np.sin(angle) * gy - rng.uniform(-0.5, 0.5)
        f *= 1.0 - shot.shadow / (1 + np.exp(-across * rng.uniform(40, 300)))
    out = np.clip(f * rng.uniform(0.8, 1.0) + rng.uniform(0, 25), 0, 255).astype(np.uint8)
    if shot.lowres < 1.0:
        small = cv2.resize(out, (round(w * shot.lowres), round(h * shot.lowres)),
                           interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if shot.blur:
        out = cv2.GaussianBlur(out, (0, 0), shot.blur)
    if shot.noise:
        out = np.clip(out + rng.normal(0, shot.noise, out.shape).astype(np.float32), 0,
                      255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, shot.jpeg])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
