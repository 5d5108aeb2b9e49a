"""Reading PrIMuS-layout folders, and the training loader built on them.

One reader serves our synthetic data (ID/ID.png + ID/ID.semantic), a real PrIMuS or
Camera-PrIMuS download (the same layout, with ID_distorted.jpg beside), and flat folders of
image + .semantic pairs such as ../shared/eval/camera-primus and cc-staves.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    id: str
    image: Path
    tokens: tuple[str, ...]
    split: str = ""
    font: str = ""  # synthetic data: the engraving font (per-font scores show generalisation)


def read_tokens(path: Path) -> tuple[str, ...]:
    return tuple(t for t in path.read_text(encoding="utf-8").strip().split("\t") if t.strip())


def read_folder(root: Path, variant: str = "clean", split: str | None = None,
                seen: dict[str, list[Sample]] | None = None) -> list[Sample]:
    """All labelled staves under `root`, sorted by path.

    variant: "clean" takes ID.png (or .jpg); "distorted" takes Camera-PrIMuS's ID_distorted.jpg.
    split: keep only samples whose manifest entry has this split (synthetic data only).
    seen: a dict the caller keeps between calls on one folder and variant that grows
    (`omr-train --grow`): a staff's folder, once read complete, is neither listed nor read again.
    """
    root = Path(root)
    seen = {} if seen is None else seen
    found: list[Sample] = []
    fresh = []
    for folder, names in _folders(str(root), seen):
        if folder in seen:
            found += seen[folder]
        else:
            fresh.append((folder, names))
    new = any(n.endswith(".semantic") for _, names in fresh for n in names)
    manifest = _manifest(root) if new else {}
    for folder, names in fresh:
        samples = list(_samples_in(folder, names, variant, manifest))
        found += samples
        # A staff without its split is still being written (its ID.json comes last).
        if samples and folder != str(root) and all(s.split for s in samples):
            seen[folder] = samples
    found.sort(key=lambda x: x.image.parent.parts + (x.id,))
    return [x for x in found if split is None or x.split == split]


def _folders(root: str, seen: dict) -> list[tuple[str, set[str]]]:
    """(folder, the names of its files) for each folder under root, without listing again the
    folders in `seen`: os.scandir, because pathlib's rglob and a stat per image took 40 s on
    100k staves."""
    out, stack = [], [root]
    while stack:
        folder = stack.pop()
        names: set[str] = set()
        if folder not in seen:
            with os.scandir(folder) as entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=False):  # as rglob: no loops
                        stack.append(e.path)
                    else:
                        names.add(e.name)
        out.append((folder, names))
    return out


def _samples_in(folder: str, names: set[str], variant: str, manifest: dict):
    """The labelled staves among one folder's files."""
    for name in names:
        if not name.endswith(".semantic"):
            continue
        stem = name[:-len(".semantic")]
        wanted = [f"{stem}_distorted.jpg"] if variant == "distorted" else [stem + s for s in IMAGE_SUFFIXES]
        image = next((n for n in wanted if n in names), None)
        if image is None:
            continue
        semantic = Path(folder) / name
        split, font = manifest.get(stem) or _own_entry(semantic)
        yield Sample(stem, Path(folder) / image, read_tokens(semantic), split, font)


def _manifest(root: Path) -> dict[str, tuple[str, str]]:
    """Synthetic data: id -> (split, font), from the manifest omr-synth writes when it ends."""
    m = root / "manifest.jsonl"
    if not m.exists():
        return {}
    return dict(_entry(json.loads(line)) for line in m.open())


def _own_entry(semantic: Path) -> tuple[str, str]:
    """A staff the manifest lacks (omr-synth still writing, or resumed after the manifest was
    written): its own ID.json, written last, once the staff is complete."""
    meta = semantic.with_suffix(".json")
    return _entry(json.loads(meta.read_text()))[1] if meta.exists() else ("", "")


def _entry(row: dict) -> tuple[str, tuple[str, str]]:
    return row["id"], (row.get("split", ""), row.get("style", {}).get("font", ""))


def png_width(path: Path) -> int:
    """Width from the PNG header, without decoding: bucketing 100k files stays fast."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        return int(img.shape[1] * 160 / img.shape[0])
    return struct.unpack(">I", head[16:20])[0]


def bucket_batches(widths: list[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Batches of similar widths, in random order: padding stays small, order stays random."""
    order = np.argsort(np.asarray(widths) + rng.uniform(0, 40, len(widths)), kind="stable")
    batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def collate_ink(images: list[np.ndarray], max_width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to one width with paper; returns ink as uint8 [N,1,H,W] (255 - grey, so 0 is
    paper) and the widths. A quarter of float32's bytes, for batches that cross processes."""
    widths = np.array([im.shape[1] for im in images], np.int64)
    w = int(widths.max())
    if max_width:
        w = min(w, max_width)
    batch = np.zeros((len(images), 1, images[0].shape[0], w), np.uint8)
    for i, im in enumerate(images):
        batch[i, 0, :, :min(w, im.shape[1])] = 255 - im[:, :w]
    return batch, np.minimum(widths, w)


def collate(images: list[np.ndarray], max_width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """collate_ink at the models' scale: ink = 1, paper = 0 (so the padding is blank paper)."""
    ink, widths = collate_ink(images, max_width)
    return ink.astype(np.float32) / 255.0, widths
