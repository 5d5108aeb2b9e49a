"""A whole engraved page: consecutive snippets of one tune, one system each.

Used for the example page shipped with the runtime and for page-level tests: the labels of
every staff are known, so the whole page-to-MIDI path can be scored.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import cv2
import numpy as np

from .engrave import Engraver, RenderStyle
from .mei import Clutter, close_ties, snippet_to_mei
from .music import Snippet, semantic_tokens


def page_pieces(snippets: list[Snippet], systems: int) -> dict[str, list[Snippet]]:
    by_piece: dict[str, list[Snippet]] = {}
    for s in snippets:
        by_piece.setdefault(s.piece, []).append(s)
    # Systems of four bars or more: justified to the page width, fewer look unlike a real part.
    return {k: v[:systems] for k, v in by_piece.items() if len(v) >= systems
            and len({(x.clef, x.key, x.time) for x in v[:systems]}) == 1
            and all(len(x.measures) >= 4 for x in v[:systems])}


def engrave_page(parts: list[Snippet], style: RenderStyle, width_px: int = 1700,
                 seed: int = 0) -> tuple[np.ndarray, list[list[str]]]:
    """The page image (grayscale) and the semantic tokens of each staff, top to bottom."""
    parts = [close_ties(replace(p, final_barline=True)) for p in parts]
    measures, breaks = [], []
    for p in parts:
        measures.extend(p.measures)
        breaks.append(len(measures) - 1)
    whole = replace(parts[0], measures=tuple(measures))
    mei, _ = snippet_to_mei(whole, Clutter(slur=0.1, dynamic=0.05), np.random.default_rng(seed),
                            system_breaks=tuple(breaks[:-1]))
    eng = Engraver()
    svg = _render(eng, mei, style, width_px)
    import resvg_py

    png = resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff")
    image = cv2.imdecode(np.frombuffer(bytes(png), np.uint8), cv2.IMREAD_GRAYSCALE)
    labels = [semantic_tokens(p if i == 0 else replace(p, time=None)) for i, p in enumerate(parts)]
    return image, labels


def _render(eng: Engraver, mei: str, style: RenderStyle, width_px: int) -> str:
    eng.tk.setOptions({
        "font": style.font, "breaks": "encoded", "adjustPageHeight": True, "header": "none",
        "footer": "none", "scale": 40, "pageWidth": int(width_px * 100 / 40),
        "pageMarginLeft": 150, "pageMarginRight": 150, "pageMarginTop": 200,
        "pageMarginBottom": 200, "spacingSystem": 10, "spacingLinear": style.spacing_linear,
        "spacingNonLinear": style.spacing_non_linear, "svgViewBox": False,
    })
    if not eng.tk.loadData(mei):
        raise ValueError("Verovio could not load the MEI")
    return eng.tk.renderToSVG(1)


@click.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cache", default="data/cache", show_default=True, type=click.Path(path_type=Path))
@click.option("--systems", default=6, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(out: Path, cache: Path, systems: int, seed: int) -> None:
    """Engrave one example page from a corpus tune; labels go beside it as OUT.semantic."""
    from .corpus import load_cache

    pieces = page_pieces(load_cache(cache), systems)
    name = sorted(pieces)[np.random.default_rng(seed).integers(len(pieces))]
    image, labels = engrave_page(pieces[name], RenderStyle(font="Leland"), seed=seed)
    cv2.imwrite(str(out), image)
    out.with_suffix(".semantic").write_text("\n".join("\t".join(t) for t in labels) + "\n")
    click.echo(f"{out}: {name}, {len(labels)} staves, {image.shape[1]}x{image.shape[0]}")


if __name__ == "__main__":
    main()
