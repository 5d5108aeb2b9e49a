"""Our MusicXML, read back by an independent reader (music21): same notes as our MIDI path,
chords, voices and grand staves included."""

from __future__ import annotations

import numpy as np
import pytest

music21 = pytest.importorskip("music21")

from hypothesis import given, settings
from hypothesis import strategies as st
from omr.parts import arrange
from omr.semantic import notes_from_tokens, write
from omr.writers import musicxml, page_musicxml
from omr_train.musicxml_read import music21_notes
from omr_train.synth.mei import close_ties
from omr_train.synth.music import semantic_tokens
from omr_train.synth.procedural import random_snippet
from test_notation import voices


def _music21_notes(xml: str) -> list[tuple[int, float, float]]:
    score = music21.converter.parse(xml, format="musicxml")
    out = []
    for n in score.stripTies().flatten().notes:
        if n.duration.isGrace:
            continue
        out.append((n.pitch.midi, round(float(n.quarterLength), 3)))
    return out


@pytest.mark.filterwarnings("ignore:.*overfull")
@pytest.mark.parametrize("seed", range(40))
def test_musicxml_reads_back_as_the_same_notes(seed):
    rng = np.random.default_rng(seed)
    snippet = close_ties(random_snippet(rng, str(seed)))
    # Multirests and graces are playback conventions; compare what every reader agrees on.
    measures = tuple(tuple(e for e in m if not e.grace) for m in snippet.measures
                     if not any(e.kind == "multirest" for e in m))
    if not any(measures):
        pytest.skip("nothing but rests")
    from dataclasses import replace

    tokens = semantic_tokens(replace(snippet, measures=measures))
    # Pitches and lengths, not onsets: music21 re-times a bar that overflows its metre
    # (the procedural generator writes some, as real incipits do), our MIDI keeps it.
    ours = [(n.pitch, round(n.duration, 3)) for n in notes_from_tokens(tokens)]
    assert _music21_notes(musicxml(tokens)) == ours


# Chords, voices and systems -------------------------------------------------------------------

def arranged(systems) -> list[tuple[float, int, float, int]]:
    return sorted((n.onset, n.pitch, n.duration, n.part) for n in arrange(systems).notes)


RIGHT = ["clef-G2", "keySignature-DM", "timeSignature-2/4", "note-E4_quarter", "|", "note-C5_half", "note-F#4_quarter", "barline", "note-D5_quarter", "tie", "|", "note-D4_quarter", "note-D5_quarter", "barline"]
LEFT = ["clef-F4", "keySignature-DM", "timeSignature-2/4", "note-D3_half", "barline", "note-A2_eighth", "note-D3_eighth", "rest-quarter", "|", "note-F#2_quarter", "barline"]
SHORT = ["clef-F4", "keySignature-DM", "timeSignature-2/4", "note-D3_quarter", "barline", "clef-G2", "note-A4_eighth", "note-D4_eighth", "clef-F4", "note-F#3_quarter", "barline"]


@pytest.mark.parametrize("systems", [[[RIGHT]], [[RIGHT, LEFT]], [[RIGHT, LEFT], [RIGHT, SHORT]],
                                     [[RIGHT, LEFT, SHORT]], [[RIGHT], [RIGHT, LEFT]]],
                         ids=["staff", "grand", "grand-misread", "three-parts", "mixed"])
def test_music21_reads_back_chords_voices_and_systems(systems):
    assert music21_notes(page_musicxml(systems)) == arranged(systems)


def test_a_grand_staff_is_one_part_with_two_staves():
    xml = page_musicxml([[RIGHT, LEFT], [RIGHT, LEFT]])
    assert xml.count("<part id=") == 1 and "<staves>2</staves>" in xml
    assert '<clef number="2"><sign>F</sign>' in xml and "<chord/>" in xml and "<backup>" in xml
    # Single staves: one part, as before, with the systems' breaks marked.
    page = page_musicxml([[RIGHT], [RIGHT]])
    assert page.replace('<print new-system="yes"/>', "") == musicxml(RIGHT + RIGHT)


@st.composite
def systems(draw):
    """1-2 systems of 1-3 staves of one measure count, each staff 1-3 random voices
    (tests/test_notation.py)."""
    out = []
    staves = draw(st.integers(1, 3))
    for _ in range(draw(st.integers(1, 2))):
        measures = draw(st.integers(1, 3))
        out.append([["clef-G2", "timeSignature-4/4"] + write(draw(voices(measures))[0])
                    for _ in range(staves)])
    return out


@pytest.mark.filterwarnings("ignore:.*overfull")
@settings(max_examples=60, deadline=None)
@given(systems())
def test_music21_reads_back_random_voices_on_every_staff(page):
    assert music21_notes(page_musicxml(page)) == arranged(page)
