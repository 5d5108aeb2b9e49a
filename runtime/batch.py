"""Many inputs on one machine: folders, files and globs read by a pool of worker processes.

Each worker holds one ONNX Runtime session and gets the machine's cores divided among the
workers (ONNX Runtime and OpenCV alike), so that N workers do not run N times as many threads
as there are cores. The parent hands out one input at a time and writes every result itself,
atomically: a worker that dies (SIGKILL, the kernel's out-of-memory killer, a crash) costs only
the input it held, which is reported, and never leaves a file half-written. A run resumes:
outputs that exist are skipped unless `force`.
"""

from __future__ import annotations

import glob
import multiprocessing as mp
import os
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

from .writers import SUFFIXES

SUFFIXES_OUT = {**SUFFIXES, "wav": ".wav"}
INPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".pdf"}
_GLOB = set("*?[")


class SetupError(RuntimeError):
    """A failure no input can get past (the model is missing or broken): stop the run."""


@dataclass(frozen=True)
class ReadOptions:
    """How every input is read and rendered; the same in every worker."""

    fmt: str = "midi"
    model: str | None = None
    device: str = "cpu"
    single_staff: bool = False
    keep_clef: bool = False
    pages: str | None = None  # a PDF's pages, "2-5"
    tempo: float = 100.0
    program: int = 0
    threads: int | None = None  # ONNX Runtime intra-op threads; None: one per core
    preview: str | None = None


@dataclass(frozen=True)
class Job:
    name: str  # the input as given ("-" for standard input)
    target: str | None  # where its result goes; None: standard output (or a JSON Lines stream)
    preview: str | None = None
    parts: tuple[str, ...] = ()  # --join: the inputs read as one piece's pages; () just `name`


@dataclass(frozen=True)
class Outcome:
    job: Job
    data: bytes | None = None  # the rendered output; None when it failed
    records: tuple[dict, ...] = ()  # JSON Lines records, one per page
    warnings: tuple[str, ...] = ()
    error: str | None = None
    pages: int = 0
    seconds: float = 0.0
    score: object = field(default=None, compare=False)  # what was read, for --play


class Converter:
    """One worker's model and the function that turns one input into its output's bytes
    (the model's own decoding interface is omr.readers.Reader)."""

    def __init__(self, options: ReadOptions) -> None:
        from .decode import DecodeOptions
        from .recognize import Recognizer

        if options.threads:
            import cv2

            cv2.setNumThreads(options.threads)  # OpenCV's pool would take every core
        self.options = options
        self.recognizer = Recognizer(options.model, device=options.device,
                                     threads=options.threads,
                                     decoding=DecodeOptions(paint_clef=not options.keep_clef))

    def __call__(self, job: Job, data: bytes | None = None) -> Outcome:
        from .audio import AudioError
        from .image import ImageError
        from .recognize import ModelError

        clock = time.perf_counter()
        try:
            return self._read(job, data, clock)
        except ModelError:
            raise
        except (ImageError, ValueError, OSError, AudioError) as err:
            message = error_message(err)
        except MemoryError:
            message = "out of memory"
        except Exception as err:  # noqa: BLE001 - a bug must not lose the other inputs' results
            message = f"internal error: {type(err).__name__}: {error_message(err)}"
        return Outcome(job, None, (_record(job.name, None, message),), error=message,
                       seconds=time.perf_counter() - clock)

    def _read(self, job: Job, data: bytes | None, clock: float) -> Outcome:
        from .document import read_document, read_piece

        o = self.options
        preview = Path(job.preview) if job.preview else None
        if job.parts:
            doc = read_piece(self.recognizer, job.parts, o.single_staff, o.pages, preview)
        else:
            doc = read_document(self.recognizer, job.name, data, o.single_staff, o.pages, preview)
        records = tuple(_record(p.label, p.score, p.error) for p in doc.pages)
        rendered = None if o.fmt == "jsonl" else render(doc.score, o, job.name)
        return Outcome(job, rendered, records, tuple(doc.warnings), pages=len(doc.pages),
                       seconds=time.perf_counter() - clock, score=doc.score)


def render(score, options: ReadOptions, name: str) -> bytes:
    """The bytes of `score` in the options' format (a WAV is the MIDI, synthesised)."""
    from .midi import MidiOptions
    from .writers import render as render_format

    midi = MidiOptions(tempo=options.tempo, program=options.program)
    if options.fmt == "wav":
        from .audio import render_wav

        return render_wav(render_format(score, "midi", midi, name))
    return render_format(score, options.fmt, midi, name)


def _record(label: str, score, error: str | None) -> dict:
    from .writers import record

    return record(label, score, error)


