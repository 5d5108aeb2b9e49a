"""A training checkpoint to Core ML (ML Program, iOS 17+), fp16 by default, verified.

    python export/to_coreml.py models/crnn.pt [--fp32] [-o models/crnn.mlpackage]

Input `image` float32 [N, 1, H, W], N 1-32 and W a range (RangeDim); output `log_probs`
float32 [N, W / stride, C]. Preprocessing is documented in the model's description, its
metadata and mobile/README.md. Core ML predicts only on macOS: elsewhere the saved spec is
validated (names, types, shape ranges, metadata, deployment target); on macOS the model's
numbers are compared with PyTorch's as well, by the same verification as the other formats.
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
from omr_export.spec import INPUT, OUTPUT, Exportable, ExportError, ModelSpec, load, preprocessing
from omr_export.verify import (
    FP32,
    REDUCED,
    Report,
    VerificationError,
    Verifier,
    coreml_runner,
    require,
    torch_runner,
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
    ct = import_coremltools()
    traced = trace(ex)
    spec = ex.spec
    # The converter draws a progress bar per pass on stderr; its errors still raise.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # "torch 2.13 not tested": the verification is the test
        mlmodel = ct.convert(
            traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
            # ct.convert mutates the TensorTypes it is given: build fresh ones for every call.
            inputs=[ct.TensorType(name=INPUT, dtype=np.float32, shape=(
                ct.RangeDim(1, MAX_BATCH, 1), 1, spec.input_height,
                ct.RangeDim(spec.min_width, spec.max_width, min(1024, spec.max_width))))],
            outputs=[ct.TensorType(name=OUTPUT, dtype=np.float32)],
            compute_precision=ct.precision.FLOAT32 if fp32 else ct.precision.FLOAT16)
    describe(mlmodel, spec, "fp32" if fp32 else "fp16")
    if out.is_dir():  # a package is a folder: saving over an old one would mix their files
        shutil.rmtree(out)
    mlmodel.save(str(out))
    return out


def describe(mlmodel, spec: ModelSpec, precision: str) -> None:
    """What Xcode's model page shows: summary, input and output, and the metadata."""
    mlmodel.short_description = (
        f"Optical music recognition ({spec.name}): one staff image in, per-column symbol "
        f"log-probabilities out, decoded by CTC greedy search with the vocab in the metadata. "
        f"Preprocessing: {preprocessing(spec.staff_fraction)}")
    mlmodel.author = "omr-midi"
    mlmodel.version = spec.version
    mlmodel.license = "MIT"
    mlmodel.input_description[INPUT] = (
        f"Staff crop, float32 [N, 1, {spec.input_height}, W], N 1-{MAX_BATCH}, "
        f"W {spec.min_width}-{spec.max_width}: (255 - gray) / 255 (ink 1, paper 0), staff lines "
        f"spanning {spec.staff_fraction:g} of the height, centred; pad batches on the right with 0.")
    mlmodel.output_description[OUTPUT] = (
        f"float32 [N, W / {spec.width_stride}, {spec.num_classes}]: log-softmax per frame; "
        f"class 0 is the CTC blank, class i is vocab[i - 1]. Take the argmax per frame, merge "
        f"repeats, drop blanks.")
    for key, value in {**spec.metadata(), "precision": precision}.items():
        mlmodel.user_defined_metadata[key] = value


def check_saved_spec(path: Path, spec: ModelSpec, precision: str) -> list[str]:
    """Problems with the saved package's interface, readable on any platform."""
    ct = import_coremltools()
    proto = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    problems = []
    if proto.WhichOneof("Type") != "mlProgram":
        problems.append(f"not an ML Program ({proto.WhichOneof('Type')})")
    if proto.specificationVersion < IOS17_SPEC_VERSION:
        problems.append(f"specification version {proto.specificationVersion} predates iOS 17")
    inputs, outputs = proto.description.input, proto.description.output
    if [i.name for i in inputs] != [INPUT] or [o.name for o in outputs] != [OUTPUT]:
        problems.append(f"interface is {[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        return problems
    array = inputs[0].type.multiArrayType
    float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    if array.dataType != float32 or outputs[0].type.multiArrayType.dataType != float32:
        problems.append("input and output must be float32")
    ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
    want = [(1, MAX_BATCH), (1, 1), (spec.input_height, spec.input_height),
            (spec.min_width, spec.max_width)]
    if ranges != want:
        problems.append(f"input shape ranges {ranges}, expected {want}")
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
    problems = check_saved_spec(path, ex.spec, precision)
    if problems:
        raise VerificationError(f"{path.name} failed verification: {'; '.join(problems)}")
    click.echo(f"{path.name}: spec OK (ML Program, iOS 17, {INPUT} [1-{MAX_BATCH}, 1, "
               f"{ex.spec.input_height}, {ex.spec.min_width}-{ex.spec.max_width}] -> {OUTPUT}, "
               f"metadata complete)")
    if platform != "darwin":
        click.echo(f"{path.name}: numeric comparison skipped: Core ML predicts on macOS only")
        return None
    ct = import_coremltools()
    # CPU only: the comparison measures the conversion, not the GPU's or Neural Engine's rounding.
    mlmodel = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    return compare_numbers(path.name, coreml_runner(mlmodel, MAX_BATCH), ex, precision)


def compare_numbers(name: str, runner, ex: Exportable, precision: str,
                    verifier: Verifier | None = None) -> Report:
    verifier = verifier or Verifier(ex.spec, torch_runner(ex.model))
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
    wrote(out, f"Core ML ML Program, iOS 17, {precision}, {ex.spec.name} {ex.spec.version}")
    verify_coreml(out, ex, precision)


if __name__ == "__main__":
    main()
