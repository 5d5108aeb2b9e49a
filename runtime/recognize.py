"""From a page image to tokens: staves found, cropped and read by the model file's reader.

Which model reads (the CRNN's CTC or TrOMR's autoregressive decoding) is the model file's
business (omr.readers, from its metadata); the model contracts are in omr.readers,
omr.decode and omr.autoregressive, and export/ produces exactly them.

By default a staff keeps TrOMR's reading where it is one of a system of two (a grand staff:
a piano's, a hymn's), or where TrOMR reads a chord or a clef change inside it; elsewhere, a
staff alone in its system or one of three or more (a choir's, a quartet's, a band's), the
CRNN's: the CRNN reads a melody better, and cannot read a chord at all, nor a clef change (its
melodies never had one). On engraved photographed pages of melodies in systems of one to four
(benchmarks/bench_pages.py, on data/pages/test), the staves where TrOMR reads no
chord read 3.30 % SER with the CRNN and 5.18 % with TrOMR in systems of three (45 staves),
10.75 and 17.03 % in systems of four (60), 9.32 and 11.71 % in systems of two (97); a piano's
grand staff is another matter (below), and a two-staff system is most often one. On the held-out
polyphonic test (benchmarks/bench_chord_reader.py, TrOMR step 37,000 with its second look),
the staves of two-staff systems where TrOMR reads no chord read 1.38 % SER with TrOMR and
3.70 % with the CRNN (photographed 2.02 and 7.48 %), while single-staff ones read 1.01 and
0.70 %; TrOMR alone names a chord on 385 of the 386 of the first 600 held-out staves that
print one and on none of the others, and on 1 of 740 clean melody staves (camera-primus,
cc-staves, the synthetic test) and 4 of 600 photographed synthetic ones; a clef change inside a
melody staff once, on camera-primus distorted. TrOMR's second look (omr.second_look) is taken
only where its reading is kept: off a pair, where its first reading shows a chord or a clef
change, and the staff stays TrOMR's only if the chord or change is still there after it.
Tried and dropped: keeping whichever reading's measures add up better (the metre check's
measure lengths): ahead on polyphonic staves (4.23 against 4.53 % SER), behind on
melodies (synthetic 2.10 against 1.88 %, photographed 6.01 against 5.60 %).
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import image as img
from . import semantic
from .clef import PATCH, SOUNDING, reread_doubtful
from .decode import CLEF_DOUBT, Decoded, DecodeOptions
from .page_metre import Metres, hold_to_page
from .parts import Arrangement, arrange, shared_rests
from .readers import (
    AUTO,
    CHORD_MODEL,
    DEFAULT_MODEL,
    Look,
    ModelError,
    ModelInfo,
    Reader,
    open_reader,
    resolve_model,
)
from .vocab import CHORD

__all__ = ["DEFAULT_MODEL", "ModelError", "ModelInfo", "Recognizer", "Score", "Staff"]


@dataclass(frozen=True)
class Staff:
    bbox: tuple[int, int, int, int]  # page pixels (x0, y0, x1, y1)
    tokens: tuple[str, ...]
    confidence: float
    clef_confidence: float = 1.0  # see CLEF_DOUBT
    clef_read: str = ""  # the clef the network read, when the staff was read in another one
    system: int = 0  # 0-based, reading order; a grand staff's two staves share one
    page: int = 0  # a PDF's page it is on (1-based; bbox is in that page's pixels); 0: an image
    model: str = ""  # the model whose reading this is (its name in the model file)

    def to_dict(self) -> dict:
        out = {"bbox": list(self.bbox), "tokens": list(self.tokens),
               "confidence": round(self.confidence, 4),
               "clef_confidence": round(self.clef_confidence, 4), "system": self.system}
        out |= {"page": self.page} if self.page else {}
        out |= {"model": self.model} if self.model else {}
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


class Recognizer:
    """Loads the models once; `read` turns an image file into a Score.

    `model_path`: an ONNX file, or "crnn" / "tromr" for that model packaged in runtime/models,
    or None / "auto": the packaged TrOMR (or `chord_model`) for the staves of systems of two
    and for those where it reads chords or clef changes, the packaged CRNN for the others
    (the CRNN alone where TrOMR is not installed)."""

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "cpu",
                 threads: int | None = None, decoding: DecodeOptions | None = None,
                 chord_model: str | os.PathLike | None = None) -> None:
        auto = model_path is None or str(model_path) == AUTO
        chords = Path(chord_model) if chord_model else CHORD_MODEL  # another TrOMR, to try it
        self.model_path = resolve_model(None if auto else model_path)
        self.decoding = decoding or DecodeOptions()
        self.reader = open_reader(self.model_path, device, threads, self.decoding)
        if self.decoding.paint_clef and not PATCH.exists():
            raise ModelError(f"clef image missing: {PATCH} (reinstall omr, or pass "
                             f"DecodeOptions(paint_clef=False))")
        self.info = self.reader.info
        self.chord_reader: Reader | None = None
        self.chord_path = chords if auto and (chords.exists() or chord_model) else None
        if self.chord_path:
            self.chord_reader = open_reader(chords, device, threads, self.decoding)
            if self.chord_reader.info.staff_fraction != self.info.staff_fraction:
                raise ModelError(f"{chords} and {self.model_path} crop staves differently "
                                 f"(staff fractions {self.chord_reader.info.staff_fraction} and "
                                 f"{self.info.staff_fraction}): pass --model to pick one")

    def read(self, path: str | os.PathLike, single_staff: bool = False) -> Score:
        """Recognise every staff of the page (or the one staff of a crop) in `path`."""
        clock = time.perf_counter()
        gray = img.load_gray(path)
        return self.read_array(gray, single_staff, {"load": time.perf_counter() - clock})

    def read_array(self, gray: np.ndarray, single_staff: bool = False,
                   timings: dict[str, float] | None = None,
                   metres: Metres | None = None) -> Score:
        """Recognise every staff of a page (or the one staff of a crop). `metres`: the time
        signatures a document's earlier pages read, for the staves of this one that print
        none (omr.page_metre), brought up to date with this page's."""
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
        reads, models = self._read_staves(crops, grand_staff(systems))
        timings["recognize"] = time.perf_counter() - clock
        clock = time.perf_counter()
        if self.decoding.page_metre:
            reads = hold_to_page(reads, systems, metres)
        staves = []
        settled = _shared_rests([semantic.repair(r.tokens, open_end=True) for r in reads], systems)
        for k, (box, read, tokens, system, model) in enumerate(
                zip(boxes, reads, settled, systems, models), 1):
            replaced = read.clef if read.clef_assumed else ""
            staves.append(Staff(box, tuple(tokens), read.confidence, read.clef_confidence,
                                replaced, system, model=model))
            if read.clef_confidence < CLEF_DOUBT:
                warnings.warn(_clef_warning(k, read), stacklevel=2)
        timings["decode"] = time.perf_counter() - clock
        return Score(tuple(staves), (gray.shape[1], gray.shape[0]), timings)

    def decode(self, crops: Sequence[np.ndarray],
               paired: Sequence[bool] | None = None) -> list[Decoded]:
        """Each crop's tokens (crops at self.info's height and staff fraction); `paired`: whether
        each staff is one of a system of two (grand_staff; None: none is)."""
        return self._read_staves(crops, paired)[0]

    def _read_staves(self, crops: Sequence[np.ndarray], paired: Sequence[bool] | None = None
                     ) -> tuple[list[Decoded], list[str]]:
        """Each crop's reading and the name of the model it is from: the chord reader's where
        the staff is one of a pair or the reading shows what the main reader cannot
        (needs_chord_reader), the main reader's elsewhere. The main reader reads only those."""
        if self.chord_reader is None:
            reads = self._read(self.reader, crops)
            return reads, [self.info.name] * len(reads)
        height = self.chord_reader.info.input_height
        tall = [_at_height(c, height) for c in crops]
        paired = paired or [False] * len(crops)

        def kept(k: int, tokens: Sequence[str]) -> bool:
            return paired[k] or needs_chord_reader(tokens)

        # A second look costs a staff two more readings: only where this reading is kept (a
        # staff off a pair keeps it only if the chord or clef change is still there after).
        reads = self._read(self.chord_reader, tall, kept)
        models = [self.chord_reader.info.name] * len(reads)
        rest = [k for k, read in enumerate(reads) if not kept(k, read.tokens)]
        if rest:
            for k, read in zip(rest, self._read(self.reader, [crops[k] for k in rest])):
                reads[k], models[k] = read, self.info.name
        return reads, models

    def _read(self, reader: Reader, crops: Sequence[np.ndarray],
              look: Look | None = None) -> list[Decoded]:
        """A reader's tokens; a staff whose clef is doubtful is read again (omr.clef)."""
        reads = reader.read(crops, look)
        if not self.decoding.paint_clef:
            return reads
        return reread_doubtful(crops, reads, reader.info.staff_fraction, reader.read)