def error_message(err: BaseException) -> str:
    """An exception as one line for the user."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# Inputs and outputs ---------------------------------------------------------------------------

def expand(inputs: Sequence[str]) -> list[tuple[str, Path]]:
    """Each input file with the path its output is named by: folders walked recursively (their
    files keep their place below the folder), globs expanded; a name that matches nothing is
    kept, to fail with its own error."""
    out: list[tuple[str, Path]] = []
    for name in inputs:
        path = Path(name)
        if name != "-" and path.is_dir():
            found = sorted((p for p in path.rglob("*") if p.is_file()
                            and p.suffix.lower() in INPUT_SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                           key=lambda p: natural(str(p)))
            out += [(str(p), p.relative_to(path)) for p in found]
        elif not path.exists() and _GLOB & set(name):
            matches = sorted(glob.glob(name, recursive=True), key=natural)
            out += [(m, Path(Path(m).name)) for m in matches if Path(m).is_file()] or \
                [(name, Path(path.name))]
        else:
            out.append((name, Path(path.name)))
    return out


def natural(name: str) -> tuple:
    """The sort key that puts page2.png before page10.png, as a person numbers pages."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", name))


def plan(entries: list[tuple[str, Path]], output: str | None, fmt: str) -> list[Job]:
    """Each input's target: inside the `output` folder, or beside the input. Two inputs that
    would write one file (page.png and page.jpg) keep their own suffix in its name."""
    suffix = SUFFIXES_OUT[fmt]

    def target(name: str, rel: Path, keep: bool) -> Path:
        stem = rel.name if keep else rel.stem
        if output is None:
            return Path(name).with_name(stem + suffix)
        return Path(output) / rel.parent / (stem + suffix)

    first = [target(name, rel, False) for name, rel in entries]
    twice = {t for t in first if first.count(t) > 1}
    targets = [target(n, r, True) if t in twice else t for (n, r), t in zip(entries, first)]
    seen: dict[Path, str] = {}
    for (name, _), t in zip(entries, targets):
        if t in seen:
            raise SetupError(f"{seen[t]} and {name} would both write {t}")
        seen[t] = name
    return [Job(name, str(t)) for (name, _), t in zip(entries, targets)]


def write_result(outcome: Outcome, make_folder: bool = True) -> None:
    """Put a result in place atomically (a batch makes the folders below -o first)."""
    from .writers import write_atomic

    target = Path(outcome.job.target)
    if make_folder:
        target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, outcome.data)


# Running --------------------------------------------------------------------------------------

def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run(jobs: Sequence[Job], options: ReadOptions, workers: int = 1,
        converter: Callable[[ReadOptions], Converter] = Converter) -> Iterator[Outcome]:
    """Every job's outcome, as each finishes: in this process for one worker, else in a pool
    of `workers` processes (`converter` makes each worker's Converter)."""
    if workers <= 1 or len(jobs) <= 1:
        yield from _sequential(jobs, options, converter)
    else:
        yield from _pool(jobs, options, min(workers, len(jobs)), converter)


def _sequential(jobs, options: ReadOptions, converter) -> Iterator[Outcome]:
    from .recognize import ModelError

    try:
        read = converter(options)
        for job in jobs:
            yield read(job)
    except ModelError as err:
        raise SetupError(str(err)) from err


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    job: Job | None = None


def _pool(jobs, options: ReadOptions, workers: int, converter) -> Iterator[Outcome]:
    context = mp.get_context("spawn")  # a fork would copy the parent's threads and locks
    pending = deque(jobs)
    pool: list[_Worker] = []

    def start() -> _Worker:
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, options, converter), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    try:
        pool = [start() for _ in range(workers)]
        while pending or any(w.job for w in pool):
            for worker in pool:
                if worker.job is None and pending:
                    worker.job = pending.popleft()
                    worker.conn.send(worker.job)
            busy = [w for w in pool if w.job is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                outcome = _receive(worker)
                if outcome is None:  # the worker died: its input is lost, not the others
                    yield _died(worker)
                    worker.conn.close()
                    pool[pool.index(worker)] = start() if pending else _Worker(
                        worker.process, worker.conn)
                else:
                    worker.job = None
                    yield outcome
    finally:
        _stop(pool)


def _receive(worker: _Worker) -> Outcome | None:
    try:
        if not worker.conn.poll():
            worker.process.join(5)
            return None
        kind, payload = worker.conn.recv()
    except (EOFError, OSError):
        worker.process.join(5)
        return None
    if kind == "setup":
        raise SetupError(payload)
    return payload


def _died(worker: _Worker) -> Outcome:
    code = worker.process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        why = f"worker killed by {name}" + (" (out of memory, or killed)"
                                            if -code == signal.SIGKILL else "")
    else:
        why = f"worker exited with status {code}"
    job, worker.job = worker.job, None
    return Outcome(job, None, (_record(job.name, None, why),), error=why)


def _stop(pool: list[_Worker]) -> None:
    for worker in pool:
        try:
            if worker.process.is_alive():
                worker.conn.send(None)
        except (OSError, ValueError):
            pass
    for worker in pool:
        worker.process.join(2)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()


def _serve(conn: Connection, options: ReadOptions, converter) -> None:
    """A worker: build the model once, then read whatever the parent sends until None."""
    from .recognize import ModelError

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        read = converter(options)
    except ModelError as err:
        conn.send(("setup", str(err)))
        return
    while (job := conn.recv()) is not None:
        try:
            conn.send(("done", read(job)))
        except ModelError as err:
            conn.send(("setup", str(err)))
            return
