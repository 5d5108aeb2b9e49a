"""Whole engraved pages as printed music lays them out, with every staff's exact geometry.

A page is one to twelve staves in systems of one to four (parts, grand staves, choirs and
quartets), with what real pages carry around the staves: titles, composer and tempo text,
instrument names that indent the first system, dynamics, lyrics, rehearsal marks, and a last
system that stops short of the right margin. Each staff is a monophonic line in the PrIMuS
semantic encoding, so the shipped reader can score the page too.

The truth comes from Verovio's SVG, not from a detector: each staff's five line heights, where
its lines start and end, where its clef glyph starts, and the system it belongs to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .engrave import _MARGIN, _SIZE, _STAFF_LINE, _VIEWBOX, Engraver
from .mei import TEMPI, Clutter, _staff_def, _Writer, close_ties
from .music import Event, Snippet, semantic_tokens
from .procedural import CLEF_BOTTOM, _measure, measure_quarters

TITLES = ["Sonatina", "Minuet", "Etude No. 3", "Chorale", "Air", "Lullaby", "Gavotte",
          "Prelude", "Hymn", "Study in D", "Waltz", "March", "Romance", "Invention"]
COMPOSERS = ["J. S. Bach", "A. Diabelli", "M. Clementi", "Trad.", "arr. K. Lee",
             "F. Burgmüller", "C. Czerny", "Anon."]
INSTRUMENTS = ["Violin", "Flute", "Oboe", "Clarinet", "Soprano", "Alto", "Tenor", "Bass",
               "Viola", "Cello", "Piano", "Voice", "Guitar", "Horn"]
TIMES = ["4/4", "3/4", "2/4", "6/8", "C", "2/2", "3/8", "C/"]
# One staff per system (parts, melody books), grand staves, choirs or quartets.
SYSTEM_SIZES = (1, 2, 3, 4)
SYSTEM_WEIGHTS = (0.45, 0.35, 0.08, 0.12)

_SYSTEM = re.compile(r'<g id="[^"]+" class="system">')
_CLEF = re.compile(r'class="clef">\s*<use xlink:href="#[^"]+" transform="translate\((-?[\d.]+),')


@dataclass(frozen=True)
class TruthStaff:
    """One staff as engraved, in page pixels: its top and bottom line, where its lines start
    and end, where its clef starts, its system (0-based, reading order) and its label."""

    top: float
    bottom: float
    left: float
    right: float
    clef_x: float
    system: int
    tokens: tuple[str, ...]

    @property
    def space(self) -> float:
        return (self.bottom - self.top) / 4.0


@dataclass(frozen=True)
class PageLayout:
    """What one page looks like; `random` draws it as printed music varies."""

    font: str = "Leipzig"
    width_px: int = 2480  # the page's width as rasterised (300 dpi for A4)
    space_mm: float = 1.75  # staff space on the printed page; A4 is 210 mm wide
    system_size: int = 1
    systems: int = 6
    measures: int = 4  # per system
    clef_set: tuple[str, ...] = ("G2",)
    key: int = 0
    time: str = "4/4"
    title: bool = True
    labels: bool = False
    tempo: bool = False
    lyrics: bool = False
    dynamics: float = 0.0
    rehearsal: bool = False
    justify: bool = True
    short_last: bool = False

    @classmethod
    def random(cls, rng: np.random.Generator, font: str, width_px: int) -> PageLayout:
        size = int(rng.choice(SYSTEM_SIZES, p=SYSTEM_WEIGHTS))
        space = float(rng.uniform(1.2, 2.3))
        most = max(1, 12 // size)
        systems = int(rng.integers(1, most + 1)) if rng.random() < 0.3 else most
        return cls(
            font=font, width_px=width_px, space_mm=space, system_size=size, systems=systems,
            measures=int(rng.integers(2, 7)), clef_set=_clefs(rng, size),
            key=int(rng.integers(-5, 6)) if rng.random() < 0.8 else 0,
            time=str(rng.choice(TIMES)), title=bool(rng.random() < 0.6),
            labels=bool(rng.random() < 0.4), tempo=bool(rng.random() < 0.5),
            lyrics=bool(size in (1, 3) and rng.random() < 0.2),
            dynamics=float(rng.choice([0.0, 0.05, 0.12])), rehearsal=bool(rng.random() < 0.3),
            justify=bool(rng.random() < 0.9), short_last=bool(rng.random() < 0.4))


def _clefs(rng: np.random.Generator, size: int) -> tuple[str, ...]:
    if size == 1:
        return (str(rng.choice(["G2", "G2", "G2", "F4", "C3", "C4"])),)
    if size == 2:
        return ("G2", "F4")
    if size == 3:
        return ("G2", "G2", "F4")  # voice and piano
    return tuple(rng.choice([("G2", "G2", "C3", "F4"), ("G2", "G2", "G2", "F4")]))


def _staff_music(rng: np.random.Generator, layout: PageLayout, clef: str) -> list[tuple[Event, ...]]:
    length = measure_quarters(layout.time)
    prev = CLEF_BOTTOM[clef] + int(rng.integers(2, 7))
    out = []
    for _ in range(layout.systems * layout.measures):
        events, prev = _measure(rng, clef, layout.key, length, prev)
        # Stay near the staff: far ledger lines are for the recognizer's data, not page layout.
        prev = int(np.clip(prev, CLEF_BOTTOM[clef] - 2, CLEF_BOTTOM[clef] + 10))
        out.append(tuple(e for e in events if not e.grace))
    return out


def _system_snippets(music: list[tuple[Event, ...]], layout: PageLayout, clef: str) -> list[Snippet]:
    """The staff's music cut into one snippet per system, ties kept inside each system."""
    out = []
    for k in range(layout.systems):
        measures = music[k * layout.measures:(k + 1) * layout.measures]
        s = close_ties(Snippet(clef, layout.key, layout.time, tuple(measures)))
        last = s.measures[-1]
        if last and last[-1].kind == "note" and last[-1].tie:
            s = replace(s, measures=s.measures[:-1] + (last[:-1] + (replace(last[-1], tie=False),),))
        out.append(s)
    return out


