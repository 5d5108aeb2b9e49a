"""The scorer's error breakdown: its edits are exactly the ones the SER counts."""

from __future__ import annotations

import random
from collections import Counter

from omr_train.metrics import align, edit_distance, error_summary, score


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
