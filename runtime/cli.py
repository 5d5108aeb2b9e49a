"""omr-run: page images and PDFs in, MIDI (or tokens, JSON, MusicXML, WAV) out.

Every failure a user can cause (bad file, no staff, missing model) becomes one line on stderr
and a non-zero exit status, never a traceback; one bad input does not stop the others. Several
inputs, a folder or a glob make a batch (runtime/batch.py): outputs that exist are skipped
unless --force, --jobs N reads with N worker processes, and a summary closes the run; with
--join they are one piece's pages instead, read into one output (omr.document.read_piece).
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from pathlib import Path

import click

from .batch import SUFFIXES_OUT, Job, Outcome, ReadOptions, SetupError
from .writers import FORMATS

EXIT_INPUT = 1  # at least one input failed
EXIT_SETUP = 2  # bad options, model missing or corrupt
STDIO = "-"


def _fail(message: str) -> None:
    click.echo(f"omr-run: error: {message}", err=True)


def _warn(message: str) -> None:
    click.echo(f"omr-run: warning: {message}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "output", default=None,
              help="Output file (- for standard output); a folder when there are several "
                   "inputs.")
@click.option("--format", "fmt", type=click.Choice((*FORMATS, "wav")), default="midi",
              show_default=True)
@click.option("--pages", default=None, help="A PDF's pages to read, e.g. 2-5 or 1,3,7- "
                                            "(default: all).")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes for a batch, each with its own model.")
@click.option("--force", is_flag=True, help="In a batch, read inputs again whose output exists.")
@click.option("--join", is_flag=True,
              help="The inputs are one piece's pages, in the order given (a folder's or a "
                   "glob's in natural order: p2 before p10): one output, named after the "
                   "first, with the time signature carried from page to page.")
@click.option("--staff", is_flag=True, help="Each input is a single-staff crop.")
@click.option("--model", "model", default=None,
              help="crnn, tromr or an ONNX file (default: TrOMR for the staves of a system of "
                   "two and where it reads chords or a clef change, the CRNN for the other "
                   "staves).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--preview", default=None, help="PNG with the detected staves and tokens drawn.")
@click.option("--tempo", type=click.FloatRange(1, 1000), default=100.0, show_default=True,
              help="Quarter notes per minute.")
@click.option("--program", type=click.IntRange(0, 127), default=0, show_default=True,
              help="General MIDI instrument (0 = piano, 40 = violin), in MIDI and WAV.")
@click.option("--play", is_flag=True, help="Play what was read (needs an audio device).")
@click.option("--keep-clef", is_flag=True,
              help="Keep the clef the model guesses where it cannot see one, instead of "
                   "reading that staff in treble clef.")
def cli(inputs: tuple[str, ...], output: str | None, fmt: str, pages: str | None, jobs: int,
        force: bool, join: bool, staff: bool, model: str | None, device: str, preview: str | None,
        tempo: float, program: int, play: bool, keep_clef: bool) -> None:
    """Read printed music from INPUT... (images, PDFs, folders, globs; - is standard input)
    and write MIDI (default: INPUT.mid beside it)."""
    from .batch import expand

    entries = expand(inputs)
    if not entries:
        _setup_error(f"no images or PDFs in {', '.join(inputs)}")
    several = not join and inputs != (STDIO,) and (len(entries) > 1 or jobs > 1 or any(
        Path(i).is_dir() for i in inputs if i != STDIO))
    if STDIO in inputs and len(inputs) > 1:
        _setup_error("- (standard input) must be the only input")
    if join and (STDIO in inputs or jobs > 1):
        _setup_error("--join reads files' pages in order, in one process: "
                     "not with - or --jobs")
    if output == STDIO and several and fmt != "jsonl":
        _setup_error("-o - writes one result: give one input, or use --format jsonl")
    if play and several:
        _setup_error("--play plays one input")
    if fmt == "wav" or play:
        from .audio import AudioError, require

        try:
            require()
        except AudioError as err:
            _setup_error(str(err))
    options = ReadOptions(fmt, model, device, staff, keep_clef, pages, tempo, program,
                          _threads(jobs), preview)
    try:
        if fmt == "jsonl":
            failed = _jsonl(entries, output, options, jobs, join)
        elif several:
            failed = _batch(entries, output, options, jobs, force)
        else:
            parts = tuple(name for name, _ in entries) if join else ()
            failed = _single(entries[0][0], output, options, play, parts)
    except SetupError as err:
        _setup_error(str(err))
    sys.exit(EXIT_INPUT if failed else 0)


def _setup_error(message: str) -> None:
    _fail(message)
    sys.exit(EXIT_SETUP)


def _threads(jobs: int) -> int | None:
    from .batch import threads_per_worker

    return threads_per_worker(jobs) if jobs > 1 else None


def _single(name: str, output: str | None, options: ReadOptions, play: bool,
            parts: tuple[str, ...] = ()) -> bool:
    """One input (or the `parts` of one piece, --join), written to -o, beside the input, or to
    standard output."""
    from .batch import run, write_result

    target = _target(name, output, options.fmt)
    job = Job(name, None if target is None else str(target), options.preview, parts)
    if name == STDIO:
        outcome = _read_stdin(job, options)
    else:
        (outcome,) = run([job], options)
    for warning in outcome.warnings:
        _warn(warning)
    label = "--join" if parts else name  # a piece's error names its own page
    if outcome.error is not None:
        _fail(f"{label}: {outcome.error}")
        return True
    try:
        if target is None:
            _stdout(outcome.data)
        else:
            write_result(outcome, make_folder=False)
    except OSError as err:
        from .batch import error_message

        _fail(f"{label}: {error_message(err)}")
        return True
    if play:
        _play(outcome, options)
    return False


def _read_stdin(job: Job, options: ReadOptions) -> Outcome:
    from .batch import Converter, error_message
    from .document import load_bytes
    from .image import ImageError
    from .recognize import ModelError

    try:
        data = load_bytes(STDIO)
        return Converter(options)(job, data)
    except ModelError as err:
        raise SetupError(str(err)) from err
    except ImageError as err:
        return Outcome(job, error=error_message(err))


def _target(name: str, output: str | None, fmt: str) -> Path | None:
    """Where one input's result goes: -o as given (inside it, if it is a folder), beside the
    input, or standard output (None) for -o - and for standard input."""
    suffix = SUFFIXES_OUT[fmt]
    if output == STDIO or (output is None and name == STDIO):
        return None
    if output is None:
        return Path(name).with_suffix(suffix)
    if Path(output).is_dir():
        return Path(output) / Path(name).with_suffix(suffix).name
    return Path(output)


def _stdout(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _play(outcome: Outcome, options: ReadOptions) -> None:
    from .audio import AudioError, play, render_wav
    from .batch import render

    try:
        wav = outcome.data if options.fmt == "wav" else render_wav(
            render(outcome.score, ReadOptions("midi", tempo=options.tempo,
                                              program=options.program), outcome.job.name))
        play(wav)
    except AudioError as err:
        _fail(f"--play: {err}")
        sys.exit(EXIT_INPUT)


def _batch(entries: list[tuple[str, Path]], output: str | None, options: ReadOptions,
           jobs: int, force: bool) -> bool:
    """Many inputs into the -o folder (or beside each), resuming, with a progress bar."""
    from .batch import plan, run, write_result

    planned = plan(entries, output, options.fmt)
    if options.preview:
        stem = Path(options.preview)
        planned = [Job(j.name, j.target, str(stem.with_name(f"{stem.stem}-{Path(j.name).stem}"
                                                             f".png"))) for j in planned]
    if output is not None:
        try:
            Path(output).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            _setup_error(f"cannot create output folder {output}: {err.strerror or err}")
    todo = [j for j in planned if force or not Path(j.target).exists()]
    failed: list[tuple[str, str]] = []
    pages, clock = 0, time.perf_counter()
    with _Progress(len(todo)) as progress:
        for outcome in run(todo, options, jobs):
            for warning in outcome.warnings:
                progress.say(f"omr-run: warning: {warning}")
            why = outcome.error
            if why is None:
                try:
                    write_result(outcome)
                except OSError as err:
                    from .batch import error_message

                    why = error_message(err)
            if why is not None:
                failed.append((outcome.job.name, why))
                progress.say(f"omr-run: error: {outcome.job.name}: {why}")
            pages += outcome.pages
            progress.advance(pages)
    _summary(len(todo) - len(failed), pages, len(planned) - len(todo), failed,
             time.perf_counter() - clock)
    return bool(failed)


def _summary(done: int, pages: int, skipped: int, failed: list[tuple[str, str]],
             seconds: float) -> None:
    rate = f", {pages / seconds:.2f} pages/s" if pages and seconds > 0 else ""
    parts = [f"{done} read ({pages} page{'s' * (pages != 1)})", f"{len(failed)} failed"]
    if skipped:
        parts.append(f"{skipped} skipped (output exists; --force reads them again)")
    click.echo(f"omr-run: {', '.join(parts)} in {seconds:.1f} s{rate}", err=True)
    for name, why in failed:
        click.echo(f"omr-run: failed: {name}: {why}", err=True)


def _jsonl(entries: list[tuple[str, Path]], output: str | None, options: ReadOptions,
           jobs: int, join: bool = False) -> bool:
    """One JSON line per page, in input order, streamed to stdout or written to -o."""
    from .batch import run
    from .writers import write_atomic

    planned = [Job(name, None) for name, _ in entries]
    if join:
        planned = [Job(entries[0][0], None, parts=tuple(name for name, _ in entries))]
    if planned and planned[0].name == STDIO:
        outcomes = iter([_read_stdin(planned[0], options)])
    else:
        outcomes = run(planned, options, jobs)
    places: dict[Job, deque[int]] = {}
    for k, job in enumerate(planned):
        places.setdefault(job, deque()).append(k)
    done: dict[int, Outcome] = {}
    lines: list[str] = []
    failed, upto = False, 0
    for outcome in outcomes:
        # A worker returns a copy of its job; equal jobs give equal records, in any order.
        done[places[outcome.job].popleft()] = outcome
        while upto in done:  # print in input order as soon as the next one is there
            o = done.pop(upto)
            upto += 1
            for warning in o.warnings:
                _warn(warning)
            if o.error is not None:
                failed = True
                _fail(f"{'--join' if o.job.parts else o.job.name}: {o.error}")
            text = "".join(json.dumps(r) + "\n" for r in o.records)
            if output in (None, STDIO):
                click.echo(text, nl=False)
            else:
                lines.append(text)
    if output not in (None, STDIO):
        write_atomic(Path(output), "".join(lines).encode())
    return failed


class _Progress:
    """A rich progress bar on a terminal's stderr (files, pages/s, ETA); nothing elsewhere,
    so that a script reading stderr sees only omr-run's own lines."""

    def __init__(self, total: int) -> None:
        self.total, self.bar, self.clock = total, None, time.perf_counter()

    def __enter__(self):
        from rich.console import Console

        console = Console(stderr=True)
        if console.is_terminal and self.total:
            from rich import progress as rp

            self.bar = rp.Progress(rp.TextColumn("reading"), rp.BarColumn(),
                                   rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[rate]}"),
                                   rp.TimeElapsedColumn(), rp.TextColumn("ETA"),
                                   rp.TimeRemainingColumn(), console=console)
            self.bar.start()
            self.task = self.bar.add_task("read", total=self.total, rate="")
        return self

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False)  # above the bar
        else:
            click.echo(line, err=True)

    def advance(self, pages: int) -> None:
        if self.bar is not None:
            rate = pages / max(time.perf_counter() - self.clock, 1e-9)
            self.bar.update(self.task, advance=1, rate=f"{rate:.2f} pages/s")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def main() -> None:
    try:
        cli.main(prog_name="omr-run", standalone_mode=True)
    except KeyboardInterrupt:
        _fail("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
