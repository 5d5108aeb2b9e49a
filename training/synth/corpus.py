"""Real melodies from the corpus that ships inside the music21 wheel, cut into snippets.

Parsing with music21 is slow (about 40 ms a tune), so each collection is parsed once into a
JSON-lines cache of snippets; the engraver then reads the cache, not music21.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .music import DURATIONS, Event, Snippet

# Where each collection comes from and its terms are written down in docs/DATA.md.
COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk", "bach",
               "trecento")
M21_DURATIONS = {"longa": "quadruple_whole", "breve": "double_whole", "whole": "whole",
                 "half": "half", "quarter": "quarter", "eighth": "eighth", "16th": "sixteenth",
                 "32nd": "thirty_second", "64th": "sixty_fourth", "128th": "hundred_twenty_eighth"}
M21_CLEFS = {("G", 2): "G2", ("G", 1): "G1", ("F", 4): "F4", ("F", 3): "F3", ("F", 5): "F5",
             ("C", 1): "C1", ("C", 2): "C2", ("C", 3): "C3", ("C", 4): "C4", ("C", 5): "C5"}


@dataclass(frozen=True)
class CutOptions:
    min_measures: int = 2
    max_measures: int = 8
    max_snippets_per_part: int = 6


def split_of(piece: str, val: float = 0.05, test: float = 0.05) -> str:
    """Train/val/test by a hash of the source piece, so no tune is on both sides of a split."""
    h = int(hashlib.sha1(piece.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else "val" if h < test + val else "train"


def _event(n) -> Event | None:
    """A music21 note or rest as an Event; None for what PrIMuS cannot spell (tuplets, chords)."""
    d = n.duration
    if d.tuplets or d.type not in M21_DURATIONS or d.dots > 2:
        return None
    fermata = any(type(x).__name__ == "Fermata" for x in n.expressions)
    grace = bool(d.isGrace)
    kind_dur = M21_DURATIONS[d.type]
    if n.isRest:
        return None if grace else Event("rest", kind_dur, d.dots, fermata=fermata)
    if not n.isNote:
        n = n.notes[-1] if getattr(n, "isChord", False) else None  # melody: top of a chord
        if n is None:
            return None
    p = n.pitch
    alter = int(p.accidental.alter) if p.accidental is not None else 0
    if alter != (p.accidental.alter if p.accidental is not None else 0) or abs(alter) > 2:
        return None  # microtones
    tie = n.tie is not None and n.tie.type in ("start", "continue")
    return Event("note", kind_dur, d.dots, p.step, alter, p.octave, tie=tie, grace=grace,
                 fermata=fermata)


def _time(ts) -> str | None:
    if ts is None:
        return None
    if ts.symbol == "common":
        return "C"
    if ts.symbol == "cut":
        return "C/"
    return ts.ratioString


def _measures(part):
    """(clef, key, time, events) per measure, with the signatures in force carried along."""
    clef, key, time = "G2", 0, None
    out = []
    for m in part.getElementsByClass("Measure"):
        if m.clef is not None:
            clef = M21_CLEFS.get((m.clef.sign, m.clef.line), None)
        if m.keySignature is not None:
            key = m.keySignature.sharps
        if m.timeSignature is not None:
            time = _time(m.timeSignature)
        events = [_event(n) for n in m.notesAndRests]
        ok = clef is not None and all(e is not None for e in events) and events
        out.append((clef, key, time, events if ok else None,
                    m.timeSignature is not None or m.keySignature is not None))
    return out


def cut_part(part, source: str, piece: str, rng, opt: CutOptions) -> list[Snippet]:
    """Non-overlapping 2-8 measure windows of one part, each with its clef, key and time."""
    rows = _measures(part)
    snippets: list[Snippet] = []
    i = 0
    while i < len(rows) and len(snippets) < opt.max_snippets_per_part:
        n = int(rng.integers(opt.min_measures, opt.max_measures + 1))
        window = rows[i:i + n]
        i += n
        if len(window) < opt.min_measures or any(r[3] is None for r in window):
            continue
        if any(r[4] for r in window[1:]):
            continue  # a change of key or time inside the window: PrIMuS incipits have none
        clef, key, time, _, _ = window[0]
        measures = tuple(tuple(r[3]) for r in window)
        if not any(e.kind == "note" for m in measures for e in m):
            continue
        if not -7 <= key <= 7:
            continue
        snippets.append(Snippet(clef, key, time, measures, source, piece,
                                final_barline=bool(rng.random() < 0.7)))
    return snippets


def parse_collection(name: str, seed: int = 0) -> list[Snippet]:
    """All snippets of one music21 corpus collection."""
    import numpy as np
    from music21 import corpus

    rng = np.random.default_rng(seed)
    out: list[Snippet] = []
    for path in sorted(corpus.getComposer(name)) or sorted(corpus.getPaths(name)):
        out.extend(_parse_file(str(path), name, rng))
    return out


def _parse_file(path: str, name: str, rng) -> list[Snippet]:
    from music21 import converter, stream

    try:
        parsed = converter.parse(path)
    except Exception:  # noqa: BLE001 - a corpus file music21 itself cannot read is skipped
        return []
    scores = parsed.scores if isinstance(parsed, stream.Opus) else [parsed]
    out = []
    stem = Path(path).stem
    for k, score in enumerate(scores):
        number = score.metadata.number if score.metadata and score.metadata.number else k
        piece = f"{name}/{stem}/{number}"
        for part in score.parts[:4]:
            try:
                out.extend(cut_part(part, name, piece, rng, CutOptions()))
            except Exception:  # noqa: BLE001, S112 - malformed measures skip that part only
                continue
    return out


def collection_files(name: str) -> list[str]:
    from music21 import corpus

    return [str(p) for p in sorted(corpus.getComposer(name))]


def cache_path(cache_dir: Path, name: str) -> Path:
    return cache_dir / f"{name}.jsonl.gz"


def build_cache(cache_dir: Path, names=COLLECTIONS, workers: int = 1, progress=None) -> None:
    """Parse every collection once; files already cached are kept."""
    build_caches({n: cache_path(cache_dir, n) for n in names},
                 lambda n: [(n, f) for f in collection_files(n)], _file_job, workers, progress)


def build_caches(paths: dict[str, Path], jobs_of, job, workers: int = 1, progress=None) -> None:
    """For each name whose cache file (`paths`) is not written yet: `job` over `jobs_of(name)`
    in a process pool, the rows of all its jobs written as gzipped JSON lines. Each file is
    written whole and then renamed, so an interrupted build keeps the files it finished."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        for name, path in paths.items():
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = []
            for part in pool.map(job, jobs_of(name), chunksize=1):
                rows.extend(part)
                if progress:
                    progress(name)
            tmp = path.with_suffix(".tmp")
            with gzip.open(tmp, "wt") as f:
                for r in rows:
                    f.write(json.dumps(r, separators=(",", ":")) + "\n")
            tmp.replace(path)


def _file_job(job) -> list[dict]:
    import numpy as np

    name, path = job
    rng = np.random.default_rng(int(hashlib.sha1(path.encode()).hexdigest()[:8], 16))
    return [s.to_dict() for s in _parse_file(path, name, rng)]


def load_cache(cache_dir: Path, names=COLLECTIONS) -> list[Snippet]:
    out = []
    for n in names:
        p = cache_path(cache_dir, n)
        if p.exists():
            with gzip.open(p, "rt") as f:
                out.extend(Snippet.from_dict(json.loads(line)) for line in f)
    return out


assert set(M21_DURATIONS.values()) <= set(DURATIONS)
