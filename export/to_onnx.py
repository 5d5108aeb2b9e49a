"""A training checkpoint to ONNX (fp32, fp16, int8), each verified against PyTorch.

    python export/to_onnx.py models/crnn.pt [--precision fp32|fp16|int8|all] [-o models/crnn.onnx]
        [--staves FOLDER --limit N]

A TrOMR checkpoint gives two files a precision, the encoder (X.onnx: the one the runtime
opens, with the metadata) and the decoder with its KV cache beside it (X.decoder.onnx); the
verification runs them with the runtime's own decoding loop (omr.autoregressive) and must
read the same greedy tokens as PyTorch. --staves adds labelled staves from a data folder
(omr-synth's, mono or --poly) to the verification's own.

fp32 is the model the runtime ships (`omr.Recognizer` reads it); fp16 halves the file and
suits GPUs and mobile accelerators; int8 quantizes the LSTM and MatMul weights (dynamic
quantization) for CPUs. Inputs and outputs stay float32 in all three, so the runtime's
preprocessing and decoding never change. Files: crnn.onnx, crnn.fp16.onnx, crnn.int8.onnx.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import click
import onnx
import torch
from omr_export.common import chosen_staves, cli_errors, output_path, staves_option, wrote
from omr_export.spec import Exportable, graph_path, load
from omr_export.verify import (
    FP32,
    REDUCED,
    Report,
    Stave,
    VerificationError,
    Verifier,
    onnx_runner,
    reference_runner,
    require,
)

PRECISIONS = ("fp32", "fp16", "int8")
SUFFIXES = {"fp32": ".onnx", "fp16": ".fp16.onnx", "int8": ".int8.onnx"}
OPSET = 17
# Quantizing the convolutions as well made the model slower in a trial on this machine: ONNX
# Runtime's int8 convolutions lose to its fp32 ones at these channel counts.
# TrOMR's linear layers are MatMul (3-D inputs) and Gemm (its decoder's 2-D steps).
QUANTIZED_OPS = ["MatMul", "LSTM", "Gemm"]
# ONNX Runtime 1.32's CPU graph optimizer crashes (segfault) on fp16 Transpose nodes; the two
# Transposes move data only, so leaving them fp32 costs two casts and nothing in accuracy.
FP16_KEEP_FP32 = ["Transpose"]


def graph_files(ex: Exportable, out: Path) -> dict[str, Path]:
    """Each graph's file: `out` for the first (the one a runtime opens), the others beside it."""
    return {g.name: graph_path(out, g.suffix) for g in ex.spec.graphs}


def export_fp32(ex: Exportable, out: Path) -> Path:
    """Every graph of the model (the CRNN one, TrOMR an encoder and a decoder); returns `out`."""
    for graph in ex.spec.graphs:
        path = graph_path(out, graph.suffix)
        with warnings.catch_warnings():
            # The legacy exporter announces its deprecation and warns that an LSTM exported at
            # batch 1 may fail at other batch sizes, and the tracer that TrOMR's single-query
            # step needs no causal mask; verification runs other batches, widths and lengths.
            warnings.simplefilter("ignore")
            # dynamo=True fails on a BiLSTM with a dynamic width (torch 2.13); the
            # TorchScript-based exporter handles it.
            torch.onnx.export(ex.module(graph.name), ex.spec.dummy_inputs(graph.name), str(path),
                              dynamo=False, input_names=list(graph.inputs),
                              output_names=list(graph.outputs), opset_version=OPSET,
                              dynamic_axes=graph.dynamic_axes)
        model = onnx.load(str(path))
        _set_metadata(model, ex, "fp32", out)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return out


def export_fp16(ex: Exportable, fp32: Path, out: Path) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    for graph in ex.spec.graphs:
        model = convert_float_to_float16(onnx.load(str(graph_path(fp32, graph.suffix))),
                                         keep_io_types=True, op_block_list=FP16_KEEP_FP32)
        _set_metadata(model, ex, "fp16", out)
        onnx.save(model, str(graph_path(out, graph.suffix)))
    return out


