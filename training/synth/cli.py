"""`omr-synth`: write a labelled dataset of engraved staves in the PrIMuS folder layout."""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click

from .engrave import FONTS
from .generate import (
    SPLITS,
    SynthOptions,
    is_done,
    load_pools,
    make_sample,
    sample_id,
    sample_split,
    write_sample,
)

_state: dict = {}


def _init(cache_dir: str, seed: int) -> None:
    from .engrave import Engraver

    _state["pools"] = load_pools(Path(cache_dir))
    _state["engraver"] = Engraver()
    _state["opt"] = SynthOptions(seed=seed)


def _init_poly(cache_dir: str, seed: int, font: str = "", measures: int = 5) -> None:
    from .engrave import Engraver
    from .system import PolyOptions, load_poly_pools

    _state["pools"] = load_poly_pools(Path(cache_dir))
    _state["engraver"] = Engraver()
    _state["opt"] = PolyOptions(seed=seed, font=font, max_measures=measures)


def _job_poly(args: tuple[str, int]) -> tuple[int, str | None]:
    from .system import make_poly_sample, write_poly_sample

    out, index = args
    try:
        sample = make_poly_sample(index, _state["opt"], _state["pools"], _state["engraver"])
    except Exception as e:  # noqa: BLE001 - one unrenderable system must not stop a long run
        return index, f"{type(e).__name__}: {e}"
    write_poly_sample(Path(out), sample)
    return index, None


def _job(args: tuple[str, int]) -> tuple[int, str | None]:
    out, index = args
    try:
        image, tokens, meta = make_sample(index, _state["opt"], _state["pools"], _state["engraver"])
    except Exception as e:  # noqa: BLE001 - one unrenderable melody must not stop a long run
        return index, f"{type(e).__name__}: {e}"
    write_sample(Path(out), index, image, tokens, meta)
    return index, None


def write_manifest(out: Path, count: int) -> int:
    """Gather every sample's metadata into manifest.jsonl, in index order."""
    n = 0
    tmp = out / "manifest.jsonl.tmp"
    with tmp.open("w") as f:
        for i in range(count):
            p = out / sample_id(i) / f"{sample_id(i)}.json"
            if p.exists():
                f.write(p.read_text().strip() + "\n")
                n += 1
    tmp.replace(out / "manifest.jsonl")
    return n


@click.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--cache", "cache", default="data/cache", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Corpus snippet cache; built from the music21 corpus on first use.")
@click.option("--no-corpus", is_flag=True, help="Procedural melodies only (no music21 needed).")
@click.option("--max-seconds", default=0.0, type=float,
              help="Stop after this long and keep what is written (a later run resumes).")
@click.option("--split", "only", type=click.Choice([name for name, _ in SPLITS]), default=None,
              help="Engrave only this split's staves of the COUNT: the test split of a set, "
                   "the same staves as in the whole set, in a twentieth of the time.")
@click.option("--poly", is_flag=True,
              help="Chords, two voices a staff and grand staves (chorales, quartets, piano "
                   "pieces, piano textures): COUNT systems of one or two staves each.")
@click.option("--font", type=click.Choice(FONTS), default=None,
              help="With --poly: engrave every system in this font, all else as drawn (with "
                   "--split test and the held-out font: that split in the unseen font alone).")
@click.option("--measures", default=5, show_default=True, type=click.IntRange(1, 12),
              help="With --poly: the most measures a system's window holds (a page's systems "
                   "hold 2-6; the labels stay under 200 tokens a staff).")
def main(out: Path, count: int, workers: int, seed: int, cache: Path, no_corpus: bool,
         max_seconds: float, only: str | None, poly: bool, font: str | None,
         measures: int) -> None:
    """Engrave COUNT labelled staves into OUT (resumable; same seed, same dataset)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    if (font or measures != 5) and not poly:
        raise click.ClickException("--font and --measures are for --poly sets")
    out.mkdir(parents=True, exist_ok=True)
    if poly:
        if no_corpus:
            raise click.ClickException("--poly draws on the music21 corpus: drop --no-corpus")
        _ensure_poly_cache(cache, workers)
    elif not no_corpus:
        _ensure_cache(cache, workers)
    from .system import is_poly_done

    done = is_poly_done if poly else is_done
    wanted = [i for i in range(count) if only is None or sample_split(seed, i) == only]
    todo = [i for i in wanted if not done(out, i)]
    failed = 0
    columns = (TextColumn("engraving"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    init, job = (_init_poly, _job_poly) if poly else (_init, _job)
    initargs = (str(cache) if not no_corpus else "/nonexistent", seed) + (
        (font or "", measures) if poly else ())
    with Progress(*columns) as bar, ProcessPoolExecutor(workers, initializer=init,
                                                        initargs=initargs) as pool:
        task = bar.add_task("engraving", total=len(wanted), completed=len(wanted) - len(todo))
        start = time.monotonic()
        for index, err in pool.map(job, [(str(out), i) for i in todo], chunksize=16):
            if err:
                failed += 1
                print(f"omr-synth: sample {index} skipped: {err}", file=sys.stderr)
            bar.advance(task)
            if max_seconds and time.monotonic() - start > max_seconds:
                pool.shutdown(wait=True, cancel_futures=True)
                break
    if poly:
        from .system import write_poly_manifest

        n, systems = write_poly_manifest(out, count)
        (out / "synth.json").write_text(json.dumps({"count": count, "seed": seed, "split": only,
                                                    "poly": True, "written": n, "systems": systems}))
        click.echo(f"{n} staves in {systems} systems in {out} ({failed} skipped)")
        return
    n = write_manifest(out, count)
    (out / "synth.json").write_text(json.dumps({"count": count, "seed": seed, "split": only, "written": n}))
    click.echo(f"{n} staves in {out} ({failed} skipped)")


def _ensure_cache(cache: Path, workers: int) -> None:
    from .corpus import COLLECTIONS, build_cache, cache_path

    have = [n for n in COLLECTIONS if cache_path(cache, n).exists()]
    if len(have) == len(COLLECTIONS):
        return
    try:
        import music21  # noqa: F401
    except ImportError:
        if not have:
            raise click.ClickException("no corpus cache and no music21 to build one: "
                                       "install the train extra or pass --no-corpus") from None
        click.echo(f"music21 is not installed: using the cached collections {', '.join(have)}")
        return
    click.echo(f"parsing the music21 corpus into {cache} (once, a few minutes)")
    build_cache(cache, workers=workers)


def _ensure_poly_cache(cache: Path, workers: int) -> None:
    from .reductions import SOURCES, build_cache, cache_path

    if all(cache_path(cache, s).exists() for s in SOURCES):
        return
    try:
        import music21  # noqa: F401
    except ImportError:
        raise click.ClickException("no polyphonic cache and no music21 to build one: "
                                   "install the train extra") from None
    click.echo(f"reducing the music21 chorales, quartets and piano pieces into {cache} (once)")
    build_cache(cache, workers=workers)


if __name__ == "__main__":
    main()
