"""The MIDI writer: a track per part, chords, merged ties, signatures, tempo and program."""

from __future__ import annotations

import io

import mido
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omr.midi import MidiOptions, midi_bytes, note_list, notes_from_midi, page_midi_bytes
from omr.parts import arrange
from omr.semantic import NoteEvent, notes_from_tokens, repair
from test_semantic import ANY_TOKEN


def _messages(data: bytes) -> list:
    return list(mido.MidiFile(file=io.BytesIO(data)).tracks[0])


def test_midi_has_one_track_with_tempo_program_and_signatures():
    data = midi_bytes(["clef-G2", "keySignature-BbM", "timeSignature-6/8", "note-Bb4_quarter."],
                      MidiOptions(tempo=90, program=42))
    midi = mido.MidiFile(file=io.BytesIO(data))
    assert len(midi.tracks) == 1 and midi.ticks_per_beat == 480
    kinds = {m.type: m for m in midi.tracks[0]}
    assert round(mido.tempo2bpm(kinds["set_tempo"].tempo)) == 90
    assert kinds["program_change"].program == 42
    assert kinds["key_signature"].key == "Bb"
    assert (kinds["time_signature"].numerator, kinds["time_signature"].denominator) == (6, 8)


def test_tied_notes_are_one_midi_note():
    data = midi_bytes(["note-A4_quarter", "tie", "barline", "note-A4_half"])
    assert [m.type for m in _messages(data) if m.type.startswith("note")] == [
        "note_on", "note_off"]
    assert notes_from_midi(data)[0].duration == 3.0


def test_repeated_signatures_of_each_staff_are_written_once():
    staff = ["clef-G2", "keySignature-DM", "timeSignature-C", "note-D4_whole", "barline"]
    data = midi_bytes(staff * 3)
    assert sum(m.type == "key_signature" for m in _messages(data)) == 1


def test_note_list_is_plain_json_data():
    assert note_list(["note-C4_quarter"]) == [{"pitch": 60, "onset": 0.0, "duration": 1.0}]


@pytest.mark.parametrize("options", [MidiOptions(program=128), MidiOptions(tempo=0)])
def test_out_of_range_options_are_refused(options):
    with pytest.raises(ValueError):
        midi_bytes(["note-C4_quarter"], options)


@settings(max_examples=100, deadline=None)
@given(st.lists(ANY_TOKEN, max_size=40))
def test_midi_round_trips_the_notes_of_any_repaired_sequence(tokens):
    fixed = repair(tokens)
    expected = sorted(notes_from_tokens(fixed), key=lambda n: (n.onset, n.pitch))
    got = notes_from_midi(midi_bytes(fixed))
    # Overlapping equal pitches (a grace before the same note) cannot both sound in MIDI.
    if len({(n.pitch, n.onset) for n in expected}) == len(expected) and all(
            a.pitch != b.pitch or a.onset + a.duration <= b.onset + 1e-9
            for a in expected for b in expected if a.onset < b.onset):
        assert [(n.pitch, round(n.onset * 480), round(n.duration * 480)) for n in got] == [
            (n.pitch, round(n.onset * 480), max(1, round(n.duration * 480))) for n in expected]


# Pages: staff j of every system is track j ------------------------------------------------------

RIGHT = ["clef-G2", "timeSignature-2/4", "note-C5_half", "barline", "note-E4_quarter", "|", "note-G4_quarter", "|", "note-C5_quarter", "note-D5_quarter", "barline"]
LEFT = ["clef-F4", "timeSignature-2/4", "note-C3_quarter", "note-G2_quarter", "barline", "note-C3_half", "barline"]


def _track_notes(data: bytes) -> list[list[tuple[int, int, int]]]:
    """(pitch, on tick, channel) per track."""
    out = []
    for track in mido.MidiFile(file=io.BytesIO(data)).tracks:
        now, notes = 0, []
        for m in track:
            now += m.time
            if m.type == "note_on" and m.velocity:
                notes.append((m.note, now, m.channel))
        out.append(notes)
    return out


def test_a_chord_is_simultaneous_notes():
    data = midi_bytes(["note-C4_quarter", "|", "note-E4_quarter", "|", "note-G4_quarter", "note-D4_quarter"])
    assert [(p, t) for p, t, _ in _track_notes(data)[0]] == [(60, 0), (64, 0), (67, 0), (62, 480)]


def test_a_grand_staff_is_two_tracks_that_play_together():
    data = page_midi_bytes([[RIGHT, LEFT], [RIGHT, LEFT]])
    midi = mido.MidiFile(file=io.BytesIO(data))
    assert midi.type == 1 and len(midi.tracks) == 2
    right, left = _track_notes(data)
    assert [t for _, t, _ in left] == [0, 480, 960, 1920, 2400, 2880]  # second system at 4 quarters
    assert {c for *_, c in right} == {0} and {c for *_, c in left} == {1}
    assert sorted(notes_from_midi(data), key=lambda n: (n.onset, n.pitch)) == sorted(
        (NoteEvent(n.pitch, n.onset, n.duration) for n in arrange([[RIGHT, LEFT]] * 2).notes),
        key=lambda n: (n.onset, n.pitch))


def test_a_misread_staff_falls_back_into_step_at_its_barline():
    short = LEFT[:3] + LEFT[4:]  # the left hand's first measure lost a quarter
    right, left = _track_notes(page_midi_bytes([[RIGHT, short]]))
    assert [t for _, t, _ in left] == [0, 960]  # the C3 half still starts with the second measure
    assert [t for _, t, _ in right][-1] == 1440


def test_a_tie_at_a_staffs_end_reaches_the_same_part_in_the_next_system():
    top = ["clef-G2", "note-C5_half", "tie", "barline"]
    bottom = ["clef-F4", "note-C3_half", "barline"]
    after = ["clef-G2", "note-C5_half", "|", "note-E5_half", "barline"]
    notes = notes_from_midi(page_midi_bytes([[top, bottom], [after, bottom]]))
    assert NoteEvent(72, 0.0, 4.0) in notes and NoteEvent(76, 2.0, 2.0) in notes


def test_unison_voices_sound_once_as_the_longer_note():
    data = midi_bytes(["note-C4_quarter", "|", "note-C4_half", "note-D4_quarter"])
    assert notes_from_midi(data) == [NoteEvent(60, 0.0, 2.0), NoteEvent(62, 1.0, 1.0)]
