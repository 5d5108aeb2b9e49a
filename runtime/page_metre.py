"""A page's later systems keep the metre its first system prints.

A page prints its time signature on its first system and again only where the metre changes,
so the staves of the later systems carry none. The metre check (omr.decode.fix_metre) then
holds each of them to the length most of its own measures have, and leaves a staff alone where
they do not agree: two misread measures of four, and a staff of sixteenths read as
thirty-seconds in two of them stays short. Here each staff that prints no signature gets the
measure length of the last signature read above it in its part (its place in its system: the
right hand's staff follows the right hand's), as the measures read under that signature back
it, and its reading is checked again against that length (`Decoded.remetre`). A PDF's later
pages print none either: the signatures in force, and the measures read under them, are
carried from page to page (`Metres`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from . import semantic as sem
from .decode import EPS, Decoded, complete_measures, fits, measure_length


@dataclass
class Metres:
    """The time signatures read so far down each part (a staff's place in its system), each
    with the lengths of the complete measures read under it: what a document's later pages
    keep from its earlier ones."""

    reigns: list[tuple[sem.TimeSignature, Counter]] = field(default_factory=list)
    current: dict[int, int] = field(default_factory=dict)  # each part's reign in force


def page_lengths(staves: Sequence[Sequence[str]], systems: Sequence[int],
                 min_measures: int = 2, carried: Metres | None = None) -> list[float | None]:
    """For each staff (tokens, top to bottom) that prints no time signature, the measure length
    set by the last signature read above it in its part: the commonest length the signature
    allows among the complete measures read under it, the page's later systems included,
    where at least `min_measures` of them hold it (C allows 4 and 8 quarters; a misread
    signature fits no measure). None elsewhere. `carried`: what the document's earlier pages
    read, brought up to date with this page's."""
    return _read_page(staves, systems, min_measures, carried)[0]


def _read_page(staves: Sequence[Sequence[str]], systems: Sequence[int], min_measures: int = 2,
               carried: Metres | None = None) -> tuple[list[float | None], list[list[float]]]:
    """page_lengths, and each staff's complete measures' lengths (each staff parsed once)."""
    state = carried if carried is not None else Metres()
    metres, current = state.reigns, state.current
    reigns: list[int | None] = []  # each staff's, where it prints no signature
    read: list[list[float]] = []
    for tokens, place in zip(staves, _places(systems)):
        symbols = [sem.parse_token(t) for t in tokens]
        read.append([])
        for a, b, sig in complete_measures(symbols, unmetred=True):
            _follow(metres, current, place, sig)
            length = measure_length(tokens[a:b])
            read[-1].append(length)
            if place in current:
                ts, held = metres[current[place]]
                if fits(length, ts):
                    held[round(length, 6)] += 1
        signs = [s for s in symbols if isinstance(s, sem.TimeSignature)]
        if signs:
            _follow(metres, current, place, signs[-1])
        reigns.append(None if signs else current.get(place))
    out: list[float | None] = []
    for reign in reigns:
        usual = metres[reign][1].most_common(1) if reign is not None else []
        out.append(usual[0][0] if usual and usual[0][1] >= min_measures else None)
    return out, read


def _follow(metres: list, current: dict[int, int], place: int,
            sig: sem.TimeSignature | None) -> None:
    """A signature other than the one in force in part `place` starts a new reign there."""
    if sig is not None and (place not in current or metres[current[place]][0] != sig):
        metres.append((sig, Counter()))
        current[place] = len(metres) - 1


def hold_to_page(reads: list[Decoded], systems: Sequence[int],
                 carried: Metres | None = None) -> list[Decoded]:
    """`reads`, each staff that prints no time signature checked again against its page's
    measure length (page_lengths, `carried` as it takes it), where its reading can be."""
    lengths, measures = _read_page([r.tokens for r in reads], systems, carried=carried)
    out = list(reads)
    for k, (read, length) in enumerate(zip(reads, lengths)):
        # Only a staff with a measure off the length has anything to mend.
        if length is not None and read.remetre is not None and \
                any(abs(x - length) >= EPS for x in measures[k]):
            tokens = read.remetre(length)
            if tokens != read.tokens:
                out[k] = replace(read, tokens=tokens, corrections=read.corrections + sum(
                    a != b for a, b in zip(read.tokens, tokens)))
    return out


def _places(systems: Sequence[int]) -> list[int]:
    """Each staff's place in its system, from the top."""
    seen: Counter = Counter()
    out = []
    for s in systems:
        out.append(seen[s])
        seen[s] += 1
    return out
