"""CTC decoding and the metre check, on log-probabilities built to say exactly what we want."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omr.decode import DecodeOptions, decode, greedy_decode
from omr.vocab import Vocabulary

E, Q, H = "note-G4_eighth", "note-G4_quarter", "note-G4_half"


def frames(tokens: list[str], vocab: Vocabulary, runner_up: dict[int, tuple[str, float]]) -> np.ndarray:
    """Log-softmax frames that read `tokens` (each on one frame, then a blank frame).

    `runner_up[i] = (token, cost)`: at token i's frame, `token` scores `cost` nats below it.
    """
    logits = np.full((2 * len(tokens), vocab.size), -8.0, np.float32)
    for i, token in enumerate(tokens):
        logits[2 * i, vocab.encode([token])[0]] = 4.0
        logits[2 * i + 1, 0] = 4.0
        if i in runner_up:
            other, cost = runner_up[i]
            logits[2 * i, vocab.encode([other])[0]] = 4.0 - cost
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def staff(ts: str, measures: list[list[str]]) -> list[str]:
    out = ["clef-G2", ts, E]  # a pickup: the first measure is never complete
    for m in measures:
        out += ["barline", *m]
    return out + ["barline", E]


def vocab_for(*seqs: list[str]) -> Vocabulary:
    return Vocabulary.from_labels(list(seqs) + [["timeSignature-3/8", "timeSignature-6/8",
                                                 "timeSignature-4/2", "timeSignature-C/",
                                                 "note-A4_quarter", E, Q, H, "rest-quarter"]])


def test_time_signature_numerator_follows_the_measures():
    read = staff("timeSignature-6/8", [[E, E, E]] * 3)
    vocab = vocab_for(read)
    got = decode(frames(read, vocab, {1: ("timeSignature-3/8", 2.0)}), vocab)
    assert got.tokens[1] == "timeSignature-3/8"
    assert got.corrections == 1
    assert got.tokens[2:] == read[2:]


def test_a_runner_up_too_far_behind_is_not_taken():
    read = staff("timeSignature-6/8", [[E, E, E]] * 3)
    vocab = vocab_for(read)
    got = decode(frames(read, vocab, {1: ("timeSignature-3/8", 9.0)}), vocab)
    assert got.tokens == read


def test_one_measure_is_not_enough_to_change_a_signature():
    read = staff("timeSignature-6/8", [[E, E, E]])
    vocab = vocab_for(read)
    assert decode(frames(read, vocab, {1: ("timeSignature-3/8", 1.0)}), vocab).tokens == read


def test_cut_time_over_breve_measures_is_left_alone():
    # RISM incipits write C/ over measures of a breve; 4/2 must not replace it.
    read = staff("timeSignature-C/", [[H, H, H, H]] * 3)
    vocab = vocab_for(read)
    assert decode(frames(read, vocab, {1: ("timeSignature-4/2", 0.5)}), vocab).tokens == read


def test_one_duration_is_mended_from_its_runner_up():
    wrong = [Q, Q, E]  # a quarter read as an eighth: the measure is short
    read = staff("timeSignature-3/4", [[Q, Q, Q], wrong, [H, Q]])
    vocab = vocab_for(read, ["timeSignature-3/4"])
    at = read.index(E, 4)
    got = decode(frames(read, vocab, {at: (Q, 1.5)}), vocab)
    assert got.tokens[at] == Q and got.corrections == 1


def test_a_runner_up_of_another_pitch_is_not_a_duration_fix():
    read = staff("timeSignature-3/4", [[Q, Q, Q], [Q, Q, E], [H, Q]])
    vocab = vocab_for(read, ["timeSignature-3/4"])
    at = read.index(E, 4)
    assert decode(frames(read, vocab, {at: ("note-A4_quarter", 0.5)}), vocab).tokens == read


def test_measures_that_mostly_disagree_are_not_touched():
    read = staff("timeSignature-3/4", [[Q, Q], [Q, E], [H, Q]])
    vocab = vocab_for(read, ["timeSignature-3/4"])
    at = read.index(E, 4)
    assert decode(frames(read, vocab, {at: (Q, 0.5)}), vocab).tokens == read


def test_without_the_metre_check_decoding_is_the_best_path():
    read = staff("timeSignature-6/8", [[E, E, E]] * 3)
    vocab = vocab_for(read)
    lp = frames(read, vocab, {1: ("timeSignature-3/8", 1.0)})
    got = decode(lp, vocab, DecodeOptions(metre=False))
    assert got.tokens == vocab.decode(greedy_decode(lp)[0]) == read


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60))
def test_the_metre_check_only_swaps_tokens_for_runner_ups(seed, length):
    read = staff("timeSignature-3/4", [[Q, Q, Q], [Q, Q, E], [H, Q]])
    vocab = vocab_for(read, ["timeSignature-3/4", "timeSignature-2/4"])
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (length, vocab.size)).astype(np.float32)
    lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    best = vocab.decode(greedy_decode(lp)[0])
    got = decode(lp, vocab, DecodeOptions(max_cost=50, max_duration_cost=50))
    assert len(got.tokens) == len(best)
    assert got.corrections == sum(a != b for a, b in zip(best, got.tokens))


def test_clef_confidence_is_the_clefs_probability_at_its_frames():
    read = ["clef-C3", "timeSignature-C/", H, "barline", H]
    vocab = vocab_for(read, ["clef-G2"])
    # The runner-up G2 one nat below C3 at the clef's frame: p(C3) = e / (e + 1) there.
    doubtful = decode(frames(read, vocab, {0: ("clef-G2", 1.0)}), vocab)
    sure = decode(frames(read, vocab, {}), vocab, DecodeOptions(metre=False))
    assert doubtful.tokens[0] == doubtful.clef == "clef-C3"
    assert abs(doubtful.clef_confidence - np.e / (np.e + 1)) < 1e-3
    assert sure.clef_confidence > 0.99
    assert decode(frames(read[1:], vocab, {}), vocab).clef_confidence == 1.0  # no clef read


def test_chords_count_once_in_a_measures_length():
    # Measure 1 holds chords of two quarters: by the time rule four quarters, not eight. So the
    # 4/4 measures agree, and the short monophonic one is mended; the chords stay as read.
    chords = [Q, "|", "note-B4_quarter"] * 4
    wrong = [Q, Q, Q, E]
    read = staff("timeSignature-4/4", [chords, [Q, Q, Q, Q], wrong])
    vocab = vocab_for(read, ["timeSignature-4/4"])
    at = len(read) - 3
    assert read[at] == E
    got = decode(frames(read, vocab, {at: (Q, 1.5), 4: (H, 1.0)}), vocab)
    assert got.tokens[at] == Q and got.corrections == 1
    assert got.tokens[:at] == read[:at]


S, T = "note-G4_sixteenth", "note-G4_thirty_second"


def test_a_run_of_sixteenths_read_with_two_thirty_seconds_is_mended_whole():
    run = [S] * 8  # 2/4
    wrong = [S, S, T, S, S, T, S, S]
    read = staff("timeSignature-2/4", [run, wrong, run])
    vocab = vocab_for(read, ["timeSignature-2/4"])
    at = [i for i, t in enumerate(read) if t == T]
    got = decode(frames(read, vocab, {i: (S, 1.0) for i in at}), vocab)
    assert [got.tokens[i] for i in at] == [S, S] and got.corrections == 2
    one = decode(frames(read, vocab, {i: (S, 1.0) for i in at}), vocab, DecodeOptions(max_changes=1))
    assert one.tokens == read  # one change cannot make it add up


def test_a_later_system_with_no_time_signature_is_mended_by_its_own_measures():
    # A page's later system prints no signature and starts on a measure's first beat, so its
    # first measure counts too: here it is the one read short.
    read = ["clef-G2", Q, Q, E, "barline", Q, Q, Q, "barline", H, Q, "barline", Q, H, "barline"]
    vocab = vocab_for(read)
    got = decode(frames(read, vocab, {3: (Q, 1.5)}), vocab)
    assert got.tokens[3] == Q and got.corrections == 1
    assert decode(frames(read, vocab, {3: (Q, 1.5)}), vocab, DecodeOptions(unmetred=False)).tokens == read


def test_without_a_signature_a_length_most_measures_do_not_share_is_not_imposed():
    read = ["clef-G2", Q, Q, E, "barline", Q, Q, Q, "barline", H, E, "barline", Q, E, "barline"]
    vocab = vocab_for(read)
    assert decode(frames(read, vocab, {3: (Q, 1.5), 10: (Q, 1.5)}), vocab).tokens == read


def test_a_pickup_under_the_signature_is_not_lengthened():
    read = ["clef-G2", "timeSignature-3/4", E, "barline", Q, Q, Q, "barline", H, Q, "barline",
            Q, Q, Q, "barline"]
    vocab = vocab_for(read, ["timeSignature-3/4"])
    assert decode(frames(read, vocab, {2: (H, 0.5)}), vocab).tokens == read


def test_a_chord_member_read_short_is_mended_by_the_time_rule():
    # [Q | E] lets the next group start after the eighth: the measure's layout is an eighth
    # short, and only the member's runner-up quarter puts it back.
    chord_q = [Q, "|", "note-B4_quarter"]
    chord_e = [Q, "|", "note-B4_eighth"]
    read = staff("timeSignature-2/4", [chord_q * 2, chord_e + chord_q, chord_q * 2])
    vocab = vocab_for(read, ["timeSignature-2/4", "note-B4_quarter", "note-B4_eighth"])
    at = read.index("note-B4_eighth")
    got = decode(frames(read, vocab, {at: ("note-B4_quarter", 1.0)}), vocab)
    assert got.tokens[at] == "note-B4_quarter" and got.corrections == 1


def test_a_tromr_reading_gets_the_same_metre_check_from_its_rhythm_runner_ups():
    from omr.autoregressive import Reading
    from omr.readers import decoded_reading
    from omr.vocab import FactorVocabulary

    read = staff("timeSignature-3/4", [[Q, Q, Q], [Q, Q, E], [H, Q]])
    vocab = FactorVocabulary.from_labels([read], grammar=True)
    rhythms, pitches, lifts = vocab.encode(read)
    at = read.index(E, 4)
    lps = np.full((len(read), len(vocab.rhythms)), -20.0, np.float32)
    lps[np.arange(len(read)), rhythms] = -0.1
    lps[at, vocab.rhythms.index("note-quarter")] = -1.6  # the runner-up, 1.5 nats behind
    reading = Reading(tuple(rhythms), tuple(pitches), tuple(lifts), -0.1, (0.9,) * len(read),
                      rhythm_logprobs=lps)
    alts = reading.runner_ups(vocab)
    assert alts[at][0] == (Q, pytest.approx(1.5))
    got = decoded_reading(reading, vocab)
    assert got.tokens[at] == Q and got.corrections == 1
    assert got.tokens[:at] == read[:at] and got.tokens[at + 1:] == read[at + 1:]
    assert decoded_reading(reading, vocab, DecodeOptions(metre=False)).tokens == read
