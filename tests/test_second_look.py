"""The second look (omr.second_look): a doubtful staff read again shifted, the likeliest reading
kept, the confident ones left alone. The reading function here scores a crop by where its ink
sits, so which shift wins is known in advance; tests/test_tromr_runtime.py runs it through a
real exported TrOMR."""

from __future__ import annotations

import numpy as np
from omr.autoregressive import Reading
from omr.second_look import second_look, shifted


def crop_with_line(row: int, height: int = 16, width: int = 24) -> np.ndarray:
    crop = np.full((height, width), 255, np.uint8)
    crop[row] = 0
    return crop


def test_shifted_moves_rows_and_uncovers_paper():
    crop = crop_with_line(5)
    assert np.flatnonzero(shifted(crop, 3)[:, 0] == 0).tolist() == [8]
    assert np.flatnonzero(shifted(crop, -3)[:, 0] == 0).tolist() == [2]
    assert (shifted(crop, 3)[:3] == 255).all() and (shifted(crop, -3)[-3:] == 255).all()
    assert (shifted(crop, 0) == crop).all()


class LineReader:
    """Reads a crop's ink row as its one token; the nearer the ink to row 8, the surer."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, crops) -> list[Reading]:
        self.calls.append(len(crops))
        out = []
        for c in crops:
            row = int(np.flatnonzero(c[:, 0] == 0)[0])
            out.append(Reading((row,), (0,), (0,), -abs(row - 8) / 10, (1.0,)))
        return out


def test_the_likeliest_reading_is_kept_and_sure_staves_are_not_read_again():
    read = LineReader()
    crops = [crop_with_line(8), crop_with_line(5), crop_with_line(11), crop_with_line(7)]
    got = second_look(read, crops, below=-0.15, shifts=(3, -3))
    # Rows 8 and 7 are sure enough (-0.0, -0.1); 5 reads best moved down, 11 moved up.
    assert [r.rhythms[0] for r in got] == [8, 8, 8, 7]
    assert read.calls == [4, 4]  # the two doubtful staves, each shifted twice, in one batch


def test_no_doubt_or_no_shift_means_one_reading():
    read = LineReader()
    crops = [crop_with_line(5), crop_with_line(11)]
    assert [r.rhythms[0] for r in second_look(read, crops, -np.inf, (3, -3))] == [5, 11]
    assert [r.rhythms[0] for r in second_look(read, crops, 0.0, ())] == [5, 11]
    assert read.calls == [2, 2]


def test_a_shift_that_reads_worse_is_not_taken():
    read = LineReader()
    got = second_look(read, [crop_with_line(9)], below=0.0, shifts=(3, -3))
    assert got[0].rhythms[0] == 9  # 12 and 6 are both further from 8


def test_only_the_staves_marked_to_look_at_are_read_again():
    read = LineReader()
    crops = [crop_with_line(5), crop_with_line(11)]
    got = second_look(read, crops, below=-0.15, shifts=(3, -3), look=lambda k, r: k == 1)
    assert [r.rhythms[0] for r in got] == [5, 8]
    assert read.calls == [2, 2]  # the second staff alone, shifted twice
    # The choice may rest on what was first read (the runtime's: a chord, off a grand staff).
    read = LineReader()
    got = second_look(read, crops, below=-0.15, shifts=(3, -3), look=lambda k, r: r.rhythms[0] == 5)
    assert [r.rhythms[0] for r in got] == [8, 11] and read.calls == [2, 2]
