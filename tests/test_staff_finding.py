"""Staff finding against exact truth: a small, fast subset of benchmarks/bench_staves.py.

Pages are engraved by the engine and photographed by augment.photograph_page, so every staff's
lines, ends and system are known; the detector must find each staff whole and group systems.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("verovio")

from omr.staves import detect_staves, main_staff
from omr_train.augment import PageShot
from omr_train.staff_eval import clef_inside, make_page, score_page, tight_crop
from omr_train.synth.layout import PageLayout

PART = PageLayout(system_size=1, systems=5, measures=3, clef_set=("G2",), key=3, time="6/8",
                  labels=True, tempo=True, dynamics=0.1, rehearsal=True)
PIANO = PageLayout(system_size=2, systems=3, measures=3, clef_set=("G2", "F4"), key=-2,
                   time="3/4", title=True)
QUARTET = PageLayout(system_size=4, systems=2, measures=2, clef_set=("G2", "G2", "C3", "F4"),
                     key=1, time="C", labels=True)
TILTED = PageShot(megapixels=4.0, fill=0.85, angle=-6.0,
                  corners=(0.02, 0.01, -0.02, 0.0, 0.0, 0.0, 0.01, -0.01), bend=0.01,
                  fan=0.01, light=0.3, shadow=0.4, blur=1.0, noise=6.0, jpeg=60)
SCAN = PageShot(megapixels=4.0, angle=0.8, scan=True)


@pytest.fixture(scope="module", params=[(PART, TILTED), (PIANO, TILTED), (QUARTET, SCAN)],
                ids=["part-photo", "piano-photo", "quartet-scan"])
def page(request):
    layout, shot = request.param
    return make_page(0, "test", shot=shot, layout=layout)


def test_every_staff_is_found_whole_and_grouped_into_its_system(page):
    photo, truth, _ = page
    score = score_page(truth, detect_staves(photo))
    assert score.found == score.matched == score.truth == len(truth)
    worst = max(max(a, b) for a, b in score.end_errors)
    assert worst <= 1.0, f"a staff end is {worst:.2f} spaces off"
    assert score.systems_exact


def test_truth_lines_land_on_ink_in_the_photo(page):
    """The photograph moves the truth exactly as it moves the ink."""
    photo, truth, _ = page
    paper = np.percentile(photo, 90)
    for staff in truth:
        for line in (staff.top, staff.bottom):
            xs, ys = np.round(line[1:-1]).astype(int).T
            dark = np.min([photo[ys + d, xs] for d in (-1, 0, 1)], axis=0)
            assert np.mean(dark < paper - 25) > 0.8


@pytest.mark.parametrize("both", [False, True], ids=["left-edge", "both-edges"])
def test_tight_crop_keeps_the_clef_in_the_models_window(page, both):
    photo, truth, _ = page
    rng = np.random.default_rng(3)
    for staff in truth[:3]:
        crop, clef_x = tight_crop(photo, staff, rng, both=both)
        found = main_staff(crop)
        assert found is not None
        assert clef_inside(found, clef_x, staff.space_at(0), 0.30)


def test_grand_staves_come_out_as_systems_in_score_json_and_preview(recognizer, tmp_path):
    import json

    import cv2
    from omr.preview import draw_preview
    from omr.writers import write_output

    photo, truth, _ = make_page(0, "test", shot=TILTED, layout=PIANO)
    score = recognizer.read_array(photo)
    assert [len(system) for system in score.systems] == [2, 2, 2]
    write_output(score, tmp_path / "page.json", "json")
    staves = json.loads((tmp_path / "page.json").read_text())["staves"]
    assert [s["system"] for s in staves] == [t.system for t in truth]
    # The preview marks each system with a bracket left of its staves (blue, in BGR).
    picture = draw_preview(photo, score)
    x = min(s.bbox[0] for s in score.systems[0]) - 8 * max(1.0, photo.shape[1] / 1600)
    column = picture[:, max(0, int(x) - 2):int(x) + 3]
    blue = (column[..., 0] > 150) & (column[..., 2] < 80)
    assert blue.any()
    assert cv2.imencode(".png", picture)[0]


@pytest.mark.parametrize("seed", range(4))
def test_noise_desk_and_text_give_no_staff_and_no_crash(seed):
    import cv2

    rng = np.random.default_rng(seed)
    noise = np.clip(rng.normal(128, 40, (900, 700)), 0, 255).astype(np.uint8)
    text = np.full((600, 900), 240, np.uint8)
    for k in range(12):
        cv2.putText(text, "Allegro moderato e cantabile", (20, 40 + 45 * k),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.0, 20, 2)
    assert detect_staves(noise) == []
    assert detect_staves(text) == []
