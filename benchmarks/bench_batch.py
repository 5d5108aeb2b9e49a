"""Batch throughput: N photographed pages read by `omr-run DIR --jobs J` against the sequential
loop (`--jobs 1`), both arms in the same run, as pages per second and their ratio.

    python benchmarks/bench_batch.py --pages 200 --jobs 2 [--ray] [--model PATH]

The pages are the staff benchmark's (training/staff_eval.write_pages: engraved by the engine,
photographed at 3 to 12 megapixels), made once under data/bench-batch/ and reused. Each arm is
the real command in its own process, reading into a fresh output folder (so nothing is skipped);
the arms alternate (sequential, pool, pool, sequential) so that a change in the machine's load
during the run falls on both. On a machine that other work shares, wall time measures the
share of the cores the run got (Linux gives each session an equal share), so the run also
counts CPU seconds a page per thread (/proc) and estimates the ratio on idle cores from them. --ray adds the Ray Data arm (omr.cluster, a local instance with
J CPUs) and checks that its outputs are the same bytes as the sequential ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_pages(folder: Path, count: int, workers: int) -> list[Path]:
    from omr_train.staff_eval import write_pages

    write_pages(folder, count, split="test", seed=23, workers=workers)
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))[:count]


def arm(pages: Path, out: Path, jobs: int, model: str | None, ray: bool = False) -> float:
    """Seconds for one whole command to read every page into `out`."""
    shutil.rmtree(out, ignore_errors=True)
    if ray:
        command = [sys.executable, "-m", "omr.cluster", str(pages), "-o", str(out),
                   "--workers", str(jobs)]  # a local instance of `jobs` CPUs
    else:
        command = [sys.executable, "-m", "omr.cli", str(pages), "-o", str(out),
                   "--jobs", str(jobs)]
    command += ["--model", model] if model else []
    clock = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - clock
    if done.returncode not in (0, 1):
        sys.exit(f"bench_batch: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    print(f"  {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    return seconds


def thread_seconds(folder: Path, threads: int | None, model: str | None, count: int = 10) -> dict:
    """CPU seconds a page, of the main thread and of all threads, reading `count` pages in a
    fresh process with `threads` intra-op threads (None: the sequential loop's default).

    CPU time is counted only while a thread runs, so it holds on a loaded machine where wall
    time does not: on idle cores the sequential loop takes at least its main thread's time a
    page (the ONNX Runtime and OpenCV threads help only inside their parallel regions), and J
    single-thread workers that scale perfectly read J pages in one worker's total time."""
    probe = f"""
import glob, json, os, sys, warnings
warnings.simplefilter("ignore")
import cv2
from omr.batch import Converter, ReadOptions, Job
threads = {threads!r}
if threads:
    cv2.setNumThreads(threads)
read = Converter(ReadOptions(model={model!r}, threads=threads))
pages = sorted(glob.glob({str(folder / "*")!r}))[:{count}]
read(Job(pages[0], None))
def cpu():
    tick = os.sysconf("SC_CLK_TCK")
    out = {{}}
    for t in os.listdir("/proc/self/task"):
        f = open(f"/proc/self/task/{{t}}/stat").read().rsplit(")", 1)[1].split()
        out[int(t)] = (int(f[11]) + int(f[12])) / tick
    return out
before = cpu()
for p in pages:
    read(Job(p, None))
after = cpu()
main = after[os.getpid()] - before.get(os.getpid(), 0)
total = sum(v - before.get(t, 0) for t, v in after.items())
print(json.dumps({{"main": main / len(pages), "all": total / len(pages)}}))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.mid"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "bench-batch")
    parser.add_argument("--ray", action="store_true", help="add the Ray Data arm")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    made = make_pages(args.data / "pages", args.pages, os.cpu_count() or 1)
    pages = args.data / f"set-{args.pages}"
    shutil.rmtree(pages, ignore_errors=True)
    pages.mkdir(parents=True)
    for p in made:
        os.link(p, pages / p.name)  # the photos only, not their truth files
    print(f"{len(made)} pages in {pages}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} before the run")
    seq, pool = args.data / "out-seq", args.data / f"out-jobs{args.jobs}"
    times: dict[str, list[float]] = {"sequential": [], "pool": []}
    for name in ("sequential", "pool", "pool", "sequential"):
        jobs = 1 if name == "sequential" else args.jobs
        print(f"{name} (--jobs {jobs}):")
        times[name].append(arm(pages, seq if name == "sequential" else pool, jobs, args.model))
    same = outputs(seq) == outputs(pool) and len(outputs(seq)) > 0
    rate = {k: len(made) / (sum(v) / len(v)) for k, v in times.items()}
    result = {"pages": len(made), "jobs": args.jobs, "cores": os.cpu_count(),
              "seconds": times, "pages_per_s": rate,
              "ratio": rate["pool"] / rate["sequential"], "same_bytes": same,
              "load_after": os.getloadavg()[0]}
    if sys.platform.startswith("linux"):  # per-thread CPU time from /proc
        seq_cpu = thread_seconds(pages, None, args.model)
        one_cpu = thread_seconds(pages, 1, args.model)
        result["cpu_seconds_a_page"] = {"sequential": seq_cpu, "one_thread_worker": one_cpu}
        # An estimate from CPU time, not a timing: the sequential loop at its floor (its main
        # thread's time), the workers scaling perfectly.
        result["ratio_on_idle_cores_from_cpu_time"] = min(
            args.jobs, args.jobs * seq_cpu["main"] / one_cpu["all"])
    if args.ray:
        ray_out = args.data / "out-ray"
        print(f"ray (--workers {args.jobs}):")
        seconds = arm(pages, ray_out, args.jobs, args.model, ray=True)
        result["pages_per_s"]["ray"] = len(made) / seconds
        result["ray_same_bytes"] = outputs(ray_out) == outputs(seq)
    print(json.dumps(result, indent=1))
    print(f"pages/s: sequential {rate['sequential']:.3f}, --jobs {args.jobs} {rate['pool']:.3f}: "
          f"{result['ratio']:.2f}x (same bytes: {same})")
    if "ratio_on_idle_cores_from_cpu_time" in result:
        print(f"estimated from CPU time a page, on idle cores: "
              f"{result['ratio_on_idle_cores_from_cpu_time']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
