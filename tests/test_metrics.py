"""The scorer's error breakdown: its edits are exactly the ones the SER counts."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from omr_train.metrics import align, edit_distance, error_summary, score, ser_interval


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
