"""Staff finding against exact truth: engraved pages photographed, and tight staff crops.

    python benchmarks/bench_staves.py [--pages 320] [--split test] [--crops 400] [--ser 60]

Pages are made once into data/pages/SPLIT (resumable) by training/staff_eval.py: the engine
engraves 1 to 12 staves in systems of 1 to 4 (titles, instrument names, lyrics, braces and
brackets), and augment.photograph_page photographs them (3 to 12 megapixels, rotation up to 8
degrees, perspective, curl, shadows, blur, noise, JPEG, low resolution, 1-bit scans). The test
split is engraved in the held-out font. Prints staff recall and precision, both ends' error in
staff spaces, exact system grouping, detection time; with --crops, how often the clef of a tight
crop stays inside the model's window; with --ser, page-to-tokens SER with staves cut by the
detector and by the truth; with --detector OLD.py, another revision's staves.py on the same
pages (`git show 7580cd7:runtime/staves.py > OLD.py`: the tracker before). Saves the worst pages, detections over truth, to
benchmarks/results/staves-worst.jpg and the figures to benchmarks/results/staves.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from omr.staves import DetectedStaff, detect_staves, main_staff
from omr_train.staff_eval import (
    PageScore,
    clef_inside,
    detected_lines,
    load_page,
    score_page,
    tight_crop,
    truth_staff,
    write_pages,
)


def run_pages(paths: list[Path], detect=None) -> tuple[list, int]:
    """(path, score, staves found) of every page, and how many pages another revision's
    `detect` crashed on (scored as finding nothing); this revision's own crash stops the run."""
    out, crashed = [], 0
    for path in tqdm(paths, desc="detect", unit="page"):
        photo, truth, _ = load_page(path)
        clock = time.perf_counter()
        try:
            found = (detect or detect_staves)(photo)
        except Exception:  # an old tracker's crash is one of its figures
            if detect is None:
                raise
            found, crashed = [], crashed + 1
        out.append((path, score_page(truth, found, time.perf_counter() - clock), found))
    return out, crashed


