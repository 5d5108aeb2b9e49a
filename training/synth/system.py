"""One polyphonic sample from a sample index: a grand staff (or one staff of it), engraved.

Sample i draws, from a generator seeded with (seed, i): its split, its source (a reduced
chorale, quartet or piano piece, or a piano texture over a chorale's harmonies), a window of
measures, a transposition, clutter and a render style. It is written in the PrIMuS layout the
loader reads, one image and one label a staff, with the system beside them:

    sNNNNNNN/sNNNNNNN-0.png  .semantic  .json    the top staff (treble)
    sNNNNNNN/sNNNNNNN-1.png  .semantic  .json    the bottom staff (bass), in a grand staff
    sNNNNNNN/sNNNNNNN.system.png                 the whole system, at the staves' scale
    sNNNNNNN/sNNNNNNN.json                       the system: staves, labels, boxes, alignment

A staff's crop is the layout of a monophonic staff (engrave.py), so the loader, augmentation
and runtime treat both alike. The system's .json is written last and marks the sample done.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from omr.geometry import crop_window

from .corpus import split_of
from .engrave import FONTS, STORE_HEIGHT, Engraver, RenderStyle, rasterise, staff_boxes
from .generate import TRAIN_FONTS, _atomic, sample_split
from .poly import (
    ClefChange,
    PolyStaff,
    Slot,
    System,
    close_ties,
    move_slot,
    pitches,
    placed_pitches,
    slot_starts,
    staff_notes,
    staff_tokens,
    transpose_system,
    well_formed,
)
from .poly_mei import PolyClutter, system_mei
from .procedural import CLEF_BOTTOM
from .textures import TEXTURES, texture_system

KINDS = ("chorale", "quartet", "piano", "texture")
KIND_WEIGHTS = (0.25, 0.17, 0.08, 0.5)
MAX_TOKENS = 200  # per staff label; longer windows are cut a measure at a time
LEDGER_ROOM = 9  # diatonic steps beyond the staff's outer lines (four ledger lines and a bit)
# Piano music moves a hand to the other staff's clef inside a staff, and prints no time
# signature after its first system: staves that always open with one and never change clef
# taught the readers to write a time signature on every staff and to miss the changes.
CLEF_CHANGE_SHARE = 0.3  # systems with a clef change inside one staff
CHANGE_BACK_SHARE = 0.5  # of those, the ones that change back later in the staff
MIN_CHANGE_SLOTS = 4  # a clef holds for this many slots of its voice at least
LATER_SYSTEM_SHARE = 0.5  # systems with no time signature printed
OTHER_CLEF = {"G2": ("F4", -1), "F4": ("G2", 1)}  # the other clef, and the octaves to move


@dataclass(frozen=True)
class PolyOptions:
    seed: int = 0
    grand_share: float = 0.6  # whole grand staves; the others are one staff of one
    max_measures: int = 5
    only: str = ""  # one kind alone ("quartet", "texture/alberti"), for the checks
    font: str = ""  # every sample in this font (a held-out-font test set of the same systems)


@dataclass(frozen=True)
class Record:
    """A cached piece (or section): its measures and the runs a window may take."""

    source: str
    piece: str
    measures: tuple[dict, ...]
    runs: tuple[tuple[int, int], ...]  # (start, length): engravable measures, no change inside


def _runs(measures: list[dict]) -> list[tuple[int, int]]:
    out, start = [], None
    for k, m in enumerate(measures + [{"ok": False}]):
        if start is not None and (not m["ok"] or m.get("change")):
            out.append((start, k - start))
            start = None
        if m["ok"] and start is None:
            start = k
    return out


def load_poly_pools(cache_dir: Path) -> dict[str, dict[str, list[Record]]]:
    """split -> kind -> records. Textures are drawn over the chorales of the same split."""
    from .reductions import load_cache

    pools: dict[str, dict[str, list[Record]]] = {s: {k: [] for k in KINDS}
                                                 for s in ("train", "val", "test")}
    for row in load_cache(cache_dir):
        runs = tuple(_runs(row["measures"]))
        if not runs:
            continue
        rec = Record(row["source"], row["piece"], tuple(row["measures"]), runs)
        split = split_of(rec.piece)
        pools[split][rec.source].append(rec)
        if rec.source == "chorale" and _four_voices(rec):
            pools[split]["texture"].append(rec)
    return pools


def _four_voices(rec: Record) -> bool:
    return all(len(m["staves"]) == 2 for m in rec.measures if m["ok"])


def _window(rec: Record, rng: np.random.Generator, most: int) -> list[dict]:
    start, length = rec.runs[int(rng.integers(len(rec.runs)))]
    n = min(length, int(rng.integers(1, most + 1)))
    k = start + int(rng.integers(0, length - n + 1))
    return list(rec.measures[k:k + n])


def _reduced(rec: Record, rows: list[dict]) -> System:
    first = rows[0]
    staves = []
    for i, clef in enumerate(first["clefs"]):
        measures = tuple(tuple(tuple(Slot.from_row(s) for s in v) for v in row["staves"][i])
                         for row in rows)
        staves.append(PolyStaff(clef, first["key"], first["time"], measures))
    return System(tuple(staves), rec.source, rec.piece)


def _on_staff(staff: PolyStaff) -> bool:
    return all(CLEF_BOTTOM[c] - LEDGER_ROOM <= e.diatonic <= CLEF_BOTTOM[c] + 8 + LEDGER_ROOM
               for c, e in placed_pitches(staff))


def _off_staff(system: System) -> int:
    """How far, in diatonic steps summed over the notes, the music lies off its staves."""
    return sum(max(0, CLEF_BOTTOM[c] - e.diatonic, e.diatonic - CLEF_BOTTOM[c] - 8)
               for staff in system.staves for c, e in placed_pitches(staff))


def clef_change(staff: PolyStaff, rng: np.random.Generator) -> PolyStaff:
    """The staff with the other clef from a slot on (and, sometimes, its own clef back from a
    later one), the music between moved an octave towards it, as a hand that climbs or
    sinks is written; the staff as it was where it has no such slot."""
    points = [(k, j) for k, m in enumerate(staff.measures) for j in range(1, len(m[0]))]
    if staff.clef not in OTHER_CLEF or not points:
        return staff
    clef, octaves = OTHER_CLEF[staff.clef]
    first = int(rng.integers(len(points)))
    picks = [first]
    if first + MIN_CHANGE_SLOTS < len(points) and rng.random() < CHANGE_BACK_SHARE:
        picks.append(int(rng.integers(first + MIN_CHANGE_SLOTS, len(points))))
    changes = tuple(ClefChange(*points[i], c) for i, c in zip(picks, (clef, staff.clef)))
    moved = replace(staff, changes=changes)
    measures = tuple(tuple(tuple(move_slot(slot, 0, octaves) if moved.clef_at(k, t) == clef else slot
                                 for t, slot in zip(slot_starts(v), v)) for v in m)
                     for k, m in enumerate(staff.measures))
    return replace(moved, measures=measures)


def _as_printed(system: System, rng: np.random.Generator) -> System:
    """Sometimes a clef change inside one staff; sometimes a later system's staves, with no
    time signature. A change that breaks the system (a unison clash) is not made."""
    if rng.random() < CLEF_CHANGE_SHARE:
        n = len(system.staves) - 1 if rng.random() < 0.6 else 0
        staves = list(system.staves)
        staves[n] = clef_change(staves[n], rng)
        changed = close_ties(replace(system, staves=tuple(staves)))
        system = changed if well_formed(changed) else system
    if rng.random() < LATER_SYSTEM_SHARE:
        system = replace(system, staves=tuple(replace(s, time_shown=False) for s in system.staves))
    return system


def _transposed(system: System, rng: np.random.Generator) -> System:
    """Sometimes another key, in whichever octave keeps the music nearest its staves."""
    if rng.random() > 0.6:
        return system
    fifths = int(rng.integers(-5, 6))
    moved = [transpose_system(system, fifths, (octave,) * len(system.staves))
             for octave in (0, -1, 1)]
    moved = [m for m in moved if m is not None and -6 <= m.staves[0].key <= 6]
    return min(moved, key=_off_staff) if moved else system


def _fits(system: System) -> bool:
    return (well_formed(system) and all(_on_staff(s) for s in system.staves)
            and all(len(staff_tokens(s)) <= MAX_TOKENS for s in system.staves)
            and any(pitches(s) for s in system.staves))


def draw_system(split: str, rng: np.random.Generator, pools, opt: PolyOptions) -> System | None:
    """A labelled system for one sample, or None when the split's pools are empty."""
    pool = pools.get(split) or {}
    kinds = [k for k in KINDS if pool.get(k)]
    if not kinds:
        return None
    if opt.only:
        kinds = [k for k in kinds if k == opt.only.split("/")[0]]
        if not kinds:
            return None
    weights = np.array([KIND_WEIGHTS[KINDS.index(k)] for k in kinds])
    for _ in range(30):
        kind = str(rng.choice(kinds, p=weights / weights.sum()))
        rec = pool[kind][int(rng.integers(len(pool[kind])))]
        rows = _window(rec, rng, opt.max_measures)
        if kind == "texture":
            name = str(rng.choice(list(TEXTURES)))
            name = opt.only.split("/")[1] if opt.only.startswith("texture/") else name
            system = texture_system(name, rows, rng, rec.piece)
        else:
            system = _reduced(rec, rows)
        system = close_ties(_transposed(system, rng))
        while len(system.staves[0].measures) > 1 and not all(
                len(staff_tokens(s)) <= MAX_TOKENS for s in system.staves):
            system = close_ties(replace(system, staves=tuple(
                replace(s, measures=s.measures[:-1]) for s in system.staves)))
        if rng.random() > opt.grand_share:
            keep = 0 if rng.random() < 0.6 else 1
            system = replace(system, staves=(system.staves[keep],))
        system = _as_printed(system, rng)
        if _fits(system):
            return replace(system, final_barline=bool(rng.random() < 0.7))
    return None


