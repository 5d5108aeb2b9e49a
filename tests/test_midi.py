"""The MIDI writer: one track, merged ties, signatures, tempo and program."""

from __future__ import annotations

import io

import mido
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omr.midi import MidiOptions, midi_bytes, note_list, notes_from_midi
from omr.semantic import notes_from_tokens, repair
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
