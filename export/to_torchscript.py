"""A training checkpoint to TorchScript, for LibTorch and C++ apps, verified against PyTorch.

    python export/to_torchscript.py models/crnn.pt [-o models/crnn.torchscript.pt]
        [--staves FOLDER --limit N]

The metadata (vocab, input_height, width_stride, normalization, model_version, ...) travels as
one JSON extra file, `metadata.json`: in C++, put that key in the `ExtraFilesMap` given to
`torch::jit::load(path, device, extra_files)`; in Python, see `load_torchscript`. A TrOMR
checkpoint gives the encoder (X.torchscript.pt) and its decoder with the KV cache beside it
(X.decoder.torchscript.pt), each traced on its own, run by omr.autoregressive's loop.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import click
import torch
from omr_export.common import chosen_staves, cli_errors, output_path, staves_option, trace, wrote
from omr_export.spec import Exportable, Seq2SeqSpec, graph_path, load
from omr_export.verify import (
    EXACT,
    Report,
    Stave,
    TorchSeq2Seq,
    VerificationError,
    Verifier,
    reference_runner,
    require,
    seq2seq_runner,
    torch_runner,
)

SUFFIX = ".torchscript.pt"
METADATA = "metadata.json"


def export_torchscript(ex: Exportable, out: Path) -> Path:
    """Every graph traced and saved beside each other; returns the first's path (`out`, with
    the .torchscript.pt ending added where `out` lacks it)."""
    for graph in ex.spec.graphs:
        traced = trace(ex, graph.name)
        # One JSON file rather than one extra file per key: a loader must name the files it wants.
        with warnings.catch_warnings():
            # "jit.save is deprecated": TorchScript is still what LibTorch loads.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(traced, str(graph_path(out, graph.suffix, SUFFIX)),
                           _extra_files={METADATA: json.dumps(ex.spec.metadata())})
    return graph_path(out, ex.spec.graphs[0].suffix, SUFFIX)


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
    modules = []
    for graph in ex.spec.graphs:
        module, meta = load_torchscript(graph_path(path, graph.suffix, SUFFIX))
        if meta != ex.spec.metadata():
            raise VerificationError(f"{path}: metadata missing or different from the checkpoint's")
        modules.append(module)
    if isinstance(ex.spec, Seq2SeqSpec):
        runner = seq2seq_runner(TorchSeq2Seq(*modules, ex.spec), ex.spec.info)
    else:
        runner = torch_runner(modules[0])
    verifier = verifier or Verifier(ex.spec, reference_runner(ex))
    report = verifier.check(path.name, runner, EXACT)
    click.echo(str(report))
    require(report)
    return report


def export_and_verify(ex: Exportable, out: Path, staves: Sequence[Stave] | None = None) -> Report:
    out = export_torchscript(ex, out)
    others = [graph_path(out, g.suffix, SUFFIX) for g in ex.spec.graphs[1:]]
    wrote(out, f"TorchScript, {ex.spec.name} {ex.spec.version}", others)
    return verify_torchscript(out, ex, Verifier(ex.spec, reference_runner(ex), staves))


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help=f"Where to write (default: beside the checkpoint, *{SUFFIX}).")
@staves_option
@cli_errors
def main(checkpoint: Path, output: Path | None, staves: tuple[str, ...], limit: int) -> None:
    """Export CHECKPOINT to TorchScript and verify it against PyTorch."""
    torch.set_num_threads(2)
    ex = load(checkpoint)
    export_and_verify(ex, output_path(checkpoint, output, SUFFIX), chosen_staves(ex, staves, limit))


if __name__ == "__main__":
    main()