def other_detector(path: Path):
    """detect_staves from another revision's staves.py (`git show REV:runtime/staves.py`),
    loaded inside the omr package so that its relative imports resolve."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("omr._other_staves", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.detect_staves


def summary(results: list[tuple[Path, PageScore, list[DetectedStaff]]]) -> dict:
    scores = [s for _, s, _ in results]
    truth, found, matched = (sum(getattr(s, k) for s in scores) for k in ("truth", "found", "matched"))
    ends = [e for s in scores for e in s.end_errors]
    worst = [max(a, b) for a, b in ends]
    return {
        "pages": len(scores), "staves": truth, "recall": matched / max(1, truth),
        "precision": matched / max(1, found),
        "ends_within_1_space": sum(s.ends_ok for s in scores) / max(1, matched),
        "left_error_median": statistics.median(a for a, _ in ends) if ends else None,
        "right_error_median": statistics.median(b for _, b in ends) if ends else None,
        "end_error_p95": float(np.percentile(worst, 95)) if worst else None,
        "systems_exact": sum(s.systems_exact for s in scores) / max(1, len(scores)),
        "staff_count_right": sum(s.found == s.truth for s in scores) / max(1, len(scores)),
        "seconds_median": statistics.median(s.seconds for s in scores),
    }


def badness(score: PageScore) -> float:
    ends = sum(max(a, b) > 1.0 for a, b in score.end_errors)
    return 3 * (score.truth - score.matched) + 3 * (score.found - score.matched) + ends \
        + (0 if score.systems_exact else 0.5)


def draw_worst(results, out: Path, count: int = 6) -> None:
    """The worst pages side by side: truth in red, detections in green, systems in blue."""
    worst = sorted(results, key=lambda r: -badness(r[1]))[:count]
    tiles = []
    for path, score, found in worst:
        photo, truth, _ = load_page(path)
        vis = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)
        width = max(2, photo.shape[0] // 600)
        for t in truth:
            for line in (t.top, t.bottom):
                cv2.polylines(vis, [line.astype(np.int32)], False, (0, 0, 255), 2 * width)
        for s in found:
            top, bottom = detected_lines(s)
            for line in (top, bottom):
                cv2.polylines(vis, [line.astype(np.int32)], False, (0, 170, 0), width)
            end = tuple(top[-1].astype(int))
            cv2.putText(vis, str(s.system), end, cv2.FONT_HERSHEY_SIMPLEX, width / 1.5,
                        (200, 0, 0), width)
        scale = 900 / vis.shape[0]
        tile = cv2.resize(vis, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        label = f"{path.stem}: {score.matched}/{score.truth} found, {score.found} detected"
        cv2.putText(tile, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
        tiles.append(cv2.copyMakeBorder(tile, 0, 0, 0, 8, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    if tiles:
        height = max(t.shape[0] for t in tiles)
        tiles = [cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, 0, cv2.BORDER_CONSTANT,
                                    value=(255, 255, 255)) for t in tiles]
        rows = [np.hstack(tiles[i:i + 3]) for i in range(0, len(tiles), 3)]
        width = max(r.shape[1] for r in rows)
        rows = [cv2.copyMakeBorder(r, 0, 0, 0, width - r.shape[1], cv2.BORDER_CONSTANT,
                                   value=(255, 255, 255)) for r in rows]
        cv2.imwrite(str(out), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 80])


def run_crops(paths: list[Path], count: int, fraction: float, seed: int = 0) -> dict:
    """Tight crops of true staves: is the clef inside the window the model reads?

    `omr-run --staff` reads the found staff's window, or the whole crop when it finds no staff
    (then the clef is inside too, but the staff's size in the model's input is a guess): both
    are counted, and the second apart."""
    rng = np.random.default_rng(seed)
    inside = total = unfound = 0
    for k in tqdm(range(count), desc="crops", unit="crop"):
        photo, truth, record = load_page(paths[k % len(paths)])
        if abs(record["shot"]["angle"]) > 3:  # a crop is cut from a page held straight
            continue
        staff = truth[int(rng.integers(len(truth)))]
        crop, clef_x = tight_crop(photo, staff, rng, both=bool(rng.random() < 0.5))
        found = main_staff(crop)
        total += 1
        if found is None:
            unfound += 1
            continue
        inside += clef_inside(found, clef_x, staff.space_at(0), fraction)
    return {"crops": total, "clef_inside_found_staff": inside / max(1, total),
            "crops_no_staff_found": unfound,
            "clef_inside_as_read": (inside + unfound) / max(1, total)}


def run_ser(results: list[tuple[Path, PageScore, list[DetectedStaff]]], count: int) -> dict:
    """Page-to-tokens SER: the shipped CRNN reads staves cut by the detector (its staves from
    run_pages), then by the truth. The CRNN alone, as when these figures were set: the gap
    between the two cuts is the finder's, whichever model reads."""
    from omr.recognize import Recognizer
    from omr.semantic import repair
    from omr.staves import staff_crop
    from omr_train.metrics import normalise, staff_edits

    rec = Recognizer("crnn")
    errors = {"detector": 0, "truth": 0}
    tokens = 0
    for path, _, found in tqdm(results[:count], desc="ser", unit="page"):
        photo, truth, _ = load_page(path)
        lines = [detected_lines(s) for s in found]
        for t in truth:
            tokens += len(normalise(t.tokens))
            cut = {"truth": truth_staff(t)}
            costs = [np.abs((a + b)[:, 1] / 2 - t.centre[:, 1]).mean() for a, b in lines]
            if costs and min(costs) < t.space_at(8):
                cut["detector"] = found[int(np.argmin(costs))]
            for name in errors:
                if name not in cut:
                    errors[name] += len(normalise(t.tokens))
                    continue
                crop = staff_crop(photo, cut[name], rec.info.input_height, rec.info.staff_fraction)
                read = rec.decode([crop])[0]
                errors[name] += staff_edits(repair(read.tokens, open_end=True), t.tokens)[0]
    return {"ser_pages": min(count, len(results)), "ser_tokens": tokens,
            "ser_detector": errors["detector"] / max(1, tokens),
            "ser_truth": errors["truth"] / max(1, tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=320)
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "pages")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--crops", type=int, default=0)
    parser.add_argument("--ser", type=int, default=0, help="pages to read for the SER figures")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--detector", type=Path,
                        help="another revision's staves.py, measured on the same pages instead "
                             "(page figures only, printed, nothing saved)")
    args = parser.parse_args()
    folder = args.data / args.split
    with tqdm(total=args.pages, desc="make pages", unit="page") as bar:
        paths = write_pages(folder, args.pages, args.split, workers=args.workers,
                            progress=bar.update)
    if args.detector:
        results, crashed = run_pages(paths, other_detector(args.detector))
        for key, value in (summary(results) | {"pages_crashed": crashed}).items():
            print(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")
        return
    results, _ = run_pages(paths)
    figures = summary(results)
    if args.crops:
        from omr.recognize import Recognizer

        figures |= run_crops(paths, args.crops, Recognizer().info.staff_fraction)
    if args.ser:
        figures |= run_ser(results, args.ser)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.split == "test" else f"-{args.split}"
    draw_worst(results, args.out / f"staves-worst{suffix}.jpg")
    (args.out / f"staves{suffix}.json").write_text(json.dumps(figures, indent=1) + "\n")
    for key, value in figures.items():
        print(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
