"""Verification after every export: run the artifact and PyTorch on the same staves, compare.

One routine for every format (TorchScript, ONNX Runtime, Core ML) and every model family: an
artifact is a `Runner`, a function from an input batch [N, 1, H, W] to log-probabilities
[N, T, C]. The staves are the real ones in ../shared/eval/camera-primus (clean and distorted,
brought to the model's layout by the runtime's own `normalize_staff_crop`) when that folder
exists, and generated ones at several widths, some as narrow as one output frame.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omr import autoregressive as ar
from omr.decode import greedy_decode
from omr.geometry import STAFF_FRACTION

from .spec import INPUT, OUTPUT, ModelSpec, Seq2SeqSpec, graph_path

EVAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "eval"
# The CTC model: an input batch [N, 1, H, W] to log-probabilities [N, T, C].
Runner = Callable[[np.ndarray], np.ndarray]
# The autoregressive one: a batch and its widths to each staff's greedy reading, with the
# logits of every step (omr.autoregressive.Reading, keep_logits).
Seq2SeqRunner = Callable[[np.ndarray, np.ndarray], list[ar.Reading]]


class VerificationError(RuntimeError):
    """The artifact does not compute what the PyTorch model computes."""


@dataclass(frozen=True)
class Stave:
    name: str
    pixels: np.ndarray  # uint8 gray at the model's input height, paper white
    tokens: tuple[str, ...] | None  # ground truth, where known
    source: str  # "camera-primus/clean", "camera-primus/distorted", "folder/NAME" or "generated"


@dataclass(frozen=True)
class Output:
    """What a model made of one stave: the ids it read and the numbers it read them from
    (CTC: log-probabilities [T, C]; autoregressive: each step's logits, [steps, C])."""

    ids: tuple
    scores: np.ndarray


@dataclass(frozen=True)
class Tolerance:
    """What an artifact must keep; None skips a check."""

    max_abs_diff: float | None = None  # log-probabilities, over the frames that count
    same_tokens: bool = False  # greedy decoding identical on every stave
    max_ser_increase: float | None = None  # SER points, on the labelled staves


# TorchScript runs PyTorch's own kernels; ONNX Runtime's differ in summation order only.
EXACT = Tolerance(max_abs_diff=1e-4, same_tokens=True)
FP32 = Tolerance(max_abs_diff=2e-3, same_tokens=True)
# fp16 and int8 change the numbers by design: what must hold is the accuracy.
REDUCED = Tolerance(max_ser_increase=0.5)


@dataclass(frozen=True)
class Report:
    artifact: str
    staves: int
    widths: tuple[int, int]
    max_abs_diff: float  # log-probabilities
    max_prob_diff: float  # probabilities: what the decoder sees
    token_mismatches: int  # staves whose greedy decoding differs from PyTorch's
    ser_staves: str  # which labelled staves the SER is measured on
    ser_reference: float | None  # PyTorch, in points (percent)
    ser_artifact: float | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def ser_change(self) -> float | None:
        if self.ser_reference is None or self.ser_artifact is None:
            return None
        return self.ser_artifact - self.ser_reference

    def __str__(self) -> str:
        ser = "SER not measured (no labelled staves)" if self.ser_change is None else (
            f"SER {self.ser_reference:.2f}% -> {self.ser_artifact:.2f}% "
            f"({self.ser_change:+.2f} points, {self.ser_staves})")
        verdict = "PASS" if self.ok else "FAIL: " + "; ".join(self.problems)
        return (f"{self.artifact}: {self.staves} staves, widths {self.widths[0]}-{self.widths[1]}; "
                f"max |d log p| {self.max_abs_diff:.2e}, max |d p| {self.max_prob_diff:.2e}; "
                f"tokens differ on {self.token_mismatches}; {ser}; {verdict}")


def require(report: Report) -> None:
    if not report.ok:
        raise VerificationError(f"{report.artifact} failed verification: "
                                + "; ".join(report.problems))


class Verifier:
    """PyTorch's outputs on the verification staves, computed once, compared with each artifact."""

    def __init__(self, spec: ModelSpec, reference: Runner | Seq2SeqRunner,
                 staves: Sequence[Stave] | None = None) -> None:
        self.spec = spec
        self.staves = list(staves) if staves is not None else verification_staves(spec)
        if not self.staves:
            raise VerificationError("no staves to verify on")
        self.reference = self._outputs(reference)

    def _outputs(self, run: Runner | Seq2SeqRunner) -> list[Output]:
        if isinstance(self.spec, Seq2SeqSpec):
            return seq2seq_outputs(run, self.staves, self.spec)
        return [Output(tuple(greedy_decode(lp)[0]), lp)
                for lp in outputs(run, self.staves, self.spec)]

    def check(self, artifact: str, candidate: Runner | Seq2SeqRunner,
              tolerance: Tolerance) -> Report:
        got = self._outputs(candidate)
        # Where the readings part, their steps differ: the numbers compare up to there.
        pairs = [(a.scores[:len(b.scores)], b.scores[:len(a.scores)])
                 for a, b in zip(self.reference, got)]
        diffs = [float(np.abs(a - b).max(initial=0.0)) for a, b in pairs]
        prob = [float(np.abs(self._probs(a) - self._probs(b)).max(initial=0.0)) for a, b in pairs]
        ref_ids = [o.ids for o in self.reference]
        got_ids = [o.ids for o in got]
        labelled = [k for k, s in enumerate(self.staves) if s.tokens is not None]
        real = [k for k in labelled if self.staves[k].source != "generated"]
        chosen = real or labelled  # real staves when there are any: they are the bar
        ser_ref = self._ser(ref_ids, chosen)
        ser_got = self._ser(got_ids, chosen)
        where = f"{len(chosen)} staves of {', '.join(sorted({self.staves[k].source for k in chosen}))}"
        differing = [self.staves[k].name for k in range(len(got_ids)) if ref_ids[k] != got_ids[k]]
        problems = _problems(tolerance, max(diffs), differing, ser_ref, ser_got)
        widths = [s.pixels.shape[1] for s in self.staves]
        return Report(artifact, len(self.staves), (min(widths), max(widths)), max(diffs),
                      max(prob), len(differing), where, ser_ref, ser_got, problems)

    def _probs(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities: per frame (CTC), per head of each step (autoregressive)."""
        if not isinstance(self.spec, Seq2SeqSpec):
            return np.exp(scores)
        cuts = np.cumsum(self.spec.vocab.sizes)[:-1]
        return np.concatenate([np.exp(_log_softmax(h)) for h in np.split(scores, cuts, -1)], -1)

    def tokens(self, ids: tuple) -> list[str]:
        if isinstance(self.spec, Seq2SeqSpec):
            return self.spec.vocab.decode(*zip(*ids)) if ids else []
        return self.spec.vocab.decode(ids)

    def _ser(self, ids: list[tuple], chosen: list[int]) -> float | None:
        from omr_train.metrics import score

        if not chosen:
            return None
        pairs = [(self.tokens(ids[k]), self.staves[k].tokens) for k in chosen]
        return 100.0 * score(pairs).ser


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _problems(tolerance: Tolerance, max_diff: float, differing: list[str],
              ser_ref: float | None, ser_got: float | None) -> tuple[str, ...]:
    problems = []
    if tolerance.max_abs_diff is not None and max_diff > tolerance.max_abs_diff:
        problems.append(f"max |d log p| {max_diff:.2e} > {tolerance.max_abs_diff:.0e}")
    if tolerance.same_tokens and differing:
        problems.append(f"decoded tokens differ on {len(differing)} staves "
                        f"({', '.join(differing)[:200]})")
    if tolerance.max_ser_increase is not None:
        if ser_ref is None or ser_got is None:
            problems.append("no labelled staves to measure the SER change on")
        elif ser_got - ser_ref > tolerance.max_ser_increase:
            problems.append(f"SER rose {ser_got - ser_ref:.2f} points "
                            f"(bar {tolerance.max_ser_increase} points)")
    return tuple(problems)


def outputs(run: Runner, staves: Sequence[Stave], spec: ModelSpec,
            batch_size: int = 16) -> list[np.ndarray]:
    """Each stave's log-probabilities over its own frames, the padding's frames cut off.

    Real staves go in right-padded batches of 16 in folder order, as omr-eval sends them
    through the runtime (so the SER here is omr-eval's); generated ones one at a time at
    their exact width, so odd widths and batch 1 are exercised too.
    """
    result: list[np.ndarray | None] = [None] * len(staves)
    for group in _groups(staves, batch_size):
        crops = [staves[k].pixels for k in group]
        real = staves[group[0]].source != "generated"
        batch, width = pad_batch(crops, spec, round_up=real)
        out = np.asarray(run(batch), np.float32)
        frames = out.shape[1]
        for row, (k, crop) in enumerate(zip(group, crops)):
            # The runtime's rule (omr.recognize.Recognizer.run): frames covering the crop.
            length = max(1, min(frames, math.ceil(crop.shape[1] * frames / width)))
            result[k] = out[row, :length]
    return [r for r in result if r is not None]


def seq2seq_outputs(run: Seq2SeqRunner, staves: Sequence[Stave],
                    spec: Seq2SeqSpec, batch_size: int = 16) -> list[Output]:
    """Each stave's greedy reading and its steps' logits, in the batches `outputs` makes."""
    result: list[Output | None] = [None] * len(staves)
    for group in _groups(staves, batch_size):
        batch, widths = ar.batch([staves[k].pixels for k in group], spec.width_stride,
                                 spec.max_width)
        for k, reading in zip(group, run(batch, widths)):
            result[k] = Output(tuple(zip(reading.rhythms, reading.pitches, reading.lifts)),
                               np.asarray(reading.logits, np.float32))
    return [r for r in result if r is not None]


def _groups(staves: Sequence[Stave], batch_size: int) -> list[list[int]]:
    """Generated staves one at a time, real ones in batches of one source in folder order."""
    groups = [[k] for k, s in enumerate(staves) if s.source == "generated"]
    for source in dict.fromkeys(s.source for s in staves if s.source != "generated"):
        same = [k for k, s in enumerate(staves) if s.source == source]
        groups += [same[i:i + batch_size] for i in range(0, len(same), batch_size)]
    return groups


def pad_batch(crops: Sequence[np.ndarray], spec: ModelSpec,
              round_up: bool = True) -> tuple[np.ndarray, int]:
    """The runtime's batch: ink 1, paper 0, right-padded with 0 to a multiple of the stride."""
    width = max(c.shape[1] for c in crops)
    if round_up:
        width = int(math.ceil(width / spec.width_stride) * spec.width_stride)
    batch = np.zeros((len(crops), 1, spec.input_height, width), np.float32)
    for k, crop in enumerate(crops):
        batch[k, 0, :, :crop.shape[1]] = (255.0 - crop.astype(np.float32)) / 255.0
    return batch, width


# --- the staves ------------------------------------------------------------------------------

_STAVES: dict[tuple[int, int, int], list[Stave]] = {}


def verification_staves(spec: ModelSpec) -> list[Stave]:
    """Real camera-primus staves (when present) and generated ones; built once per process."""
    key = (spec.input_height, spec.width_stride, spec.max_width, spec.staff_fraction)
    if key not in _STAVES:
        _STAVES[key] = real_staves(spec.input_height, fraction=spec.staff_fraction) + \
            generated_staves(spec)
    return _STAVES[key]


def real_staves(height: int, folder: Path | None = None,
                fraction: float = STAFF_FRACTION) -> list[Stave]:
    """Camera-PrIMuS, clean render and simulated photo of each incipit, via the runtime's crop."""
    import cv2
    from omr.staves import normalize_staff_crop
    from omr_train.dataset import read_folder

    folder = Path(folder) if folder is not None else EVAL / "camera-primus"
    if not folder.is_dir():
        return []
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no staff lines found": the crop still reads, resized
        for variant in ("clean", "distorted"):
            for s in read_folder(folder, variant):
                gray = cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE)
                crop = normalize_staff_crop(gray, height, fraction)
                out.append(Stave(f"{s.id}/{variant}", crop, s.tokens, f"camera-primus/{variant}"))
    return out


def folder_staves(folder: Path, spec: ModelSpec, limit: int = 100) -> list[Stave]:
    """The first `limit` labelled staves of a data folder (omr-synth's layout, mono or --poly),
    in training's clean view, named by their folder's name; a staff too wide for the model is
    left out, since its label would not all be on the crop."""
    import cv2
    from omr_train.augment import AugmentOptions, augment
    from omr_train.dataset import read_folder

    out = []
    for s in read_folder(folder):
        if len(out) >= limit:
            break
        gray = cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE)
        crop = augment(gray, spec.input_height, None, AugmentOptions(strength=0.0),
                       spec.staff_fraction)
        if crop.shape[1] <= spec.max_width:
            out.append(Stave(f"{folder.name}/{s.id}", crop, tuple(s.tokens), f"folder/{folder.name}"))
    return out


def generated_staves(spec: ModelSpec, count: int = 6, seed: int = 7) -> list[Stave]:
    """Engraved staves with their tokens, plus cut and tiled ones at edge-case widths."""
    engraved = (engraved_staves(spec.input_height, spec.staff_fraction, count, seed)
                or _drawn(spec.input_height, spec.staff_fraction, count, seed))
    first = engraved[0].pixels
    tiled = np.hstack([s.pixels for s in engraved])
    widths = (spec.min_width, 3 * spec.width_stride + 1, 97,
              min(spec.max_width, tiled.shape[1], 3000))
    cut = [Stave(f"generated/w{w}", np.ascontiguousarray((first if w <= first.shape[1]
                                                           else tiled)[:, :w]), None, "generated")
           for w in widths]
    return engraved + cut


def engraved_staves(height: int, fraction: float, count: int, seed: int) -> list[Stave]:
    try:
        from omr_train.augment import AugmentOptions, augment
        from omr_train.synth.engrave import Engraver
        from omr_train.synth.generate import SynthOptions, make_sample

        engraver = Engraver()
        out = []
        for i in range(count):
            image, tokens, _ = make_sample(i, SynthOptions(seed=seed), {}, engraver)
            # Training's clean view: canonical crop, illumination flattened as the runtime does.
            crop = augment(image, height, None, AugmentOptions(strength=0.0), fraction)
            out.append(Stave(f"generated/{i}", crop, tuple(tokens), "generated"))
        return out
    except Exception:  # noqa: BLE001 - synthesis is optional (verovio, resvg); fall back
        return []


def _drawn(height: int, fraction: float, count: int, seed: int) -> list[Stave]:
    """Five lines and note-like blobs drawn with OpenCV, for machines without the engraver."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    space = fraction * height / 4
    for i in range(count):
        width = int(rng.integers(4, 24)) * height
        img = np.full((height, width), 250, np.uint8)
        top = (height - 4 * space) / 2
        for line in range(5):
            y = round(top + line * space)
            cv2.line(img, (4, y), (width - 4, y), 30, 1)
        for x in range(int(2 * space), width - int(2 * space), int(rng.integers(2, 5) * space)):
            y = int(top + rng.integers(-2, 11) * space / 2)
            cv2.ellipse(img, (x, y), (int(0.65 * space), int(0.45 * space)), -20, 0, 360, 30, -1)
        out.append(Stave(f"drawn/{i}", img, None, "generated"))
    return out


# --- runners: one per backend ----------------------------------------------------------------

def torch_runner(module) -> Runner:
    import torch

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).float().numpy()

    return run


def reference_runner(ex) -> Runner | Seq2SeqRunner:
    """The model as trained, in PyTorch: what every artifact is compared with."""
    if isinstance(ex.spec, Seq2SeqSpec):
        return tromr_runner(ex.model)
    return torch_runner(ex.model)


def tromr_runner(model) -> Seq2SeqRunner:
    """PyTorch's own greedy decoding (omr_train.tromr.greedy, its KV cache), then one teacher-
    forced pass over what it read for each step's logits."""
    import torch
    from omr_train import tromr

    def run(batch: np.ndarray, widths: np.ndarray) -> list[ar.Reading]:
        images, w = torch.from_numpy(batch), torch.from_numpy(np.asarray(widths, np.int64))
        with torch.inference_mode():
            readings = tromr.greedy(model, images, w)
            steps = model.cfg.max_seq_len - 1
            t = tromr.targets([(list(x.rhythms), list(x.pitches), list(x.lifts))
                               for x in readings])
            ins = [x[:, :steps] for x in (t.rhythm_in, t.pitch_in, t.lift_in)]
            logits = model(images, w, *ins)
        out = []
        for i, x in enumerate(readings):
            k = min(len(x.rhythms) + 1, steps)  # the steps it took, EOS's included
            rows = torch.cat([logits.rhythm[i, :k], logits.pitch[i, :k], logits.lift[i, :k]], -1)
            out.append(ar.Reading(x.rhythms, x.pitches, x.lifts, x.logprob, (),
                                  rows.float().numpy()))
        return out

    return run


def seq2seq_runner(model: ar.Seq2Seq, info: ar.Seq2SeqInfo) -> Seq2SeqRunner:
    """An exported encoder and decoder, read by the runtime's own loop (omr.autoregressive)."""
    options = ar.DecodingOptions(keep_logits=True)
    return lambda batch, widths: ar.greedy(model, info, batch, widths, options)


class TorchSeq2Seq:
    """TorchScript (or traceable) encoder and decoder modules behind omr.autoregressive's
    Seq2Seq protocol: named arrays in, named arrays out."""

    def __init__(self, encoder, decoder, spec: Seq2SeqSpec) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.enc, self.dec = spec.graphs

    def encode(self, images: np.ndarray, widths: np.ndarray) -> dict[str, np.ndarray]:
        return self._run(self.encoder, self.enc, {"image": images, "widths": widths})

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(self.decoder, self.dec, feeds)

    @staticmethod
    def _run(module, graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = module(*(torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in graph.inputs))
        return {k: v.numpy() for k, v in zip(graph.outputs, out)}


class CoreMLSeq2Seq:
    """Core ML encoder and decoder (MLModel.predict: a dictionary of arrays in and out)."""

    def __init__(self, encoder, decoder, spec: Seq2SeqSpec) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.enc, self.dec = spec.graphs

    def encode(self, images: np.ndarray, widths: np.ndarray) -> dict[str, np.ndarray]:
        out = self.encoder.predict({"image": images, "widths": widths.astype(np.int32)})
        return {k: np.asarray(out[k]) for k in self.enc.outputs}

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ints = set(ar.TOKENS)
        out = self.decoder.predict({k: feeds[k].astype(np.int32) if k in ints else feeds[k]
                                    for k in self.dec.inputs})
        return {k: np.asarray(out[k]) for k in self.dec.outputs}


def onnx_session(path: Path, threads: int = 2,
                 providers: Sequence[str] = ("CPUExecutionProvider",)):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Spinning worker threads steal the cores from PyTorch running in the same process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=list(providers))


def onnx_runner(path: Path, threads: int = 2,
                providers: Sequence[str] = ("CPUExecutionProvider",),
                spec: ModelSpec | None = None) -> Runner | Seq2SeqRunner:
    """The CRNN's one graph, or (a Seq2SeqSpec given) TrOMR's encoder at `path` and its
    decoder beside it, run by the runtime's loop."""
    if isinstance(spec, Seq2SeqSpec):
        encoder = onnx_session(path, threads, providers)
        decoder = onnx_session(graph_path(path, spec.graphs[1].suffix), threads, providers)
        return seq2seq_runner(ar.OnnxSeq2Seq(encoder, decoder), spec.info)
    session = onnx_session(path, threads, providers)
    return lambda batch: session.run([OUTPUT], {INPUT: batch})[0]


def coreml_runner(mlmodel, max_batch: int = 32) -> Runner:
    """Core ML predicts one feature dictionary at a time; larger batches go in slices."""

    def run(batch: np.ndarray) -> np.ndarray:
        parts = [mlmodel.predict({INPUT: batch[i:i + max_batch]})[OUTPUT]
                 for i in range(0, len(batch), max_batch)]
        return np.concatenate([np.asarray(p, np.float32) for p in parts])

    return run
