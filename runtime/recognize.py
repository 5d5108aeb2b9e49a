"""From a page image to tokens: the ONNX Runtime session and batching (decoding: decode.py).

Model contract (export/ produces exactly this): input `image`, float32 [N, 1, H, W] with
ink = 1 and paper = 0; output `log_probs`, float32 [N, T, C], log-softmax, class 0 = CTC blank.
The vocabulary, input height and width stride travel in the model's metadata.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import image as img
from . import semantic
from .clef import PATCH, reread_doubtful
from .decode import CLEF_DOUBT, Decoded, DecodeOptions, decode
from .geometry import STAFF_FRACTION
from .parts import Arrangement, arrange
from .vocab import Vocabulary

DEFAULT_MODEL = Path(__file__).parent / "models" / "crnn.onnx"


class ModelError(RuntimeError):
    """The model is missing, corrupt or does not follow the contract."""


@dataclass(frozen=True)
class Staff:
    bbox: tuple[int, int, int, int]  # page pixels (x0, y0, x1, y1)
    tokens: tuple[str, ...]
    confidence: float
    clef_confidence: float = 1.0  # see CLEF_DOUBT
    clef_read: str = ""  # the clef the network read, when the staff was read in another one
    system: int = 0  # 0-based, reading order; a grand staff's two staves share one

    def to_dict(self) -> dict:
        out = {"bbox": list(self.bbox), "tokens": list(self.tokens),
               "confidence": round(self.confidence, 4),
               "clef_confidence": round(self.clef_confidence, 4), "system": self.system}
        return out | ({"clef_read": self.clef_read} if self.clef_read else {})


@dataclass(frozen=True)
class Score:
    """What was read from one image: its staves in reading order."""

    staves: tuple[Staff, ...]
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the page as loaded
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def systems(self) -> tuple[tuple[Staff, ...], ...]:
        """The staves grouped by system, top to bottom: staves joined by a start barline, a
        brace or a bracket (a piano's grand staff is one system of two)."""
        groups: dict[int, list[Staff]] = {}
        for staff in self.staves:
            groups.setdefault(staff.system, []).append(staff)
        return tuple(tuple(groups[k]) for k in sorted(groups))

    @property
    def tokens(self) -> list[str]:
        """All staves' tokens in reading order, repaired as one sequence (one part: meant for
        pages whose systems are single staves)."""
        return semantic.repair([t for staff in self.staves for t in staff.tokens])

    @property
    def system_tokens(self) -> list[list[list[str]]]:
        """Each system's staves' tokens, top to bottom, each staff repaired (its last tie kept:
        staff j of the next system may continue it)."""
        return [[semantic.repair(s.tokens, open_end=True) for s in system]
                for system in self.systems]

    @property
    def arrangement(self) -> Arrangement:
        """The page as parts (staff j of every system), in step measure by measure."""
        return arrange(self.system_tokens)

    @property
    def notes(self) -> list[semantic.NoteEvent]:
        """The notes of the whole page, all parts together, in onset order."""
        return [semantic.NoteEvent(n.pitch, n.onset, n.duration) for n in self.arrangement.notes]

    def to_midi(self, path: str | os.PathLike, tempo: float = 100.0, program: int = 0) -> None:
        from .midi import MidiOptions
        from .writers import write_output

        write_output(self, Path(path), "midi", MidiOptions(tempo=tempo, program=program))


@dataclass(frozen=True)
class ModelInfo:
    vocab: Vocabulary
    input_height: int
    width_stride: int
    name: str
    version: str
    # Staff height / crop height. Models exported before it was recorded used the default.
    staff_fraction: float = STAFF_FRACTION


class Recognizer:
    """Loads the ONNX model once; `read` turns an image file into a Score."""

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "cpu",
                 threads: int | None = None, decoding: DecodeOptions | None = None) -> None:
        self.model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        self.decoding = decoding or DecodeOptions()
        self.session = _session(self.model_path, device, threads)
        if self.decoding.paint_clef and not PATCH.exists():
            raise ModelError(f"clef image missing: {PATCH} (reinstall omr, or pass "
                             f"DecodeOptions(paint_clef=False))")
        self.info = _model_info(self.session, self.model_path)

    def read(self, path: str | os.PathLike, single_staff: bool = False) -> Score:
        """Recognise every staff of the page (or the one staff of a crop) in `path`."""
        clock = time.perf_counter()
        gray = img.load_gray(path)
        return self.read_array(gray, single_staff, {"load": time.perf_counter() - clock})

    def read_array(self, gray: np.ndarray, single_staff: bool = False,
                   timings: dict[str, float] | None = None) -> Score:
        from . import staves as st

        timings = dict(timings or {})
        clock = time.perf_counter()
        if gray.ndim != 2 or min(gray.shape) < 8:
            raise img.ImageError("image is too small to hold a staff")
        if img.is_blank(gray):
            raise img.ImageError("image is blank (no contrast)")
        height = self.info.input_height
        if single_staff:
            crops = [st.normalize_staff_crop(gray, height, self.info.staff_fraction)]
            boxes = [(0, 0, gray.shape[1], gray.shape[0])]
            systems = [0]
            timings["detect"] = time.perf_counter() - clock
        else:
            found = st.detect_staves(gray)
            timings["detect"] = time.perf_counter() - clock
            if not found:
                raise st.StaffError("no staff found on the page")
            clock = time.perf_counter()
            crops = [st.staff_crop(gray, staff, height, self.info.staff_fraction) for staff in found]
            boxes = [_clip(staff.window(self.info.staff_fraction), gray.shape) for staff in found]
            systems = [staff.system for staff in found]
            timings["prepare"] = time.perf_counter() - clock
        clock = time.perf_counter()
        reads = self.decode(crops)
        timings["recognize"] = time.perf_counter() - clock
        clock = time.perf_counter()
        staves = []
        for k, (box, read, system) in enumerate(zip(boxes, reads, systems), 1):
            tokens = semantic.repair(read.tokens, open_end=True)
            replaced = read.clef if read.clef_assumed else ""
            staves.append(Staff(box, tuple(tokens), read.confidence, read.clef_confidence,
                                replaced, system))
            if read.clef_confidence < CLEF_DOUBT:
                warnings.warn(_clef_warning(k, read), stacklevel=2)
        timings["decode"] = time.perf_counter() - clock
        return Score(tuple(staves), (gray.shape[1], gray.shape[0]), timings)

    def decode(self, crops: Sequence[np.ndarray]) -> list[Decoded]:
        """Each crop's tokens; a staff whose clef is doubtful is read again (omr.clef)."""
        reads = self._decode(crops)
        if not self.decoding.paint_clef:
            return reads
        return reread_doubtful(crops, reads, self.info.staff_fraction, self._decode)

    def _decode(self, crops: Sequence[np.ndarray]) -> list[Decoded]:
        log_probs, lengths = self.run(crops)
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
            raise ModelError(f"model failed to run: {_first_line(err)}") from err
        frames = out.shape[1]
        lengths = [max(1, min(frames, math.ceil(c.shape[1] * frames / width))) for c in crops]
        return out, lengths


