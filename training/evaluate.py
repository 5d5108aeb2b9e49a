"""`omr-eval MODEL DIR`: symbol and sequence error rates on any PrIMuS-layout folder, and a
note-level score (precision, recall, F1 of the notes), per staff and per system.

MODEL is a training checkpoint (.pt, run with PyTorch) or an exported ONNX model (run with
the runtime's Recognizer). Synthetic folders (with a manifest) are cropped the way training
crops them, clean or with seeded camera augmentation; real images go through the runtime's
own staff normalisation, exactly as `omr-run --staff` would read them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import cv2
import numpy as np
from omr.clef import reread_doubtful
from omr.decode import CLEF_DOUBT, Decoded, DecodeOptions, decode
from omr.geometry import STAFF_FRACTION

from .augment import AugmentOptions, augment
from .dataset import Sample, collate, read_folder
from .metrics import (
    NoteScore,
    Score,
    error_summary,
    score_counts,
    ser_interval,
    staff_edits,
    staff_note_score,
    system_note_score,
)
from .synth.engrave import HELD_OUT_FONT


@dataclass(frozen=True)
class EvalOptions:
    variant: str = "clean"  # or "distorted" (Camera-PrIMuS *_distorted.jpg)
    split: str | None = None  # synthetic folders: which split
    augment: float = 0.0  # synthetic folders: camera augmentation strength
    drop_tie: bool = False  # cc-staves ground truth has no ties
    limit: int = 0
    seed: int = 1234
    batch_size: int = 16
    metre: bool = True  # the runtime's metre check after the best path (False: the bare network)
    paint_clef: bool = True  # a doubtful clef read again as the runtime does (omr.clef)
    damaged_start: float = 0.0  # synthetic, augmented: share of staves with the clef damaged


class _TorchModel:
    def __init__(self, ckpt: dict, decoding: DecodeOptions):
        import torch

        from .checkpoint import crnn_from
        from .model import output_lengths

        torch.set_num_threads(2)
        self.torch, self.output_lengths, self.decoding = torch, output_lengths, decoding
        self.model, self.cfg, self.vocab, _ = crnn_from(ckpt)
        self.height, self.fraction = self.cfg.input_height, self.cfg.staff_fraction

    def decode(self, crops: list[np.ndarray], shared=None) -> list[Decoded]:
        reads = self._decode(crops)
        if not self.decoding.paint_clef:
            return reads
        return reread_doubtful(crops, reads, self.fraction, self._decode)

    def _decode(self, crops: list[np.ndarray]) -> list[Decoded]:
        batch, widths = collate(crops)
        with self.torch.no_grad():
            lp = self.model(self.torch.from_numpy(batch)).numpy()
        lengths = self.output_lengths(self.torch.from_numpy(widths), self.cfg).numpy()
        return [decode(row[:int(n)], self.vocab, self.decoding) for row, n in zip(lp, lengths)]


class _OnnxModel:
    def __init__(self, path: Path, decoding: DecodeOptions):
        from omr.recognize import Recognizer

        self.rec = Recognizer(path, decoding=decoding)
        self.height, self.fraction = self.rec.info.input_height, self.rec.info.staff_fraction

    def decode(self, crops: list[np.ndarray], shared=None) -> list[Decoded]:
        return self.rec.decode(crops, shared)  # the default reads a grand staff's with TrOMR


class _TrOMRTorchModel:
    """A TrOMR checkpoint, read greedily and then metre-checked as the runtime reads its export
    (omr.readers.decoded_reading); no clef repainting: that is the CTC reader's."""

    def __init__(self, ckpt: dict, decoding: DecodeOptions):
        import torch

        from . import tromr
        from .checkpoint import tromr_from

        torch.set_num_threads(2)
        self.torch, self.tromr, self.decoding = torch, tromr, decoding
        self.model, self.cfg, self.vocab, _ = tromr_from(ckpt)
        self.height, self.fraction = self.cfg.input_height, self.cfg.staff_fraction

    def decode(self, crops: list[np.ndarray], shared=None) -> list[Decoded]:
        from omr.readers import decoded_reading, look_shifts
        from omr.second_look import second_look

        readings = second_look(self.greedy, crops, self.decoding.second_look_below,
                               look_shifts(self.decoding, self.height))
        return [decoded_reading(r, self.vocab, self.decoding) for r in readings]

    def greedy(self, crops: list[np.ndarray]) -> list:
        """The runtime's Readings (omr.autoregressive.Reading) of PyTorch's greedy decoding."""
        from omr.autoregressive import Reading

        batch, widths = collate(crops, self.cfg.max_width)
        with self.torch.inference_mode():
            readings = self.tromr.greedy(self.model, self.torch.from_numpy(batch),
                                         self.torch.from_numpy(widths))
        out = []
        for x in readings:
            logprobs = None if x.rhythm_logprobs is None else x.rhythm_logprobs.float().numpy()
            lifts = None if x.lift_logprobs is None else x.lift_logprobs.float().numpy()
            # Each token's rhythm probability, as the ONNX reader keeps it (a clef's confidence).
            probs = tuple(float(np.exp(row[r])) for row, r in zip(logprobs, x.rhythms)) \
                if logprobs is not None else (1.0,) * len(x.rhythms)
            out.append(Reading(x.rhythms, x.pitches, x.lifts, x.logprob, probs,
                               rhythm_logprobs=logprobs, lift_logprobs=lifts))
        return out


