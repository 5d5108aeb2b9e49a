"""Synthesis throughput: labelled staff images per second, as `omr-synth` makes them.

    python benchmarks/bench_synth.py --count 600 --workers 2

Runs the real command into a temporary folder and times it end to end (worker start-up,
corpus cache load, engraving, PNG writing, manifest), so the figure is what a user gets.
Run it on an otherwise idle machine: other jobs on the two cores show up in the figure.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]


@click.command()
@click.option("--count", default=600, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--cache", default=str(ROOT / "data" / "cache"), show_default=True)
def main(count: int, workers: int, cache: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "omr_train.synth.cli", "--out", tmp, "--count", str(count),
               "--workers", str(workers), "--seed", "123", "--cache", cache]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        written = len(list(Path(tmp).glob("*/*.png")))
    print(f"machine: {platform.processor() or platform.machine()}, {workers} workers")
    print(f"{written} staves in {seconds:.1f} s: {written / seconds:.1f} staves/s")


if __name__ == "__main__":
    main()
