"""The polyphonic engine: chord and voice labels, ties, clashes, the folder layout, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("verovio")

from click.testing import CliRunner
from omr.semantic import notes_from_tokens
from omr_train.dataset import read_folder
from omr_train.synth import reductions
from omr_train.synth.cli import main as synth_main
from omr_train.synth.engrave import FONTS, HELD_OUT_FONT, Engraver
from omr_train.synth.poly import (
    PolyStaff,
    System,
    chord,
    close_ties,
    rest,
    slot_starts,
    staff_notes,
    staff_tokens,
    well_formed,
)
from omr_train.synth.system import PolyOptions, draw_poly, load_poly_pools, make_poly_sample

FILES = {"chorale": ["bach/bwv250", "bach/bwv269", "bach/bwv347", "bach/bwv40.8"],
         "quartet": ["haydn/opus1no1/movement4"], "piano": ["mozart/k545/movement1_exposition"]}


def _n(step: str, octave: int, alter: int = 0, tie: bool = False):
    return step, alter, octave, tie


def test_soprano_half_over_two_alto_quarters_is_one_group_then_the_alto():
    # The notation's own example: voices are not written, the time rule keeps them apart.
    m = ((chord("half", 0, [_n("C", 5)]),),
         (chord("quarter", 0, [_n("E", 4)]), chord("quarter", 0, [_n("F", 4)])))
    staff = PolyStaff("G2", 0, None, (m,))
    assert staff_tokens(staff) == ["clef-G2", "note-E4_quarter", "|", "note-C5_half",
                                   "note-F4_quarter", "barline"]
    assert staff_notes(staff) == [(64, 0.0, 1.0), (72, 0.0, 2.0), (65, 1.0, 1.0)]


def test_a_chord_reads_bottom_up_and_a_tie_follows_its_note():
    m1 = ((chord("half", 0, [_n("G", 4), _n("C", 4, tie=True), _n("E", 4)]),),)
    m2 = ((chord("half", 0, [_n("C", 4), _n("F", 4)]),),)
    staff = PolyStaff("G2", 2, "2/4", (m1, m2))
    tokens = staff_tokens(close_ties(System((staff,))).staves[0])
    assert tokens[3:10] == ["note-C4_half", "tie", "|", "note-E4_half", "|", "note-G4_half",
                            "barline"]
    played = [(n.pitch, n.onset, n.duration) for n in notes_from_tokens(tokens)]
    assert sorted(played) == sorted(staff_notes(staff)) and (60, 0.0, 4.0) in played


def test_a_tie_to_another_pitch_or_past_the_end_is_dropped():
    m1 = ((chord("quarter", 0, [_n("C", 4, tie=True)]), chord("quarter", 0, [_n("D", 4, tie=True)])),)
    staff = close_ties(System((PolyStaff("G2", 0, "2/4", (m1,)),))).staves[0]
    assert "tie" not in staff_tokens(staff)


def test_rests_of_two_voices_come_after_the_notes_shortest_first():
    m = ((rest("half"),), (chord("quarter", 0, [_n("A", 3)]), rest("quarter")))
    tokens = staff_tokens(PolyStaff("F4", -1, "2/4", (m,)))
    assert tokens[3:8] == ["note-A3_quarter", "|", "rest-half", "rest-quarter", "barline"]


def test_a_unison_between_voices_is_rejected():
    m = ((chord("half", 0, [_n("C", 5)]),),
         (chord("quarter", 0, [_n("A", 4)]), chord("quarter", 0, [_n("C", 5)])))
    assert not well_formed(System((PolyStaff("G2", 0, "2/4", (m,)),)))
    short = ((chord("half", 0, [_n("C", 5)]),), (chord("quarter", 0, [_n("A", 4)]),))
    assert not well_formed(System((PolyStaff("G2", 0, "2/4", (short,)),)))  # a gap


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A small polyphonic cache: a few chorales, a quartet movement and a piano piece."""
    pytest.importorskip("music21")
    d = tmp_path_factory.mktemp("cache")
    reductions.build_cache(d, files=FILES)
    return d


def _everywhere(cache: Path) -> dict:
    """Every split draws from every cached piece: a small cache has no test chorale."""
    pools = load_poly_pools(cache)
    merged = {k: [r for p in pools.values() for r in p[k]] for k in pools["train"]}
    return {s: merged for s in pools}


def test_reductions_keep_two_voices_a_staff_and_their_clefs(cache):
    pools = _everywhere(cache)
    assert all(pools["train"][k] for k in ("chorale", "quartet", "piano", "texture"))
    chorale = pools["train"]["chorale"][0]
    ok = [m for m in chorale.measures if m["ok"]]
    assert ok and all(len(m["staves"]) == 2 and m["clefs"] == ["G2", "F4"] for m in ok)
    assert any(len(v) == 2 for m in ok for v in m["staves"])


