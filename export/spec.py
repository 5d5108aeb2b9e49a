"""What an exporter needs to know about a model: one small description per model family.

Modelled on Hugging Face optimum's `OnnxConfig`: input and output names, dynamic axes, dummy
inputs and the metadata that travels with the artifact live here once. The TorchScript, ONNX
and Core ML exporters and the verification all read them from a `ModelSpec`, one loader in
`LOADERS` per checkpoint format: the CRNN is one graph; TrOMR (`Seq2SeqSpec`) is an encoder
and a decoder with its KV cache, as optimum exports an encoder-decoder, each a `Graph` the
exporters loop over. A third model plugs in with a loader and, if it decodes differently,
a runner in verify.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omr.autoregressive import (
    ENCODER_INPUTS,
    LOGITS,
    MASK,
    TOKENS,
    Seq2SeqInfo,
    cross_names,
    past_names,
    present_names,
)
from omr.geometry import SIDE_MARGIN_SPACES, STAFF_FRACTION
from omr.vocab import FactorVocabulary, Vocabulary
from omr_train import checkpoint
from omr_train.checkpoint import FORMAT as CRNN_FORMAT
from omr_train.checkpoint import TROMR_FORMAT

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
class Graph:
    """One graph of an artifact: the CRNN is one, TrOMR an encoder and a decoder (optimum's
    encoder / decoder-with-past, the past of length 0 at the first step)."""

    name: str  # "model", "encoder", "decoder"
    suffix: str  # after the artifact's stem: "" for the first graph (it carries the metadata)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    # Nodes whose names hold one of these stay float in int8 (to_onnx.export_int8).
    keep_float: tuple[str, ...] = ()


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

    @property
    def graphs(self) -> tuple[Graph, ...]:
        return (Graph("model", "", (INPUT,), (OUTPUT,), self.dynamic_axes),)

    def axis_range(self, axis: str, max_batch: int) -> tuple[int, int]:
        """The sizes a dynamic axis may take, for formats that need bounds (Core ML)."""
        return {"N": (1, max_batch), "W": (self.min_width, self.max_width)}[axis]

    def dummy_inputs(self, graph: str) -> tuple[torch.Tensor, ...]:
        return (self.dummy_input(),)

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
    parts: dict[str, torch.nn.Module] = field(default_factory=dict)  # graph name -> traceable

    def module(self, graph: str) -> torch.nn.Module:
        return self.parts.get(graph, self.traceable)


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
    model.load_state_dict(checkpoint.weights(ckpt))
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


def graph_path(out: Path, suffix: str, ext: str = ".onnx") -> Path:
    """Where a graph goes beside the first: tromr.int8.onnx -> tromr.int8.decoder.onnx."""
    return out.with_name(out.name.removesuffix(ext) + suffix + ext)


# --- TrOMR: an encoder and a decoder with a KV cache ------------------------------------------

MASKED = -1e4  # memory_mask's value over padding: exp underflows to exactly 0 in float32


@dataclass(frozen=True)
class Seq2SeqSpec(ModelSpec):
    """TrOMR's contract (omr.autoregressive): the encoder's image and widths in; the decoder's
    last token, the encoder's outputs and the past keys and values in, logits and the present
    keys and values out. `width_stride` is the encoder's columns per position."""

    layers: int = 0
    heads: int = 0
    head_dim: int = 0
    max_seq_len: int = 0
    rows: int = 0  # encoder positions per column

    @property
    def info(self) -> Seq2SeqInfo:
        return Seq2SeqInfo(self.vocab, self.layers, self.heads, self.head_dim, self.max_seq_len)

    @property
    def min_width(self) -> int:
        return self.width_stride

    def positions(self, width: int) -> int:
        return 1 + self.rows * (width // self.width_stride)

    def axis_range(self, axis: str, max_batch: int) -> tuple[int, int]:
        return {"N": (1, max_batch), "W": (self.min_width, self.max_width),
                "S": (self.positions(self.min_width), self.positions(self.max_width)),
                "T": (0, self.max_seq_len - 1)}[axis]

    @property
    def graphs(self) -> tuple[Graph, ...]:
        cross, past, present = (f(self.layers) for f in (cross_names, past_names, present_names))
        memory = {MASK: {0: "N", 3: "S"}} | {k: {0: "N", 2: "S"} for k in cross}
        encoder = Graph("encoder", "", ENCODER_INPUTS, (MASK, *cross),
                        {"image": {0: "N", 3: "W"}, "widths": {0: "N"}} | memory)
        decoder = Graph("decoder", ".decoder", (*TOKENS, MASK, *cross, *past), (*LOGITS, *present),
                        {k: {0: "N"} for k in (*TOKENS, *LOGITS)} | memory
                        | {k: {0: "N", 2: "T"} for k in past}
                        | {k: {0: "N", 2: "T+1"} for k in present},
                        # The heads make every step's choice: quantized, they flipped tokens
                        # on 1 of 16 staves more than left float (tiny cost: dim x classes).
                        keep_float=("to_rhythm", "to_pitch", "to_lift"))
        return encoder, decoder

    def dummy_inputs(self, graph: str, batch: int = 2, past: int = 3,
                     seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        width = 8 * self.width_stride
        if graph == "encoder":
            image = torch.rand(batch, 1, self.input_height, width, generator=g)
            return image, torch.tensor([width, width - 3 * self.width_stride] * batch)[:batch]
        s = self.positions(width)
        tokens = tuple(torch.ones(batch, 1, dtype=torch.long) for _ in TOKENS)
        mask = torch.zeros(batch, 1, 1, s)
        mask[1:, ..., s // 2:] = MASKED
        cross = [torch.randn(batch, self.heads, s, self.head_dim, generator=g)
                 for _ in cross_names(self.layers)]
        cache = [torch.randn(batch, self.heads, past, self.head_dim, generator=g)
                 for _ in past_names(self.layers)]
        return (*tokens, mask, *cross, *cache)

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), **self.info.to_metadata(), "max_width": str(self.max_width),
                "output": ("encoder (this file): memory_mask and cross keys/values; decoder (file "
                           "decoder_file, beside it): next-token logits of the rhythm, pitch "
                           "and lift heads and the present keys/values (omr.autoregressive)")}


def _tromr(path: Path, ckpt: dict) -> Exportable:
    from omr_train import tromr

    cfg = tromr.TrOMRConfig.from_dict(ckpt["config"])
    vocab = FactorVocabulary.from_dict(ckpt["vocab"])
    if (cfg.num_rhythms, cfg.num_pitches, cfg.num_lifts) != vocab.sizes:
        raise ValueError(f"config's heads {cfg.num_rhythms, cfg.num_pitches, cfg.num_lifts} "
                         f"differ from the vocabulary's {vocab.sizes}")
    model = tromr.build(cfg)
    model.load_state_dict(checkpoint.weights(ckpt))
    model.eval()
    provenance = {k: str(ckpt[k]) for k in ("step", "best_ser") if k in ckpt}
    spec = Seq2SeqSpec(family="tromr", name=cfg.name, version=_version(path, ckpt), vocab=vocab,
                       input_height=cfg.input_height, width_stride=cfg.stride[1],
                       max_width=cfg.grid[1] * cfg.stride[1], staff_fraction=cfg.staff_fraction,
                       provenance=provenance, layers=cfg.decoder_depth, heads=cfg.heads,
                       head_dim=cfg.dim // cfg.heads, max_seq_len=cfg.max_seq_len,
                       rows=cfg.grid[0])
    encoder, decoder = TraceableEncoder(model).eval(), TraceableDecoder(model).eval()
    return Exportable(model, encoder, spec, path, {"encoder": encoder, "decoder": decoder})


class TraceableEncoder(torch.nn.Module):
    """TrOMR.encode and cross_cache without Python ints taken from shapes, so that one trace
    serves every batch size and width: the input is already a whole number of patches wide
    and no wider than the position table (omr.autoregressive.batch), the column numbers are a
    cumulative sum, and the positions are gathered, not sliced."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        # The encoder's parts and the decoder's cross-attention, not the whole model: a
        # TorchScript file keeps every parameter its module holds, used or not.
        self.m = _Parts(model, ("stem", "patch", "cls", "enc_pos", "encoder", "enc_norm"))
        self.cross = torch.nn.ModuleList(block.cross_attn for block in model.decoder)
        self.rows, self.max_cols = model.cfg.grid
        self.sw = model.cfg.stride[1]

    def forward(self, image: torch.Tensor, widths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.m
        f = m.patch(m.stem(image))  # N, dim, rows, cols
        x = f.flatten(2).transpose(1, 2)
        # Column numbers counted in float (exact at these sizes) and cast once: Core ML's
        # converter loses an integer cumsum's type.
        col = torch.ones_like(f[0, 0, 0]).cumsum(0) - 1
        index = (torch.arange(self.rows)[:, None] * self.max_cols + col[None, :]).flatten() + 1
        pos = m.enc_pos[0].index_select(0, torch.cat([torch.zeros(1), index]).long())
        x = torch.cat([m.cls.expand_as(x[:, :1]), x], 1) + pos
        valid = col[None, :] < torch.div(widths + self.sw - 1, self.sw, rounding_mode="floor")[:, None]
        mask = torch.cat([torch.ones_like(valid[:, :1]), valid.repeat(1, self.rows)], 1)
        mask = mask[:, None, None, :]
        for block in m.encoder:
            x = block(x, mask)
        memory = m.enc_norm(x)
        cross = [attn.keys_values(memory) for attn in self.cross]  # TrOMR.cross_cache
        additive = torch.where(mask, 0.0, MASKED)  # the decoder adds it to its attention scores
        return (additive, *(t for kv in cross for t in kv))


class TraceableDecoder(torch.nn.Module):
    """One decoding step of TrOMR.decode for one new token of each staff, the cache flat."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.m = _Parts(model, ("rhythm_emb", "pitch_emb", "lift_emb", "dec_pos", "decoder",
                                "dec_norm", "to_rhythm", "to_pitch", "to_lift", "to_note"))
        self.decode = type(model).decode  # the model's own step, run on its decoder's parts
        self.layers = model.cfg.decoder_depth

    def forward(self, rhythm: torch.Tensor, pitch: torch.Tensor, lift: torch.Tensor,
                memory_mask: torch.Tensor, *cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = self.layers
        cross = [(cache[2 * i], cache[2 * i + 1]) for i in range(n)]
        past = [(cache[2 * n + 2 * i], cache[2 * n + 2 * i + 1]) for i in range(n)]
        logits, present = self.decode(self.m, rhythm, pitch, lift, cross, memory_mask, past)
        heads = (logits.rhythm[:, -1], logits.pitch[:, -1], logits.lift[:, -1])
        return (*heads, *(t for kv in present for t in kv))


class _Parts(torch.nn.Module):
    """Some of a model's modules and parameters, shared (not copied), under their own names."""

    def __init__(self, model: torch.nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        for name in names:
            setattr(self, name, getattr(model, name))


LOADERS: dict[str, Callable[[Path, dict], Exportable]] = {CRNN_FORMAT: _crnn, TROMR_FORMAT: _tromr}