@dataclass(frozen=True)
class PolySample:
    staves: list[np.ndarray]  # one stored crop a staff, top to bottom
    system_image: np.ndarray
    tokens: list[list[str]]
    meta: dict
    mei: str
    system: System


def _measure_spans(tokens: list[str]) -> list[list[int]]:
    """[first, end) token index of each measure (its barline included)."""
    spans, start = [], next((i for i, t in enumerate(tokens) if not t.startswith(
        ("clef-", "keySignature-", "timeSignature-"))), len(tokens))
    for i, t in enumerate(tokens):
        if t == "barline":
            spans.append([start, i + 1])
            start = i + 1
    if start < len(tokens):
        spans.append([start, len(tokens)])
    return spans


@dataclass(frozen=True)
class Drawn:
    """Everything sample i is, before it is engraved."""

    split: str
    system: System
    style: RenderStyle
    clutter: PolyClutter
    mei: str


def draw_poly(index: int, opt: PolyOptions, pools) -> Drawn:
    split = sample_split(opt.seed, index)
    rng = np.random.default_rng([opt.seed, index, 21])
    system = draw_system(split, rng, pools, opt)
    if system is None:
        raise ValueError(f"no polyphonic source for the {split} split (build the cache)")
    style = RenderStyle.random(rng, FONTS if split == "test" else TRAIN_FONTS)
    if opt.font:  # after the draw, so that everything else about the sample stays as it was
        style = replace(style, font=opt.font)
    clutter = PolyClutter.random(rng)
    return Drawn(split, system, style, clutter, system_mei(system, clutter, rng))


