"""Chorales, string quartets and piano pieces from the music21 corpus, reduced to two staves.

- Bach chorales (and the SATB hymn in the corpus): soprano and alto on the treble staff, tenor
  and bass on the bass staff, two voices a staff.
- String quartets (Haydn, Mozart, Beethoven): violins on the treble staff, viola and cello on
  the bass staff; a part's double stops are chords of its voice.
- Piano pieces: their own two staves, with their own clefs and up to two voices a staff.

Each measure keeps only what the engine can engrave and label exactly: no tuplets, no voices
beyond two a staff; grace notes are left out (they take no time). A voice's gaps become
rests. Parsing is slow (seconds a quartet movement), so each source is parsed once into a
JSON-lines cache (`data/cache/poly-*.jsonl.gz`); long pieces are stored as sections of
SECTION measures, each its own piece for the train/val/test split.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from .corpus import M21_CLEFS, M21_DURATIONS, _time, build_caches
from .poly import EPS, Slot, chord, fill_rests, rest

SOURCES = ("chorale", "quartet", "piano")
SECTION = 24  # measures: a long piece is split into sections, each a piece of its own
QUARTETS = ("haydn", "mozart", "beethoven")
PIANO = ("mozart/k545", "joplin", "bach/bwv846", "schumann_clara", "chopin", "schubert",
         "beach", "schoenberg", "cpebach")
HYMNS = ("johnson_j_r/lift_every_voice",)
SATB = ("soprano", "alto", "tenor", "bass")


def source_files(source: str) -> list[str]:
    """The corpus files of one source, by path (MusicXML preferred over duplicate Humdrum)."""
    from music21 import corpus

    if source == "chorale":
        paths = [str(p) for p in corpus.getComposer("bach") if "bwv846" not in str(p)]
        paths += [str(p) for h in HYMNS for p in corpus.getComposer(h.split("/")[0]) if h in str(p)]
    elif source == "quartet":
        paths = [str(p) for c in QUARTETS for p in corpus.getComposer(c) if "k545" not in str(p)]
    else:
        paths = [str(p) for c in PIANO for p in corpus.getComposer(c.split("/")[0])
                 if c in str(p) and "quartet" not in str(p)]
    stems = {Path(p).with_suffix("") for p in paths if not p.endswith(".krn")}
    keep = [p for p in paths if not (p.endswith(".krn") and Path(p).with_suffix("") in stems)]
    return sorted(set(keep))


def _slot(n) -> Slot | None | str:
    """A music21 note, chord or rest as a Slot; "skip" for a grace note; None when the engine
    cannot spell it."""
    d = n.duration
    if d.isGrace:
        return "skip"
    if d.tuplets or d.type not in M21_DURATIONS or d.dots > 2 or d.quarterLength == 0:
        return None
    name = M21_DURATIONS[d.type]
    fermata = any(type(x).__name__ == "Fermata" for x in n.expressions)
    if n.isRest:
        return rest(name, d.dots, fermata)
    notes = n.notes if getattr(n, "isChord", False) else [n]
    pitched = []
    for x in notes:
        p = x.pitch
        alter = p.accidental.alter if p.accidental is not None else 0
        if alter != int(alter) or abs(alter) > 2:
            return None  # microtones
        tie = x.tie if x.tie is not None else getattr(n, "tie", None)
        pitched.append((p.step, int(alter), p.octave, tie is not None and tie.type in ("start", "continue")))
    if not pitched or len({(s, o) for s, _, o, _ in pitched}) != len(pitched):
        return None  # unisons inside a chord
    return chord(name, d.dots, pitched, fermata)


def _voice(stream, bar: float) -> tuple[list[Slot], float] | None:
    """One voice of a measure as slots that fill the bar (gaps become rests), and where its
    own music ends."""
    out: list[Slot] = []
    t = 0.0
    for n in sorted(stream.notesAndRests, key=lambda x: float(x.offset)):
        s = _slot(n)
        if s == "skip":
            continue
        offset = float(n.offset)
        if s is None or offset < t - EPS:
            return None
        if offset > t + EPS:
            gap = fill_rests(offset - t)
            if gap is None:
                return None
            out += gap
        out.append(s)
        t = offset + s.quarters
    if t > bar + EPS:
        return None
    tail = fill_rests(bar - t)
    return None if tail is None else (out + tail, t)


def _staff_voices(measures, bar: float) -> list[list[Slot]] | None:
    """The voices of one reduced staff in one measure: each part's own voices, at most two.
    None also for a measure whose music stops short of the bar (a pickup, a last bar): filled
    with rests, its label would be right and its music wrong."""
    voices = []
    end = 0.0
    for m in measures:
        streams = list(m.voices) or [m]
        for s in streams:
            v = _voice(s, bar)
            if v is None:
                return None
            voices.append(v[0])
            end = max(end, v[1])
    if end < bar - EPS:
        return None
    # A voice that only rests beside another voice is dropped, as an editor would.
    voices = [v for v in voices if any(not s.is_rest for s in v)] or voices[:1]
    return voices if 1 <= len(voices) <= 2 else None


def _staff_parts(score, source: str) -> list[list] | None:
    parts = list(score.parts)
    names = [(p.partName or "").lower() for p in parts]
    if source == "chorale":
        by = [next((p for p, n in zip(parts, names) if n.startswith(v)), None) for v in SATB]
        if any(p is None for p in by):
            by = parts if len(parts) == 4 else None
        return None if by is None else [[by[0], by[1]], [by[2], by[3]]]
    if source == "quartet":
        return [[parts[0], parts[1]], [parts[2], parts[3]]] if len(parts) == 4 else None
    staffs = [p for p in parts if type(p).__name__ == "PartStaff"]
    if len(staffs) < 2:
        staffs = [p for p, n in zip(parts, names) if "piano" in n]
    return [[staffs[0]], [staffs[1]]] if len(staffs) >= 2 else None


def _measure_rows(staves: list[list], source: str) -> list[dict]:
    """One row a measure: signatures in force, whether it changes any, the staves' voices."""
    lists = [[list(p.getElementsByClass("Measure")) for p in staff] for staff in staves]
    count = min(len(m) for staff in lists for m in staff)
    key, time, bar = 0, None, 4.0
    clefs = ["G2", "F4"]
    rows = []
    for k in range(count):
        first = lists[0][0][k]
        change = False
        if first.keySignature is not None:
            change |= k > 0 and first.keySignature.sharps != key
            key = first.keySignature.sharps
        if first.timeSignature is not None:
            change |= k > 0 and _time(first.timeSignature) != time
            time = _time(first.timeSignature)
            bar = first.timeSignature.barDuration.quarterLength
        if source == "piano":
            for i, staff in enumerate(lists):
                c = staff[0][k].clef
                if c is not None:
                    new = M21_CLEFS.get((c.sign, c.line), "?")
                    change |= k > 0 and new != clefs[i]
                    clefs[i] = new
        voices = [_staff_voices([m[k] for m in staff], bar) for staff in lists]
        ok = all(v is not None for v in voices) and "?" not in clefs and -7 <= key <= 7
        rows.append({"ok": ok, "change": change, "key": key, "time": time, "clefs": list(clefs),
                     "staves": [[[s.to_row() for s in v] for v in st] for st in voices] if ok else None})
    return rows