def load_any(path: Path, decoding: DecodeOptions | None = None):
    """A checkpoint (CRNN or TrOMR), an ONNX model, or a packaged model's name ("auto": the
    runtime's default, the CRNN with TrOMR where it reads chords or clef changes), decoded the way `omr-run`
    decodes (without the repair that makes a staff playable: scores measure what was read)."""
    decoding = decoding or DecodeOptions()
    from omr.readers import AUTO, PACKAGED

    if path.suffix == ".onnx" or str(path) in (AUTO, *PACKAGED):
        return _OnnxModel(path, decoding)
    from .checkpoint import TROMR_FORMAT, load

    ckpt = load(path)  # read once: its format says which model it is
    if ckpt.get("format") == TROMR_FORMAT:
        return _TrOMRTorchModel(ckpt, decoding)
    return _TorchModel(ckpt, decoding)


def is_synthetic(root: Path) -> bool:
    return (root / "manifest.jsonl").exists() or (root / "synth.json").exists() or \
        next(root.glob("*/*.json"), None) is not None


def model_view(sample: Sample, height: int, synthetic: bool, opt: EvalOptions, index: int,
               fraction: float = STAFF_FRACTION) -> np.ndarray:
    """The crop the model reads: our loader's for synthetic data, the runtime's for real images."""
    gray = cv2.imread(str(sample.image), cv2.IMREAD_GRAYSCALE)
    if synthetic:
        rng = np.random.default_rng([opt.seed, index])
        # The test's camera model stays the one its bars were set on: a damaged staff start is
        # only asked for by name, to see how a model reads, and doubts, a clef it cannot see.
        aug = AugmentOptions(strength=opt.augment, p_damaged_start=opt.damaged_start)
        return augment(gray, height, rng, aug, fraction)
    import warnings

    from omr.staves import normalize_staff_crop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return normalize_staff_crop(gray, height, fraction)


def _first_clef(tokens) -> str:
    return next((t for t in tokens if t.startswith("clef-")), "")


def clef_doubt_report(rows: list[dict], threshold: float = CLEF_DOUBT) -> str:
    """How well the runtime's doubtful-clef warning separates clefs read wrong from right ones:
    the figures CLEF_DOUBT is chosen on."""
    wrong = [r["clef_confidence"] for r in rows if not r["clef_right"]]
    right = [r["clef_confidence"] for r in rows if r["clef_right"]]
    line = (f"  clef doubt (below {threshold:.2f}): flags {_below(wrong, threshold)} of {len(wrong)} "
            f"clefs read wrong, {_below(right, threshold)} of {len(right)} read right")
    assumed = [r for r in rows if r.get("clef_assumed")]
    if assumed:
        hits = sum(r["clef_assumed"] == _first_clef(r["reference"]) for r in assumed)
        line += f"; {len(assumed)} read again in a painted G2, rightly for {hits}"
    return line


def _below(values: list[float], threshold: float) -> int:
    return sum(v < threshold for v in values)


def by_font(rows: list[dict]) -> dict[str, Score]:
    """Scores per engraving font: the held-out font measures generalisation."""
    groups: dict[str, list] = {}
    for r in rows:
        if r["font"]:
            groups.setdefault(r["font"], []).append(counts(r))
    return {k: score_counts(v) for k, v in sorted(groups.items())}


