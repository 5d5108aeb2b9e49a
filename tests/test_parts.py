"""A page's systems as parts: what the staves of one system share (omr.parts)."""

from __future__ import annotations

from omr.parts import arrange, shared_rests

RIGHT = ["clef-G2", "timeSignature-C", "multirest-2", "barline", "note-B4_whole", "barline",
         "note-C5_whole", "barline"]
LEFT = ["clef-F4", "timeSignature-C", "note-A3_whole", "barline", "note-G3_whole", "barline",
        "note-F3_whole", "barline"]


def test_a_rest_of_measures_only_one_hand_reads_keeps_the_hands_in_step():
    right, left = shared_rests([RIGHT, LEFT])
    assert right[2] == "multirest-1" and left == LEFT
    measures = arrange([[right, left]]).measures[0]
    assert len(measures) == 3  # as the left hand plays them: C5 sounds with F3
    notes = {n.pitch: n.onset for n in arrange([[right, left]]).notes}
    assert notes[72] == notes[53] == 8.0


def test_rests_both_hands_read_and_single_staves_stay():
    both = [RIGHT, ["clef-F4", "timeSignature-C", "multirest-2", "barline", "note-G3_whole",
                    "barline", "note-F3_whole", "barline"]]
    assert shared_rests(both) == both
    assert shared_rests([RIGHT]) == [RIGHT]


def test_a_rest_that_shares_its_measure_with_notes_goes():
    # As TrOMR reads a mordent at a system's start: a rest of two measures before the
    # measure's own notes, with no barline between them.
    right = ["clef-G2", "barline", "multirest-2", "note-F#4_half", "rest-half", "barline",
             "note-B4_whole", "barline"]
    left = ["clef-F4", "note-A3_whole", "barline", "note-G3_whole", "barline"]
    settled, same = shared_rests([right, left])
    assert "multirest-2" not in settled and "multirest-1" not in settled and same == left
    notes = {n.pitch: n.onset for n in arrange([[settled, left]]).notes}
    assert notes[66] == notes[57] == 0.0 and notes[71] == notes[55] == 4.0


def test_a_rest_with_notes_stays_where_the_staff_would_fall_short_without_it():
    # A barline missed after a true rest: without the rest the staff holds fewer measures
    # than the other hand, so the rest is the better guess.
    right = ["clef-G2", "multirest-2", "note-B4_whole", "barline", "note-C5_whole", "barline"]
    left = ["clef-F4", "note-A3_whole", "barline", "note-G3_whole", "barline", "note-F3_whole",
            "barline", "note-E3_whole", "barline"]
    assert shared_rests([right, left])[0] == right