def page_mei(layout: PageLayout, rng: np.random.Generator) -> tuple[str, list[list[Snippet]]]:
    """The page's MEI, and each staff's snippets, one per system."""
    clefs = layout.clef_set
    staves = [_system_snippets(_staff_music(rng, layout, c), layout, c) for c in clefs]
    whole = [Snippet(c, layout.key, layout.time, tuple(m for s in parts for m in s.measures))
             for c, parts in zip(clefs, staves)]
    clutter = Clutter(dynamic=layout.dynamics, lyrics=layout.lyrics)
    w = _Writer(whole[0], clutter, rng)
    measures = []
    ties = [False] * len(clefs)
    total = layout.systems * layout.measures
    for k in range(total):
        body = []
        for i, s in enumerate(whole):
            layer, ties[i] = w.layer(s.measures[k], i + 1, i == 0, ties[i])
            body.append(f'<staff n="{i + 1}"><layer n="1">{layer}</layer></staff>')
        controls = "".join(w.controls)
        w.controls = []
        if k == 0 and layout.tempo:
            controls += f'<tempo staff="1" tstamp="1" place="above">{rng.choice(TEMPI)}</tempo>'
        if layout.rehearsal and k % layout.measures == 0 and k and rng.random() < 0.5:
            controls += f'<reh staff="1" tstamp="1"><rend rend="box">{"ABCDEFGH"[k % 8]}</rend></reh>'
        right = ' right="end"' if k == total - 1 else ""
        brk = "<sb/>" if (k + 1) % layout.measures == 0 and k < total - 1 else ""
        measures.append(f'<measure n="{k + 1}"{right}>{"".join(body)}{controls}</measure>{brk}')
    names = rng.choice(INSTRUMENTS, len(clefs), replace=False) if layout.labels else None
    staff_defs = [_staff_def(i + 1, c, layout.key, layout.time).replace(
        "/>", f' label="{names[i]}"/>' if names is not None else "/>") for i, c in enumerate(clefs)]
    defs = "".join(staff_defs)
    group = {1: "", 2: ' symbol="brace" bar.thru="true"', 3: "", 4: ' symbol="bracket"'}
    if len(clefs) == 3:  # voice above a braced piano
        defs = (staff_defs[0] + '<staffGrp symbol="brace" bar.thru="true">'
                + "".join(staff_defs[1:]) + "</staffGrp>")
    head = _page_head(layout, rng)
    mei = ('<?xml version="1.0" encoding="UTF-8"?>'
           '<mei xmlns="http://www.music-encoding.org/ns/mei" meiversion="5.0"><meiHead><fileDesc>'
           '<titleStmt><title/></titleStmt><pubStmt/></fileDesc></meiHead><music><body><mdiv><score>'
           f'<scoreDef>{head}<staffGrp{group[len(clefs)]}>{defs}</staffGrp></scoreDef>'
           f'<section>{"".join(measures)}</section></score></mdiv></body></music></mei>')
    return mei, staves


def _page_head(layout: PageLayout, rng: np.random.Generator) -> str:
    if not layout.title:
        return ""
    title = rng.choice(TITLES)
    composer = rng.choice(COMPOSERS)
    return ('<pgHead><rend halign="center" valign="top"><rend fontsize="x-large">'
            f'{title}</rend></rend><rend halign="right" valign="bottom">{composer}</rend></pgHead>')


