"""A training checkpoint to Core ML (ML Program, iOS 17+), fp16 by default, verified.

    python export/to_coreml.py models/crnn.pt [--fp32] [-o models/crnn.mlpackage]

CRNN: input `image` float32 [N, 1, H, W], N 1-32 and W a range (RangeDim); output `log_probs`
float32 [N, W / stride, C]. TrOMR: an encoder (X.mlpackage) and a decoder with its KV cache
(X.decoder.mlpackage), the inputs and outputs of omr.autoregressive, every dynamic axis of
export/spec.py a RangeDim (the past's length from 0), token ids int32. Preprocessing is
documented in the model's description, its metadata and mobile/README.md. Core ML predicts
only on macOS: elsewhere the saved spec is validated (names, types, shape ranges, metadata,
deployment target); on macOS the model's numbers are compared with PyTorch's as well, by the
same verification as the other formats.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import sys
import warnings
from pathlib import Path

import click
import numpy as np
import torch
from omr_export.common import cli_errors, output_path, trace, wrote
from omr_export.spec import (
    INPUT,
    OUTPUT,
    Exportable,
    ExportError,
    Graph,
    ModelSpec,
    Seq2SeqSpec,
    graph_path,
    load,
    preprocessing,
)
from omr_export.verify import (
    FP32,
    REDUCED,
    CoreMLSeq2Seq,
    Report,
    VerificationError,
    Verifier,
    coreml_runner,
    reference_runner,
    require,
    seq2seq_runner,
)

SUFFIX = ".mlpackage"
MAX_BATCH = 32
IOS17_SPEC_VERSION = 8  # Core ML specification version that iOS 17 introduced


def import_coremltools():
    """coremltools, quietly: on Linux it logs that its native (prediction) library is absent."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    try:
        import coremltools as ct
    except ImportError:
        raise ExportError("coremltools is not installed (pip install coremltools)") from None
    return ct


def export_coreml(ex: Exportable, out: Path, fp32: bool = False) -> Path:
    """Every graph converted (the first at `out`, the others beside it)."""
    ct = import_coremltools()
    for graph in ex.spec.graphs:
        traced = trace(ex, graph.name)
        # The converter draws a progress bar per pass on stderr; its errors still raise.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")  # "torch 2.13 not tested": the verification is the test
            mlmodel = ct.convert(
                traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                # ct.convert mutates the TensorTypes it is given: build fresh ones for every call.
                inputs=input_types(ct, ex.spec, graph),
                outputs=[ct.TensorType(name=name, dtype=np.float32) for name in graph.outputs],
                compute_precision=ct.precision.FLOAT32 if fp32 else ct.precision.FLOAT16)
        describe(mlmodel, ex.spec, "fp32" if fp32 else "fp16", graph)
        path = graph_path(out, graph.suffix, SUFFIX)
        if path.is_dir():  # a package is a folder: saving over an old one would mix their files
            shutil.rmtree(path)
        mlmodel.save(str(path))
    return out


def input_shapes(spec: ModelSpec, graph: Graph) -> list[tuple[tuple[int, int], ...]]:
    """Each input's (lower, upper) size per axis: the dummy's size, or the dynamic axis' range."""
    shapes = []
    for name, x in zip(graph.inputs, spec.dummy_inputs(graph.name)):
        axes = graph.dynamic_axes.get(name, {})
        shapes.append(tuple(spec.axis_range(axes[i], MAX_BATCH) if i in axes else (n, n)
                            for i, n in enumerate(x.shape)))
    return shapes


def input_types(ct, spec: ModelSpec, graph: Graph) -> list:
    """Float inputs float32, ids int32 (Core ML has no int64); dynamic axes as RangeDims."""
    types = []
    for name, x, shape in zip(graph.inputs, spec.dummy_inputs(graph.name),
                              input_shapes(spec, graph)):
        dims = tuple(lo if lo == hi else ct.RangeDim(lo, hi, min(max(n, lo), hi, 1024))
                     for (lo, hi), n in zip(shape, x.shape))
        types.append(ct.TensorType(name=name, dtype=np.float32 if x.is_floating_point()
                                   else np.int32, shape=dims))
    return types


def describe(mlmodel, spec: ModelSpec, precision: str, graph: Graph | None = None) -> None:
    """What Xcode's model page shows: summary, input and output, and the metadata."""
    mlmodel.author = "omr-midi"
    mlmodel.version = spec.version
    mlmodel.license = "MIT"
    for key, value in {**spec.metadata(), "precision": precision}.items():
        mlmodel.user_defined_metadata[key] = value
    if isinstance(spec, Seq2SeqSpec):
        mlmodel.short_description = (
            f"Optical music recognition ({spec.name}), TrOMR's {graph.name}: the encoder runs "
            f"once per batch of staves, the decoder once per token with its KV cache, as "
            f"omr.autoregressive describes; the vocabulary is in the metadata. Preprocessing: "
            f"{preprocessing(spec.staff_fraction)}")
        for name in graph.inputs:
            mlmodel.input_description[name] = f"{name}: see omr.autoregressive"
        return
    mlmodel.short_description = (
        f"Optical music recognition ({spec.name}): one staff image in, per-column symbol "
        f"log-probabilities out, decoded by CTC greedy search with the vocab in the metadata. "
        f"Preprocessing: {preprocessing(spec.staff_fraction)}")
    mlmodel.input_description[INPUT] = (
        f"Staff crop, float32 [N, 1, {spec.input_height}, W], N 1-{MAX_BATCH}, "
        f"W {spec.min_width}-{spec.max_width}: (255 - gray) / 255 (ink 1, paper 0), staff lines "
        f"spanning {spec.staff_fraction:g} of the height, centred; pad batches on the right with 0.")
    mlmodel.output_description[OUTPUT] = (
        f"float32 [N, W / {spec.width_stride}, {spec.num_classes}]: log-softmax per frame; "
        f"class 0 is the CTC blank, class i is vocab[i - 1]. Take the argmax per frame, merge "
        f"repeats, drop blanks.")


