"""The packaged model on the engraved example page that the README's first command reads."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "runtime" / "models" / "crnn.onnx"
PAGE = ROOT / "runtime" / "examples" / "engraved-page.png"

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no packaged model")


def _ser(pred: list[list[str]], ref: list[list[str]]) -> float:
    from omr_train.metrics import score

    return score(zip(pred, ref)).ser


def _erased_page():
    """The example page, and the same page with each staff's clef erased, as a photo's edge
    cuts it off."""
    import cv2
    from omr.staves import detect_staves

    page = cv2.imread(str(PAGE), cv2.IMREAD_GRAYSCALE)
    erased = page.copy()
    for staff in detect_staves(page):
        x0, y0, x1, y1 = staff.bbox
        erased[y0:y1, x0:x0 + (x1 - x0) // 30] = 255
    return page, erased


def test_example_page_reads_back_its_own_labels(tmp_path):
    out = tmp_path / "page.semantic"
    run = subprocess.run([sys.executable, "-m", "omr.cli", str(PAGE), "--format", "semantic",
                          "-o", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    pred = [line.split("\t") for line in out.read_text().strip().splitlines()]
    ref = [line.split("\t") for line in PAGE.with_suffix(".semantic").read_text().strip().splitlines()]
    assert len(pred) == len(ref) == 6
    assert _ser(pred, ref) < 0.10


def test_midi_is_written_readable_like_any_other_file(tmp_path):
    from omr import Recognizer

    target = tmp_path / "page.mid"
    Recognizer().read(PAGE).to_midi(target)
    mode = stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    import mido

    notes = [m for m in mido.MidiFile(target).tracks[0] if m.type == "note_on" and m.velocity]
    assert len(notes) > 60


def test_an_erased_clef_is_flagged_and_read_in_g2_and_a_printed_one_is_not():
    import warnings

    from omr import Recognizer
    from omr.decode import CLEF_DOUBT, DecodeOptions

    page, erased = _erased_page()
    rec = Recognizer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        intact = rec.read_array(page)
        assert not caught and all(s.clef_confidence > 0.99 for s in intact.staves)
        damaged = rec.read_array(erased)
    assert len(caught) >= len(damaged.staves) // 2
    assert all("clef unclear" in str(w.message) for w in caught)
    # The page is in G2, the clef painted before a doubtful one: those staves read nearly as the
    # intact ones (the erasure took the key signature too, so F# reads F), and far better than
    # the network's own guess at their clef.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guessed = Recognizer(decoding=DecodeOptions(paint_clef=False)).read_array(erased)
    repainted = [k for k, s in enumerate(damaged.staves) if s.clef_read]
    assert repainted
    for k in repainted:
        truth = [list(intact.staves[k].tokens)]
        assert damaged.staves[k].tokens[0] == "clef-G2"
        assert damaged.staves[k].clef_confidence < CLEF_DOUBT
        ser = _ser([list(damaged.staves[k].tokens)], truth)
        assert ser < 0.3 and ser < _ser([list(guessed.staves[k].tokens)], truth) / 2


def test_omr_run_reads_a_clefless_staff_in_g2_unless_told_to_keep_the_guess(tmp_path):
    import json

    import cv2

    erased = tmp_path / "erased.png"
    cv2.imwrite(str(erased), _erased_page()[1])
    staves = {}
    for flags in ([], ["--keep-clef"]):
        run = subprocess.run([sys.executable, "-m", "omr.cli", str(erased), "--format", "jsonl",
                              *flags], capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        assert "clef unclear" in run.stderr
        staves[bool(flags)] = json.loads(run.stdout)["staves"]
    painted = [s for s in staves[False] if "clef_read" in s]
    assert painted and all(s["tokens"][0] == "clef-G2" for s in painted)
    assert not any("clef_read" in s for s in staves[True])


def _melody_crop(rec):
    """The example page's first staff, cropped as the recognizer crops it."""
    from omr.image import load_gray
    from omr.staves import detect_staves, staff_crop

    gray = load_gray(PAGE)
    return staff_crop(gray, detect_staves(gray)[0], rec.info.input_height, rec.info.staff_fraction)


