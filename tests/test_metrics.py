"""The scorers: the SER's error breakdown (its edits are exactly the ones the SER counts) and
the note-level score."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omr.semantic import repair
from omr_train.metrics import (
    align,
    edit_distance,
    error_summary,
    match_notes,
    measure_note_score,
    normalise,
    score,
    ser_interval,
    staff_edits,
    staff_note_score,
    system_note_score,
)
from test_semantic import ANY_TOKEN


def test_alignment_is_a_shortest_edit_script():
    rng = random.Random(0)
    vocab = ["clef-G2", "note-A4_quarter", "note-B4_quarter", "note-A4_half", "tie", "barline"]
    for _ in range(500):
        pred = rng.choices(vocab, k=rng.randint(0, 9))
        ref = rng.choices(vocab, k=rng.randint(0, 9))
        edits = align(pred, ref)
        assert len(edits) == edit_distance(pred, ref)
        ops = Counter(e.op for e in edits)
        assert len(ref) - ops["missed"] + ops["extra"] == len(pred)
        assert not Counter(e.reference for e in edits if e.reference) - Counter(ref)
        assert not Counter(e.prediction for e in edits if e.prediction) - Counter(pred)


def test_error_kinds_name_what_a_reader_would():
    ref = ["clef-G2", "keySignature-DM", "note-F#4_eighth.", "note-A4_quarter", "barline", "tie", "rest-half"]
    pred = ["clef-G2", "note-F#4_eighth", "note-B4_quarter", "barline", "rest-half", "barline"]
    kinds, confusions = error_summary([(pred, ref)])
    assert kinds == {"missed keySignature": 1, "note duration": 1, "note pitch": 1,
                     "missed tie": 1, "extra barline": 1}
    assert confusions[("note-A4_quarter", "note-B4_quarter")] == 1
    assert sum(kinds.values()) == round(score([(pred, ref)]).ser * len(ref))


def test_ser_interval_holds_the_ser_and_narrows_with_more_staves():
    rng = random.Random(1)
    staves = [(rng.choice([0, 0, 0, 1, 3]), rng.randint(15, 35)) for _ in range(400)]
    total = sum(d for d, _ in staves) / sum(n for _, n in staves)
    wide, narrow = ser_interval(staves[:40]), ser_interval(staves)
    assert narrow.low < total < narrow.high
    assert narrow.high - narrow.low < wide.high - wide.low
    assert ser_interval(staves) == narrow  # seeded: the same report twice


def test_paired_interval_tells_a_real_difference_from_noise():
    rng = random.Random(2)
    mine = [(rng.choice([0, 0, 1, 2]), 30) for _ in range(300)]
    assert ser_interval(mine, mine) == ser_interval([(0, 30)] * 300)  # itself: exactly no gap
    better = [(max(0, d - 1), n) for d, n in mine]
    gap = ser_interval(better, mine)
    assert gap.high < 0
    k = next(i for i, (d, _) in enumerate(mine) if d)
    one_fewer = mine[:k] + [(mine[k][0] - 1, 30)] + mine[k + 1:]
    gap = ser_interval(one_fewer, mine)  # one edit in 9,000 tokens: noise
    assert gap.low < 0 <= gap.high
    with pytest.raises(ValueError, match="same staves"):
        ser_interval(mine[:10], mine[:9])


# The note-level score ---------------------------------------------------------------------------

EVAL = Path(__file__).parents[1] / ".." / "shared" / "eval"
LABELS = sorted(EVAL.glob("*/*.semantic")) if EVAL.exists() else []
STAFF = ["clef-G2", "timeSignature-2/4", "note-C4_quarter", "|", "note-E4_quarter", "note-D4_quarter", "barline", "note-C4_half", "barline"]


@pytest.mark.skipif(not LABELS, reason="../shared/eval is absent")
def test_every_eval_staff_read_without_error_scores_f1_one():
    for path in LABELS:
        ref = path.read_text().split()
        for pred in (ref, ["keySignature-CM" if t.startswith("keySignature") else t for t in ref]
                     if "keySignature-CM" in ref else ref):
            assert staff_edits(pred, ref) == (0, len(normalise(ref)))
            assert staff_note_score(pred, ref).prf() == (1.0, 1.0, 1.0), path
        # cc-staves are scored without ties: the same staff, its ties dropped, still scores 1.
        untied = [t for t in ref if t != "tie"]
        assert staff_edits(untied, ref, drop_tie=True)[0] == 0
        assert staff_note_score(untied, ref, drop_tie=True).prf(duration=True) == (1.0, 1.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_TOKEN, max_size=30), st.lists(ANY_TOKEN, max_size=30), st.booleans())
def test_a_staff_with_ser_zero_has_f1_one(ref, noise, drop_tie):
    ref = repair(ref)
    pred = [t for t in ref if not (drop_tie and t == "tie")] + (["keySignature-CM"] if noise else [])
    if staff_edits(pred, ref, drop_tie)[0] == 0:
        assert staff_note_score(pred, ref, drop_tie).prf(duration=True) == (1.0, 1.0, 1.0)


def test_the_note_score_does_not_count_what_does_not_sound():
    no_bar = STAFF[:6] + STAFF[7:]  # a barline missed
    assert staff_edits(no_bar, STAFF)[0] == 1
    assert staff_note_score(no_bar, STAFF).f1 == 1.0
    wrong = [t.replace("note-D4_quarter", "note-D4_half") for t in STAFF]
    score = staff_note_score(wrong, STAFF)
    # D4 is a half: its own duration is wrong, and the C4 after it comes a quarter late.
    assert (score.matched, score.matched_duration, score.reference) == (3, 2, 4)


def test_a_system_falls_back_into_step_at_each_barline():
    short = [t for t in STAFF if t != "note-D4_quarter"]
    assert staff_note_score(short, STAFF).matched == 2  # the staff alone: the half note is early
    score = system_note_score([short, STAFF], [STAFF, STAFF])
    assert (score.matched, score.reference, score.predicted) == (7, 8, 7)


def test_a_misread_duration_costs_its_measure_only_when_scored_by_measure():
    from omr.parts import arrange

    wrong = [t.replace("note-D4_quarter", "note-D4_half") for t in STAFF]  # measure 1 too long
    pred, ref = arrange([[wrong], [STAFF]]), arrange([[STAFF], [STAFF]])
    on_page = match_notes(pred.notes, ref.notes)
    assert (on_page.matched, on_page.reference) == (3, 8)  # all after the D4 comes late
    by_measure = measure_note_score(pred, ref)
    assert (by_measure.matched, by_measure.matched_duration, by_measure.reference) == (8, 7, 8)
    assert measure_note_score(ref, ref).prf(duration=True) == (1.0, 1.0, 1.0)
    lost = arrange([[STAFF[:6] + STAFF[7:]], [STAFF]])  # its first barline missed
    assert measure_note_score(lost, ref).matched < 8  # a lost barline still shifts what follows


def test_notes_match_only_on_their_own_staff():
    swapped = system_note_score([STAFF, STAFF[:2] + ["rest-half", "barline", "rest-half", "barline"]],
                                [STAFF[:2] + ["rest-half", "barline", "rest-half", "barline"], STAFF])
    assert swapped.matched == 0


def test_omr_eval_groups_the_engines_staves_into_systems(tmp_path):
    from omr_train.dataset import Sample
    from omr_train.evaluate import note_report, system_of

    (tmp_path / "s1.json").write_text("{}")
    staves = [Sample(f"s1-{j}", tmp_path / f"s1-{j}.png", tuple(STAFF)) for j in (1, 0)]
    assert [system_of(s) for s in staves] == ["s1", "s1"]
    assert system_of(Sample("cello-1", tmp_path / "cello-1.png", ())) == ""
    rows = [{"id": s.id, "system": system_of(s), "prediction": STAFF, "reference": STAFF,
             "notes": asdict(staff_note_score(STAFF, STAFF))} for s in staves]
    assert "per system (1): onset+pitch P 100.0 R 100.0 F1 100.0%" in note_report(rows)


def test_a_staffs_notes_are_scored_where_the_midi_plays_them():
    from omr.midi import sounded

    ref = ["clef-G2", "timeSignature-C", "note-C5_whole", "barline", "note-D5_quarter",
           "note-E5_quarter", "note-F5_half", "barline", "note-G5_whole", "barline",
           "note-A5_whole", "barline"]
    missed = [t for t in ref if t != "note-E5_quarter"]  # measure 2 a quarter short
    score = staff_note_score(missed, ref)
    # E5 lost and F5 a beat early in its measure; G5 and A5 on their beats, as printed.
    assert (score.matched, score.reference, score.predicted) == (4, 6, 5)
    # The MIDI file plays G5 on beat 9, where the score counts it.
    assert (0, 79, 8 * 480, 12 * 480) in sounded([[missed]])
