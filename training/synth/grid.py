"""A picture of a dataset: each staff as engraved (left) and as the loader photographs it (right).

    python -m omr_train.synth.grid data/synth -o docs/images/synth-grid.png
"""

from __future__ import annotations

from pathlib import Path

import click
import cv2
import numpy as np
from omr_train.augment import AugmentOptions, augment
from omr_train.dataset import read_folder


def grid(samples, height: int = 64, seed: int = 0, width: int = 720) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for s in samples:
        img = cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE)
        clean = augment(img, height, None, AugmentOptions(strength=0))
        photo = augment(img, height, rng)
        rows.append(np.hstack([_fit(clean, width), np.full((height, 12), 255, np.uint8),
                               _fit(photo, width)]))
        rows.append(np.full((6, rows[-1].shape[1]), 200, np.uint8))
    return np.vstack(rows)


def _fit(img: np.ndarray, width: int) -> np.ndarray:
    """Crop or pad with paper to one width, so the grid lines up."""
    img = img[:, :width]
    return cv2.copyMakeBorder(img, 0, 0, 0, width - img.shape[1], cv2.BORDER_CONSTANT, value=255)


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rows", default=12, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(folder: Path, out: Path, rows: int, seed: int) -> None:
    samples = read_folder(folder)
    pick = np.random.default_rng(seed).choice(len(samples), min(rows, len(samples)), replace=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), grid([samples[i] for i in sorted(pick)], seed=seed))
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
