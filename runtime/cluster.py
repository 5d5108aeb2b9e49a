"""Batches beyond one machine: Ray Data (the `[cluster]` extra), outputs to a shared folder.

    python -m omr.cluster /shared/scans -o /shared/midi --workers 32

The input paths become a Ray Dataset; `map_batches` runs a pool of actors, one a worker, each
holding one model (batch.Converter, the same one `omr-run --jobs` uses, so the bytes written are
the same); each actor writes its results atomically into the output folder, which every node
must see at the same path (NFS, a mounted bucket). Outputs that exist are skipped unless
--force, so a run that was stopped resumes. Inside `ray job submit` the job joins its cluster
(RAY_ADDRESS); elsewhere --address joins one, and without either a local instance starts with
--workers CPUs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import click

from .audio import AudioError
from .batch import Job, ReadOptions, SetupError

_MISSING = "Ray batches need the [cluster] extra: pip install 'omr-midi[cluster]'"


def _ray():
    try:
        import ray
        import ray.data  # the data library is a separate import
    except ImportError as err:
        raise SetupError(_MISSING) from err
    return ray


class RayConverter:
    """One actor: its model, and the function Ray Data maps over batches of paths."""

    def __init__(self, options: ReadOptions) -> None:
        from .batch import Converter

        self.read = Converter(options)

    def __call__(self, batch: dict) -> dict:
        from .batch import write_result

        errors, pages, warnings = [], [], []
        for name, target in zip(batch["name"], batch["target"]):
            outcome = self.read(Job(str(name), str(target)))
            error = outcome.error
            if error is None:
                try:
                    write_result(outcome)
                except OSError as err:
                    error = f"cannot write {target}: {err.strerror or err}"
            errors.append(error or "")
            pages.append(outcome.pages)
            warnings.append("\n".join(outcome.warnings))
        return {"name": list(batch["name"]), "error": errors, "pages": pages,
                "warnings": warnings}


def run_ray(jobs: Sequence[Job], options: ReadOptions, workers: int) -> list[dict]:
    """Each job read by a pool of `workers` actors; a row per job: name, error ("" when it
    was written), pages and warnings. Ray must be initialised (ray.init) by the caller."""
    ray = _ray()
    if not jobs:
        return []
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # omr's own summary says what happened
    rows = [{"name": j.name, "target": j.target} for j in jobs]
    # A block per job, so that the actors share the work out however the pages' sizes vary.
    data = ray.data.from_items(rows, override_num_blocks=len(rows))
    read = data.map_batches(RayConverter, batch_size=1, num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=workers),
                            fn_constructor_kwargs={"options": replace(options, threads=1)})
    order = {j.name: k for k, j in enumerate(jobs)}
    return sorted(read.iter_rows(), key=lambda row: order[row["name"]])


def start(address: str | None, workers: int) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local one."""
    import logging

    ray = _ray()
    if ray.is_initialized():  # a caller that set Ray up itself (a test, a notebook)
        return
    for name in ("ray", "ray.data"):  # Ray's own INFO lines would bury omr's summary
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet = {"log_to_driver": False, "include_dashboard": False,
             "logging_level": logging.WARNING}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=workers, **quiet)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output folder, seen by every node.")
@click.option("--workers", type=click.IntRange(1, 100_000), default=2, show_default=True,
              help="Actors, each holding one model on one CPU.")
@click.option("--address", default=None, help="A running cluster (default: RAY_ADDRESS, "
                                              "else a local instance).")
@click.option("--format", "fmt", type=click.Choice(["midi", "musicxml", "json", "semantic",
                                                    "wav"]), default="midi", show_default=True)
@click.option("--pages", default=None, help="A PDF's pages to read, e.g. 2-5.")
@click.option("--model", default=None, help="ONNX model (default: the packaged one).")
@click.option("--force", is_flag=True, help="Read inputs again whose output exists.")
@click.option("--tempo", type=click.FloatRange(1, 1000), default=100.0, show_default=True)
@click.option("--program", type=click.IntRange(0, 127), default=0, show_default=True)
def cli(inputs: tuple[str, ...], output: str, workers: int, address: str | None, fmt: str,
        pages: str | None, model: str | None, force: bool, tempo: float, program: int) -> None:
    """Read INPUT... (images, PDFs, folders, globs) on a Ray cluster into the OUTPUT folder."""
    from .batch import expand, plan

    try:
        if fmt == "wav":
            from .audio import require

            require()  # before Ray starts: a missing extra is one line
        planned = plan(expand(inputs), output, fmt)
        Path(output).mkdir(parents=True, exist_ok=True)
        todo = [j for j in planned if force or not Path(j.target).exists()]
        clock = time.perf_counter()
        start(address, workers)
        rows = run_ray(todo, ReadOptions(fmt, model, pages=pages, tempo=tempo,
                                         program=program), workers)
    except (SetupError, OSError, AudioError) as err:
        click.echo(f"omr-cluster: error: {err}", err=True)
        sys.exit(2)
    except Exception as err:  # noqa: BLE001 - Ray wraps an actor's setup failure in its own types
        click.echo(f"omr-cluster: error: {_first_line(err)}", err=True)
        sys.exit(2)
    seconds = time.perf_counter() - clock
    failed = [r for r in rows if r["error"]]
    read = sum(int(r["pages"]) for r in rows)
    for row in rows:
        for warning in filter(None, str(row["warnings"]).split("\n")):
            click.echo(f"omr-cluster: warning: {warning}", err=True)
    click.echo(f"omr-cluster: {len(rows) - len(failed)} read ({read} pages), {len(failed)} failed, "
               f"{len(planned) - len(todo)} skipped in {seconds:.1f} s "
               f"({read / max(seconds, 1e-9):.2f} pages/s on {workers} workers)", err=True)
    for row in failed:
        click.echo(f"omr-cluster: failed: {row['name']}: {row['error']}", err=True)
    sys.exit(1 if failed else 0)


def _first_line(err: Exception) -> str:
    text = [line for line in str(err).splitlines() if line.strip()]
    model = [line for line in text if "ModelError" in line]
    return (model or text or [type(err).__name__])[-1].strip()[:300]


if __name__ == "__main__":
    cli.main(prog_name="omr-cluster")