def render_options(layout: PageLayout) -> dict:
    # Verovio lays out in tenths of a millimetre with a staff space of 18 units (1.8 mm) on a
    # 2100-unit A4 page: a narrower page in those units prints a larger staff.
    unit = 1.8 / layout.space_mm
    return {"font": layout.font, "breaks": "encoded", "adjustPageHeight": False,
            "pageWidth": int(2100 * unit), "pageHeight": int(2970 * unit), "scale": 100,
            "header": "auto", "footer": "none", "pageMarginLeft": int(150 * unit),
            "pageMarginRight": int(150 * unit), "pageMarginTop": int(120 * unit),
            "pageMarginBottom": int(120 * unit), "spacingSystem": 12,
            "noJustification": not layout.justify,
            "minLastJustification": 1.0 if layout.short_last else 0.8, "svgViewBox": False}


def engrave_page(layout: PageLayout, rng: np.random.Generator,
                 engraver: Engraver | None = None) -> tuple[np.ndarray, list[TruthStaff], PageLayout]:
    """The page (grayscale, `layout.width_px` wide), its staves in reading order, and the
    layout as engraved: systems that do not fit on the page are dropped, as a page turn would
    move them, and bars too wide for a line are fewer.
    """
    eng = engraver or Engraver()
    while True:
        mei, staves = page_mei(layout, rng)
        eng.tk.setOptions(render_options(layout))
        if not eng.tk.loadData(mei):
            raise ValueError("Verovio could not load the page's MEI")
        svg = eng.tk.renderToSVG(1)
        if len(_SYSTEM.findall(svg)) != layout.systems and layout.measures > 1:
            # Bars too wide for one line: Verovio breaks the system where none was encoded.
            layout = replace(layout, measures=layout.measures - 1)
            continue
        w, h = (float(v) for v in _SIZE.search(svg).groups())
        truth = _truth(svg, staves, layout.width_px / w)
        if max(s.right for s in truth) > 0.98 * layout.width_px and layout.measures > 1:
            layout = replace(layout, measures=layout.measures - 1)  # unjustified bars overflow
            continue
        # With encoded breaks Verovio runs systems off the page's foot instead of turning it.
        fits = truth[-1].bottom + 6 * truth[-1].space < h * layout.width_px / w
        if (fits and eng.tk.getPageCount() == 1) or layout.systems == 1:
            break
        layout = replace(layout, systems=layout.systems - 1)
    return _rasterise(svg, layout.width_px), truth, layout


def _rasterise(svg: str, width_px: int) -> np.ndarray:
    import resvg_py

    w, h = (float(v) for v in _SIZE.search(svg).groups())
    height_px = round(h * width_px / w)
    svg = _SIZE.sub(f'<svg width="{width_px}px" height="{height_px}px" '
                    f'viewBox="0 0 {w:.2f} {h:.2f}"', svg, count=1)
    # Verovio asks for "Times, serif"; without a serif family named, resvg draws no text at all.
    png = resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff", serif_family="DejaVu Serif",
                                font_family="DejaVu Serif")
    return cv2.imdecode(np.frombuffer(bytes(png), np.uint8), cv2.IMREAD_GRAYSCALE)


def _truth(svg: str, staves: list[list[Snippet]], px: float) -> list[TruthStaff]:
    """Each system's staves from the SVG, in page pixels (`px` per SVG pixel)."""
    width = float(_SIZE.search(svg).group(1))
    vb_w = float(_VIEWBOX.search(svg).group(1))
    mx, my = (float(v) for v in _MARGIN.search(svg).groups())
    scale = width / vb_w * px
    out = []
    for k, chunk in enumerate(_SYSTEM.split(svg)[1:]):
        rows: dict[float, list[float]] = {}
        clefs: list[tuple[float, float]] = []
        for part in chunk.split('class="staff"')[1:]:
            lines = _STAFF_LINE.findall(part[:2000])[:5]
            for x0, y0, x1, _ in lines:
                rows.setdefault(float(y0), []).extend([float(x0), float(x1)])
            clef = _CLEF.search(part)
            if clef and lines:
                clefs.append((float(lines[0][1]), float(clef.group(1))))
        ys = sorted(rows)
        for n in range(len(ys) // 5):
            group = ys[5 * n:5 * n + 5]
            xs = [x for y in group for x in rows[y]]
            clef_x = min((x for y, x in clefs if y == group[0]), default=min(xs))
            snippet = staves[n][k] if k == 0 else replace(staves[n][k], time=None)
            out.append(TruthStaff((group[0] + my) * scale, (group[-1] + my) * scale,
                                  (min(xs) + mx) * scale, (max(xs) + mx) * scale,
                                  (clef_x + mx) * scale, k, tuple(semantic_tokens(snippet))))
    return out
