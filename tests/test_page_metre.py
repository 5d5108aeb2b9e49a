"""A page's later systems held to the metre its first system prints (omr.page_metre), on
log-probabilities built to say exactly what we want (as test_decode builds them)."""

from __future__ import annotations

from omr.decode import DecodeOptions, decode
from omr.page_metre import hold_to_page, page_lengths
from test_decode import E, H, Q, frames, vocab_for

S, T = "note-G4_sixteenth", "note-G4_thirty_second"
RUN = [S] * 16  # a 4/4 measure of sixteenths


def first_system(ts: str = "timeSignature-C") -> list[str]:
    return ["clef-G2", ts, E, "barline", *RUN, "barline", *RUN, "barline", *RUN, "barline"]


def later(*measures: list[str]) -> list[str]:
    out = ["clef-G2"]
    for m in measures:
        out += [*m, "barline"]
    return out


SHORT = [S, S, T, *[S] * 13]  # one sixteenth read as a thirty-second


def test_a_later_staff_gets_the_length_its_parts_signature_and_measures_set():
    staves = [first_system(), first_system("timeSignature-3/4"),
              later(RUN), later([H, Q]), later(RUN)]
    # Two staves a system: the lower part's signature (3/4) holds no measure of its length.
    assert page_lengths(staves, [0, 0, 1, 1, 2]) == [None, None, 4.0, None, 4.0]


def test_a_signature_no_measure_fits_sets_no_length():
    assert page_lengths([first_system("timeSignature-3/4"), later(RUN)], [0, 1]) == [None, None]


def test_a_metre_change_starts_a_new_reign():
    change = ["clef-G2", "timeSignature-2/4", Q, Q, "barline", Q, Q, "barline", H, "barline"]
    assert page_lengths([first_system(), change, later([Q, Q])], [0, 1, 2]) == [None, None, 2.0]


def test_two_misread_measures_of_four_are_mended_with_the_pages_length():
    read = later(RUN, SHORT, SHORT, RUN)
    vocab = vocab_for(read, RUN, [T, "timeSignature-C"])
    at = [i for i, t in enumerate(read) if t == T]
    log_probs = frames(read, vocab, {i: (S, 1.0) for i in at})
    alone = decode(log_probs, vocab)
    assert alone.tokens == read  # its own measures do not agree: two of four
    page = hold_to_page([decode(frames(first_system(), vocab, {}), vocab), alone], [0, 1])
    assert [page[1].tokens[i] for i in at] == [S, S] and page[1].corrections == 2
    assert page[0].tokens == first_system()


def test_a_later_staff_whose_measures_agree_on_another_metric_length_is_left_as_read():
    # Three measures of 3/4 under a page in C: a metre change that was not printed (or not
    # read). The short one's runner-up half would make it a 4/4 measure.
    read = later([Q, Q, Q], [Q, Q, Q], [Q, Q, E])
    vocab = vocab_for(read, RUN, ["timeSignature-C"])
    at = read.index(E)
    log_probs = frames(read, vocab, {at: (H, 0.5)})
    page = hold_to_page([decode(frames(first_system(), vocab, {}), vocab),
                         decode(log_probs, vocab)], [0, 1])
    assert page[1].tokens == read
    assert decode(log_probs, vocab, page_length=4.0).tokens == read
    held = later([Q, Q, Q, Q], [Q, Q, Q, E])  # where nothing says 3/4
    log_probs = frames(held, vocab, {held.index(E): (Q, 0.5)})
    assert decode(log_probs, vocab).tokens == held  # one measure of two backs no length
    assert decode(log_probs, vocab, page_length=4.0).tokens == later([Q] * 4, [Q] * 4)


def test_a_measure_far_from_the_pages_length_is_not_held_to_it_on_the_pages_word_alone():
    # Read half a measure too long (a barline missed, notes read twice): two halves made
    # quarters would fit, but only where the staff's own measures back the length, as they
    # would without the page.
    far = [H, H, H]
    alone = later(RUN, far, [Q, Q, Q, E])
    vocab = vocab_for(alone, RUN)
    twice = [i for i, t in enumerate(alone) if t == H][:2]
    got = decode(frames(alone, vocab, {i: (Q, 0.5) for i in twice}), vocab, page_length=4.0)
    assert got.tokens == alone
    backed = later(RUN, RUN, RUN, far)
    twice = [i for i, t in enumerate(backed) if t == H][:2]
    got = decode(frames(backed, vocab, {i: (Q, 0.5) for i in twice}), vocab, page_length=4.0)
    assert [got.tokens[i] for i in twice] == [Q, Q]


def test_the_page_metre_can_be_turned_off():
    read = later(RUN, SHORT, SHORT, RUN)
    vocab = vocab_for(read, RUN, [T, "timeSignature-C"])
    off = DecodeOptions(metre=False)
    reading = decode(frames(read, vocab, {}), vocab, off)
    assert reading.remetre is None  # nothing to mend with: the runner-ups were not kept
    assert hold_to_page([decode(frames(first_system(), vocab, {}), vocab), reading],
                        [0, 1])[1] is reading


def test_a_tromr_reading_is_held_to_the_pages_length_from_its_rhythm_runner_ups():
    import numpy as np
    from omr.autoregressive import Reading
    from omr.readers import decoded_reading
    from omr.vocab import FactorVocabulary

    read = later(RUN, SHORT, SHORT, RUN)
    vocab = FactorVocabulary.from_labels([read, first_system()], grammar=True)
    rhythms, pitches, lifts = vocab.encode(read)
    lps = np.full((len(read), len(vocab.rhythms)), -20.0, np.float32)
    lps[np.arange(len(read)), rhythms] = -0.1
    at = [i for i, t in enumerate(read) if t == T]
    lps[at, vocab.rhythms.index("note-sixteenth")] = -1.1
    reading = Reading(tuple(rhythms), tuple(pitches), tuple(lifts), -0.1, (0.9,) * len(read),
                      rhythm_logprobs=lps)
    alone = decoded_reading(reading, vocab)
    assert alone.tokens == read
    assert alone.remetre(4.0) == later(RUN, RUN, RUN, RUN)


def test_a_later_page_keeps_the_metre_of_the_earlier_ones():
    from omr.page_metre import Metres

    carried = Metres()
    assert page_lengths([first_system(), first_system("timeSignature-3/4")], [0, 0],
                        carried=carried) == [None, None]
    # A PDF's next page prints no signature: the upper part keeps C's four quarters.
    assert page_lengths([later(RUN), later(RUN)], [0, 0], carried=carried) == [4.0, None]
    assert page_lengths([later(RUN), later(RUN)], [0, 0]) == [None, None]


def test_reading_a_page_brings_the_documents_metres_up_to_date():
    from pathlib import Path

    import cv2
    import pytest
    from omr.page_metre import Metres

    page = Path(__file__).parents[1] / "runtime" / "examples" / "engraved-page.png"
    model = page.parents[1] / "models" / "crnn.onnx"
    if not model.exists():
        pytest.skip("no packaged model")
    from omr import Recognizer

    metres = Metres()
    Recognizer("crnn").read_array(cv2.imread(str(page), cv2.IMREAD_GRAYSCALE), metres=metres)
    signature, held = metres.reigns[metres.current[0]]
    assert held.most_common(1)[0][0] == signature.measure and held.most_common(1)[0][1] >= 2
