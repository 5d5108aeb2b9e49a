"""Page speed: a 12-megapixel photo of an engraved page with 10 staves, file to MIDI.

    python benchmarks/bench_page.py [PAGE] [--model PATH] [--runs N]

Without PAGE, the engine engraves a 10-staff part (clef, key and time signature on every
staff, a title, tempo text, dynamics) and photographs it at 12 megapixels (a slight tilt,
uneven light, noise, JPEG): what a user's phone gives. Prints the staves found and how many
the page has, the detection median (bar: 120 ms), the in-process median file to MIDI (bar:
0.5 s), the whole `omr-run` process, the per-staff recognition median and the share of time in
each stage. Without --model, omr-run's default: the packaged CRNN, with TrOMR for the staves
where it reads chords or clef changes (`--model crnn`: the CRNN alone).
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
from omr.recognize import Recognizer
from omr.staves import detect_staves


def engraved_photo(path: Path) -> int:
    """The benchmark page, written to `path`; returns its number of staves."""
    from omr_train.augment import PageShot
    from omr_train.staff_eval import make_page
    from omr_train.synth.layout import PageLayout

    layout = PageLayout(font="Leipzig", space_mm=1.5, system_size=1, systems=10, measures=4,
                        clef_set=("G2",), key=2, time="3/4", title=True, tempo=True,
                        dynamics=0.05, rehearsal=True)
    shot = PageShot(megapixels=12.0, fill=0.92, angle=1.5,
                    corners=(0.01, 0.0, -0.01, 0.0, 0.0, 0.0, 0.0, 0.0), bend=0.004,
                    desk=70.0, light=0.25, noise=5.0, blur=0.6, jpeg=90)
    photo, staves, _ = make_page(0, "test", shot=shot, layout=layout)
    cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return len(staves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", type=Path)
    parser.add_argument("--model", default="auto", help="auto, crnn, tromr or an ONNX file")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="omr-bench-"))
    page, truth = args.page, None
    if page is None:
        page = work / "page.jpg"
        truth = engraved_photo(page)
    gray = cv2.imread(str(page), cv2.IMREAD_GRAYSCALE)
    print(f"page {page} ({gray.shape[1]}x{gray.shape[0]}), model {args.model}")

    detect = []
    for _ in range(args.runs):
        clock = time.perf_counter()
        found = detect_staves(gray)
        detect.append(time.perf_counter() - clock)

    recognizer = Recognizer(args.model)
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

    process = []
    for _ in range(3):
        clock = time.perf_counter()
        subprocess.run([sys.executable, "-m", "omr.cli", str(page), "--model", str(args.model),
                        "-o", str(work / "cli.mid")], check=True, capture_output=True)
        process.append(time.perf_counter() - clock)

    median = statistics.median(totals)
    told = f" of {truth}" if truth is not None else ""
    print(f"staves found: {len(found)}{told}")
    print(f"detection:                median {1000 * statistics.median(detect):.0f} ms (bar 120 ms)")
    print(f"in process, file -> MIDI: median {median:.3f} s (bar 0.5 s)")
    print(f"whole omr-run process:    median {statistics.median(process):.3f} s")
    print(f"recognition per staff (batched): median {1000 * statistics.median(per_staff):.1f} ms")
    for stage in ("load", "detect", "prepare", "recognize", "decode", "write"):
        seconds = statistics.median(stages.get(stage, [0.0]))
        print(f"  {stage:<10} {seconds:7.3f} s  {100 * seconds / median:5.1f} %")


if __name__ == "__main__":
    main()