def export_int8(ex: Exportable, fp32: Path, out: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice is for static quantization
    try:
        for graph in ex.spec.graphs:
            src, dst = graph_path(fp32, graph.suffix), graph_path(out, graph.suffix)
            keep = [n.name for n in onnx.load(str(src)).graph.node
                    if any(k in n.name for k in graph.keep_float)] if graph.keep_float else []
            quantize_dynamic(str(src), str(dst), op_types_to_quantize=QUANTIZED_OPS,
                             weight_type=QuantType.QInt8, nodes_to_exclude=keep)
            model = onnx.load(str(dst))
            _set_metadata(model, ex, "int8", out)
            onnx.save(model, str(dst))
    finally:
        root.setLevel(level)
    return out


def _set_metadata(model: onnx.ModelProto, ex: Exportable, precision: str, out: Path) -> None:
    """Every graph carries the metadata; the first names the files of the others."""
    files = {f"{g.name}_file": graph_path(out, g.suffix).name for g in ex.spec.graphs[1:]}
    meta = {**ex.spec.metadata(), **files, "precision": precision}
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "omr_export"
    model.doc_string = f"{ex.spec.name} {ex.spec.version}: {meta['preprocessing']}"


def verify_onnx(path: Path, ex: Exportable, precision: str,
                verifier: Verifier | None = None) -> Report:
    """The runtime must accept the file, and its numbers must match PyTorch's."""
    from omr.recognize import ModelError, Recognizer

    try:
        info = Recognizer(path, threads=1).info
    except ModelError as err:
        raise VerificationError(f"the runtime rejects {path}: {err}") from None
    spec = ex.spec
    if (info.vocab, info.input_height, info.width_stride, info.staff_fraction) != \
            (spec.vocab, spec.input_height, spec.width_stride, spec.staff_fraction):
        raise VerificationError(f"{path}: metadata differs from the checkpoint's")
    verifier = verifier or Verifier(spec, reference_runner(ex))
    report = verifier.check(path.name, onnx_runner(path, spec=spec),
                            FP32 if precision == "fp32" else REDUCED)
    click.echo(str(report))
    require(report)
    return report


def onnx_paths(checkpoint: Path, output: Path | None,
               precisions: tuple[str, ...]) -> dict[str, Path]:
    """-o names the one file asked for, or the fp32 file with the others beside it."""
    if output is not None and len(precisions) == 1:
        return {precisions[0]: output_path(checkpoint, output, "")}
    base = output_path(checkpoint, output, ".onnx")
    stem = base.name.removesuffix(".onnx")
    return {p: base.with_name(stem + SUFFIXES[p]) for p in precisions}


def export_all(ex: Exportable, paths: dict[str, Path],
               staves: Sequence[Stave] | None = None) -> list[Path]:
    """Each precision written and verified; fp16 and int8 start from the fp32 graph."""
    verifier = Verifier(ex.spec, reference_runner(ex), staves)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_fp32(ex, paths.get("fp32") or Path(tmp) / "fp32.onnx")
        for precision, out in paths.items():
            if precision == "fp16":
                export_fp16(ex, fp32, out)
            elif precision == "int8":
                export_int8(ex, fp32, out)
            wrote(out, f"ONNX {precision}, opset {OPSET}, {ex.spec.name} {ex.spec.version}",
                  list(graph_files(ex, out).values())[1:])
            verify_onnx(out, ex, precision, verifier)
    return list(paths.values())


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--precision", type=click.Choice([*PRECISIONS, "all"]), default="all",
              show_default=True, help="Which model(s) to write.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Where to write (with 'all': the fp32 file; the others go beside it).")
@staves_option
@cli_errors
def main(checkpoint: Path, precision: str, output: Path | None, staves: tuple[str, ...],
         limit: int) -> None:
    """Export CHECKPOINT to ONNX and verify each model against PyTorch."""
    torch.set_num_threads(2)
    ex = load(checkpoint)
    precisions = PRECISIONS if precision == "all" else (precision,)
    export_all(ex, onnx_paths(checkpoint, output, precisions), chosen_staves(ex, staves, limit))


if __name__ == "__main__":
    main()
