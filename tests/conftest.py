"""Shared fixtures: a tiny real ONNX model and synthetic pages drawn with OpenCV."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

EVAL = Path(__file__).parents[1] / ".." / "shared" / "eval"
TINY_VOCAB = ["clef-G2", "keySignature-DM", "timeSignature-3/4", "note-C4_quarter",
              "note-D4_eighth", "note-C4_half", "rest-half", "barline", "tie"]
TINY_HEIGHT = 32
TINY_STRIDE = 8


def make_model(path: Path, vocab: list[str] = TINY_VOCAB, height: int = TINY_HEIGHT,
               stride: int = TINY_STRIDE, seed: int = 0) -> Path:
    """A real (random-weight) model that honours the runtime's ONNX contract.

    One convolution whose kernel covers the whole height and `stride` columns gives one frame
    per `stride` columns, then log-softmax: garbage tokens, real plumbing.
    """
    import onnx
    from omr.vocab import Vocabulary
    from onnx import TensorProto, helper, numpy_helper

    classes = len(vocab) + 1
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.5, (classes, 1, height, stride)).astype(np.float32)
    bias = rng.normal(0, 0.5, classes).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["conv"], kernel_shape=[height, stride],
                         strides=[height, stride]),
        helper.make_node("Squeeze", ["conv", "axis2"], ["squeezed"]),
        helper.make_node("Transpose", ["squeezed"], ["frames"], perm=[0, 2, 1]),
        helper.make_node("LogSoftmax", ["frames"], ["log_probs"], axis=2),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, height, "W"])],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["N", "T", classes])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b"),
         numpy_helper.from_array(np.array([2], np.int64), "axis2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"vocab": Vocabulary(tuple(vocab)).to_json(), "input_height": str(height),
            "width_stride": str(stride), "normalization": "(255 - gray) / 255",
            "model_version": "test", "model_name": "tiny"}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def make_page(staves: int = 4, width: int = 1600, space: int = 14, angle: float = 0.0,
              seed: int = 0, margin_top: int = 120) -> np.ndarray:
    """A white page with `staves` five-line staves, noteheads, stems and barlines."""
    rng = np.random.default_rng(seed)
    gap = 12 * space
    height = margin_top * 2 + staves * gap
    page = np.full((height, width), 245, np.uint8)
    for k in range(staves):
        top = margin_top + k * gap
        for line in range(5):
            y = top + line * space
            cv2.line(page, (80, y), (width - 80, y), 20, 2)
        for x in range(140, width - 120, int(3.5 * space)):
            y = top + int(rng.integers(-2, 11)) * space // 2
            cv2.ellipse(page, (x, y), (int(0.65 * space), int(0.45 * space)), -20, 0, 360, 20, -1)
            cv2.line(page, (x + int(0.6 * space), y), (x + int(0.6 * space), y - 3 * space), 20, 2)
        for x in range(80, width, (width - 160) // 4):
            cv2.line(page, (x, top), (x, top + 4 * space), 20, 2)
    if angle:
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        page = cv2.warpAffine(page, matrix, (width, height), borderValue=245)
    return page


def teach_tromr(model, images, widths, targets, steps: int, lr: float) -> list[float]:
    """Teacher forcing on one batch for `steps` AdamW steps: the losses. A tiny TrOMR learns
    its few labels this way in seconds (torch is imported by the caller's test module)."""
    import torch
    from omr_train import tromr

    optim = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        out = model(images, widths, targets.rhythm_in, targets.pitch_in, targets.lift_in)
        loss = tromr.loss(out, targets, model.is_note)["total"]
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    return losses


def assert_resume_is_exact(data: Path, tmp_path: Path, steps: int, options: dict) -> None:
    """A run stopped halfway and resumed ends with the same weights as one run straight
    through (the loader's order, the optimizer and the schedule all carried in last.pt)."""
    import torch
    from omr_train import checkpoint
    from omr_train.train import TrainOptions, train

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    half = steps // 2
    train(TrainOptions(data=str(data), out=str(whole), steps=steps, eval_every=half, **options))
    train(TrainOptions(data=str(data), out=str(parts), steps=steps, eval_every=half,
                       stop_after=half, **options))
    assert checkpoint.load(parts / "last.pt")["step"] == half
    train(TrainOptions(data=str(data), out=str(parts), steps=steps, eval_every=half, **options))
    one, other = checkpoint.load(whole / "last.pt"), checkpoint.load(parts / "last.pt")
    assert one.keys() == other.keys()
    for weights in ("model", "ema"):  # the moving average (--ema) resumes exactly too
        a, b = one.get(weights, {}), other.get(weights, {})
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), (weights, k)


def staff_centres(page_staves) -> list[float]:
    return [(s.bbox[1] + s.bbox[3]) / 2.0 for s in page_staves]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def page_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pages") / "page.png"
    cv2.imwrite(str(path), make_page(staves=3, angle=1.0))
    return path


@pytest.fixture(scope="session")
def recognizer(tiny_model):
    from omr import Recognizer

    return Recognizer(tiny_model)


def rotated_centre(y: float, x: float, angle: float, width: int, height: int) -> float:
    """Where the point (x, y) lands after make_page's rotation (for order checks)."""
    a = math.radians(angle)
    cx, cy = width / 2, height / 2
    return cy - math.sin(a) * (x - cx) + math.cos(a) * (y - cy)