def _clef_warning(k: int, read: Decoded) -> str:
    doubt = f"staff {k}: clef unclear ({read.clef} at {read.clef_confidence:.0%})"
    if read.clef_assumed:
        return (f"{doubt}; read in {read.clef_assumed[5:]}, the commonest clef: if the staff is "
                f"in another, every pitch on it is off")
    return f"{doubt}; if it is wrong, every pitch on that staff is off"


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
        raise ModelError(f"cannot load model {path}: {_first_line(err)}") from err


def _model_info(session, path: Path) -> ModelInfo:
    meta = session.get_modelmeta().custom_metadata_map
    try:
        vocab = Vocabulary.from_json(meta["vocab"])
        height, stride = int(meta["input_height"]), int(meta["width_stride"])
        fraction = float(meta.get("staff_fraction", STAFF_FRACTION))
    except (KeyError, ValueError, TypeError) as err:
        raise ModelError(f"model {path} lacks valid metadata (vocab, input_height, "
                         f"width_stride): {err}") from err
    if not 0.1 <= fraction <= 0.9:
        raise ModelError(f"model {path}: staff_fraction {fraction} is not a staff's share of a crop")
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if "image" not in names[0] or "log_probs" not in names[1]:
        raise ModelError(f"model {path} must have input 'image' and output 'log_probs'")
    return ModelInfo(vocab, height, max(1, stride), meta.get("model_name", ""),
                     meta.get("model_version", ""), fraction)


def _clip(bbox: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = bbox
    h, w = shape[:2]
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