def parse_file(path: str, source: str) -> list[dict]:
    """The sections of one corpus file, as cache rows."""
    from music21 import converter, stream

    try:
        parsed = converter.parse(path)
    except Exception:  # noqa: BLE001 - a corpus file music21 itself cannot read is skipped
        return []
    scores = parsed.scores if isinstance(parsed, stream.Opus) else [parsed]
    parts = Path(path).with_suffix("").parts
    name = "/".join(parts[parts.index("corpus") + 1:]) if "corpus" in parts else Path(path).stem
    out = []
    for score in scores:
        try:
            staves = _staff_parts(score, source)
            rows = _measure_rows(staves, source) if staves else []
        except Exception:  # noqa: BLE001, S112 - a malformed score skips that score only
            continue
        step = max(1, len(rows)) if source == "chorale" else SECTION
        for start in range(0, len(rows), step):
            out.append({"source": source, "piece": f"{source}/{name}@{start}",
                        "measures": rows[start:start + step]})
    return out


def cache_path(cache_dir: Path, source: str) -> Path:
    return cache_dir / f"poly-{source}.jsonl.gz"


def build_cache(cache_dir: Path, workers: int = 1, progress=None,
                files: dict[str, list[str]] | None = None) -> None:
    """Parse every source once; sources already cached are kept. `files`: source -> corpus
    works (music21's names, "bach/bwv250") instead of the whole source, for a small cache."""
    from music21 import corpus

    def jobs_of(source: str) -> list[tuple[str, str]]:
        paths = ([str(corpus.getWork(w)) for w in files.get(source, [])] if files
                 else source_files(source))
        return [(p, source) for p in paths]

    build_caches({s: cache_path(cache_dir, s) for s in SOURCES}, jobs_of, _job, workers, progress)


def _job(job: tuple[str, str]) -> list[dict]:
    return parse_file(*job)


def load_cache(cache_dir: Path) -> list[dict]:
    out = []
    for source in SOURCES:
        p = cache_path(cache_dir, source)
        if p.exists():
            with gzip.open(p, "rt") as f:
                out.extend(json.loads(line) for line in f)
    return out


if __name__ == "__main__":
    import sys

    build_cache(Path(sys.argv[1] if len(sys.argv) > 1 else "data/cache"))
