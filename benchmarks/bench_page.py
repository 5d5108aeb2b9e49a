"""Page speed: a 12-megapixel photo with 10 staves, file to MIDI.

    python benchmarks/bench_page.py [PAGE] [--model PATH] [--runs N]

Prints the in-process median (bar: 1.0 s), the whole `omr-run` process (bar: 2.5 s), the
per-staff recognition median (bar: 40 ms) and the share of time in each stage. Without PAGE a
page is synthesised with OpenCV; without --model the packaged model is used, else a tiny one.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from conftest import make_model, make_page
from omr.recognize import DEFAULT_MODEL, Recognizer


def synth_photo(path: Path) -> Path:
    """10 staves on a 3000 x 4000 page, slightly rotated, with uneven light and JPEG noise."""
    page = make_page(staves=10, width=3000, space=26, angle=1.2, margin_top=300)
    page = cv2.resize(page, (3000, 4000), interpolation=cv2.INTER_LINEAR)
    light = np.linspace(0.75, 1.0, 3000)[None, :] * np.linspace(0.85, 1.0, 4000)[:, None]
    noise = np.random.default_rng(0).normal(0, 6, page.shape)
    photo = np.clip(page * light + noise, 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="omr-bench-"))
    page = args.page or synth_photo(work / "page.jpg")
    model = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.exists() else make_model(work / "tiny.onnx"))
    print(f"page {page} ({cv2.imread(str(page), cv2.IMREAD_GRAYSCALE).shape[::-1]}), model {model}")

    recognizer = Recognizer(model)
    stages: dict[str, list[float]] = {}
    totals, per_staff = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        score = recognizer.read(page)
        clock = time.perf_counter()
        score.to_midi(work / "page.mid")
        write = time.perf_counter() - clock
        totals.append(time.perf_counter() - start)
        for stage, seconds in {**score.timings, "write": write}.items():
            stages.setdefault(stage, []).append(seconds)
        per_staff.append(score.timings["recognize"] / max(1, len(score.staves)))
    staves = len(score.staves)

    crops = [np.full((recognizer.info.input_height, 1500), 255, np.uint8)]
    single = []
    for _ in range(args.runs):
        clock = time.perf_counter()
        recognizer.run(crops)
        single.append(time.perf_counter() - clock)

    process = []
    for _ in range(3):
        clock = time.perf_counter()
        subprocess.run([sys.executable, "-m", "omr.cli", str(page), "--model", str(model),
                        "-o", str(work / "cli.mid")], check=True)
        process.append(time.perf_counter() - clock)

    median = statistics.median(totals)
    print(f"staves found: {staves}")
    print(f"in process, file -> MIDI: median {median:.3f} s (bar 1.0 s)")
    print(f"whole omr-run process:    median {statistics.median(process):.3f} s (bar 2.5 s)")
    print(f"recognition per staff (batched): median {1000 * statistics.median(per_staff):.1f} ms;"
          f" one 1500-px staff alone: {1000 * statistics.median(single):.1f} ms (bar 40 ms)")
    for stage in ("load", "detect", "prepare", "recognize", "decode", "write"):
        seconds = statistics.median(stages.get(stage, [0.0]))
        print(f"  {stage:<10} {seconds:7.3f} s  {100 * seconds / median:5.1f} %")


if __name__ == "__main__":
    main()