def check_saved_spec(path: Path, spec: ModelSpec, precision: str,
                     graph: Graph | None = None) -> list[str]:
    """Problems with the saved package's interface, readable on any platform."""
    ct = import_coremltools()
    graph = graph or spec.graphs[0]
    proto = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    problems = []
    if proto.WhichOneof("Type") != "mlProgram":
        problems.append(f"not an ML Program ({proto.WhichOneof('Type')})")
    if proto.specificationVersion < IOS17_SPEC_VERSION:
        problems.append(f"specification version {proto.specificationVersion} predates iOS 17")
    inputs, outputs = proto.description.input, proto.description.output
    if [i.name for i in inputs] != list(graph.inputs) or \
            [o.name for o in outputs] != list(graph.outputs):
        problems.append(f"interface is {[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        return problems
    types = ct.proto.FeatureTypes_pb2.ArrayFeatureType
    dummies = spec.dummy_inputs(graph.name)
    want_types = [types.FLOAT32 if x.is_floating_point() else types.INT32 for x in dummies]
    if [i.type.multiArrayType.dataType for i in inputs] != want_types or \
            any(o.type.multiArrayType.dataType != types.FLOAT32 for o in outputs):
        problems.append("inputs must be float32 (ids int32) and outputs float32")
    for i, want in zip(inputs, input_shapes(spec, graph)):
        ranges = tuple((r.lowerBound, r.upperBound)
                       for r in i.type.multiArrayType.shapeRange.sizeRanges)
        if ranges != want:
            problems.append(f"{i.name} shape ranges {list(ranges)}, expected {list(want)}")
    meta = dict(proto.description.metadata.userDefined)
    expected = {**spec.metadata(), "precision": precision}
    wrong = sorted(k for k, v in expected.items() if meta.get(k) != v)
    if wrong:
        problems.append(f"metadata missing or wrong: {', '.join(wrong)}")
    if not proto.description.metadata.shortDescription or not inputs[0].shortDescription:
        problems.append("descriptions missing")
    return problems


def verify_coreml(path: Path, ex: Exportable, precision: str,
                  platform: str = sys.platform) -> Report | None:
    """The spec everywhere; the numbers on macOS, where Core ML can run the model."""
    for graph in ex.spec.graphs:
        part = graph_path(path, graph.suffix, SUFFIX)
        problems = check_saved_spec(part, ex.spec, precision, graph)
        if problems:
            raise VerificationError(f"{part.name} failed verification: {'; '.join(problems)}")
        shapes = ", ".join(f"{name} {_ranges(r)}" for name, r in
                           zip(graph.inputs, input_shapes(ex.spec, graph)))
        click.echo(f"{part.name}: spec OK (ML Program, iOS 17, {shapes} -> "
                   f"{', '.join(graph.outputs)}; metadata complete)")
    if platform != "darwin":
        click.echo(f"{path.name}: numeric comparison skipped: Core ML predicts on macOS only")
        return None
    ct = import_coremltools()
    # CPU only: the comparison measures the conversion, not the GPU's or Neural Engine's rounding.
    models = [ct.models.MLModel(str(graph_path(path, g.suffix, SUFFIX)),
                                compute_units=ct.ComputeUnit.CPU_ONLY) for g in ex.spec.graphs]
    if isinstance(ex.spec, Seq2SeqSpec):
        runner = seq2seq_runner(CoreMLSeq2Seq(*models, ex.spec), ex.spec.info)
    else:
        runner = coreml_runner(models[0], MAX_BATCH)
    return compare_numbers(path.name, runner, ex, precision)


def _ranges(shape: tuple[tuple[int, int], ...]) -> str:
    return "[" + ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in shape) + "]"


def compare_numbers(name: str, runner, ex: Exportable, precision: str,
                    verifier: Verifier | None = None) -> Report:
    verifier = verifier or Verifier(ex.spec, reference_runner(ex))
    report = verifier.check(name, runner, FP32 if precision == "fp32" else REDUCED)
    click.echo(str(report))
    require(report)
    return report


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--fp32", is_flag=True, help="Full-precision weights and arithmetic (default fp16).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help=f"Where to write (default: beside the checkpoint, *{SUFFIX}).")
@cli_errors
def main(checkpoint: Path, fp32: bool, output: Path | None) -> None:
    """Export CHECKPOINT to a Core ML ML Program and verify it."""
    torch.set_num_threads(2)
    ex = load(checkpoint)
    precision = "fp32" if fp32 else "fp16"
    out = export_coreml(ex, output_path(checkpoint, output, SUFFIX), fp32)
    others = [graph_path(out, g.suffix, SUFFIX) for g in ex.spec.graphs[1:]]
    wrote(out, f"Core ML ML Program, iOS 17, {precision}, {ex.spec.name} {ex.spec.version}",
          others)
    verify_coreml(out, ex, precision)


if __name__ == "__main__":
    main()
