"""CPU training and inference speed of the CRNN presets, on the same real batches.

    python benchmarks/bench_train_speed.py --data data/synth --steps 6

Training: staves per second through forward, CTC loss, backward and AdamW step, batch 16,
`torch.set_num_threads(2)`, batches of generated staves (same staves for every preset, already
augmented, so the loader's cost is left out and the figure compares the networks alone).
Inference: milliseconds per staff at batch 1 on the same staves.
Frames per token: the output frames each staff gets over the frames CTC needs for its label,
which bounds how far a preset may pool the width.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import click
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from omr.vocab import Vocabulary
from omr_train.augment import augment
from omr_train.dataset import collate, read_folder
from omr_train.model import PRESETS, build, output_lengths


def _batches(samples, vocab, height, batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(steps):
        chunk = samples[k * batch:(k + 1) * batch]
        imgs = [augment(cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE), height, rng) for s in chunk]
        x, w = collate(imgs)
        t = [vocab.encode(s.tokens) for s in chunk]
        out.append((torch.from_numpy(x), torch.from_numpy(w), t))
    return out


def frames_per_token(widths: torch.Tensor, labels: list[list[int]], cfg) -> np.ndarray:
    # CTC must put a blank between two equal labels, so each repeat costs one more frame.
    need = np.array([len(t) + sum(a == b for a, b in pairwise(t)) for t in labels])
    return output_lengths(widths, cfg).numpy() / np.maximum(need, 1)


def train_speed(preset: str, samples, vocab, steps: int,
                batch: int) -> tuple[float, float, np.ndarray]:
    cfg = replace(PRESETS[preset], num_classes=vocab.size)
    model = build(cfg)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    data = _batches(samples, vocab, cfg.input_height, batch, steps + 1)
    times = []
    for x, w, t in data:
        start = time.perf_counter()
        lp = model(x).transpose(0, 1)
        targets = torch.tensor([i for seq in t for i in seq])
        loss = F.ctc_loss(lp, targets, output_lengths(w, cfg), torch.tensor([len(s) for s in t]),
                          zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    mean_width = float(np.mean([float(w.float().mean()) for _, w, _ in data]))
    ratios = np.concatenate([frames_per_token(w, t, cfg) for _, w, t in data])
    return batch / statistics.median(times[1:]), mean_width, ratios


def infer_ms(preset: str, samples, vocab, n: int) -> float:
    cfg = replace(PRESETS[preset], num_classes=vocab.size)
    model = build(cfg).eval()
    data = _batches(samples, vocab, cfg.input_height, 1, n + 2, seed=1)
    times = []
    with torch.no_grad():
        for x, _, _ in data:
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[2:])


@click.command()
@click.option("--data", default="data/synth", show_default=True)
@click.option("--steps", default=6, show_default=True)
@click.option("--batch", default=16, show_default=True)
def main(data: str, steps: int, batch: int) -> None:
    torch.set_num_threads(2)
    samples = read_folder(Path(data), split="train")[: batch * (steps + 1)]
    vocab = Vocabulary.from_labels(s.tokens for s in read_folder(Path(data)))
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"2 threads, batch {batch}, vocabulary {vocab.size}")
    rows = {}
    for preset in ("crnn-paper", "crnn-lite", "crnn-edge"):
        rate, width, ratios = train_speed(preset, samples, vocab, steps, batch)
        ms = infer_ms(preset, samples, vocab, 20)
        rows[preset] = rate
        print(f"{preset:11s} train {rate:6.1f} staves/s (mean input width {width:.0f} px)  "
              f"inference {ms:6.1f} ms/staff")
        print(f"{'':11s} output frames per frame CTC needs: median {np.median(ratios):.1f}, "
              f"short {np.mean(ratios < 1):.1%}, under 1.5 {np.mean(ratios < 1.5):.1%} "
              f"({len(ratios)} staves)")
    for preset in ("crnn-lite", "crnn-edge"):
        print(f"{preset} trains {rows[preset] / rows['crnn-paper']:.1f}x faster than crnn-paper")


if __name__ == "__main__":
    main()
