"""The writers on a Score: JSON (each staff's tokens and system; notes with onset, pitch,
duration, staff, part and voice), and a piano page's MIDI and MusicXML."""

from __future__ import annotations

import json

from omr.recognize import Score, Staff
from omr.semantic import notes_from_tokens
from omr.writers import render

RIGHT = ["clef-G2", "timeSignature-2/4", "note-E4_quarter", "|", "note-C5_half", "note-F4_quarter", "barline"]
LEFT = ["clef-F4", "timeSignature-2/4", "note-C3_half", "barline"]


def _page() -> Score:
    return Score((Staff((0, 0, 10, 10), tuple(RIGHT), 0.9, system=0),
                  Staff((0, 20, 10, 30), tuple(LEFT), 0.9, system=0),
                  Staff((0, 40, 10, 50), tuple(RIGHT), 0.9, system=1),
                  Staff((0, 60, 10, 70), tuple(LEFT), 0.9, system=1)))


def test_json_notes_carry_staff_part_and_voice():
    body = json.loads(render(_page(), "json"))
    assert [s["system"] for s in body["staves"]] == [0, 0, 1, 1]
    assert body["staves"][0]["tokens"] == RIGHT
    first = [n for n in body["notes"] if n["staff"] == 0]
    assert first == [{"pitch": 64, "onset": 0.0, "duration": 1.0, "staff": 0, "part": 0, "voice": 2},
                     {"pitch": 72, "onset": 0.0, "duration": 2.0, "staff": 0, "part": 0, "voice": 1},
                     {"pitch": 65, "onset": 1.0, "duration": 1.0, "staff": 0, "part": 0, "voice": 2}]
    second_system = [n for n in body["notes"] if n["staff"] == 3]
    assert second_system == [{"pitch": 48, "onset": 2.0, "duration": 2.0, "staff": 3, "part": 1,
                              "voice": 1}]


def test_a_page_of_single_staves_plays_as_one_sequence():
    page = Score((Staff((0, 0, 1, 1), tuple(RIGHT[:-1]) + ("note-C5_quarter", "tie"), 0.9, system=0),
                  Staff((0, 2, 1, 3), ("clef-G2", "note-C5_quarter", "barline"), 0.9, system=1)))
    assert [(n.pitch, n.onset, n.duration) for n in page.notes][-1] == (72, 2.0, 2.0)
    assert page.notes == notes_from_tokens(page.tokens)  # as before: one sequence


def test_a_piano_page_is_two_midi_tracks_and_one_musicxml_part_with_two_staves():
    import io

    import mido

    midi = mido.MidiFile(file=io.BytesIO(render(_page(), "midi")))
    assert midi.type == 1 and len(midi.tracks) == 2
    xml = render(_page(), "musicxml").decode()
    assert xml.count("<part id=") == 1 and "<staves>2</staves>" in xml
    assert xml.count('<print new-system="yes"/>') == 1
