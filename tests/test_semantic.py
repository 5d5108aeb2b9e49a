"""The token grammar: parsing, note timing, ties, grace notes and repair."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from omr.semantic import DURATIONS, NoteEvent, notes_from_tokens, parse_token, repair, timeline

NOTE_TOKENS = [f"note-{s}{a}{o}_{d}{dots}{f}" for s in "CDEFGAB" for a in ("", "#", "b")
               for o in (3, 4, 5) for d in ("quarter", "eighth", "half") for dots in ("", ".")
               for f in ("", "_fermata")]
GOOD = ["clef-G2", "clef-F4", "clef-C3", "keySignature-BbM", "keySignature-F#M",
        "timeSignature-3/4", "timeSignature-C", "timeSignature-C/", "timeSignature-6/8",
        "rest-quarter", "rest-half.", "rest-whole_fermata", "multirest-2", "barline", "tie",
        "gracenote-C5_eighth"]
ANY_TOKEN = st.one_of(st.sampled_from(NOTE_TOKENS + GOOD),
                      st.text(max_size=12), st.sampled_from(["note-H4_quarter", "tie", "tie"]))


def test_note_pitch_and_duration_follow_the_spelling():
    assert notes_from_tokens(["note-C4_quarter", "note-F#4_eighth.", "note-Bb2_half"]) == [
        NoteEvent(60, 0.0, 1.0), NoteEvent(66, 1.0, 0.75), NoteEvent(46, 1.75, 2.0)]


def test_double_dots_and_fermata_parse():
    assert notes_from_tokens(["note-C4_quarter.._fermata"]) == [NoteEvent(60, 0.0, 1.75)]
    assert parse_token("note-D5_half_fermata").fermata


def test_tied_notes_merge_across_a_barline():
    tokens = ["note-A4_quarter", "tie", "barline", "note-A4_eighth", "note-B4_eighth"]
    assert notes_from_tokens(tokens) == [NoteEvent(69, 0.0, 1.5), NoteEvent(71, 1.5, 0.5)]


def test_multirest_counts_measures_of_the_current_time_signature():
    notes = notes_from_tokens(["timeSignature-3/4", "multirest-2", "note-C4_quarter"])
    assert notes == [NoteEvent(60, 6.0, 1.0)]
    assert notes_from_tokens(["multirest-1", "note-C4_quarter"])[0].onset == 4.0


def test_grace_note_steals_time_from_the_next_note():
    notes = notes_from_tokens(["gracenote-D5_eighth", "note-C5_quarter"])
    assert notes[0].pitch == 74 and notes[0].onset == 0.0
    assert notes[1].onset == notes[0].duration and notes[1].onset + notes[1].duration == 1.0


def test_signatures_become_meta_events_at_their_time():
    _, metas, length = timeline(["clef-G2", "keySignature-DM", "timeSignature-C",
                                 "note-C4_whole", "timeSignature-3/4", "rest-half."])
    assert [(m.onset, type(m.symbol).__name__) for m in metas] == [
        (0.0, "KeySignature"), (0.0, "TimeSignature"), (4.0, "TimeSignature")]
    assert length == 7.0


def test_repair_drops_unknown_tokens_and_stray_ties():
    tokens = ["clef-G2", "bogus", "tie", "note-C4_quarter", "tie", "note-D4_quarter",
              "barline", "barline", "note-H9_quarter", "gracenote-C4_eighth"]
    assert repair(tokens) == ["clef-G2", "note-C4_quarter", "note-D4_quarter", "barline"]


def test_repair_keeps_a_trailing_tie_only_with_an_open_end():
    assert repair(["note-C4_quarter", "tie"]) == ["note-C4_quarter"]
    assert repair(["note-C4_quarter", "tie", "barline"], open_end=True) == [
        "note-C4_quarter", "tie", "barline"]


def test_invalid_signatures_are_not_in_the_grammar():
    for token in ("timeSignature-3/5", "timeSignature-0/4", "keySignature-HM", "clef-G7",
                  "multirest-0", "note-C4_quarter...", "rest-quarter_fermata_fermata"):
        assert parse_token(token) is None, token


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_TOKEN, max_size=40))
def test_repair_is_idempotent_and_always_playable(tokens):
    fixed = repair(tokens)
    assert repair(fixed) == fixed
    assert all(parse_token(t) is not None for t in fixed)
    for before, tie in itertools.pairwise(fixed):
        if tie == "tie":
            assert before.startswith("note-")
    for note in notes_from_tokens(fixed):
        assert 0 <= note.pitch <= 127 and note.duration > 0 and note.onset >= 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(NOTE_TOKENS + ["rest-quarter", "barline"]), max_size=30))
def test_untied_notes_follow_each_other_without_gaps(tokens):
    notes = notes_from_tokens(tokens)
    total = sum(DURATIONS[t.split("_")[0][5:].rstrip(".")] if t.startswith("rest") else 0
                for t in tokens)
    assert len(notes) == sum(t.startswith("note-") for t in tokens)
    end = notes[-1].onset + notes[-1].duration if notes else 0.0
    assert end <= sum(n.duration for n in notes) + total + 1e-9