def _chord_system_page():
    """A grand staff engraved by the synthesis engine: triads over a bass line."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("verovio")
    from omr_train.synth.engrave import _SIZE, Engraver, RenderStyle, rasterise
    from omr_train.synth.poly import PolyStaff, System, chord
    from omr_train.synth.poly_mei import PolyClutter, system_mei

    def triad(*steps):
        return chord("quarter", 0, [(s, 0, o, False) for s, o in steps])

    bar = (triad(("C", 4), ("E", 4), ("G", 4)), triad(("F", 4), ("A", 4), ("C", 5)),
           triad(("G", 4), ("B", 4), ("D", 5)), triad(("C", 4), ("E", 4), ("G", 4)))
    line = [chord("quarter", 0, [(s, 0, 3, False)]) for s in "CDEFGAB"] + \
        [chord("quarter", 0, [("C", 0, 4, False)])]
    system = System((PolyStaff("G2", 0, "4/4", ((bar,), (bar,))),
                     PolyStaff("F4", 0, "4/4", ((tuple(line[:4]),), (tuple(line[4:]),)))))
    svg = Engraver().svg(system_mei(system, PolyClutter(), np.random.default_rng(0)), RenderStyle())
    width, height = (float(v) for v in _SIZE.search(svg).groups())
    return rasterise(svg, (0, 0, width, height), 500, False)


@pytest.mark.skipif(not (MODEL.parent / "tromr.onnx").exists(), reason="no packaged TrOMR")
def test_by_default_a_grand_staff_is_tromrs_reading_and_a_melody_the_crnns():
    from omr import Recognizer
    from omr.vocab import CHORD

    page = _chord_system_page()
    crnn = Recognizer("crnn").read_array(page)
    tromr = Recognizer("tromr").read_array(page)
    auto = Recognizer().read_array(page)
    assert [s.system for s in auto.staves] == [0, 0]
    # Both staves of the system: the chords, and the bass line beside them.
    assert [s.model for s in auto.staves] == ["tromr-lean-lstm", "tromr-lean-lstm"]
    assert CHORD in auto.staves[0].tokens and CHORD not in crnn.staves[0].tokens
    assert [s.tokens for s in auto.staves] == [s.tokens for s in tromr.staves]
    melody = Recognizer().read(PAGE)  # the example page: melodies only, the CRNN's throughout
    assert {s.model for s in melody.staves} == {"crnn-lite-tall"}
    assert melody.staves == Recognizer("crnn").read(PAGE).staves


@pytest.mark.skipif(not (MODEL.parent / "tromr.onnx").exists(), reason="no packaged TrOMR")
def test_a_melody_staff_of_a_two_staff_system_is_tromrs_reading():
    from omr import Recognizer
    from omr.recognize import grand_staff

    # A pair is a grand staff, most often; three or more a choir's or a band's (melodies).
    assert grand_staff([0, 0, 1, 2, 2, 2]) == [True, True, False, False, False, False]
    rec = Recognizer()
    crop = _melody_crop(rec)
    alone, shared = rec.decode([crop, crop], [False, True])
    assert alone.tokens == Recognizer("crnn").decode([crop])[0].tokens
    assert shared.tokens == Recognizer("tromr").decode([crop])[0].tokens


@pytest.mark.skipif(not (MODEL.parent / "tromr.onnx").exists(), reason="no packaged TrOMR")
def test_by_default_a_quartets_single_lines_are_the_crnns_reading():
    import numpy as np
    from omr import Recognizer
    from omr_train.synth.layout import PageLayout, engrave_page

    layout = PageLayout(width_px=1654, system_size=4, systems=1, measures=3,
                        clef_set=("G2", "G2", "C3", "F4"), title=False)
    page, _, _ = engrave_page(layout, np.random.default_rng(3))
    score = Recognizer().read_array(page)
    assert [s.system for s in score.staves] == [0, 0, 0, 0]
    assert {s.model for s in score.staves} == {"crnn-lite-tall"}
    assert [s.tokens for s in score.staves] == \
        [s.tokens for s in Recognizer("crnn").read_array(page).staves]


def test_without_tromr_installed_the_default_is_the_crnn_alone(monkeypatch, tmp_path):
    from omr import Recognizer, recognize

    monkeypatch.setattr(recognize, "CHORD_MODEL", tmp_path / "tromr.onnx")
    rec = Recognizer()
    assert rec.chord_reader is None
    assert {s.model for s in rec.read(PAGE).staves} == {"crnn-lite-tall"}


def test_the_chord_reader_is_kept_for_chords_and_clef_changes_inside_a_staff():
    from omr.recognize import needs_chord_reader

    assert needs_chord_reader(["clef-G2", "note-C4_quarter", "|", "note-E4_quarter"])
    assert needs_chord_reader(["clef-F4", "note-C3_quarter", "clef-G2", "note-C5_quarter"])
    assert not needs_chord_reader(["clef-G2", "keySignature-DM", "note-C4_quarter", "barline"])
    assert not needs_chord_reader(["clef-G2", "clef-F4", "note-C3_quarter"])  # both opening