def make_poly_sample(index: int, opt: PolyOptions, pools, engraver: Engraver) -> PolySample:
    d = draw_poly(index, opt, pools)
    split, system, style, clutter, mei = d.split, d.system, d.style, d.clutter, d.mei
    svg = engraver.svg(mei, style)
    boxes = staff_boxes(svg)
    if len(boxes) != len(system.staves):
        raise ValueError(f"Verovio drew {len(boxes)} staves for {len(system.staves)}")
    text = clutter.tempo or clutter.dynamic > 0 or style.measure_numbers > 0
    windows = [crop_window(b, style.fraction, style.side_spaces) for b in boxes]
    x0, y0 = min(w[0] for w in windows), windows[0][1]
    x1, y1 = max(w[2] for w in windows), windows[-1][3]
    px = STORE_HEIGHT / (windows[0][3] - windows[0][1])  # the staves' scale, pixels a unit
    # One rasterisation a system (resvg's cost is mostly per call): the staves are cut from it.
    whole = rasterise(svg, (x0, y0, x1, y1), max(STORE_HEIGHT, round((y1 - y0) * px)), text)
    scale = whole.shape[1] / (x1 - x0)
    crops = [_cut(whole, round((w[1] - y0) * px), round((w[0] - x0) * scale),
                  round((w[2] - x0) * scale)) for w in windows]
    tokens = [staff_tokens(s, system.final_barline) for s in system.staves]
    sid = sample_id(index)
    spans = [_measure_spans(t) for t in tokens]
    onset = 0.0
    alignment = []
    for k, m in enumerate(system.staves[0].measures):
        length = max(sum(s.quarters for s in v) for v in m)
        alignment.append({"onset": onset, "length": length, "tokens": [sp[k] for sp in spans]})
        onset += length
    meta = {
        "id": sid, "split": split, "source": system.source, "piece": system.piece,
        "seed": opt.seed, "index": index, "style": style.to_dict(), "clutter": asdict(clutter),
        "system_image": f"{sid}.system.png",
        "staves": [{"id": f"{sid}-{i}", "clef": s.clef, "tokens": tokens[i],
                    "box": [round((b.left - x0) * scale, 1), round((b.top - y0) * scale, 1),
                            round((b.right - x0) * scale, 1), round((b.bottom - y0) * scale, 1)]}
                   for i, (s, b) in enumerate(zip(system.staves, boxes))],
        "measures": alignment,
    }
    return PolySample(crops, whole, tokens, meta, mei, system)


