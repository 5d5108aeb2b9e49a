"""Staff detection on synthetic pages (count and order) and on the real eval pages."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from conftest import EVAL, make_page
from omr.geometry import STAFF_FRACTION
from omr.image import ImageError, decode_gray, load_gray, read_header
from omr.staves import detect_staves, normalize_staff_crop, staff_crop


def _centres(staves) -> list[float]:
    return [(s.bbox[1] + s.bbox[3]) / 2.0 for s in staves]


@pytest.mark.parametrize("count,angle", [(1, 0.0), (4, 0.0), (6, 2.5), (5, -3.0)])
def test_synthetic_staves_are_found_in_reading_order(count, angle):
    staves = detect_staves(make_page(staves=count, angle=angle, seed=count))
    assert len(staves) == count
    assert _centres(staves) == sorted(_centres(staves))


@pytest.mark.parametrize("height,fraction", [(64, STAFF_FRACTION), (96, 0.30)])
def test_staff_crop_has_the_models_layout(height, fraction):
    page = make_page(staves=2, space=12)
    staff = detect_staves(page)[0]
    crop = staff_crop(page, staff, height, fraction)
    assert crop.shape[0] == height
    rows = np.flatnonzero((crop < 128).mean(axis=1) > 0.5)  # rows that are mostly line
    span = (rows.max() - rows.min()) / height
    assert abs(span - fraction) < 0.06 and abs((rows.max() + rows.min()) / 2 - height / 2) < 3
    # The box reported for the staff is the window the model reads, not the default one.
    x0, y0, x1, y1 = staff.window(fraction)
    assert (x0, x1) == (staff.bbox[0], staff.bbox[2])
    assert (y1 - y0) / (staff.bbox[3] - staff.bbox[1]) == pytest.approx(STAFF_FRACTION / fraction, abs=0.03)


def test_loose_crop_with_neighbour_fragments_matches_tight_crop():
    page = make_page(staves=3, space=12)
    staves = detect_staves(page)
    x0, y0, x1, y1 = staves[1].bbox
    loose = page[y0 - 60:y1 + 60, max(0, x0 - 30):x1 + 30]
    tight = staff_crop(page, staves[1], 48)
    normal = normalize_staff_crop(loose, 48)
    assert normal.shape[0] == 48 and abs(normal.shape[1] - tight.shape[1]) <= 0.05 * tight.shape[1]


def test_crop_without_staff_falls_back_with_a_warning():
    blank = np.full((40, 300), 250, np.uint8)
    cv2.putText(blank, "text", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, 0, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = normalize_staff_crop(blank, 32)
    assert out.shape == (32, 240) and caught


def test_header_is_read_without_decoding():
    _, png = cv2.imencode(".png", np.zeros((7, 9), np.uint8))
    _ok, jpg = cv2.imencode(".jpg", np.zeros((7, 9), np.uint8))
    assert (read_header(png.tobytes()).width, read_header(jpg.tobytes()).height) == (9, 7)


def test_decompression_bomb_is_refused_before_decoding():
    _ok, png = cv2.imencode(".png", np.zeros((10, 10), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = (60000).to_bytes(4, "big") * 2  # claims 60000 x 60000
    with pytest.raises(ImageError, match="too large"):
        decode_gray(bytes(data))


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tiff", ".bmp", ".webp"])
def test_every_supported_format_loads(tmp_path, ext):
    path = tmp_path / f"pägé{ext}"  # a unicode path must work too
    image = np.full((20, 30), 200, np.uint8)
    _ok, data = cv2.imencode(ext, image)
    path.write_bytes(data.tobytes())
    assert load_gray(path).shape == (20, 30)


def test_transparent_png_is_put_on_white_paper(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent black
    _ok, data = cv2.imencode(".png", rgba)
    assert decode_gray(data.tobytes()).min() == 255


EVAL_PAGES = {"cello-photo.jpg": 7, "hove-scan.png": 5, "bach-invention5-photo.jpg": 12,
              "bach-invention1-scan.png": 12, "tabi-photo.jpg": 8}


@pytest.mark.skipif(not (EVAL / "pages").is_dir(), reason="../shared/eval is not present")
@pytest.mark.parametrize("name,count", sorted(EVAL_PAGES.items()))
def test_eval_page_staves_are_all_found_in_order(name, count):
    gray = load_gray(EVAL / "pages" / name)
    staves = detect_staves(gray)
    assert len(staves) == count
    assert _centres(staves) == sorted(_centres(staves))
    if name == "cello-photo.jpg":  # stored sideways: EXIF says rotate, so it loads upright
        assert gray.shape[0] > gray.shape[1]


@pytest.mark.skipif(not (EVAL / "cc-staves").is_dir(), reason="../shared/eval is not present")
def test_eval_staff_crops_normalise_to_the_model_height():
    for path in sorted((EVAL / "cc-staves").glob("*.jpg"))[::8]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # each must have its staff found
            out = normalize_staff_crop(load_gray(path), 64)
        assert out.shape[0] == 64 and out.shape[1] > 200
