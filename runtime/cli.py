"""omr-run: page images in, MIDI (or tokens, JSON, MusicXML) out.

Every failure a user can cause (bad file, no staff, missing model) becomes one line on stderr
and a non-zero exit status, never a traceback; one bad input does not stop the others.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from .writers import FORMATS, SUFFIXES

EXIT_INPUT = 1  # at least one input failed
EXIT_SETUP = 2  # bad options, model missing or corrupt


def _fail(message: str) -> None:
    click.echo(f"omr-run: error: {message}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", "output", default=None,
              help="Output file; a folder when there are several inputs.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="midi", show_default=True)
@click.option("--staff", is_flag=True, help="Each input is a single-staff crop.")
@click.option("--model", "model", default=None, help="ONNX model (default: the packaged one).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--preview", default=None, help="PNG with the detected staves and tokens drawn.")
@click.option("--tempo", type=click.FloatRange(1, 1000), default=100.0, show_default=True,
              help="Quarter notes per minute.")
@click.option("--program", type=click.IntRange(0, 127), default=0, show_default=True,
              help="General MIDI instrument (0 = piano).")
@click.option("--keep-clef", is_flag=True,
              help="Keep the clef the model guesses where it cannot see one, instead of "
                   "reading that staff in treble clef.")
def cli(images: tuple[str, ...], output: str | None, fmt: str, staff: bool, model: str | None,
        device: str, preview: str | None, tempo: float, program: int, keep_clef: bool) -> None:
    """Read printed music from IMAGE... and write MIDI (default: IMAGE.mid beside it)."""
    from .decode import DecodeOptions
    from .image import ImageError
    from .midi import MidiOptions
    from .recognize import ModelError, Recognizer

    try:
        recognizer = Recognizer(model, device=device,
                                decoding=DecodeOptions(paint_clef=not keep_clef))
    except ModelError as err:
        _fail(str(err))
        sys.exit(EXIT_SETUP)
    options = MidiOptions(tempo=tempo, program=program)
    several = len(images) > 1
    if several and output is not None and fmt != "jsonl":
        try:
            Path(output).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            _fail(f"cannot create output folder {output}: {err.strerror or err}")
            sys.exit(EXIT_SETUP)
    lines: list[str] = []
    failed = False
    for image in images:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                score = recognizer.read(image, single_staff=staff)
            for warning in caught:
                click.echo(f"omr-run: warning: {image}: {warning.message}", err=True)
            if fmt == "jsonl":
                lines.append(_jsonl(image, score, None))
            else:
                _write(score, image, _target(image, output, fmt, several), fmt, options)
            if preview:
                _preview(image, score, Path(preview), several)
        except ModelError as err:
            _fail(f"{image}: {err}")
            sys.exit(EXIT_SETUP)
        except (ImageError, ValueError, OSError) as err:
            failed = True
            message = _message(err)
            _fail(f"{image}: {message}")
            if fmt == "jsonl":
                lines.append(_jsonl(image, None, message))
        except Exception as err:  # noqa: BLE001 - a bug must not lose the other inputs' results
            failed = True
            message = f"internal error: {type(err).__name__}: {_message(err)}"
            _fail(f"{image}: {message}")
            if fmt == "jsonl":
                lines.append(_jsonl(image, None, message))
        if fmt == "jsonl" and output is None:
            click.echo(lines.pop(), nl=False)  # stream: an evaluator sees each line as it comes
    if fmt == "jsonl" and output is not None:
        from .writers import write_atomic

        write_atomic(Path(output), "".join(lines).encode())
    sys.exit(EXIT_INPUT if failed else 0)


def _message(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _jsonl(image: str, score, error: str | None) -> str:
    from .writers import record

    return json.dumps(record(image, score, error)) + "\n"


def _target(image: str, output: str | None, fmt: str, several: bool) -> Path:
    """Where an input's result goes: -o as given, inside the -o folder, or beside the input."""
    name = Path(image).with_suffix(SUFFIXES[fmt]).name
    if output is None:
        return Path(image).with_suffix(SUFFIXES[fmt])
    return Path(output) / name if several else Path(output)


def _write(score, image: str, target: Path, fmt: str, options) -> None:
    from .writers import write_output

    write_output(score, target, fmt, options, image)


def _preview(image: str, score, preview: Path, several: bool) -> None:
    from .image import load_gray
    from .preview import save_preview

    if several:
        preview = preview.with_name(f"{preview.stem}-{Path(image).stem}.png")
    save_preview(preview, load_gray(image), score)


def main() -> None:
    try:
        cli.main(prog_name="omr-run", standalone_mode=True)
    except KeyboardInterrupt:
        _fail("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
