"""Piano pages end to end: staves and systems found, chords read, two-hand MIDI and grand-staff
MusicXML written, and, where a page has its MusicXML truth, the notes scored against it.

    python benchmarks/bench_piano.py [--model crnn|tromr|PATH] [--chords TROMR.onnx] [--pages DIR] [--out DIR]

The pages are the piano ones of ../shared/eval/pages (evaluation only: the previews and the
written files go to --out, data/piano by default, outside git). For a page with a MusicXML file
beside it (bach-invention1-scan), prints the note F1 (onset and pitch) two ways: on page time
(omr.parts, as the MIDI plays it) and measure by measure (a misread duration costs only its own
measure), the measures read against the truth's, and each staff's SER where the truth's systems
are the page's. Also times file to MIDI (median of --runs, in process).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import mido

ROOT = Path(__file__).resolve().parents[1]
PIANO = ("bach-invention1-scan.png", "bach-invention5-photo.jpg", "tabi-photo.jpg",
         "river-photo.jpg", "chihiro-photo.jpg")


def read_page(recognizer, page: Path, out: Path, runs: int) -> tuple[object, float]:
    """The Score of `page`, its preview, MIDI and MusicXML written to `out`, and the median
    seconds from file to MIDI."""
    from omr.image import load_gray
    from omr.preview import save_preview

    seconds = []
    for _ in range(runs):
        clock = time.perf_counter()
        score = recognizer.read(page)
        score.to_midi(out / f"{page.stem}.mid")
        seconds.append(time.perf_counter() - clock)
    from omr.writers import write_output

    write_output(score, out / f"{page.stem}.musicxml", "musicxml")
    save_preview(out / f"{page.stem}.preview.png", load_gray(page), score)
    return score, statistics.median(seconds)


def describe(score, midi: Path) -> str:
    from omr.vocab import CHORD

    tracks = [sum(1 for m in t if m.type == "note_on" and m.velocity) for t in mido.MidiFile(midi).tracks]
    chords = sum(t == CHORD for s in score.staves for t in s.tokens)
    arranged = score.arrangement  # a property that arranges the page anew on every use
    hands = [sum(1 for n in arranged.notes if n.part == j) for j in range(arranged.parts)]
    return (f"{len(score.staves)} staves in {len(score.systems)} systems "
            f"({'/'.join(str(len(s)) for s in score.systems)}), notes per part {hands}, "
            f"{chords} chord joins read, MIDI note-ons per track {[n for n in tracks if n]}")


def against_truth(score, truth: Path) -> list[str]:
    from omr.parts import arrange
    from omr_train.metrics import match_notes, measure_note_score, staff_edits
    from omr_train.musicxml_read import read_musicxml

    ref = read_musicxml(truth).systems
    ref_arranged, read = arrange([list(map(list, s)) for s in ref]), score.arrangement
    lines = [f"  notes on page time:      {match_notes(read.notes, ref_arranged.notes)}",
             f"  notes measure by measure: {measure_note_score(read, ref_arranged)}"]
    got = score.system_tokens
    measures = (sum(len(m) for m in read.measures), sum(len(m) for m in ref_arranged.measures))
    lines.append(f"  measures read {measures[0]}, in the truth {measures[1]}")
    if [len(s) for s in got] == [len(s) for s in ref]:  # the truth's systems as printed
        edits = [staff_edits(p, list(r)) for ps, rs in zip(got, ref) for p, r in zip(ps, rs)]
        total = sum(e for e, _ in edits) / max(1, sum(n for _, n in edits))
        lines.append(f"  staff SER against the truth's staves: {100 * total:.2f} %")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="crnn, tromr or an ONNX file (default: omr-run's, the CRNN with "
                             "TrOMR where it reads chords or clef changes)")
    parser.add_argument("--chords", default=None,
                        help="with the default: this TrOMR ONNX file instead of the packaged one")
    parser.add_argument("--pages", type=Path, default=ROOT.parent / "shared" / "eval" / "pages")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "piano")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    pages = [args.pages / name for name in PIANO if (args.pages / name).exists()]
    if not pages:
        sys.exit(f"bench_piano: no piano pages in {args.pages}")
    from omr.recognize import Recognizer

    recognizer = Recognizer(args.model, chord_model=args.chords)
    args.out.mkdir(parents=True, exist_ok=True)
    chords = recognizer.chord_path
    print(f"model {recognizer.model_path}" + (f", chords read by {chords}" if chords else ""))
    for page in pages:
        score, seconds = read_page(recognizer, page, args.out, args.runs)
        print(f"{page.name}: {describe(score, args.out / f'{page.stem}.mid')}; "
              f"file to MIDI {seconds:.2f} s")
        truth = page.with_suffix(".musicxml")
        if truth.exists():
            print("\n".join(against_truth(score, truth)))
    print(f"previews, MIDI and MusicXML in {args.out}")


if __name__ == "__main__":
    main()