def counts(row: dict) -> tuple[int, int]:
    return row["edits"], row["tokens"]


def system_of(sample: Sample) -> str:
    """The system a staff belongs to: the data engine writes `NAME-j` staves beside NAME.json
    (j from the top); any other staff is a system of its own ("")."""
    stem, _, index = sample.id.rpartition("-")
    return stem if stem and index.isdigit() and (sample.image.parent / f"{stem}.json").exists() \
        else ""


def system_size(sample: Sample) -> int:
    """How many staves the sample's system holds (1 for a staff of its own)."""
    stem = system_of(sample)
    return len(list(sample.image.parent.glob(f"{stem}-*.semantic"))) if stem else 1


def note_report(rows: list[dict], drop_tie: bool = False) -> str:
    """The note-level score, which does not depend on the token format: over staves, and over
    systems (their staves in step measure by measure) where the folder has any."""
    staves = sum((NoteScore(**r["notes"]) for r in rows), NoteScore(0, 0, 0, 0))
    lines = [f"  notes, per staff: {staves}"]
    systems: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("system"):
            systems.setdefault(r["system"], []).append(r)
    if systems:
        total = NoteScore(0, 0, 0, 0)
        for staves_of_system in systems.values():
            ordered = sorted(staves_of_system, key=lambda r: int(r["id"].rpartition("-")[2]))
            total += system_note_score([r["prediction"] for r in ordered],
                                       [r["reference"] for r in ordered], drop_tie)
        lines.append(f"  notes, per system ({len(systems)}): {total}")
    return "\n".join(lines)


def staves_of(root: Path, opt: EvalOptions) -> tuple[list[Sample], bool]:
    """The staves to score, and whether they are synthetic (cropped as training crops them)."""
    synthetic = is_synthetic(root)
    samples = read_folder(root, opt.variant, opt.split if synthetic else None)
    if opt.limit:
        samples = samples[:opt.limit]
    if not samples:
        raise click.ClickException(f"no labelled staves found under {root}")
    return samples, synthetic


def evaluate(model, samples: list[Sample], synthetic: bool, opt: EvalOptions,
             progress=None) -> tuple[Score, list[dict]]:
    rows = []
    for k in range(0, len(samples), opt.batch_size):
        chunk = samples[k:k + opt.batch_size]
        crops = [model_view(s, model.height, synthetic, opt, k + j, model.fraction)
                 for j, s in enumerate(chunk)]
        shared = [system_size(s) == 2 for s in chunk]  # as omr.recognize.grand_staff
        for s, share, read in zip(chunk, shared, model.decode(crops, shared)):
            pred = read.tokens
            edits, tokens = staff_edits(pred, s.tokens, opt.drop_tie)
            notes = staff_note_score(pred, s.tokens, opt.drop_tie)
            rows.append({"id": s.id, "ser": edits / max(tokens, 1), "edits": edits, "tokens": tokens,
                         "notes": asdict(notes), "system": system_of(s), "shared": share,
                         "prediction": pred, "reference": list(s.tokens), "font": s.font,
                         "clef": read.clef, "clef_confidence": read.clef_confidence,
                         "clef_right": read.clef == _first_clef(s.tokens),
                         "clef_assumed": read.clef_assumed})
        if progress:
            progress(len(chunk))
    return score_counts([counts(r) for r in rows]), rows


@click.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--distorted", is_flag=True, help="Camera-PrIMuS: read ID_distorted.jpg instead of ID.png.")
@click.option("--split", default="test", show_default=True, help="Synthetic folders: which split.")
@click.option("--augment", "strength", default=0.0, show_default=True,
              help="Synthetic folders: camera augmentation strength (0 = clean).")
@click.option("--drop-tie", is_flag=True, help="Drop `tie` before scoring (cc-staves has none).")
@click.option("--limit", default=0, help="Only the first N staves.")
@click.option("--seed", default=EvalOptions.seed, show_default=True,
              help="Synthetic folders: the augmentation's seed (another seed, other photographs).")
@click.option("--damaged-start", default=0.0, show_default=True,
              help="Synthetic folders, with --augment: share of staves whose start (clef, key) "
                   "is cut, smeared, blotted or twisted, as omr-train --damaged-start does.")
@click.option("--greedy", is_flag=True, help="Best path only, without the metre check, the "
              "second reading of a doubtful clef, the notes moved after a clef change, "
              "TrOMR's accidental check or its second look at a doubtful staff: the bare "
              "network.")
