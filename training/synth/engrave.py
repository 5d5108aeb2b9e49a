"""Engraving: MEI to SVG with Verovio, SVG to pixels with resvg, cropped around the staff.

The crop keeps more paper than the model sees (STORE_FRACTION < geometry.STAFF_FRACTION), so
the loader can rotate, warp and re-crop on the fly and still find paper and neighbour
fragments at the edges, just as a real crop has.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from omr.geometry import StaffBox

FONTS = ("Leipzig", "Bravura", "Leland", "Petaluma", "Gootville")
HELD_OUT_FONT = "Gootville"  # never in train/val: the test split measures generalisation with it
STORE_HEIGHT = 160
STORE_FRACTION = 0.36  # staff span / stored height; the model sees 0.45 after the loader's crop
STORE_SIDE_SPACES = 1.5

_STAFF_LINE = re.compile(r'<path d="M(-?[\d.]+) (-?[\d.]+) L(-?[\d.]+) (-?[\d.]+)" stroke-width')
_VIEWBOX = re.compile(r'class="definition-scale"[^>]*viewBox="0 0 ([\d.]+) ([\d.]+)"')
_SIZE = re.compile(r'<svg width="([\d.]+)px" height="([\d.]+)px"')
_MARGIN = re.compile(r'class="page-margin" transform="translate\((-?[\d.]+), (-?[\d.]+)\)"')


# Verovio's multiRestStyle: symbols for short rests, the numbered bar always, symbols always.
MULTI_REST_STYLES = ("auto", "block", "symbols")


@dataclass(frozen=True)
class RenderStyle:
    font: str = "Leipzig"
    spacing_linear: float = 0.25
    spacing_non_linear: float = 0.6
    staff_line_width: float = 0.15
    stem_width: float = 0.2
    spacing_staff: int = 8
    measure_numbers: int = 0
    fraction: float = STORE_FRACTION
    side_spaces: float = STORE_SIDE_SPACES
    multi_rest_style: str = "auto"  # Verovio's multiRestStyle

    @classmethod
    def random(cls, rng: np.random.Generator, fonts=FONTS) -> RenderStyle:
        return cls(
            font=str(rng.choice(fonts)),
            spacing_linear=float(rng.uniform(0.15, 0.35)),
            spacing_non_linear=float(rng.uniform(0.45, 0.7)),
            staff_line_width=float(rng.uniform(0.1, 0.3)),
            stem_width=float(rng.uniform(0.15, 0.35)),
            spacing_staff=int(rng.integers(4, 12)),
            measure_numbers=int(rng.choice([0, 0, 1, 5])),
            fraction=float(STORE_FRACTION * rng.uniform(0.92, 1.08)),
            side_spaces=float(rng.uniform(0.8, 2.5)),
            # Verovio's own choice ("auto") draws a rest of up to four measures as church-rest
            # symbols, where modern parts (and Camera-PrIMuS) draw the numbered bar for any count:
            # a network that saw only "auto" read a barred 3 as 5. Drawn last, so the style's
            # other draws are unchanged (what a staff draws after its style still moves).
            multi_rest_style=str(rng.choice(MULTI_REST_STYLES, p=(0.4, 0.5, 0.1))),
        )

    def to_dict(self) -> dict:
        return asdict(self)


class Engraver:
    """One Verovio toolkit, reused: creating one costs more than rendering a staff."""

    def __init__(self) -> None:
        import verovio

        verovio.enableLog(verovio.LOG_OFF)
        self.tk = verovio.toolkit()

    def svg(self, mei: str, style: RenderStyle) -> str:
        self.tk.setOptions({
            "font": style.font, "breaks": "none", "adjustPageHeight": True,
            "adjustPageWidth": True, "header": "none", "footer": "none", "scale": 100,
            "pageMarginTop": 100, "pageMarginBottom": 100, "pageMarginLeft": 60,
            "pageMarginRight": 60, "spacingLinear": style.spacing_linear,
            "spacingNonLinear": style.spacing_non_linear,
            "staffLineWidth": style.staff_line_width, "stemWidth": style.stem_width,
            "spacingStaff": style.spacing_staff, "mnumInterval": style.measure_numbers,
            "multiRestStyle": style.multi_rest_style, "svgViewBox": False,
        })
        if not self.tk.loadData(mei):
            raise ValueError("Verovio could not load the MEI")
        return self.tk.renderToSVG(1)

    def midi(self) -> bytes:
        """Verovio's own MIDI of the last loaded document, for checking our labels."""
        import base64

        return base64.b64decode(self.tk.renderToMIDI())


def staff_boxes(svg: str) -> list[StaffBox]:
    """Each staff's line positions, in SVG pixels, top to bottom."""
    width, _ = (float(v) for v in _SIZE.search(svg).groups())
    vb_w, _ = (float(v) for v in _VIEWBOX.search(svg).groups())
    mx, my = (float(v) for v in _MARGIN.search(svg).groups())
    scale = width / vb_w
    rows: dict[float, list[float]] = {}
    for chunk in svg.split('class="staff"')[1:]:
        lines = _STAFF_LINE.findall(chunk[:2000])[:5]
        for x0, y0, x1, _ in lines:
            rows.setdefault(float(y0), []).extend([float(x0), float(x1)])
    ys = sorted(rows)
    boxes = []
    for k in range(0, len(ys) - 4, 5):
        group = ys[k:k + 5]
        xs = [x for y in group for x in rows[y]]
        boxes.append(StaffBox(top=(group[0] + my) * scale, bottom=(group[-1] + my) * scale,
                              left=(min(xs) + mx) * scale, right=(max(xs) + mx) * scale))
    return boxes


def rasterise(svg: str, window: tuple[float, float, float, float], height: int,
              fonts: bool) -> np.ndarray:
    """Only the crop window of the SVG, straight at its final size: resvg's cost is per pixel,
    and a full page at print resolution cost five times more than the staff alone."""
    import resvg_py

    x0, y0, x1, y1 = window
    width = max(8, round((x1 - x0) * height / (y1 - y0)))
    head = (f'<svg width="{width}px" height="{height}px" '
            f'viewBox="{x0:.2f} {y0:.2f} {x1 - x0:.2f} {y1 - y0:.2f}" preserveAspectRatio="none"')
    page_w, page_h = _SIZE.search(svg).groups()
    svg = _SIZE.sub(head, svg, count=1)
    # The inner page scales to 100% of its parent unless told its own size.
    svg = svg.replace('<svg class="definition-scale"',
                      f'<svg class="definition-scale" x="0" y="0" width="{page_w}" height="{page_h}"', 1)
    png = resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff", skip_system_fonts=not fonts)
    return cv2.imdecode(np.frombuffer(bytes(png), np.uint8), cv2.IMREAD_GRAYSCALE)


def engrave(engraver: Engraver, mei: str, main_staff: int, style: RenderStyle,
            height: int = STORE_HEIGHT, fonts: bool = True) -> np.ndarray:
    """The labelled staff, cut to the stored layout. `fonts`: the MEI has text (tempo, lyrics)."""
    from omr.geometry import crop_window

    svg = engraver.svg(mei, style)
    box = staff_boxes(svg)[main_staff - 1]
    return rasterise(svg, crop_window(box, style.fraction, style.side_spaces), height, fonts)