def needs_chord_reader(tokens: Sequence[str]) -> bool:
    """Whether TrOMR's reading of a staff shows what the CRNN cannot read: a chord, or a clef
    change inside the staff (the CRNN learnt from melodies that never change clef)."""
    if CHORD in tokens:
        return True
    first = next((i for i, t in enumerate(tokens) if t.startswith(SOUNDING)), len(tokens))
    return any(t.startswith("clef-") for t in tokens[first:])


def grand_staff(systems: Sequence[int]) -> list[bool]:
    """Whether each staff's system (its number) is a pair of staves: a grand staff, most often,
    whose staves TrOMR reads better even where they hold no chord. Three or more are a choir's,
    a quartet's or a band's, melodies most often, which the CRNN reads better."""
    sizes = Counter(systems)
    return [sizes[s] == 2 for s in systems]


def _shared_rests(staves: list[list[str]], systems: Sequence[int]) -> list[list[str]]:
    """Each staff's tokens, a multirest only one staff of its system reads shortened to the
    measures the others hold (omr.parts.shared_rests)."""
    out = list(staves)
    for s in sorted(set(systems)):
        members = [k for k, x in enumerate(systems) if x == s]
        for k, tokens in zip(members, shared_rests([staves[k] for k in members])):
            out[k] = tokens
    return out


def _at_height(crop: np.ndarray, height: int) -> np.ndarray:
    """A crop in the canonical layout at another height (the staff's share of it unchanged)."""
    if crop.shape[0] == height:
        return crop
    width = max(1, round(crop.shape[1] * height / crop.shape[0]))
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def _clef_warning(k: int, read: Decoded) -> str:
    doubt = f"staff {k}: clef unclear ({read.clef} at {read.clef_confidence:.0%})"
    if read.clef_assumed:
        return (f"{doubt}; read in {read.clef_assumed[5:]}, the commonest clef: if the staff is "
                f"in another, every pitch on it is off")
    return f"{doubt}; if it is wrong, every pitch on that staff is off"


def _clip(bbox: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = bbox
    h, w = shape[:2]
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)

