"""MusicXML to staff labels (docs/NOTATION.md), and the notation's round-trip check.

A score's staves (a piano part's two staves are two staves) become labels in the polyphonic
notation: every voice's notes, chords and rests placed at their onsets and written by
omr.semantic.write, which puts each group in the canonical order and adds a rest wherever a
voice's silence (a <forward>, a voice that starts late) would break the time rule. Pitches are
spelled as they sound, the key applied (MusicXML's <alter> already is). Systems follow the
score's system breaks (<print new-system>, new pages); each staff label of a system is complete,
starting with the clef, key and time then in force.

`python -m omr_train.musicxml_read check FOLDER|FILE...` checks the notation's round trip on
labels: tokens -> MusicXML -> tokens gives the same labels, and tokens -> MIDI and tokens ->
MusicXML -> music21 give the same notes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
from omr.semantic import KEYS, Placed, write

TYPES = {"longa": "quadruple_whole", "breve": "double_whole", "whole": "whole", "half": "half",
         "quarter": "quarter", "eighth": "eighth", "16th": "sixteenth", "32nd": "thirty_second",
         "64th": "sixty_fourth", "128th": "hundred_twenty_eighth"}
MAJOR = {v: k for k, v in KEYS.items()}  # sharps (flats negative) -> major key name
ALTER = {0: "", 1: "#", 2: "##", -1: "b", -2: "bb"}


@dataclass(frozen=True)
class ReadScore:
    systems: tuple[tuple[tuple[str, ...], ...], ...]  # each system's staff labels, top to bottom
    dropped: tuple[str, ...] = field(default=())  # what the notation cannot hold, in words


def read_musicxml(source: str | Path, per_system: int = 0) -> ReadScore:
    """The staff labels of a MusicXML file (or string). Without system breaks in the score,
    `per_system` measures make a system (0: the whole score is one)."""
    import music21

    score = music21.converter.parse(str(source), format="musicxml", forceSource=True)
    staves = [list(p.getElementsByClass(music21.stream.Measure)) for p in score.parts]
    staves = [s for s in staves if s]
    if not staves:
        return ReadScore(())
    starts = _system_starts(staves[0], per_system)
    dropped: list[str] = []
    systems = []
    for a, b in zip(starts, starts[1:] + [len(staves[0])]):
        systems.append(tuple(tuple(_staff_label(measures, a, b, dropped)) for measures in staves))
    return ReadScore(tuple(systems), tuple(dropped))


def _system_starts(measures: list, per_system: int) -> list[int]:
    import music21

    starts = [0]
    for i, m in enumerate(measures[1:], 1):
        marks = m.getElementsByClass((music21.layout.SystemLayout, music21.layout.PageLayout))
        if any(getattr(x, "isNew", False) for x in marks) or (per_system and i % per_system == 0):
            starts.append(i)
    return starts


def _staff_label(measures: list, a: int, b: int, dropped: list[str]) -> list[str]:
    """Measures [a, b) of one staff as one complete label."""
    import music21

    state: dict[str, str] = {}  # the clef, key and time in force
    for m in measures[:a + 1]:
        for el in m.recurse().getElementsByClass((music21.clef.Clef, music21.key.KeySignature,
                                                  music21.meter.TimeSignature)):
            at_start = m is not measures[a] or el.getOffsetInHierarchy(m) == 0
            if at_start and (token := _mark(el)) is not None:
                state[_mark_kind(el)] = token
    head = [state[k] for k in ("clef", "key", "time") if k in state]
    if state.get("key") == "keySignature-CM":
        head.remove("keySignature-CM")  # PrIMuS writes no key signature for C major
    placed = [Placed(0.0, t) for t in head]
    start = measures[a].offset
    inside = False  # in the measures of a multirest, after its first
    for i in range(a, b):
        m = measures[i]
        at = m.offset - start
        last_of_rest = True
        for el in m.recurse():
            offset = at + float(el.getOffsetInHierarchy(m))
            if isinstance(el, (music21.clef.Clef, music21.key.KeySignature,
                               music21.meter.TimeSignature)):
                if not (i == a and offset == 0) and (token := _mark(el)) is not None:
                    placed.append(Placed(offset, token))
            elif (rest := _multirest(el)) is not None:
                spanned = rest.getSpannedElements()
                inside, last_of_rest = el is not spanned[0], el is spanned[-1]
                if not inside:
                    span = [r.getContextByClass(music21.stream.Measure) for r in spanned]
                    length = sum(float(x.duration.quarterLength) for x in span if x is not None)
                    placed.append(Placed(offset, f"multirest-{len(spanned)}", length=length))
            elif isinstance(el, (music21.note.GeneralNote)):
                placed += _sounding(el, offset, dropped, m.number)
        end = (measures[i + 1].offset if i + 1 < len(measures) else
               m.offset + m.duration.quarterLength) - start
        if _right_bar(m) != "none" and last_of_rest:
            placed.append(Placed(end, "barline"))
    return write(placed)


def _multirest(el):
    """The multirest (music21's MultiMeasureRest) that a measure rest belongs to, if any."""
    import music21

    if not isinstance(el, music21.note.Rest):
        return None
    return next((s for s in el.getSpannerSites() if isinstance(s, music21.spanner.MultiMeasureRest)),
                None)


def _mark_kind(el) -> str:
    import music21

    return ("clef" if isinstance(el, music21.clef.Clef) else
            "key" if isinstance(el, music21.key.KeySignature) else "time")


def _mark(el) -> str | None:
    import music21

    if isinstance(el, music21.clef.Clef):
        sign = f"{el.sign}{el.line}" if el.sign and el.line else ""
        return f"clef-{sign}" if sign in ("G2", "G1", "C1", "C2", "C3", "C4", "C5", "F3", "F4",
                                          "F5") else None
    if isinstance(el, music21.key.KeySignature):
        name = MAJOR.get(el.sharps)
        return f"keySignature-{name}M" if name else None
    if el.symbol in ("common", "cut") and (el.numerator, el.denominator) in ((4, 4), (2, 2)):
        return "timeSignature-C" if el.symbol == "common" else "timeSignature-C/"
    return f"timeSignature-{el.numerator}/{el.denominator}"


def _right_bar(m) -> str:
    bar = m.rightBarline
    return getattr(bar, "type", "regular") if bar is not None else "regular"


def _sounding(el, offset: float, dropped: list[str], measure: int) -> list[Placed]:
    """The tokens of a note, chord or rest (none for a hidden rest: a gap)."""
    d = el.duration
    kind = TYPES.get(d.type)
    grace = d.isGrace
    if el.isRest and (el.style.hideObjectOnPrint or not kind or d.tuplets or d.dots > 2):
        return []  # a gap, or a rest the notation cannot spell: write() fills it
    if kind is None or d.tuplets or d.dots > 2 or (not grace and abs(
            d.quarterLength - _length(kind, d.dots)) > 1e-6):
        dropped.append(f"measure {measure}: {el.fullName if hasattr(el, 'fullName') else el}")
        return []
    fermata = "_fermata" if any(type(x).__name__ == "Fermata" for x in el.expressions) else ""
    tail = f"_{kind}{'.' * d.dots}{fermata}"
    if el.isRest:
        return [Placed(offset, f"rest-{tail[1:]}")]
    out = []
    for k, pitch in enumerate(el.pitches):
        tie = el.getTie(pitch) if el.isChord else el.tie
        alter = int(pitch.alter) if pitch.accidental is not None else 0
        token = f"{'gracenote' if grace else 'note'}-{pitch.step}{ALTER.get(alter, '')}" \
                f"{pitch.octave}{tail}"
        out.append(Placed(offset, token, tie is not None and tie.type in ("start", "continue"),
                          joined=grace and k > 0))
    return out


def _length(kind: str, dots: int) -> float:
    from omr.semantic import DOT_FACTOR, DURATIONS

    return DURATIONS[kind] * DOT_FACTOR[dots]


# The round-trip check --------------------------------------------------------------------------

@dataclass(frozen=True)
class RoundTrip:
    systems: int
    tokens_lost: int  # systems whose labels do not come back from MusicXML as they were
    # (in the canonical order: omr.semantic.canonical)
    midi_lost: int  # systems whose MIDI file plays other notes than the labels' (a unison of
    # two voices of a part sounds once, as omr.midi.sounded says)
    music21_lost: int  # systems whose MusicXML music21 reads as other notes
    unisons: int = 0  # systems where two voices of a part play one pitch at once (MIDI: once)
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        return (f"{self.systems} systems: tokens -> MusicXML -> tokens differ on {self.tokens_lost}, "
                f"MIDI notes on {self.midi_lost}, music21's notes on {self.music21_lost} "
                f"({self.unisons} with a unison sounded once)")


def check(systems: Iterable[Sequence[Sequence[str]]], examples: int = 3) -> RoundTrip:
    """The round trip of every system (its staff labels, top to bottom)."""
    from omr.midi import TICKS_PER_QUARTER, notes_from_midi, page_midi_bytes, sounded
    from omr.parts import arrange
    from omr.semantic import canonical, repair
    from omr.writers import page_musicxml

    count = tokens_lost = midi_lost = m21_lost = unisons = 0
    shown: list[str] = []
    for system in systems:
        system = [list(s) for s in system]
        count += 1
        xml = page_musicxml([system])
        back = read_musicxml(xml)
        tick = TICKS_PER_QUARTER
        written = sorted((n.part, n.pitch, round(n.onset * tick),
                          max(round((n.onset + n.duration) * tick), round(n.onset * tick) + 1))
                         for n in arrange([system]).notes)
        if [list(s) for sys_ in back.systems for s in sys_] != [canonical(s) for s in system]:
            tokens_lost += 1
            if len(shown) < examples:
                shown.append(_first_difference(system, back))
        played = sounded([system])
        unisons += played != written
        midi = sorted((n.pitch, round(n.onset * tick), round(n.duration * tick))
                      for n in notes_from_midi(page_midi_bytes([system])))
        midi_lost += midi != sorted((p, on, off - on) for _, p, on, off in played)
        # music21 gives a grace no time; without them, every note keeps its written length.
        plain = [[repair([t for t in s if not t.startswith("gracenote-")], open_end=True)
                  for s in system]]
        if music21_notes(xml) != sorted((n.onset, n.pitch, n.duration, n.part)
                                        for n in arrange(plain).notes):
            m21_lost += 1
    return RoundTrip(count, tokens_lost, midi_lost, m21_lost, unisons, tuple(shown))


def _first_difference(system: list[list[str]], back: ReadScore) -> str:
    got = [list(s) for sys_ in back.systems for s in sys_]
    for j, (a, b) in enumerate(zip(system, got)):
        if a != b:
            k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            return f"staff {j} token {k}: {' '.join(a[k:k + 6])!r} came back as {' '.join(b[k:k + 6])!r}"
    return f"{len(system)} staves came back as {len(got)}"


def music21_notes(xml: str) -> list[tuple[float, int, float, int]]:
    """(onset, pitch, duration, staff) of every note music21 reads, tied notes merged note by
    note (music21's own stripTies ties a whole chord when one of its notes is tied)."""
    import music21

    score = music21.converter.parse(xml, format="musicxml", forceSource=True)
    out: list[tuple[float, int, float, int]] = []
    for k, part in enumerate(score.parts):
        held: dict[int, int] = {}
        for n in part.flatten().notes:
            if n.duration.isGrace:
                continue
            onset, length = float(n.getOffsetInHierarchy(part)), float(n.quarterLength)
            for p in n.pitches:
                tie = n.getTie(p) if n.isChord else n.tie
                kind = tie.type if tie is not None else None
                if kind in ("stop", "continue") and p.midi in held:
                    first = out[held[p.midi]]
                    out[held[p.midi]] = (first[0], first[1], onset + length - first[0], k)
                    if kind == "stop":
                        del held[p.midi]
                    continue
                out.append((onset, p.midi, length, k))
                if kind == "start":
                    held[p.midi] = len(out) - 1
    return sorted(out)


def label_systems(paths: Iterable[Path]) -> list[list[list[str]]]:
    """Systems from label files: the engine's `NAME-0.semantic`, `NAME-1.semantic`, ... beside
    its NAME.json are one system, top to bottom; any other file is one system of one staff per
    line (tokens separated by white space)."""
    files = sorted({f for p in paths for f in (sorted(p.rglob("*.semantic")) if p.is_dir() else [p])})
    grouped: dict[tuple[Path, str], list[tuple[int, list[str]]]] = {}
    out = []
    for f in files:
        stem, _, index = f.stem.rpartition("-")
        if stem and index.isdigit() and (f.parent / f"{stem}.json").exists():
            grouped.setdefault((f.parent, stem), []).append((int(index), f.read_text().split()))
        else:
            out.append([line.split() for line in f.read_text().splitlines() if line.strip()])
    out += [[tokens for _, tokens in sorted(staves)] for staves in grouped.values()]
    return out


@click.group()
def main() -> None:
    """MusicXML and the staff notation."""


@main.command("read")
@click.argument("score", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--per-system", default=0, help="Measures per system when the score has no breaks.")
def read_command(score: Path, per_system: int) -> None:
    """Print SCORE's staff labels: a blank line between systems."""
    try:
        result = read_musicxml(score, per_system)
    except Exception as err:  # music21 raises its own exception types on a bad file
        raise click.ClickException(f"cannot read {score} as MusicXML: {str(err)[:200]}") from err
    for system in result.systems:
        for staff in system:
            click.echo(" ".join(staff))
        click.echo()
    for what in result.dropped:
        click.echo(f"not in the notation: {what}", err=True)


@main.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--limit", default=0, help="Only the first N systems.")
def check_command(paths: tuple[Path, ...], limit: int) -> None:
    """Round-trip the labels under PATHS (folders or label files); exit 1 if anything is lost."""
    try:
        systems = label_systems(paths)
    except (OSError, UnicodeDecodeError) as err:
        raise click.ClickException(f"cannot read the labels: {err}") from None
    if not systems:
        raise click.ClickException("no labels (*.semantic) found")
    result = check(systems[:limit] if limit else systems)
    click.echo(str(result))
    for line in result.examples:
        click.echo(f"  {line}")
    sys.exit(1 if result.tokens_lost or result.midi_lost or result.music21_lost else 0)


if __name__ == "__main__":
    main()