@click.option("--keep-clef", is_flag=True, help="Do not read a staff whose clef is doubtful "
              "again with a treble clef painted before it (the runtime does).")
@click.option("--errors", "top", default=0, show_default=True,
              help="Also list the N commonest kinds of error and exact confusions.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write per-staff results here.")
@click.option("--against", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A second model, read on the same staves: is the difference more than the "
                   "test set's noise?")
def main(model_path: Path, folder: Path, distorted: bool, split: str, strength: float,
         drop_tie: bool, limit: int, seed: int, damaged_start: float, greedy: bool,
         keep_clef: bool, top: int, json_out: Path | None, against: Path | None) -> None:
    """Report SER and sequence error rate of MODEL_PATH on FOLDER."""
    opt = EvalOptions("distorted" if distorted else "clean", split, strength, drop_tie, limit,
                      seed, metre=not greedy, damaged_start=damaged_start,
                      paint_clef=not (greedy or keep_clef))
    model = _load(model_path, opt)
    other = _load(against, opt) if against else None  # a bad file fails before the long read
    samples, synthetic = staves_of(folder, opt)  # read once, for both models
    result, rows = _read(model, model_path, samples, synthetic, opt)
    click.echo(f"{folder}: {result}")
    click.echo(f"  {ser_interval([counts(r) for r in rows])} (staves resampled)")
    click.echo(note_report(rows, drop_tie))
    click.echo(clef_doubt_report(rows))
    for font, sc in by_font(rows).items():
        held = " (held out of training)" if font == HELD_OUT_FONT else ""
        click.echo(f"  {font:10s} SER {100 * sc.ser:5.2f}%  ({sc.staves} staves){held}")
    if other:
        theirs, their_rows = _read(other, against, samples, synthetic, opt)
        click.echo(compare_report(against, result, theirs, rows, their_rows))
    if not (top or json_out):
        return
    kinds, confusions = error_summary(((r["prediction"], r["reference"]) for r in rows), drop_tie)
    if top:
        click.echo(error_report(kinds, confusions, top))
    if json_out:
        json_out.write_text(json.dumps({"score": asdict(result), "options": asdict(opt),
                                        "errors": dict(kinds.most_common()), "staves": rows},
                                       indent=1))


def _load(model_path: Path, opt: EvalOptions):
    try:
        bare = {} if opt.metre else {"clef_changes": False, "max_lift_cost": 0.0,
                                     "second_look_below": -math.inf}
        return load_any(model_path, DecodeOptions(metre=opt.metre, paint_clef=opt.paint_clef,
                                                  **bare))
    except (ValueError, RuntimeError) as e:
        raise click.ClickException(str(e).splitlines()[0]) from None


def _read(model, model_path: Path, samples: list[Sample], synthetic: bool,
          opt: EvalOptions) -> tuple[Score, list[dict]]:
    from rich.console import Console
    from rich.progress import Progress

    # On stderr, and only on a terminal: stdout holds the report alone (rich left a blank line
    # there where the bar had been).
    console = Console(stderr=True)
    with Progress(transient=True, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"reading with {model_path.name}", total=None)
        return evaluate(model, samples, synthetic, opt, lambda n: bar.advance(task, n))


def compare_report(against: Path, mine: Score, other: Score, rows: list[dict],
                   their_rows: list[dict]) -> str:
    """The second model's score and the paired difference, in SER points."""
    gap = ser_interval([counts(r) for r in rows], [counts(r) for r in their_rows])
    verdict = "lower" if gap.high < 0 else "higher" if gap.low > 0 else "not told apart"
    return (f"against {against}: {other}\n"
            f"  difference {100 * (mine.ser - other.ser):+.2f} points, {100 * gap.level:.0f}% interval "
            f"{100 * gap.low:+.2f} to {100 * gap.high:+.2f}: {verdict}")


def error_report(kinds, confusions, top: int) -> str:
    """Where the errors are: what an engineer reads before deciding what to train next."""
    total = sum(kinds.values())
    lines = [f"errors by kind ({total} edits):"]
    lines += [f"  {n:5d}  {100 * n / max(total, 1):4.1f}%  {k}" for k, n in kinds.most_common(top)]
    lines.append("commonest confusions (reference -> read; - is nothing):")
    lines += [f"  {n:5d}  {r} -> {p}" for (r, p), n in confusions.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
