"""MusicXML to staff labels (omr_train.musicxml_read) and the notation's round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

music21 = pytest.importorskip("music21")

from hypothesis import given, settings
from omr.parts import arrange
from omr.writers import page_musicxml
from omr_train.musicxml_read import check, label_systems, music21_notes, read_musicxml
from test_musicxml import LEFT, RIGHT, systems

EVAL = Path(__file__).parents[1] / ".." / "shared" / "eval"
BACH = EVAL / "pages" / "bach-invention1-scan.musicxml"


def lossless(result) -> bool:
    return (result.tokens_lost, result.midi_lost, result.music21_lost) == (0, 0, 0)


@pytest.mark.skipif(not BACH.exists(), reason="../shared/eval is absent")
def test_bach_invention_goes_into_the_notation_and_back_with_the_same_notes():
    score = read_musicxml(BACH)
    assert score.dropped == () and {len(s) for s in score.systems} == {2}
    assert all(staff[0] in ("clef-G2", "clef-F4") for system in score.systems for staff in system)
    notes = music21_notes(BACH.read_text())
    assert len(notes) > 400
    assert music21_notes(page_musicxml(score.systems)) == notes
    assert lossless(check(score.systems))


@pytest.mark.skipif(not BACH.exists(), reason="../shared/eval is absent")
def test_real_monophonic_labels_round_trip_through_musicxml_and_midi():
    # Graces, fermatas, multirests, ties, every clef the eval sets hold (all 140 staves pass;
    # every other one is enough here).
    staves = label_systems([EVAL / "camera-primus", EVAL / "cc-staves"])[::2]
    assert lossless(check(staves))


def _verovio_notes(xml: str) -> set[tuple[float, int]]:
    """(onset, pitch) of the notes in Verovio's MIDI of a MusicXML file: a second reader. A set:
    Verovio plays both staves on one channel, so a unison of the two hands sounds once."""
    import base64

    verovio = pytest.importorskip("verovio")
    from omr.midi import notes_from_midi

    tk = verovio.toolkit()
    assert tk.loadData(xml)
    return {(n.onset, n.pitch) for n in notes_from_midi(base64.b64decode(tk.renderToMIDI()))}


@pytest.mark.parametrize("page", [[[RIGHT, LEFT], [RIGHT, LEFT]], [[RIGHT], [RIGHT]]])
def test_verovio_reads_our_musicxml_as_the_same_notes(page):
    assert _verovio_notes(page_musicxml(page)) == {(n.onset, n.pitch) for n in arrange(page).notes}


@pytest.mark.skipif(not BACH.exists(), reason="../shared/eval is absent")
def test_verovio_reads_the_bach_invention_we_write():
    systems = read_musicxml(BACH).systems
    assert _verovio_notes(page_musicxml(systems)) == {(n.onset, n.pitch)
                                                      for n in arrange(systems).notes}


def test_a_multirest_comes_back_as_one():
    label = ["clef-G2", "timeSignature-3/4", "note-C5_half.", "barline", "multirest-2", "barline"]
    assert read_musicxml(page_musicxml([[label]])).systems == ((tuple(label),),)


def test_a_page_comes_back_system_by_system():
    page = [[RIGHT, LEFT], [RIGHT, LEFT]]
    back = read_musicxml(page_musicxml(page)).systems
    assert len(back) == 2 and all(len(s) == 2 for s in back)
    assert back[0][1][:3] == ("clef-F4", "keySignature-DM", "timeSignature-2/4")


def test_a_voice_that_starts_late_is_held_by_a_rest():
    # Voice 2 enters on beat 2 after a <forward>: the label needs a rest at beat 1.
    xml = _one_measure('<note><pitch><step>C</step><octave>5</octave></pitch><duration>2</duration>'
                       '<voice>1</voice><type>half</type></note><backup><duration>2</duration>'
                       '</backup><forward><duration>1</duration><voice>2</voice></forward>'
                       '<note><pitch><step>E</step><octave>4</octave></pitch><duration>1</duration>'
                       '<voice>2</voice><type>quarter</type></note>')
    assert read_musicxml(xml).systems == ((("clef-G2", "timeSignature-2/4", "note-C5_half", "|",
                                            "rest-quarter", "note-E4_quarter", "barline"),),)


def test_a_triplet_is_reported_and_its_time_held_by_rests():
    triplet = ('<note><pitch><step>D</step><octave>5</octave></pitch><duration>2</duration>'
               '<voice>1</voice><type>eighth</type><time-modification><actual-notes>3'
               '</actual-notes><normal-notes>2</normal-notes></time-modification></note>')
    xml = _one_measure(triplet * 3 + '<note><pitch><step>C</step><octave>5</octave></pitch>'
                       '<duration>6</duration><voice>1</voice><type>quarter</type></note>', 6)
    score = read_musicxml(xml)
    assert len(score.dropped) == 3
    assert score.systems[0][0][2:] == ("rest-quarter", "note-C5_quarter", "barline")


@settings(max_examples=25, deadline=None)
@given(systems())
def test_random_voices_round_trip_through_musicxml(page):
    assert lossless(check(page))


def test_label_files_are_grouped_into_systems(tmp_path):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "s1.json").write_text("{}")
    (tmp_path / "cello-1.semantic").write_text("\t".join(LEFT))  # a staff of its own
    (tmp_path / "s1" / "s1-1.semantic").write_text("\t".join(LEFT))
    (tmp_path / "s1" / "s1-0.semantic").write_text("\t".join(RIGHT))
    (tmp_path / "one.semantic").write_text(" ".join(RIGHT) + "\n")
    assert sorted(label_systems([tmp_path]), key=len) == [[LEFT], [RIGHT], [RIGHT, LEFT]]


def _one_measure(notes: str, divisions: int = 1) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?><score-partwise version="4.0"><part-list>'
            '<score-part id="P1"><part-name>M</part-name></score-part></part-list><part id="P1">'
            f'<measure number="1"><attributes><divisions>{divisions}</divisions><time><beats>2'
            '</beats><beat-type>4</beat-type></time><clef><sign>G</sign><line>2</line></clef>'
            f'</attributes>{notes}</measure></part></score-partwise>')
