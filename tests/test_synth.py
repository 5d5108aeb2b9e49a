"""The synthesis engine: labels, determinism, resumability, the folder reader."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("verovio")

from click.testing import CliRunner
from omr.semantic import parse
from omr_train.dataset import read_folder
from omr_train.synth.cli import main as synth_main
from omr_train.synth.mei import Clutter, snippet_to_mei
from omr_train.synth.music import Event, Snippet, semantic_tokens, transpose
from omr_train.synth.procedural import random_snippet

EVAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "eval"


def _synth(out: Path, count: int, seed: int = 3, *more: str) -> None:
    r = CliRunner().invoke(synth_main, ["--out", str(out), "--count", str(count), "--workers", "1",
                                        "--seed", str(seed), "--no-corpus", *more])
    assert r.exit_code == 0, r.output


def test_key_signature_accidentals_are_spelled_as_they_sound():
    s = Snippet("G2", 2, "3/4", ((Event("note", "quarter", 0, "F", 1, 4, tie=True),
                                  Event("note", "quarter", 0, "F", 1, 4),
                                  Event("note", "quarter", 0, "C", 0, 5)),))
    assert semantic_tokens(s) == ["clef-G2", "keySignature-DM", "timeSignature-3/4",
                                  "note-F#4_quarter", "tie", "note-F#4_quarter",
                                  "note-C5_quarter", "barline"]


def test_c_major_has_no_key_signature_token():
    s = Snippet("F4", 0, "C/", ((Event("rest", "half", 1),),), final_barline=False)
    assert semantic_tokens(s) == ["clef-F4", "timeSignature-C/", "rest-half."]


def test_transposition_respells_in_the_new_key():
    s = Snippet("G2", 0, None, ((Event("note", step="E", octave=4),),))
    up = transpose(s, 2)  # C major -> D major, E4 -> F#4
    assert up.key == 2 and semantic_tokens(up)[-2] == "note-F#4_quarter"


def test_procedural_snippets_cover_what_folk_tunes_lack():
    rng = np.random.default_rng(0)
    tokens = {t for i in range(400) for t in semantic_tokens(random_snippet(rng, str(i)))}
    for needed in ("clef-C1", "clef-C3", "clef-F4", "timeSignature-C/", "timeSignature-C"):
        assert needed in tokens
    assert any(t.startswith("multirest-") for t in tokens)
    assert any(t.startswith("gracenote-") for t in tokens)
    assert any("_double_whole" in t for t in tokens) and any("sixty_fourth" in t for t in tokens)
    assert any(t.endswith("_fermata") for t in tokens) and any(".." in t for t in tokens)
    unknown = [t for t in tokens if parse([t]) == []]
    assert not unknown, unknown


def test_same_seed_same_dataset_and_resume_keeps_what_was_written(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _synth(a, 12)
    _synth(b, 6)
    first = {p.name: p.read_bytes() for p in b.rglob("*.png")}
    _synth(b, 12)  # resumes: the first six are kept, the rest added
    assert {p.name: p.read_bytes() for p in b.rglob("*.png") if p.name in first} == first
    pngs = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert pngs == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for p in pngs:
        assert (a / p).read_bytes() == (b / p).read_bytes()
    assert len((a / "manifest.jsonl").read_text().splitlines()) == 12


def test_reader_reads_our_layout_with_splits(tmp_path):
    _synth(tmp_path, 30)
    every = read_folder(tmp_path)
    assert len(every) == 30 and all(s.tokens[0].startswith("clef-") for s in every)
    train = read_folder(tmp_path, split="train")
    assert 0 < len(train) < 30 and all(s.split == "train" for s in train)


def test_one_split_alone_is_that_split_of_the_whole_set(tmp_path):
    whole, test = tmp_path / "whole", tmp_path / "test"
    _synth(whole, 60)
    _synth(test, 60, 3, "--split", "test")
    want = read_folder(whole, split="test")
    got = read_folder(test)
    assert want and [(s.id, s.split, s.tokens) for s in got] == [(s.id, s.split, s.tokens) for s in want]
    for a, b in zip(want, got):
        assert a.image.read_bytes() == b.image.read_bytes()


@pytest.mark.skipif(not (EVAL / "camera-primus").exists(), reason="../shared/eval absent")
def test_reader_reads_camera_primus():
    clean = read_folder(EVAL / "camera-primus")
    distorted = read_folder(EVAL / "camera-primus", "distorted")
    assert len(clean) == len(distorted) == 100
    assert clean[0].image.suffix == ".png" and distorted[0].image.name.endswith("_distorted.jpg")
    assert all(s.tokens[0].startswith("clef-") for s in clean)


def test_a_damaged_start_touches_only_the_clef_and_key(tmp_path):
    import cv2
    from omr_train.augment import _damaged_start

    _synth(tmp_path, 2)
    img = cv2.imread(str(read_folder(tmp_path)[0].image), cv2.IMREAD_GRAYSCALE)
    h, w = img.shape
    start = int(np.flatnonzero((img < 128).any(axis=0))[0])
    widths, changed = set(), 0
    for seed in range(24):
        out = _damaged_start(img, np.random.default_rng(seed), 1.0)
        assert out.shape[0] == h and out.dtype == np.uint8
        widths.add(out.shape[1])
        # The rest of the staff, one crop height (two staff heights) past the first ink, is untouched.
        keep = start + h
        assert np.array_equal(out[:, out.shape[1] - (w - keep):], img[:, keep:])
        changed += out.shape[1] == w and not np.array_equal(out[:, start:start + 10], img[:, start:start + 10])
    assert len(widths) > 1 and changed  # some cut off, some smeared, blotted or twisted


def test_no_slur_is_drawn_where_it_would_look_like_a_missing_tie():
    # Pairs of one staff position (F4 and F#4 share a line), each pair a different position.
    steps = [("F", 0), ("F", 1), ("A", 0), ("A", 0), ("C", 0), ("C", 0), ("E", 0), ("E", 0)] * 3
    notes = tuple(Event("note", "quarter", 0, step, alter, 5 if step == "C" else 4)
                  for step, alter in steps)
    s = Snippet("G2", 0, None, tuple(notes[k:k + 4] for k in range(0, len(notes), 4)))
    seen = 0
    for seed in range(20):
        mei, _ = snippet_to_mei(s, Clutter(slur=1.0), np.random.default_rng(seed))
        ids = re.findall(r'<note xml:id="(e\d+)"', mei)
        for a, b in re.findall(r'<slur [^>]*startid="#(e\d+)" endid="#(e\d+)"', mei):
            i, j = ids.index(a), ids.index(b)
            assert not (j == i + 1 and i % 2 == 0), f"seed {seed}: tie-shaped slur {a}-{b}"
            seen += 1
    assert seen > 20  # the other slurs are still drawn


def test_a_short_multirest_is_drawn_both_as_a_bar_and_as_rest_symbols():
    from omr_train.synth.engrave import MULTI_REST_STYLES, Engraver, RenderStyle

    rest = (Event("multirest", "whole", count=3),)
    note = (Event("note", "whole", 0, "C", 0, 5),)
    mei, _ = snippet_to_mei(Snippet("G2", 0, "4/4", (note, rest, note)), Clutter(),
                            np.random.default_rng(0))
    engraver = Engraver()

    def drawn(style: str) -> str:
        svg = engraver.svg(mei, RenderStyle(multi_rest_style=style))
        return svg.split('class="multiRest"')[1][:600]

    assert "<rect" in drawn("block")  # the numbered bar, as modern parts draw any count
    assert "<rect" not in drawn("auto") and "<rect" not in drawn("symbols")  # church rests
    rng = np.random.default_rng(0)
    styles = {RenderStyle.random(rng).multi_rest_style for _ in range(60)}
    assert styles == set(MULTI_REST_STYLES)
