"""A page's systems as parts: what the staves of one system share (omr.parts)."""

from __future__ import annotations

from omr.parts import arrange, held, shared_rests

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


def _onsets(*systems) -> list[float]:
    return [n.onset for n in arrange([list(s) for s in systems]).notes]


def test_a_measure_read_short_keeps_the_beat_after_it():
    # A quarter lost in the second measure of 4/4: the third measure still starts on beat 9.
    tokens = ["clef-G2", "timeSignature-C", "note-C5_whole", "barline", "note-D5_half.",
              "barline", "note-E5_whole", "barline", "note-F5_whole", "barline"]
    assert _onsets([tokens]) == [0.0, 4.0, 8.0, 12.0]
    assert held(arrange([[tokens]])) == [(0, 1, 3.0, 4.0)]
    assert [n.onset for n in arrange([[tokens]], hold=False).notes] == [0.0, 4.0, 7.0, 11.0]
    # Also into the next system, which prints no signature.
    later = ["clef-G2", "note-G5_quarter", "note-G5_half", "barline", "note-A5_whole",
             "barline"]
    assert _onsets([tokens], [later])[-3:] == [16.0, 17.0, 20.0]


def test_an_upbeat_and_the_last_measure_keep_their_own_length():
    tokens = ["clef-G2", "timeSignature-3/4", "note-G4_quarter", "barline", "note-C5_half.",
              "barline", "note-D5_half.", "barline", "note-E5_half", "barline"]
    assert _onsets([tokens]) == [0.0, 1.0, 4.0, 7.0]
    assert arrange([[tokens]]).length == 9.0
    # A first measure a little short is no upbeat: an eighth lost in 4/4.
    misread = ["clef-G2", "timeSignature-C", "note-C5_half.", "note-D5_eighth", "barline",
               "note-E5_whole", "barline", "note-F5_whole", "barline"]
    assert _onsets([misread]) == [0.0, 3.0, 4.0, 8.0]


def test_a_signature_the_measures_do_not_bear_out_adds_no_rest():
    # 4/4 read where the measures hold three quarters each: the measures as read.
    tokens = ["clef-G2", "timeSignature-4/4", "note-C5_half.", "barline", "note-D5_half.",
              "barline", "note-E5_half.", "barline", "note-F5_half.", "barline"]
    assert _onsets([tokens]) == [0.0, 3.0, 6.0, 9.0]
    # With no signature at all, nothing to hold to.
    assert _onsets([[t for t in tokens if "time" not in t]]) == [0.0, 3.0, 6.0, 9.0]


def test_a_measure_far_shorter_than_its_metre_is_taken_as_printed():
    # One beat of 4/4 at a system's start: the rest of a measure broken over the system's end.
    first = ["clef-G2", "timeSignature-C", "note-C5_whole", "barline", "note-D5_half.",
             "barline"]
    second = ["clef-G2", "note-E5_quarter", "barline", "note-F5_whole", "barline",
              "note-G5_whole", "barline"]
    assert _onsets([first], [second]) == [0.0, 4.0, 7.0, 8.0, 12.0]


def test_a_measure_read_long_keeps_its_length():
    # A quarter read as a half in 4/4's second measure: every note is there to be played, and
    # MusicXML shows the measure overfull, so the MIDI file plays it so too.
    tokens = ["clef-G2", "timeSignature-C", "note-C5_whole", "barline", "note-D5_half",
              "note-E5_quarter", "note-F5_half", "barline", "note-G5_whole", "barline",
              "note-A5_whole", "barline"]
    assert _onsets([tokens]) == [0.0, 4.0, 6.0, 7.0, 9.0, 13.0]
