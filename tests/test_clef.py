"""The treble clef painted before a staff whose clef the network cannot see, and notes after a
clef change read through the staff's first clef (omr.clef)."""

from __future__ import annotations

import cv2
import numpy as np
from omr.clef import PAINTED, PATCH, _adopt, after_changes, painted
from omr.decode import Decoded

HEIGHT, FRACTION = 96, 0.30


def staff_crop(width: int = 200) -> np.ndarray:
    """Five lines on paper in the model's layout, a smudge where the clef was."""
    crop = np.full((HEIGHT, width), 230, np.uint8)
    top = HEIGHT * (1 - FRACTION) / 2
    for k in range(5):
        crop[round(top + k * FRACTION * HEIGHT / 4), :] = 20
    crop[30:70, 3:15] = 60
    return crop


def line_rows(image: np.ndarray) -> list[int]:
    """Rows darker than paper right across (a scaled-down line is grey, not black)."""
    profile = image.max(axis=1).astype(float)
    return [int(r) for r in np.flatnonzero(profile < profile.max() - 40)]


def test_the_shipped_clef_is_the_one_the_engine_engraves():
    from omr_train.synth.clef_patch import clef_patch

    shipped = cv2.imread(str(PATCH), cv2.IMREAD_GRAYSCALE)
    drawn = clef_patch()
    assert shipped.shape == drawn.shape
    assert np.abs(shipped.astype(int) - drawn).max() <= 8


def test_the_clef_is_painted_on_the_staffs_own_lines_and_the_smudge_goes():
    crop = staff_crop()
    out = painted(crop, FRACTION, clef_end=0.05)
    added = out.shape[1] - crop.shape[1]
    assert out.shape[0] == HEIGHT and 10 < added < 60
    lines = line_rows(crop)
    # The painted stretch continues the crop's five lines, give or take a pixel of scaling.
    seam = line_rows(out[:, added - 4:added])
    assert all(min(abs(r - s) for s in lines) <= 1 for r in seam)
    assert all(min(abs(r - s) for r in seam) <= 1 for s in lines)
    assert (out[:, added:] == crop).all(axis=0)[40:].all()  # the staff itself is untouched
    # Where the network put the clef, and two staff spaces past it, only the lines are left.
    assert (out[30:70, added + 3:added + 15] > 128).mean() > 0.7
    assert (out[:, added:] > 0).all()  # paper and ink at the crop's own levels, not 0/255
    assert out[:, :added].max() <= crop.max()


def read(tokens: list[str], clef: str = "", confidence: float = 1.0) -> Decoded:
    return Decoded(tokens, 0.9, 0, clef, confidence)


def test_the_second_reading_is_kept_only_when_it_reads_the_painted_clef():
    first = read(["clef-C4", "note-E3_quarter"], "clef-C4", 0.6)
    again = _adopt(first, read([PAINTED, "note-F4_quarter"], PAINTED, 0.99))
    assert again.tokens == [PAINTED, "note-F4_quarter"] and again.clef_assumed == PAINTED
    assert (again.clef, again.clef_confidence) == ("clef-C4", 0.6)  # what the network first read
    assert _adopt(first, read(["clef-C3", "note-E3_quarter"], "clef-C3")) is first
    # The staff's own clef seen after the painted one: its reading, without the painted clef.
    own = _adopt(first, read([PAINTED, "clef-F4", "note-G2_quarter"], PAINTED))
    assert own.tokens == ["clef-F4", "note-G2_quarter"] and not own.clef_assumed


def test_notes_read_through_the_first_clef_move_to_the_new_one():
    # A bass staff in E major that changes to the treble clef; the notes after the change read
    # as if it had not (B2 sits where G#4 sits in the treble), one of them with a printed flat.
    read = ["clef-F4", "keySignature-EM", "note-E3_quarter", "clef-G2", "note-B2_eighth",
            "note-Bb2_eighth", "note-A4_quarter", "barline"]
    assert after_changes(read) == ["clef-F4", "keySignature-EM", "note-E3_quarter", "clef-G2",
                                   "note-G#4_eighth", "note-Gb4_eighth", "note-A4_quarter",
                                   "barline"]


def test_a_note_the_new_clef_explains_stays():
    # A treble staff that changes to the bass clef: C5 is on the treble staff and four ledger
    # lines above the bass staff, so it was read through the treble clef; E4, two ledger lines
    # above the bass staff, is where a bass-clef hand that climbs puts it.
    read = ["clef-G2", "note-C5_quarter", "clef-F4", "note-C5_quarter", "note-E4_quarter",
            "clef-G2", "note-C5_quarter"]
    assert after_changes(read) == ["clef-G2", "note-C5_quarter", "clef-F4", "note-E3_quarter",
                                   "note-E4_quarter", "clef-G2", "note-C5_quarter"]


def test_a_staff_without_a_change_is_left_as_read():
    read = ["clef-G2", "keySignature-DM", "note-C2_quarter", "note-F#6_quarter", "barline"]
    assert after_changes(read) == read


def test_a_doubtful_change_is_dropped_and_a_clef_before_the_first_note_is_none():
    # A clef painted before the staff and the staff's own after it are the staff's start, not a
    # change; a clef read inside the staff at 40 % is a misreading, and the notes stay as read.
    read = ["clef-G2", "clef-F4", "note-D3_quarter", "clef-G2", "note-B2_quarter", "barline"]
    sure = [0.99] * len(read)
    assert after_changes(read, sure) == ["clef-G2", "clef-F4", "note-D3_quarter", "clef-G2",
                                         "note-G4_quarter", "barline"]
    doubt = sure[:3] + [0.4] + sure[4:]
    assert after_changes(read, doubt) == ["clef-G2", "clef-F4", "note-D3_quarter",
                                          "note-B2_quarter", "barline"]