def test_every_kind_is_drawn_and_its_labels_parse_to_its_notes(cache):
    from omr_train.synth.system import parser_disagreement
    from omr_train.synth.textures import TEXTURES

    pools = _everywhere(cache)
    for kind in ["chorale", "quartet", "piano"] + [f"texture/{t}" for t in TEXTURES]:
        for i in range(6):
            d = draw_poly(i, PolyOptions(seed=4, only=kind), pools)
            assert d.system.source == kind
            assert parser_disagreement(d.system) is None, kind


def test_a_sample_has_one_crop_a_staff_inside_its_system_image(cache):
    pools = _everywhere(cache)
    s = make_poly_sample(3, PolyOptions(seed=2, grand_share=1.0), pools, Engraver())
    assert len(s.staves) == 2 and all(c.shape[0] == 160 for c in s.staves)
    h, w = s.system_image.shape
    for staff in s.meta["staves"]:
        x0, y0, x1, y1 = staff["box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    first, second = (b["box"] for b in s.meta["staves"])
    assert second[1] > first[3]  # the bass staff under the treble staff
    for staff in s.meta["staves"]:  # a crop's staff spans the stored fraction, as a melody's
        assert staff["box"][3] - staff["box"][1] == pytest.approx(
            160 * s.meta["style"]["fraction"], abs=1.0)
    spans = s.meta["measures"]
    assert [m["tokens"][0][1] for m in spans][-1] == len(s.tokens[0])
    assert all(len(m["tokens"]) == 2 for m in spans)


def test_cli_writes_systems_the_loader_reads_resumably(cache, tmp_path):
    out = tmp_path / "poly"
    args = ["--out", str(out), "--count", "8", "--workers", "1", "--seed", "5",
            "--cache", str(cache), "--poly"]
    r = CliRunner().invoke(synth_main, args)
    assert r.exit_code == 0, r.output
    staves = read_folder(out)
    systems = [json.loads(line) for line in (out / "systems.jsonl").open()]
    assert len(systems) == 8 and len(staves) == sum(len(s["staves"]) for s in systems)
    assert all(s.split and s.font in FONTS for s in staves)
    by_id = {s.id: s for s in staves}
    for system in systems:
        for staff in system["staves"]:
            assert list(by_id[staff["id"]].tokens) == staff["tokens"]
        assert (out / system["id"] / system["system_image"]).exists()
    before = {p: p.read_bytes() for p in out.rglob("*.png")}
    r = CliRunner().invoke(synth_main, args)  # resumes: nothing is engraved again
    assert r.exit_code == 0 and {p: p.read_bytes() for p in out.rglob("*.png")} == before
    r = CliRunner().invoke(synth_main, ["--out", str(tmp_path / "mono"), "--measures", "8"])
    assert r.exit_code != 0 and "--measures are for --poly" in r.output


def test_longer_windows_hold_more_measures(cache):
    pools = _everywhere(cache)
    def mean_measures(most: int) -> float:
        return np.mean([len(draw_poly(i, PolyOptions(seed=8, max_measures=most), pools)
                                .system.staves[0].measures) for i in range(40)])
    assert mean_measures(8) > mean_measures(5) + 0.5


def test_the_held_out_font_is_only_in_the_test_split(cache):
    pools = _everywhere(cache)
    fonts = {}
    for i in range(120):
        d = draw_poly(i, PolyOptions(seed=9), pools)
        fonts.setdefault(d.split, set()).add(d.style.font)
    assert HELD_OUT_FONT not in fonts["train"] | fonts.get("val", set())
    img = make_poly_sample(0, PolyOptions(seed=9), pools, Engraver()).staves[0]
    assert img.dtype == np.uint8 and cv2.countNonZero(255 - img) > 0


def _random_voice(rng: np.random.Generator, bar: float, low: int) -> tuple:
    """A voice of random dotted and plain values, chords and rests that fills `bar`."""
    from omr_train.synth.music import STEPS

    names = [("half", 0, 2.0), ("quarter", 1, 1.5), ("quarter", 0, 1.0), ("eighth", 1, 0.75),
             ("eighth", 0, 0.5), ("sixteenth", 0, 0.25)]
    out, t = [], 0.0
    while t < bar - 1e-9:
        fits = [x for x in names if x[2] <= bar - t + 1e-9]
        name, dots, q = fits[int(rng.integers(len(fits)))]
        if rng.random() < 0.2:
            out.append(rest(name, dots))
        else:
            lines = sorted(rng.choice(6, size=int(rng.integers(1, 4)), replace=False) + low)
            out.append(chord(name, dots, [(STEPS[d % 7], int(rng.integers(-1, 2)), d // 7,
                                           bool(rng.random() < 0.3)) for d in lines]))
        t += q
    return tuple(out)


def test_random_two_voice_rhythms_play_as_labelled():
    """Rhythms no source has: whatever the voices do, the label plays the engine's notes."""
    from omr_train.synth.poly_mei import PolyClutter, system_mei
    from omr_train.synth.system import parser_disagreement, verovio_disagreement

    rng = np.random.default_rng(0)
    engraver = Engraver()
    checked = 0
    for k in range(300):
        measures = tuple((_random_voice(rng, 3.0, 33), _random_voice(rng, 3.0, 26))
                         for _ in range(int(rng.integers(1, 4))))
        system = close_ties(System((PolyStaff("G2", int(rng.integers(-4, 5)), "3/4", measures),)))
        if not well_formed(system):
            continue  # a unison between the voices
        checked += 1
        assert parser_disagreement(system) is None, k
        if k % 10 == 0:
            mei = system_mei(system, PolyClutter(), rng)
            assert verovio_disagreement(engraver, mei, system) is None, k
    assert checked > 100


def test_a_forced_font_changes_the_font_alone(cache):
    pools = _everywhere(cache)
    for i in range(10):
        plain = draw_poly(i, PolyOptions(seed=6), pools)
        held = draw_poly(i, PolyOptions(seed=6, font=HELD_OUT_FONT), pools)
        assert held.style.font == HELD_OUT_FONT and held.mei == plain.mei
        assert held.style == plain.style.__class__(**{**plain.style.to_dict(), "font": HELD_OUT_FONT})


def _two_voice_bass() -> PolyStaff:
    """Two bass measures of 4/4: quarter chords over a half-note voice."""
    upper = tuple(chord("quarter", 0, [_n(s, 3)]) for s in "CEGB")
    lower = (chord("half", 0, [_n("C", 2)]), chord("half", 0, [_n("G", 2)]))
    return PolyStaff("F4", 0, "4/4", ((upper, lower), (upper, lower)))


def test_a_clef_change_is_read_where_it_is_printed_and_moves_the_hand_an_octave():
    from omr_train.synth.poly import ClefChange
    from omr_train.synth.poly_mei import PolyClutter, system_mei
    from omr_train.synth.system import clef_change, parser_disagreement, verovio_disagreement

    staff = _two_voice_bass()
    for seed in range(20):
        moved = clef_change(staff, np.random.default_rng(seed))
        first = moved.changes[0]
        assert first.clef == "G2" and first.slot >= 1  # never before a measure's first slot
        tokens = staff_tokens(moved)
        # The clef token stands right before the group it governs; the notes under it sound
        # an octave up, the others as they were.
        at = tokens.index("clef-G2")
        assert tokens[at + 1].startswith("note-")
        for k, (m0, m1) in enumerate(zip(staff.measures, moved.measures)):
            for v0, v1 in zip(m0, m1):
                for t, a, b in zip(slot_starts(v0), v0, v1):
                    lift = 12 if moved.clef_at(k, t) == "G2" else 0
                    assert [e.midi + lift for e in a.notes] == [e.midi for e in b.notes]
    back = replace_changes(staff, (ClefChange(0, 2, "G2"), ClefChange(1, 1, "F4")))
    assert back.clef_at(0, 0.0) == "F4" and back.clef_at(0, 2.0) == "G2"
    assert back.clef_at(1, 0.0) == "G2" and back.clef_at(1, 1.0) == "F4"
    tokens = staff_tokens(back)
    assert tokens.count("clef-G2") == 1 and tokens.count("clef-F4") == 2  # the opening one too
    system = System((back,))
    assert parser_disagreement(system) is None
    engraver = Engraver()
    mei = system_mei(system, PolyClutter(), np.random.default_rng(0))
    assert verovio_disagreement(engraver, mei, system) is None  # pitches are as sounding
    from omr_train.synth.engrave import RenderStyle

    svg = engraver.svg(mei, RenderStyle())
    assert svg.count('class="clef') == 3  # Verovio draws both changes


def replace_changes(staff: PolyStaff, changes) -> PolyStaff:
    from dataclasses import replace

    return replace(staff, changes=changes)


def test_a_later_systems_staff_prints_and_reads_no_time_signature():
    from dataclasses import replace

    from omr_train.synth.engrave import RenderStyle
    from omr_train.synth.poly_mei import PolyClutter, system_mei

    staff = _two_voice_bass()
    engraver = Engraver()
    for shown in (True, False):
        s = replace(staff, time_shown=shown)
        tokens = staff_tokens(s)
        assert ("timeSignature-4/4" in tokens) == shown
        svg = engraver.svg(system_mei(System((s,)), PolyClutter(), np.random.default_rng(0)),
                           RenderStyle())
        drawn = re.search(r'class="meterSig">\s*<use', svg) is not None  # hidden: an empty group
        assert drawn == shown


def test_ornaments_articulations_and_fingerings_are_drawn_and_not_played():
    from omr_train.synth.engrave import RenderStyle
    from omr_train.synth.poly_mei import PolyClutter, system_mei
    from omr_train.synth.system import verovio_disagreement

    system = System((_two_voice_bass(),))
    engraver = Engraver()
    busy = PolyClutter(ornament=1.0, artic=1.0, fingering=1.0)
    mei = system_mei(system, busy, np.random.default_rng(3))
    assert mei.count('artic="') == 12 and mei.count("<fing ") == 12  # one a chord, 6 a bar
    assert sum(mei.count(f"<{o}") for o in ("mordent", "trill", "turn")) == 12
    svg = engraver.svg(mei, RenderStyle())
    assert re.search(r'class="(mordent|trill|turn)', svg) and 'class="fing' in svg
    assert verovio_disagreement(engraver, mei, system) is None  # the notes as written
