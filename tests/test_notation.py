"""The polyphonic notation: chords joined by `|`, voices by the time rule (docs/NOTATION.md)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from omr.semantic import (
    JOIN,
    Barline,
    Group,
    NoteEvent,
    Placed,
    StaffNote,
    canonical,
    layout,
    notes_from_tokens,
    parse_token,
    placed_tokens,
    play,
    repair,
    write,
)
from omr.semantic import voices as voices_of
from test_semantic import ANY_TOKEN

TWO_VOICES = ["note-E4_quarter", "|", "note-C5_half", "note-F4_quarter", "barline"]


def test_a_chord_sounds_together():
    assert notes_from_tokens(["note-C4_quarter", "|", "note-E4_quarter", "|", "note-G4_quarter"]) == [
        NoteEvent(60, 0.0, 1.0), NoteEvent(64, 0.0, 1.0), NoteEvent(67, 0.0, 1.0)]


def test_two_voices_follow_the_time_rule():
    assert play(TWO_VOICES) == [StaffNote(64, 0.0, 1.0, 2), StaffNote(72, 0.0, 2.0, 1),
                                StaffNote(65, 1.0, 1.0, 2)]
    assert [e.onset for e in layout(TWO_VOICES).events if isinstance(e.item, Barline)] == [2.0]


def test_a_tie_inside_a_chord_ties_only_its_own_note():
    tokens = ["note-C4_half", "tie", "|", "note-E4_half", "note-C4_quarter", "|", "note-G4_quarter"]
    assert notes_from_tokens(tokens) == [NoteEvent(60, 0.0, 3.0), NoteEvent(64, 0.0, 2.0),
                                         NoteEvent(67, 2.0, 1.0)]


def test_a_tie_reaches_a_note_a_voice_later():
    # The alto's C4 half is tied to the C4 that starts at 2, after the soprano's two quarters.
    tokens = ["note-C4_half", "tie", "|", "note-G4_quarter", "note-A4_quarter", "note-C4_quarter"]
    assert notes_from_tokens(tokens)[0] == NoteEvent(60, 0.0, 3.0)


def test_rests_hold_a_silent_voice():
    tokens = ["note-C5_half", "|", "rest-quarter", "note-E4_quarter", "barline"]
    assert play(tokens) == [StaffNote(72, 0.0, 2.0, 1), StaffNote(64, 1.0, 1.0, 2)]


def test_a_grace_chord_steals_from_the_chord_after_it():
    tokens = ["gracenote-D5_eighth", "|", "gracenote-F5_eighth", "note-C5_quarter", "|", "note-E5_quarter"]
    notes = notes_from_tokens(tokens)
    assert [(n.pitch, n.onset) for n in notes[:2]] == [(74, 0.0), (77, 0.0)]
    assert all(n.onset == notes[0].duration and n.onset + n.duration == 1.0 for n in notes[2:])


def test_repair_drops_stray_joins_and_puts_chords_in_reading_order():
    tokens = ["|", "clef-G2", "|", "note-G4_quarter", "|", "|", "note-C4_quarter", "tie",
              "|", "barline", "|", "note-C4_quarter", "|", "note-C4_quarter", "|"]
    assert repair(tokens) == ["clef-G2", "note-C4_quarter", "tie", "|", "note-G4_quarter",
                              "barline", "note-C4_quarter"]
    # Two voices resting together are two rests; a note twice in one chord is one note.
    doubled = ["rest-quarter", "|", "rest-quarter", "|", "note-C4_quarter", "|", "note-C4_quarter"]
    assert repair(doubled) == ["note-C4_quarter", "|", "rest-quarter", "|", "rest-quarter"]
    # A grace and a note cannot share a group: the grace stays, before its note.
    assert repair(["gracenote-D5_eighth", "|", "note-C5_quarter"]) == [
        "gracenote-D5_eighth", "note-C5_quarter"]


def test_canonical_order_is_low_to_high_then_rests():
    assert canonical(["rest-quarter", "|", "note-G4_quarter", "tie", "|", "note-C4_half"]) == [
        "note-C4_half", "|", "note-G4_quarter", "tie", "|", "rest-quarter"]


def test_write_fills_a_silent_voice_with_rests():
    # The alto enters on beat 2 under a soprano half note: a rest holds beat 1.
    placed = [Placed(0, "note-C5_half"), Placed(1, "note-E4_quarter"), Placed(2, "barline")]
    assert write(placed) == ["note-C5_half", "|", "rest-quarter", "note-E4_quarter", "barline"]
    # Nothing sounds from 1 to 4: the measure still ends at the barline.
    assert write([Placed(0, "note-C4_quarter"), Placed(4, "barline")]) == [
        "note-C4_quarter", "rest-half.", "barline"]


# Random voices --------------------------------------------------------------------------------

LENGTHS = {"whole": 4.0, "half.": 3.0, "half": 2.0, "quarter.": 1.5, "quarter": 1.0,
           "eighth": 0.5, "sixteenth": 0.25}
RANGES = ("5", "4", "3")  # voice k's octave: voices never share a pitch


@st.composite
def voices(draw, measures: int = 0):
    """A staff of 1-3 voices over 1-3 measures (or `measures`) of 4/4, as (onset, token, tie)
    per voice, and the notes it plays; each voice may fall silent (no rest written) a while."""
    measures = measures or draw(st.integers(1, 3))
    placed, notes = [], []
    for v in range(draw(st.integers(1, 3))):
        time, last = 0.0, None  # last: the note a tie may continue, [pitch, onset, end, index]
        while time < 4.0 * measures:
            room = 4.0 * (time // 4.0 + 1) - time  # to the barline
            kind = draw(st.sampled_from([k for k, q in LENGTHS.items() if q <= room]))
            length = LENGTHS[kind]
            what = draw(st.sampled_from(["note", "note", "note", "tie", "rest", "silent"]))
            if what == "tie" and not (last is not None and last[2] == time):
                what = "note"
            if what == "tie":
                token_pitch = last[0]
                placed[last[3]] = placed[last[3]][:2] + (True,)
                notes[last[4]][2] = time + length - notes[last[4]][1]
            elif what == "note":
                token_pitch = draw(st.sampled_from("CDEFGAB")) + RANGES[v]
                notes.append([token_pitch, time, length])
            if what in ("note", "tie"):
                placed.append((time, f"note-{token_pitch}_{kind}", False))
                if what == "note":
                    last = [token_pitch, time, time + length, len(placed) - 1, len(notes) - 1]
                else:
                    last = [token_pitch, last[1], time + length, len(placed) - 1, last[4]]
            else:
                last = None
                if what == "rest":
                    placed.append((time, f"rest-{kind}", False))
            time += length
    placed += [(4.0 * k, "barline", False) for k in range(1, measures + 1)]
    return [Placed(t, token, tie) for t, token, tie in placed], notes


def _midi(pitch: str) -> int:
    return notes_from_tokens([f"note-{pitch}_quarter"])[0].pitch


@settings(max_examples=300, deadline=None)
@given(voices())
def test_voices_written_as_groups_play_back_exactly(staff):
    placed, notes = staff
    tokens = write(placed)
    expected = sorted((_midi(p), onset, length) for p, onset, length in notes)
    assert sorted((n.pitch, n.onset, n.duration) for n in notes_from_tokens(tokens)) == expected
    bars = [e.onset for e in layout(tokens).events if isinstance(e.item, Barline)]
    assert bars == [t.onset for t in placed if t.token == "barline"]


@settings(max_examples=300, deadline=None)
@given(voices())
def test_a_written_staff_is_canonical_repaired_and_round_trips(staff):
    tokens = write(staff[0])
    assert canonical(tokens) == tokens
    assert repair(tokens) == tokens
    assert write(placed_tokens(tokens)) == tokens


@settings(max_examples=300, deadline=None)
@given(voices())
def test_derived_voices_never_overlap_themselves(staff):
    events = layout(write(staff[0])).events
    voice = voices_of(events)
    spans: dict[int, set[tuple[float, float]]] = {}
    for e in events:
        if isinstance(e.item, Group):
            for m in e.item.members:
                spans.setdefault(voice[m.token], set()).add((e.onset, e.onset + m.duration))
    for chords in spans.values():  # a voice's chords follow one another
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(sorted(chords)))


CHORDAL = st.one_of(ANY_TOKEN, st.sampled_from([JOIN, JOIN, "note-C4_quarter", "note-E4_half",
                                                "rest-eighth", "gracenote-G4_eighth"]))


@settings(max_examples=400, deadline=None)
@given(st.lists(CHORDAL, max_size=40), st.booleans())
def test_repair_of_any_chordal_sequence_is_idempotent_and_playable(tokens, open_end):
    fixed = repair(tokens, open_end)
    assert repair(fixed, open_end) == fixed
    assert all(parse_token(t) is not None for t in fixed)
    for k, token in enumerate(fixed):
        if token == JOIN:
            before = next(t for t in reversed(fixed[:k]) if t != "tie")
            assert before.split("-")[0] == fixed[k + 1].split("-")[0] or {
                before.split("-")[0], fixed[k + 1].split("-")[0]} == {"note", "rest"}
    for note in notes_from_tokens(fixed):
        assert 0 <= note.pitch <= 127 and note.duration > 0 and note.onset >= 0