def _cut(img: np.ndarray, top: int, left: int, right: int) -> np.ndarray:
    """A staff's stored crop out of its system's image, padded with paper at the edges."""
    crop = img[max(0, top):top + STORE_HEIGHT, max(0, left):right]
    pad_bottom = STORE_HEIGHT - crop.shape[0] - max(0, -top)
    return cv2.copyMakeBorder(crop, max(0, -top), max(0, pad_bottom), max(0, -left),
                              max(0, right - left - crop.shape[1] - max(0, -left)),
                              cv2.BORDER_CONSTANT, value=255)


def sample_id(index: int) -> str:
    return f"p{index:07d}"


def write_poly_sample(out: Path, sample: PolySample) -> None:
    """Images and labels first, each staff's .json next, the system's .json last: the loader
    takes a staff once its .json is there, and a resumed run skips a system once its is."""
    meta = sample.meta
    sid = meta["id"]
    d = out / sid
    d.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(sample.staves):
        _atomic(d / f"{sid}-{i}.png", cv2.imencode(".png", img)[1].tobytes())
        _atomic(d / f"{sid}-{i}.semantic", ("\t".join(sample.tokens[i]) + "\n").encode())
    _atomic(d / f"{sid}.system.png", cv2.imencode(".png", sample.system_image)[1].tobytes())
    for i in range(len(sample.staves)):
        staff = {"id": f"{sid}-{i}", "system": sid, "staff": i, "split": meta["split"],
                 "source": meta["source"], "piece": meta["piece"], "style": meta["style"]}
        _atomic(d / f"{sid}-{i}.json", json.dumps(staff).encode())
    _atomic(d / f"{sid}.json", json.dumps(meta).encode())


