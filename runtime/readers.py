"""A model file to a reader: staff crops in, `Decoded` tokens out, whichever model reads.

One small interface, `Reader.read(crops)`, with two implementations behind it, picked by the
`model_family` in the model's metadata: `CTCReader` (the CRNN: one ONNX Runtime pass, then
omr.decode's best path and metre check) and `AutoregressiveReader` (TrOMR: the encoder once
per batch, then omr.autoregressive's decoder loop with its KV cache). Staff finding, repair,
MIDI and MusicXML never learn which one read the staff.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from . import autoregressive as ar
from . import image as img
from .accidentals import fix_accidentals
from .clef import after_changes
from .decode import Decoded, DecodeOptions, decode, fix_metre
from .geometry import STAFF_FRACTION
from .second_look import second_look
from .vocab import FactorVocabulary, Vocabulary

MODELS = Path(__file__).parent / "models"
DEFAULT_MODEL = MODELS / "crnn.onnx"
CHORD_MODEL = MODELS / "tromr.onnx"  # beside the default, for the staves with chords
PACKAGED = ("crnn", "tromr")  # `--model NAME` picks runtime/models/NAME.onnx
AUTO = "auto"  # the default: DEFAULT_MODEL, and CHORD_MODEL where it reads chords or clef changes


class ModelError(RuntimeError):
    """The model is missing, corrupt or does not follow the contract."""


@dataclass(frozen=True)
class ModelInfo:
    vocab: Vocabulary | FactorVocabulary
    input_height: int
    width_stride: int  # input columns per output frame (CTC) or encoder column (TrOMR)
    name: str
    version: str
    # Staff height / crop height. Models exported before it was recorded used the default.
    staff_fraction: float = STAFF_FRACTION
    family: str = "crnn"


Look = Callable[[int, list[str]], bool]


class Reader(Protocol):
    info: ModelInfo

    def read(self, crops: Sequence[np.ndarray], look: Look | None = None) -> list[Decoded]:
        """Each crop's tokens (uint8 gray at the model's input height, paper white). `look`
        says, from a staff's index and the tokens first read there, whether the reader may look
        at it again where it doubts its reading (omr.second_look; None: every staff)."""
        ...


def resolve_model(model: str | os.PathLike | None) -> Path:
    """None: the packaged CRNN; "crnn" or "tromr": that packaged model; else a path."""
    if model is None:
        return DEFAULT_MODEL
    if str(model) in PACKAGED:
        path = MODELS / f"{model}.onnx"
        if not path.exists():
            raise ModelError(f"no packaged {model} model in this install ({path} is missing); "
                             f"export one (python export/to_onnx.py CHECKPOINT -o {path}) or "
                             f"pass --model PATH")
        return path
    return Path(model)


def open_reader(path: Path, device: str = "cpu", threads: int | None = None,
                decoding: DecodeOptions | None = None) -> Reader:
    """The reader the model's metadata asks for."""
    session = _session(path, device, threads)
    meta = session.get_modelmeta().custom_metadata_map
    family = meta.get("model_family", "crnn")
    if family == "tromr":
        return AutoregressiveReader(path, session, device, threads, decoding=decoding)
    if family != "crnn":
        raise ModelError(f"model {path}: unknown model_family {family!r} (known: crnn, tromr)")
    return CTCReader(path, session, decoding or DecodeOptions())


