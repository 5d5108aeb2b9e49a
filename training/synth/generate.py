"""One labelled staff image from a sample index: the unit of work of `omr-synth`.

Everything about sample i (its source, split, melody, clutter and render style) is drawn from
a generator seeded with (seed, i), so the same seed gives the same dataset whatever the
number of workers, and an interrupted run resumes by skipping what is already written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from omr.semantic import CLEFS

from .corpus import split_of
from .engrave import FONTS, HELD_OUT_FONT, Engraver, RenderStyle, engrave
from .mei import Clutter, close_ties, snippet_to_mei
from .music import Snippet, semantic_tokens, transpose
from .procedural import CLEF_BOTTOM, random_snippet

SPLITS = (("train", 0.9), ("val", 0.05), ("test", 0.05))
TRAIN_FONTS = tuple(f for f in FONTS if f != HELD_OUT_FONT)


@dataclass(frozen=True)
class SynthOptions:
    seed: int = 0
    corpus_share: float = 0.6


def sample_split(seed: int, index: int) -> str:
    r = np.random.default_rng([seed, index, 7]).random()
    return "train" if r < SPLITS[0][1] else "val" if r < SPLITS[0][1] + SPLITS[1][1] else "test"


def _fit_clef(s: Snippet, rng: np.random.Generator) -> Snippet:
    """Sometimes move a tune to another clef, shifting octaves so it sits on the staff."""
    clef = s.clef
    if rng.random() < 0.35:
        clef = str(rng.choice(CLEFS))
    notes = s.notes()
    if not notes:
        return replace(s, clef=clef)
    mean = float(np.mean([n.diatonic for n in notes]))
    centre = CLEF_BOTTOM[clef] + 4
    octaves = round((centre - mean) / 7)
    moved = transpose(s, 0, octaves) if octaves else s
    return replace(moved or s, clef=clef)


def corpus_snippet(pool: list[Snippet], rng: np.random.Generator) -> Snippet:
    s = pool[int(rng.integers(len(pool)))]
    if rng.random() < 0.6:
        moved = transpose(s, int(rng.integers(-6, 7)))
        s = moved or s
    if rng.random() < 0.15:
        s = replace(s, key=0) if s.key == 0 else s
    return _fit_clef(s, rng)


def make_sample(index: int, opt: SynthOptions, pools: dict[str, list[Snippet]],
                engraver: Engraver) -> tuple[np.ndarray, list[str], dict]:
    split = sample_split(opt.seed, index)
    rng = np.random.default_rng([opt.seed, index])
    pool = pools.get(split) or []
    if pool and rng.random() < opt.corpus_share:
        snippet = corpus_snippet(pool, rng)
    else:
        snippet = random_snippet(rng, f"procedural/{opt.seed}/{index}")
    snippet = close_ties(snippet)
    fonts = FONTS if split == "test" else TRAIN_FONTS
    style = RenderStyle.random(rng, fonts)
    clutter = Clutter.random(rng)
    mei, main = snippet_to_mei(snippet, clutter, rng)
    text = clutter.tempo or clutter.lyrics or clutter.fingering > 0 or style.measure_numbers > 0
    image = engrave(engraver, mei, main, style, fonts=text)
    tokens = semantic_tokens(snippet)
    meta = {"split": split, "source": snippet.source, "piece": snippet.piece,
            "style": style.to_dict(), "clutter": clutter.__dict__, "seed": opt.seed,
            "index": index}
    return image, tokens, meta


def sample_id(index: int) -> str:
    return f"s{index:07d}"


def write_sample(out: Path, index: int, image: np.ndarray, tokens: list[str], meta: dict) -> None:
    """PrIMuS layout, ID/ID.png + ID/ID.semantic; the .json is written last and marks it done."""
    sid = sample_id(index)
    d = out / sid
    d.mkdir(parents=True, exist_ok=True)
    _, png = cv2.imencode(".png", image)
    _atomic(d / f"{sid}.png", png.tobytes())
    _atomic(d / f"{sid}.semantic", ("\t".join(tokens) + "\n").encode())
    _atomic(d / f"{sid}.json", json.dumps({"id": sid, **meta}).encode())


def is_done(out: Path, index: int) -> bool:
    sid = sample_id(index)
    return (out / sid / f"{sid}.json").exists()


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_pools(cache_dir: Path) -> dict[str, list[Snippet]]:
    from .corpus import load_cache

    pools: dict[str, list[Snippet]] = {"train": [], "val": [], "test": []}
    for s in load_cache(cache_dir):
        pools[split_of(s.piece)].append(s)
    return pools
