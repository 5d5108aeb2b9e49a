"""TrOMR's alterations held to their key and measure where its decoder was unsure
(omr.accidentals, omr.readers.decoded_reading)."""

from __future__ import annotations

import numpy as np
import pytest
from omr.accidentals import fix_accidentals, implied
from omr.autoregressive import Reading
from omr.decode import DecodeOptions
from omr.readers import decoded_reading
from omr.vocab import FactorVocabulary

STAFF = ["clef-G2", "keySignature-FM", "timeSignature-4/4", "note-B4_quarter", "note-Bb4_quarter",
         "note-B4_quarter", "note-F#4_quarter", "barline", "note-C#5_half", "tie", "barline",
         "note-C#5_quarter", "note-C5_quarter", "note-F4_quarter", "|", "note-F5_quarter",
         "note-Bb4_quarter", "barline"]


def test_the_implied_alteration_follows_key_measure_and_tie():
    got = dict(enumerate(implied(STAFF)))
    assert got[3] == -1  # the key's B flat
    assert got[4] == 0 and got[5] == -1  # after a natural, the measure keeps it; then a flat
    assert got[6] == 0  # F is not in the key
    assert got[11] == 1  # the tie holds C# over the barline
    assert got[12] == 0  # but not for later notes of the new measure
    assert got[13] == 0 and got[15] == 0  # F#4 does not reach F4's measure nor F5
    assert got[0] is None and got[14] is None


def test_an_unsure_alteration_is_taken_as_implied_and_a_sure_one_stays():
    read = ["clef-G2", "keySignature-GM", "note-F4_quarter", "note-F#4_quarter",
            "note-G#4_quarter", "barline"]
    sure = [{}, {}, {0: 0.0, 1: 4.0}, {1: 0.0, 0: 4.0}, {1: 0.0, 0: 4.0}, {}]
    assert fix_accidentals(read, sure, 1.5) == read
    unsure = [{}, {}, {0: 0.0, 1: 0.7}, {1: 0.0}, {1: 0.0, 0: 1.2}, {}]
    assert fix_accidentals(read, unsure, 1.5) == [
        "clef-G2", "keySignature-GM", "note-F#4_quarter", "note-F#4_quarter", "note-G4_quarter",
        "barline"]
    assert fix_accidentals(read, unsure, 1.0)[4] == "note-G#4_quarter"  # 1.2 nats: too far


def test_a_kept_accidental_carries_to_the_rest_of_its_measure():
    read = ["clef-G2", "note-C#5_quarter", "note-C5_eighth.", "barline", "note-C5_quarter"]
    got = fix_accidentals(read, [{}, {1: 0.0, 0: 3.0}, {0: 0.0, 1: 1.0}, {}, {0: 0.0, 1: 0.5}], 1.5)
    assert got == ["clef-G2", "note-C#5_quarter", "note-C#5_eighth.", "barline", "note-C5_quarter"]


def test_a_tromr_reading_gets_the_check_from_its_lift_probabilities():
    read = ["clef-G2", "keySignature-DM", "note-F4_quarter", "note-C5_quarter", "note-G4_half",
            "barline"]
    vocab = FactorVocabulary.from_labels([read], grammar=True)
    rhythms, pitches, lifts = vocab.encode(read)
    lift_lps = np.full((len(read), len(vocab.lifts) - 1), -9.0, np.float32)
    for k, q in enumerate(lifts):
        if q:
            lift_lps[k, q - 1] = -0.3
    sharp = vocab.lifts.index("#") - 1
    lift_lps[2, sharp] = -1.0  # F#: 0.7 nats behind the F read
    lift_lps[3, sharp] = -4.0  # C#: 3.7 nats behind, too far
    reading = Reading(tuple(rhythms), tuple(pitches), tuple(lifts), -0.1, (0.9,) * len(read),
                      lift_logprobs=lift_lps)
    assert reading.lift_costs(vocab)[2][1] == pytest.approx(0.7)
    got = decoded_reading(reading, vocab).tokens
    assert got[2] == "note-F#4_quarter" and got[3] == "note-C5_quarter"
    assert decoded_reading(reading, vocab, DecodeOptions(max_lift_cost=0.0)).tokens == read