class CTCReader:
    """The CRNN: all crops as one right-padded batch, one pass, then the CTC decoding."""

    def __init__(self, path: Path, session, decoding: DecodeOptions) -> None:
        self.session, self.decoding = session, decoding
        self.info = _model_info(session, path)
        names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
        if "image" not in names[0] or "log_probs" not in names[1]:
            raise ModelError(f"model {path} must have input 'image' and output 'log_probs'")

    def read(self, crops: Sequence[np.ndarray], look: Look | None = None) -> list[Decoded]:
        log_probs, lengths = self.run(crops)  # the CTC takes no second look
        return [decode(lp[:n], self.info.vocab, self.decoding) for lp, n in zip(log_probs, lengths)]

    def run(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
        """All crops as one batch, right-padded with paper; log-probs and valid frame counts."""
        width = max(c.shape[1] for c in crops)
        # Round up so a few sizes repeat: ONNX Runtime reuses buffers for repeated shapes.
        width = int(math.ceil(width / self.info.width_stride) * self.info.width_stride)
        batch = np.zeros((len(crops), 1, self.info.input_height, width), np.float32)
        for k, crop in enumerate(crops):
            batch[k, 0, :, : crop.shape[1]] = img.model_input(crop)
        try:
            (out,) = self.session.run(["log_probs"], {"image": batch})
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelError(f"model failed to run: {first_line(err)}") from err
        frames = out.shape[1]
        lengths = [max(1, min(frames, math.ceil(c.shape[1] * frames / width))) for c in crops]
        return out, lengths


class AutoregressiveReader:
    """TrOMR: `path` is the encoder (it carries the metadata), its decoder is the file the
    metadata names beside it; every crop of a page in one batch, greedy decoding (with a
    second look at the staves it was unsure of: omr.second_look), then the CTC reader's metre
    check over each token's runner-up rhythms."""

    def __init__(self, path: Path, encoder, device: str, threads: int | None,
                 options: ar.DecodingOptions | None = None,
                 decoding: DecodeOptions | None = None) -> None:
        meta = encoder.get_modelmeta().custom_metadata_map
        self.info = _model_info(encoder, path)
        try:
            self.seq2seq = ar.Seq2SeqInfo.from_metadata(meta)
            self.max_width = int(meta["max_width"])
            decoder_path = path.with_name(meta["decoder_file"])
        except (KeyError, ValueError, TypeError) as err:
            raise ModelError(f"model {path} lacks valid TrOMR metadata (decoder, max_width, "
                             f"decoder_file): {err}") from err
        if not decoder_path.exists():
            raise ModelError(f"model {path}: its decoder {decoder_path.name} is not beside it")
        self.model = ar.OnnxSeq2Seq(encoder, _session(decoder_path, device, threads))
        self.options = options or ar.DecodingOptions()
        self.decoding = decoding or DecodeOptions()

    def read(self, crops: Sequence[np.ndarray], look: Look | None = None) -> list[Decoded]:
        return [decoded_reading(r, self.seq2seq.vocab, self.decoding)
                for r in self.readings(crops, look)]

    def readings(self, crops: Sequence[np.ndarray], look: Look | None = None) -> list[ar.Reading]:
        vocab = self.seq2seq.vocab
        allowed = None if look is None else (lambda k, r: look(k, r.tokens(vocab)))
        return second_look(self.greedy, crops, self.decoding.second_look_below,
                           look_shifts(self.decoding, self.info.input_height), allowed)

    def greedy(self, crops: Sequence[np.ndarray]) -> list[ar.Reading]:
        images, widths = ar.batch(crops, self.info.width_stride, self.max_width)
        try:
            return ar.greedy(self.model, self.seq2seq, images, widths, self.options)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelError(f"model failed to run: {first_line(err)}") from err


def look_shifts(opt: DecodeOptions, height: int) -> tuple[int, ...]:
    """The rows a doubtful staff is moved by for its second look (omr.second_look)."""
    dy = round(opt.second_look_shift * height)
    return (dy, -dy) if dy else ()


def decoded_reading(reading: ar.Reading, vocab: FactorVocabulary,
                    opt: DecodeOptions | None = None, page_length: float | None = None) -> Decoded:
    """A reading as the CTC's Decoded, its durations checked against the staff's metre as the
    CTC's are (omr.decode.fix_metre), the notes after a clef change that it read through the
    staff's first clef moved and the clef changes it doubts dropped (omr.clef.after_changes),
    its notes' alterations held to their key and measure where it was unsure of them
    (omr.accidentals); the clef's confidence is its rhythm's probability. `page_length` as
    fix_metre takes it."""
    opt = opt or DecodeOptions()
    read = reading.tokens(vocab)
    tokens, remetre = read, None
    if opt.metre and read:
        alts = reading.runner_ups(vocab, opt.alternatives, opt.max_cost)
        if len(alts) == len(read):  # greedy never drops a token; a reading that did is left be
            tokens = fix_metre(read, alts, opt.min_measures, opt.max_duration_cost,
                               opt.max_changes, opt.unmetred, page_length)
            remetre = lambda n: decoded_reading(reading, vocab, opt, n).tokens
    if opt.max_lift_cost > 0 and reading.lift_logprobs is not None:
        tokens = fix_accidentals(tokens, reading.lift_costs(vocab), opt.max_lift_cost)
    changed = sum(a != b for a, b in zip(read, tokens))
    if opt.clef_changes:
        probs = reading.rhythm_probs if len(reading.rhythm_probs) == len(tokens) else None
        tokens = after_changes(tokens, probs)
    clef, confidence = "", 1.0
    for token, rhythm, p in zip(tokens, reading.rhythms, reading.rhythm_probs):
        if token.startswith("clef-"):
            clef, confidence = token, p
            break
    return Decoded(tokens, float(np.exp(reading.logprob)), changed, clef, confidence,
                   remetre=remetre)


def _session(path: Path, device: str, threads: int | None):
    if not path.exists():
        hint = " (the packaged model has not been installed; pass --model PATH)" \
            if path == DEFAULT_MODEL else ""
        raise ModelError(f"model not found: {path}{hint}")
    import onnxruntime as ort

    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelError("--device cuda needs onnxruntime-gpu and a CUDA GPU; "
                             "CUDAExecutionProvider is not available")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif device == "cpu":
        providers = ["CPUExecutionProvider"]
    else:
        raise ModelError(f"unknown device {device!r} (use cpu or cuda)")
    options = ort.SessionOptions()
    # One thread per core; more only fight over the same cores.
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:
        raise ModelError(f"cannot load model {path}: {first_line(err)}") from err


def _model_info(session, path: Path) -> ModelInfo:
    meta = session.get_modelmeta().custom_metadata_map
    family = meta.get("model_family", "crnn")
    try:
        text = meta["vocab"]
        vocab = FactorVocabulary.from_json(text) if family == "tromr" else Vocabulary.from_json(text)
        height, stride = int(meta["input_height"]), int(meta["width_stride"])
        fraction = float(meta.get("staff_fraction", STAFF_FRACTION))
    except (KeyError, ValueError, TypeError) as err:
        raise ModelError(f"model {path} lacks valid metadata (vocab, input_height, "
                         f"width_stride): {err}") from err
    if not 0.1 <= fraction <= 0.9:
        raise ModelError(f"model {path}: staff_fraction {fraction} is not a staff's share of a crop")
    return ModelInfo(vocab, height, max(1, stride), meta.get("model_name", ""),
                     meta.get("model_version", ""), fraction, family)


def first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
