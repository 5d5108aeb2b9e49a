"""What the three export scripts share: loading, tracing, output paths, sizes, error handling."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import click
import torch

from .spec import Exportable, ExportError
from .verify import VerificationError


def trace(ex: Exportable, graph: str = "model") -> torch.jit.ScriptModule:
    """TorchScript by tracing: the graph is fixed but every shape stays symbolic."""
    with warnings.catch_warnings():
        # The tracer warns on nn.LSTM's internal shape checks, on TrOMR's single-query step
        # (no causal mask) and on its own deprecation; the verification at several widths,
        # batch sizes and lengths is what shows the trace generalises.
        warnings.simplefilter("ignore")
        return torch.jit.trace(ex.module(graph), ex.spec.dummy_inputs(graph), check_trace=False)


def output_path(checkpoint: Path, output: Path | None, suffix: str) -> Path:
    """`-o PATH` when given, else beside the checkpoint: models/crnn.pt -> models/crnn<suffix>."""
    path = Path(output) if output is not None else checkpoint.with_name(checkpoint.stem + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def size_of(path: Path) -> int:
    """Bytes in a file, or in every file under a folder (a Core ML .mlpackage is a folder)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def human_size(n: int) -> str:
    return f"{n / 2 ** 20:.2f} MiB" if n >= 2 ** 20 else f"{n / 2 ** 10:.1f} KiB"


def wrote(path: Path, what: str, others: Sequence[Path] = ()) -> None:
    """One line; a model of several graphs names the others and counts their bytes too."""
    size = sum(size_of(p) for p in (path, *others))
    beside = "".join(f" + {Path(p).name}" for p in others)
    click.echo(f"wrote {path}{beside} ({what}, {human_size(size)})")


def staves_option(command: Callable) -> Callable:
    """--staves FOLDER (repeatable) and --limit N: labelled staves to verify on as well."""
    command = click.option("--limit", type=int, default=100, show_default=True,
                           help="Staves taken from each --staves folder.")(command)
    return click.option("--staves", multiple=True, type=click.Path(exists=True, file_okay=False),
                        help="A data folder (omr-synth's, mono or --poly) whose staves the "
                             "verification reads too.")(command)


def chosen_staves(ex: Exportable, folders: Sequence[str], limit: int) -> list | None:
    """The verification's own staves plus `limit` from each folder; None: its own alone."""
    from .verify import folder_staves, verification_staves

    if not folders:
        return None
    extra = [s for f in folders for s in folder_staves(Path(f), ex.spec, limit)]
    return verification_staves(ex.spec) + extra


def cli_errors(main: Callable) -> Callable:
    """Known failures end the script with one line and exit status 1, never a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ExportError, VerificationError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)

    return wrapper
