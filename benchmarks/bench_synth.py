"""Synthesis throughput: labelled staff images per second, as `omr-synth` makes them; and the
polyphonic engine's labels against Verovio's own MIDI.

    python benchmarks/bench_synth.py --count 600 --workers 2
    python benchmarks/bench_synth.py --poly --count 400 --workers 2   # systems; staves/s
    python benchmarks/bench_synth.py --poly --check 1000              # 1,000 of every kind

Runs the real command into a temporary folder and times it end to end (worker start-up,
corpus cache load, engraving, PNG writing, manifest), so the figure is what a user gets.
Run it on an otherwise idle machine: other jobs on the two cores show up in the figure. The
CPU time the command and its workers used is printed too: on a shared machine, workers divided
by CPU seconds a staff is what the same cores would give idle.

`--check N` draws N systems of every source and texture (chorale, quartet, piano and each
piano texture), has Verovio render each one's MEI to MIDI, and compares it note by note,
staff by staff, with the notes the engine meant; and the labels as the runtime's grammar
(omr.semantic) plays them with the same notes. It prints the disagreements per kind.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]


def check(count: int, cache: str, seed: int) -> int:
    from omr_train.synth.engrave import Engraver
    from omr_train.synth.system import (
        PolyOptions,
        draw_poly,
        load_poly_pools,
        parser_disagreement,
        verovio_disagreement,
    )
    from omr_train.synth.textures import TEXTURES

    pools = load_poly_pools(Path(cache))
    engraver = Engraver()
    kinds = ["chorale", "quartet", "piano"] + [f"texture/{t}" for t in TEXTURES]
    total = 0
    for kind in kinds:
        opt = PolyOptions(seed=seed, only=kind)
        start = time.perf_counter()
        bad, staves, notes, first = 0, 0, 0, ""
        for i in range(count):
            d = draw_poly(i, opt, pools)
            err = verovio_disagreement(engraver, d.mei, d.system) or parser_disagreement(d.system)
            staves += len(d.system.staves)
            notes += sum(sum(len(s.notes) for m in st.measures for v in m for s in v)
                         for st in d.system.staves)
            if err:
                bad += 1
                first = first or f"sample {i}: {err}"
        total += bad
        print(f"{kind:22s} {count} systems, {staves} staves, {notes} notes: {bad} disagree "
              f"({time.perf_counter() - start:.0f} s){'  first: ' + first if first else ''}",
              flush=True)
    print(f"all kinds: {total} disagreements in {count * len(kinds)} systems")
    return total


@click.command()
@click.option("--count", default=600, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--cache", default=str(ROOT / "data" / "cache"), show_default=True)
@click.option("--poly", is_flag=True, help="The polyphonic engine (omr-synth --poly).")
@click.option("--check", "check_count", default=0, type=int,
              help="With --poly: check N systems of every kind against Verovio's MIDI.")
@click.option("--seed", default=123, show_default=True)
def main(count: int, workers: int, cache: str, poly: bool, check_count: int, seed: int) -> None:
    if check_count:
        sys.exit(1 if check(check_count, cache, seed) else 0)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "omr_train.synth.cli", "--out", tmp, "--count", str(count),
               "--workers", str(workers), "--seed", str(seed), "--cache", cache]
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd + (["--poly"] if poly else []), check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        written = len(list(Path(tmp).glob("*/*.semantic")))
        systems = len(list(Path(tmp).glob("*/*.system.png")))
    print(f"machine: {platform.processor() or platform.machine()}, {workers} workers")
    extra = f" ({systems} systems)" if poly else ""
    print(f"{written} staves{extra} in {seconds:.1f} s: {written / seconds:.1f} staves/s")
    print(f"CPU: {cpu:.1f} s, {1000 * cpu / written:.0f} ms a staff: "
          f"{workers * written / cpu:.1f} staves/s on {workers} idle cores")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