def is_poly_done(out: Path, index: int) -> bool:
    sid = sample_id(index)
    return (out / sid / f"{sid}.json").exists()


def write_poly_manifest(out: Path, count: int) -> tuple[int, int]:
    """manifest.jsonl (a row a staff, as the loader reads it) and systems.jsonl."""
    staves = systems = 0
    with (out / "manifest.jsonl.tmp").open("w") as m, (out / "systems.jsonl.tmp").open("w") as s:
        for i in range(count):
            sid = sample_id(i)
            p = out / sid / f"{sid}.json"
            if not p.exists():
                continue
            meta = json.loads(p.read_text())
            s.write(json.dumps(meta) + "\n")
            systems += 1
            for k in range(len(meta["staves"])):
                m.write((out / sid / f"{sid}-{k}.json").read_text().strip() + "\n")
                staves += 1
    (out / "manifest.jsonl.tmp").replace(out / "manifest.jsonl")
    (out / "systems.jsonl.tmp").replace(out / "systems.jsonl")
    return staves, systems


# --- the check against Verovio's own MIDI ----------------------------------------------------

TOL = 0.03  # quarter notes: Verovio has 120 ticks a quarter and ends each note a tick early


def midi_tracks(data: bytes) -> list[list[tuple[int, float, float]]]:
    """(pitch, onset, duration) of each track's notes, sorted; Verovio's track k+1 is staff k."""
    import io

    import mido

    midi = mido.MidiFile(file=io.BytesIO(data))
    tpq = midi.ticks_per_beat
    out = []
    for track in midi.tracks:
        now, sounding, notes = 0, {}, []
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[msg.note] = now
            elif msg.type in ("note_on", "note_off") and msg.note in sounding:
                start = sounding.pop(msg.note)
                notes.append((msg.note, start / tpq, (now - start) / tpq))
        out.append(sorted(notes, key=lambda n: (n[1], n[0], n[2])))
    return out


def compare_notes(ours, theirs, tol: float = TOL) -> str | None:
    """None when two note lists agree: same pitches at the same onsets, ending together."""
    if len(ours) != len(theirs):
        return f"{len(ours)} notes vs {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a[0] != b[0] or abs(a[1] - b[1]) > tol:
            return f"note {i}: {a} vs {b}"
        if abs(a[1] + a[2] - b[1] - b[2]) > tol + (0.01 if tol else 0.0):
            return f"note {i} ends at {a[1] + a[2]} vs {b[1] + b[2]}"
    return None


def verovio_disagreement(engraver: Engraver, mei: str, system: System) -> str | None:
    """Verovio's MIDI of the engraved MEI against our notes, staff by staff."""
    if not engraver.tk.loadData(mei):
        return "Verovio could not load the MEI"
    tracks = midi_tracks(engraver.midi())[1:]
    for i, staff in enumerate(system.staves):
        theirs = tracks[i] if i < len(tracks) else []
        err = compare_notes(staff_notes(staff), theirs)
        if err:
            return f"staff {i}: {err}"
    return None


def parser_disagreement(system: System) -> str | None:
    """The labels as the runtime's grammar reads them (omr.semantic) against our notes: the
    same notes, and each group already in the canonical order."""
    from omr.semantic import canonical, notes_from_tokens

    for i, staff in enumerate(system.staves):
        tokens = staff_tokens(staff, system.final_barline)
        if canonical(tokens) != tokens:
            return f"staff {i}: not in canonical order"
        played = sorted(((n.pitch, n.onset, n.duration) for n in notes_from_tokens(tokens)),
                        key=lambda n: (n[1], n[0], n[2]))
        err = compare_notes(staff_notes(staff), played, tol=1e-6)
        if err:
            return f"staff {i} (omr.semantic): {err}"
    return None
