"""What an exporter needs to know about a model: one small description per model family.

Modelled on Hugging Face optimum's `OnnxConfig`: input and output names, dynamic axes, dummy
inputs and the metadata that travels with the artifact live here once. The TorchScript, ONNX
and Core ML exporters and the verification all read them from a `ModelSpec`, so TrOMR plugs
in by adding one loader to `LOADERS`, keyed by its checkpoint format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omr.geometry import SIDE_MARGIN_SPACES, STAFF_FRACTION
from omr.vocab import Vocabulary
from omr_train.checkpoint import FORMAT as CRNN_FORMAT

INPUT = "image"
OUTPUT = "log_probs"
NORMALIZATION = "(255 - gray) / 255"


def preprocessing(staff_fraction: float) -> str:
    return (f"Grayscale staff crop resized to the model's input height, staff lines spanning "
            f"{staff_fraction:g} of the height (metadata staff_fraction) and centred, "
            f"{SIDE_MARGIN_SPACES:g} staff space of paper left and right "
            f"(omr.staves.normalize_staff_crop); values {NORMALIZATION}, so ink is 1 and paper 0; "
            f"batches right-padded with 0.")


class ExportError(RuntimeError):
    """A checkpoint that cannot be exported; the message is one line, shown without traceback."""


@dataclass(frozen=True)
class ModelSpec:
    """The artifact contract of one trained model: what goes in, what comes out, what it means."""

    family: str  # "crnn"; picks the loader and the decoding (CTC here)
    name: str  # the config's name, e.g. "crnn-lite"
    version: str  # identifies the weights: training step and checkpoint hash
    vocab: Vocabulary
    input_height: int
    width_stride: int  # input columns per output frame
    max_width: int  # upper bound of the width range where a format needs one (Core ML)
    staff_fraction: float = STAFF_FRACTION  # staff height / input height
    provenance: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return self.vocab.size

    @property
    def min_width(self) -> int:
        """Narrowest input that still yields one frame."""
        return self.width_stride

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {INPUT: {0: "N", 3: "W"}, OUTPUT: {0: "N", 1: "T"}}

    def dummy_input(self, width: int = 512, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """A traceable input; values are irrelevant (the network has no data-dependent branch)."""
        g = torch.Generator().manual_seed(seed)
        return torch.rand(batch, 1, self.input_height, width, generator=g)

    def frames(self, width: int) -> int:
        return width // self.width_stride

    def metadata(self) -> dict[str, str]:
        """Key/value strings stored in every artifact; the runtime reads the first four."""
        return {"vocab": self.vocab.to_json(), "input_height": str(self.input_height),
                "width_stride": str(self.width_stride), "staff_fraction": f"{self.staff_fraction:g}",
                "normalization": NORMALIZATION,
                "preprocessing": preprocessing(self.staff_fraction), "model_name": self.name,
                "model_version": self.version, "model_family": self.family,
                "output": "log-softmax over classes, class 0 = CTC blank, token i at class i+1",
                **self.provenance}


@dataclass(frozen=True)
class Exportable:
    """A model ready to export, fp32 on CPU in eval mode, with its description.

    `model` is the network as trained (the reference every artifact is verified against);
    `traceable` computes the same function in a form the converters accept, and is what
    gets traced.
    """

    model: torch.nn.Module
    traceable: torch.nn.Module
    spec: ModelSpec
    checkpoint: Path


def load(path: str | Path) -> Exportable:
    """Load a checkpoint (weights_only=True) and rebuild its model from the stored config."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is one clear message
        raise ExportError(f"{path}: not a loadable checkpoint ({type(err).__name__})") from None
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if fmt not in LOADERS:
        raise ExportError(f"{path}: unknown checkpoint format {fmt!r} "
                          f"(known: {', '.join(LOADERS)})")
    try:
        return LOADERS[fmt](path, ckpt)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"{path}: checkpoint does not match its config ({first[:200]})") from None


def _crnn(path: Path, ckpt: dict) -> Exportable:
    from omr_train.model import CRNNConfig, build

    cfg = CRNNConfig.from_dict(ckpt["config"])
    vocab = Vocabulary(tuple(ckpt["vocab"]))
    if cfg.num_classes != vocab.size:
        raise ValueError(f"config has {cfg.num_classes} classes, vocabulary {vocab.size}")
    model = build(cfg)
    # Shipped checkpoints hold fp16 weights; every export starts from fp32.
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    model.eval()
    provenance = {k: str(ckpt[k]) for k in ("step", "best_ser") if k in ckpt}
    spec = ModelSpec(family="crnn", name=cfg.name, version=_version(path, ckpt), vocab=vocab,
                     input_height=cfg.input_height, width_stride=cfg.width_stride,
                     max_width=64 * cfg.input_height, staff_fraction=cfg.staff_fraction,
                     provenance=provenance)
    return Exportable(model, TraceableCRNN(model).eval(), spec, path)


class TraceableCRNN(torch.nn.Module):
    """CRNN.forward without Python ints taken from tensor shapes.

    Tracing `n, c, h, t = f.shape` then `reshape(n, t, c * h)` records int casts that
    coremltools cannot convert ("converting 'int' op") and Shape/Gather chains in ONNX;
    flatten + transpose is the same arithmetic with no shape values at all.
    """

    def __init__(self, crnn: torch.nn.Module) -> None:
        super().__init__()
        self.conv, self.lstm, self.head = crnn.conv, crnn.lstm, crnn.head

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f = self.conv(image).flatten(1, 2).transpose(1, 2)  # N, T, C * H'
        f, _ = self.lstm(f)
        return self.head(f).log_softmax(-1)  # dropout is the identity in eval mode


def _version(path: Path, ckpt: dict) -> str:
    """Step plus a hash of the file: two exports of the same weights carry the same version."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    step = ckpt.get("step")
    return f"step{step}-{digest}" if step is not None else digest


LOADERS: dict[str, Callable[[Path, dict], Exportable]] = {CRNN_FORMAT: _crnn}
