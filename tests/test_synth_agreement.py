"""Our labels against Verovio's own reading of what it engraved.

Verovio renders the engraved MEI to MIDI by itself; our tokens-to-MIDI conversion (the
runtime's) must give the same notes: pitch, onset and duration, ties merged, key-signature
accidentals applied. Verovio's MIDI has 120 ticks a quarter and ends each note a tick
early, hence the tolerance. Grace notes are taken out before the comparison: Verovio plays
them over their neighbours, and MIDI cannot keep apart two overlapping notes of one key
(E#4 then a grace F4). Their pitches are spelled by the same code as every other note.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("verovio")

from omr.midi import notes_from_midi
from omr.semantic import notes_from_tokens
from omr_train.synth import corpus
from omr_train.synth.engrave import Engraver, RenderStyle
from omr_train.synth.generate import corpus_snippet
from omr_train.synth.mei import Clutter, close_ties, snippet_to_mei
from omr_train.synth.music import Snippet, semantic_tokens
from omr_train.synth.procedural import random_snippet

TOL = 0.03  # quarter notes: a few of Verovio's ticks


@pytest.fixture(scope="module")
def engraver() -> Engraver:
    return Engraver()


@pytest.fixture(scope="module")
def corpus_snippets() -> list[Snippet]:
    """Real tunes: small files of several collections, parsed here with music21."""
    pytest.importorskip("music21")
    out: list[Snippet] = []
    for name, n in (("ryansMammoth", 40), ("bach", 6), ("miscFolk", 0)):
        files = corpus.collection_files(name)[:n] if n else []
        for f in files:
            out.extend(Snippet.from_dict(d) for d in corpus._file_job((name, f)))
    assert len(out) > 50
    return out


def _verovio_notes(engraver: Engraver, s: Snippet, rng) -> list:
    mei, _ = snippet_to_mei(s, Clutter(), rng)
    engraver.svg(mei, RenderStyle())
    return notes_from_midi(engraver.midi())


def _agree(ours, theirs) -> str | None:
    if [n.pitch for n in ours] != [n.pitch for n in theirs]:
        return f"pitches differ: {[n.pitch for n in ours]} vs {[n.pitch for n in theirs]}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        end_a, end_b = a.onset + a.duration, b.onset + b.duration
        if abs(end_a - end_b) > TOL + 0.01:
            return f"note {i} ends at {end_a} vs {end_b}"
        if abs(a.onset - b.onset) > TOL:
            return f"note {i} starts at {a.onset} vs {b.onset}"
    return None


def _without_graces(s: Snippet) -> Snippet:
    measures = tuple(tuple(e for e in m if not e.grace) for m in s.measures)
    return replace(s, measures=measures)


def _check(engraver, snippets, seed) -> list[str]:
    failures = []
    for k, s in enumerate(snippets):
        s = close_ties(_without_graces(s))
        tokens = semantic_tokens(s)
        ours = notes_from_tokens(tokens)
        theirs = _verovio_notes(engraver, s, np.random.default_rng([seed, k]))
        err = _agree(ours, theirs)
        if err:
            failures.append(f"{' '.join(tokens)}\n  {err}")
    return failures


def test_procedural_labels_match_verovio_midi(engraver):
    rng = np.random.default_rng(11)
    snippets = [random_snippet(rng, f"t{i}") for i in range(300)]
    failures = _check(engraver, snippets, 1)
    assert not failures, f"{len(failures)} of 300 disagree:\n" + "\n".join(failures[:5])


def test_corpus_labels_match_verovio_midi(engraver, corpus_snippets):
    failures = _check(engraver, corpus_snippets, 2)
    assert not failures, f"{len(failures)} of {len(corpus_snippets)} disagree:\n" + "\n".join(failures[:5])


def test_transposed_and_reclefed_corpus_labels_match(engraver, corpus_snippets):
    """Transposition to every key exercises key-signature accidentals on every step."""
    rng = np.random.default_rng(3)
    snippets = [corpus_snippet(corpus_snippets, rng) for _ in range(200)]
    assert len({s.key for s in snippets}) >= 10
    failures = _check(engraver, snippets, 3)
    assert not failures, f"{len(failures)} of 200 disagree:\n" + "\n".join(failures[:5])


def test_ties_and_key_accidentals_are_sampled(corpus_snippets):
    rng = np.random.default_rng(11)
    tokens = [t for i in range(300) for t in semantic_tokens(random_snippet(rng, str(i)))]
    assert tokens.count("tie") > 20
    assert any("#" in t for t in tokens) and any("b" in t.split("_")[0][6:] for t in tokens)
    assert Path(corpus.__file__).exists()


# --- polyphonic systems: chords, two voices a staff, grand staves ---------------------------

POLY_FILES = {"chorale": ["bach/bwv250", "bach/bwv269", "bach/bwv347", "bach/bwv40.8",
                          "bach/bwv26.6"],
              "quartet": ["haydn/opus1no1/movement4", "mozart/k80/movement3"],
              "piano": ["mozart/k545/movement1_exposition", "bach/bwv846"]}


@pytest.fixture(scope="module")
def poly_pools(tmp_path_factory) -> dict:
    """Every split draws from a small cache of each source (it has no test chorale)."""
    pytest.importorskip("music21")
    from omr_train.synth.reductions import build_cache
    from omr_train.synth.system import load_poly_pools

    d = tmp_path_factory.mktemp("poly-cache")
    build_cache(d, files=POLY_FILES)
    pools = load_poly_pools(d)
    merged = {k: [r for p in pools.values() for r in p[k]] for k in pools["train"]}
    return {s: merged for s in pools}


def _poly_failures(engraver, pools, kinds, count) -> list[str]:
    from omr_train.synth.system import (
        PolyOptions,
        draw_poly,
        parser_disagreement,
        verovio_disagreement,
    )

    failures = []
    for kind in kinds:
        for i in range(count):
            d = draw_poly(i, PolyOptions(seed=17, only=kind), pools)
            err = verovio_disagreement(engraver, d.mei, d.system) or parser_disagreement(d.system)
            if err:
                failures.append(f"{kind} {i}: {err}")
    return failures


def test_reduced_chorales_quartets_and_piano_match_verovio_midi(engraver, poly_pools):
    """Both staves of each system, note by note, and the labels as omr.semantic plays them."""
    failures = _poly_failures(engraver, poly_pools, ["chorale", "quartet", "piano"], 40)
    assert not failures, f"{len(failures)} of 120 disagree:\n" + "\n".join(failures[:5])


def test_piano_textures_match_verovio_midi(engraver, poly_pools):
    from omr_train.synth.textures import TEXTURES

    kinds = [f"texture/{t}" for t in TEXTURES]
    failures = _poly_failures(engraver, poly_pools, kinds, 20)
    assert not failures, f"{len(failures)} of {20 * len(kinds)} disagree:\n" + "\n".join(failures[:5])
