"""The export path (TorchScript, ONNX fp32/fp16/int8, Core ML) and its verification, tiny CRNN."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from omr.vocab import Vocabulary
from omr_export.spec import INPUT, OUTPUT, load
from omr_export.verify import (
    FP32,
    Tolerance,
    VerificationError,
    Verifier,
    coreml_runner,
    generated_staves,
    onnx_runner,
    require,
    torch_runner,
)
from omr_train.checkpoint import save
from omr_train.model import CRNNConfig, build

VOCAB = Vocabulary(("barline", "clef-G2", "note-C4_quarter", "note-D4_eighth", "rest-half",
                    "timeSignature-3/4", "tie"))
# Random weights sit near argmax ties, so fp16/int8 may flip a token; here only plumbing counts.
LOOSE = Tolerance(max_abs_diff=0.5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = CRNNConfig(name="tiny", channels=(4, 8), width_pools=(2, 1), lstm_hidden=8,
                     input_height=32, num_classes=VOCAB.size)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    model = build(cfg)
    save(path, model, cfg, VOCAB, step=3)
    return path


@pytest.fixture(scope="module")
def exportable(checkpoint):
    return load(checkpoint)


@pytest.fixture(scope="module")
def verifier(exportable):
    staves = generated_staves(exportable.spec)
    return Verifier(exportable.spec, torch_runner(exportable.model), staves)


def test_spec_rebuilds_the_model_and_carries_the_runtime_metadata(exportable):
    meta = exportable.spec.metadata()
    assert Vocabulary.from_json(meta["vocab"]) == VOCAB
    assert (meta["input_height"], meta["width_stride"], meta["staff_fraction"]) == ("32", "2", "0.45")
    assert meta["normalization"] == "(255 - gray) / 255"
    assert meta["model_name"] == "tiny" and meta["model_version"].startswith("step3-")
    x = exportable.spec.dummy_input(width=50, batch=2)
    with torch.inference_mode():
        assert torch.allclose(exportable.model(x), exportable.traceable(x), atol=1e-6)


def test_verification_staves_cover_edge_widths(exportable):
    widths = {s.pixels.shape[1] for s in generated_staves(exportable.spec)}
    assert exportable.spec.min_width in widths and len(widths) >= 6


def test_torchscript_export_matches_pytorch(exportable, verifier, tmp_path):
    from omr_export.to_torchscript import export_torchscript, load_torchscript, verify_torchscript

    path = export_torchscript(exportable, tmp_path / "tiny.torchscript.pt")
    report = verify_torchscript(path, exportable, verifier)
    assert report.ok and report.token_mismatches == 0
    _, meta = load_torchscript(path)
    assert meta == exportable.spec.metadata()


def test_onnx_fp32_matches_pytorch_and_the_runtime_reads_it(exportable, verifier, tmp_path):
    from omr import Recognizer
    from omr_export.to_onnx import export_fp32, verify_onnx

    path = export_fp32(exportable, tmp_path / "tiny.onnx")
    report = verify_onnx(path, exportable, "fp32", verifier)
    assert report.ok and report.max_abs_diff < FP32.max_abs_diff
    recognizer = Recognizer(path, threads=1)
    assert recognizer.info.vocab == VOCAB and recognizer.info.name == "tiny"
    staff = generated_staves(exportable.spec)[0].pixels
    with warnings.catch_warnings():  # staff lines 3 px apart may go unseen: then it resizes
        warnings.simplefilter("ignore")
        score = recognizer.read_array(np.pad(staff, 20, constant_values=255), single_staff=True)
    assert len(score.staves) == 1


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_onnx_keeps_float32_io_and_metadata(precision, exportable, verifier,
                                                              tmp_path):
    import onnx
    from omr_export.to_onnx import export_fp16, export_fp32, export_int8

    fp32 = export_fp32(exportable, tmp_path / "tiny.onnx")
    convert = export_fp16 if precision == "fp16" else export_int8
    path = convert(exportable, fp32, tmp_path / f"tiny.{precision}.onnx")
    model = onnx.load(str(path))
    io_types = [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]
    assert io_types == [onnx.TensorProto.FLOAT] * 2
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == precision and meta["vocab"] == VOCAB.to_json()
    if precision == "int8":
        assert {"DynamicQuantizeLSTM", "MatMulInteger"} & {n.op_type for n in model.graph.node}
        assert not {"ConvInteger", "QLinearConv"} & {n.op_type for n in model.graph.node}
    report = verifier.check(path.name, onnx_runner(path), LOOSE)
    assert report.ok, report


def test_verification_fails_loudly_on_a_changed_model(exportable, verifier):
    reference = torch_runner(exportable.model)

    def shifted(batch: np.ndarray) -> np.ndarray:
        out = reference(batch)
        out[..., 1] += 10.0  # class 1 wins every frame: the tokens change
        return out

    report = verifier.check("shifted", shifted, FP32)
    assert not report.ok and report.token_mismatches > 0
    with pytest.raises(VerificationError, match="shifted failed verification"):
        require(report)


def test_onnx_script_writes_all_precisions_beside_the_checkpoint(checkpoint):
    from omr_export.to_onnx import onnx_paths

    paths = onnx_paths(checkpoint, None, ("fp32", "fp16", "int8"))
    assert [p.name for p in paths.values()] == ["tiny.onnx", "tiny.fp16.onnx", "tiny.int8.onnx"]
    out = checkpoint.parent / "x" / "m.onnx"
    assert onnx_paths(checkpoint, out, ("int8",)) == {"int8": out}


@pytest.mark.parametrize("script", ["to_torchscript", "to_onnx", "to_coreml"])
def test_scripts_reject_missing_and_corrupt_checkpoints_in_one_line(script, tmp_path):
    import importlib

    main = importlib.import_module(f"omr_export.{script}").main
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    for path, message in ((tmp_path / "missing.pt", "checkpoint not found"),
                          (corrupt, "not a loadable checkpoint")):
        result = CliRunner().invoke(main, [str(path)])
        assert result.exit_code == 1
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_coreml_export_has_a_valid_spec_and_a_numeric_path(exportable, verifier, tmp_path):
    pytest.importorskip("coremltools")
    from omr_export.to_coreml import check_saved_spec, compare_numbers, export_coreml, verify_coreml

    path = export_coreml(exportable, tmp_path / "tiny.mlpackage")
    assert check_saved_spec(path, exportable.spec, "fp16") == []
    wrong = check_saved_spec(path, exportable.spec, "fp32")
    assert wrong == ["metadata missing or wrong: precision"]
    # On Linux the spec is checked and the numbers skipped; the numeric path runs on a fake.
    assert verify_coreml(path, exportable, "fp16", platform="linux") is None

    class FakeMLModel:  # what MLModel.predict does, with PyTorch behind it
        def __init__(self) -> None:
            self.calls: list[tuple[int, ...]] = []

        def predict(self, features: dict) -> dict:
            self.calls.append(features[INPUT].shape)
            with torch.inference_mode():
                return {OUTPUT: exportable.model(torch.from_numpy(features[INPUT])).numpy()}

    fake = FakeMLModel()
    report = compare_numbers("fake.mlpackage", coreml_runner(fake, max_batch=2), exportable,
                             "fp32", verifier)
    assert report.ok and max(shape[0] for shape in fake.calls) <= 2


def test_exported_metadata_is_json_the_runtime_can_parse(exportable):
    meta = exportable.spec.metadata()
    assert json.loads(meta["vocab"]) == list(VOCAB.tokens)
    assert all(isinstance(v, str) for v in meta.values())
