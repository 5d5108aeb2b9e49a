"""A training checkpoint to TorchScript, for LibTorch and C++ apps, verified against PyTorch.

    python export/to_torchscript.py models/crnn.pt [-o models/crnn.torchscript.pt]

The metadata (vocab, input_height, width_stride, normalization, model_version, ...) travels as
one JSON extra file, `metadata.json`: in C++, put that key in the `ExtraFilesMap` given to
`torch::jit::load(path, device, extra_files)`; in Python, see `load_torchscript`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click
import torch
from omr_export.common import cli_errors, output_path, trace, wrote
from omr_export.spec import Exportable, load
from omr_export.verify import EXACT, Report, VerificationError, Verifier, require, torch_runner

SUFFIX = ".torchscript.pt"
METADATA = "metadata.json"


def export_torchscript(ex: Exportable, out: Path) -> Path:
    traced = trace(ex)
    # One JSON file rather than one extra file per key: a loader must name the files it wants.
    with warnings.catch_warnings():
        # "jit.save is deprecated": TorchScript is still what LibTorch loads.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(traced, str(out), _extra_files={METADATA: json.dumps(ex.spec.metadata())})
    return out


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """The module and its metadata ({} when the file carries none)."""
    extra = {METADATA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    text = extra[METADATA]
    text = text.decode() if isinstance(text, bytes) else text
    return module.eval(), json.loads(text) if text else {}


def verify_torchscript(path: Path, ex: Exportable, verifier: Verifier | None = None) -> Report:
    module, meta = load_torchscript(path)
    if meta != ex.spec.metadata():
        raise VerificationError(f"{path}: metadata missing or different from the checkpoint's")
    verifier = verifier or Verifier(ex.spec, torch_runner(ex.model))
    report = verifier.check(path.name, torch_runner(module), EXACT)
    click.echo(str(report))
    require(report)
    return report


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help=f"Where to write (default: beside the checkpoint, *{SUFFIX}).")
@cli_errors
def main(checkpoint: Path, output: Path | None) -> None:
    """Export CHECKPOINT to TorchScript and verify it against PyTorch."""
    torch.set_num_threads(2)
    ex = load(checkpoint)
    out = export_torchscript(ex, output_path(checkpoint, output, SUFFIX))
    wrote(out, f"TorchScript, {ex.spec.name} {ex.spec.version}")
    verify_torchscript(out, ex)


if __name__ == "__main__":
    main()
