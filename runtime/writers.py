"""Output writers (MIDI, semantic, JSON, JSON Lines, MusicXML) behind one small interface.

Every writer renders bytes in memory first; `write_atomic` then puts them in place with a
rename, so a failure never leaves a partial file or clobbers an earlier good one.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from . import semantic
from .midi import MidiOptions, page_midi_bytes
from .parts import Arrangement, StaffPlan, arrange

if TYPE_CHECKING:
    from .recognize import Score

FORMATS = ("midi", "semantic", "json", "jsonl", "musicxml")
DEFAULT_MIDI = MidiOptions()
SUFFIXES = {"midi": ".mid", "semantic": ".semantic", "json": ".json", "jsonl": ".jsonl",
            "musicxml": ".musicxml"}


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp makes the file private (0600); a written MIDI file should be as readable
        # as any other file the user creates.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def render(score: Score, fmt: str, options: MidiOptions = DEFAULT_MIDI,
           image: str = "") -> bytes:
    """The bytes of `score` in format `fmt`."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return RENDERERS[fmt](score, options, image)


def write_output(score: Score, path: Path, fmt: str, options: MidiOptions = DEFAULT_MIDI,
                 image: str = "") -> None:
    write_atomic(path, render(score, fmt, options, image))


def record(image: str, score: Score | None, error: str | None = None) -> dict:
    """The JSON Lines record of one input (the contract evaluators script against)."""
    staves = [s.to_dict() for s in score.staves] if score is not None else []
    return {"image": image, "staves": staves, "error": error}


def _midi(score: Score, options: MidiOptions, image: str) -> bytes:
    return page_midi_bytes(score.system_tokens, options)


def _semantic(score: Score, options: MidiOptions, image: str) -> bytes:
    # One staff per line, tab-separated, as in PrIMuS and ../shared/eval.
    return "".join("\t".join(s.tokens) + "\n" for s in score.staves).encode()


def _json(score: Score, options: MidiOptions, image: str) -> bytes:
    body = record(image, score)
    # Onset and duration in quarter notes from the page's start; staff indexes "staves";
    # part j is staff j of every system (a MIDI track); voice is the voice on its staff.
    # Score.systems lists the staves system by system: back to their places in "staves".
    place = [i for _, i in sorted((s.system, i) for i, s in enumerate(score.staves))]
    body["notes"] = [{"pitch": n.pitch, "onset": n.onset, "duration": n.duration,
                      "staff": place[n.staff], "part": n.part, "voice": n.voice}
                     for n in score.arrangement.notes]
    return (json.dumps(body, indent=1) + "\n").encode()


def _jsonl(score: Score, options: MidiOptions, image: str) -> bytes:
    return (json.dumps(record(image, score)) + "\n").encode()


def _musicxml(score: Score, options: MidiOptions, image: str) -> bytes:
    return page_musicxml(score.system_tokens).encode()


RENDERERS: dict[str, Callable[[Score, MidiOptions, str], bytes]] = {
    "midi": _midi, "semantic": _semantic, "json": _json, "jsonl": _jsonl, "musicxml": _musicxml,
}

# MusicXML -------------------------------------------------------------------------------------

DIVISIONS = 128  # per quarter: a double-dotted 128th note is 7 divisions
_ATTRIBUTE_ORDER = ("divisions", "key", "time", "staves", "clef")
_TYPES = {"quadruple_whole": "long", "double_whole": "breve", "whole": "whole", "half": "half",
          "quarter": "quarter", "eighth": "eighth", "sixteenth": "16th", "thirty_second": "32nd",
          "sixty_fourth": "64th", "hundred_twenty_eighth": "128th"}


def musicxml(tokens: list[str]) -> str:
    """One staff (or staves read as one sequence) as a one-part MusicXML score."""
    return page_musicxml([[list(tokens)]])


def page_musicxml(systems: Sequence[Sequence[Sequence[str]]]) -> str:
    """A partwise MusicXML score of a page, a measure per barline of each system.

    Pages of two-staff systems (piano) are one part with two staves; otherwise staff j of every
    system is part j. Voices are derived from the rhythm (omr.semantic.voices), each written in
    turn with <backup> to the measure's start; chords carry <chord/>.
    """
    arranged = arrange(systems)
    parts = max(arranged.parts, 1)
    groups = [list(range(parts))] if parts == 2 else [[j] for j in range(parts)]
    names = ["Piano"] if parts == 2 else ["Music"] if parts == 1 else \
        [f"Staff {j + 1}" for j in range(parts)]
    part_list = "".join(f'<score-part id="P{i + 1}"><part-name>{escape(name)}</part-name>'
                        f'</score-part>' for i, name in enumerate(names))
    body = "".join(f'<part id="P{i + 1}">{_part(arranged, group)}</part>'
                   for i, group in enumerate(groups))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
            '"http://www.musicxml.org/dtds/partwise.dtd">\n'
            f'<score-partwise version="4.0"><part-list>{part_list}</part-list>{body}'
            '</score-partwise>\n')


def _part(arranged: Arrangement, staves: list[int]) -> str:
    """The measures of one part, holding arrangement parts `staves` as its staves 1, 2, ..."""
    read = {j: _Read(arranged, j) for j in staves}
    out = []
    number = 0
    for s, measures in enumerate(arranged.measures):
        for k, measure in enumerate(measures):
            if not measure.length and k and k == len(measures) - 1:
                continue
            number += 1
            head = [f"<divisions>{DIVISIONS}</divisions>"] if number == 1 else []
            if number == 1 and len(staves) > 1:
                head.append(f"<staves>{len(staves)}</staves>")
            items: list[str] = []
            filled = 0.0  # how far the part's content reaches into the measure
            for n, j in enumerate(staves, 1):
                plan = next((p for p in arranged.plans if p.system == s and p.part == j), None)
                if plan is None:
                    if len(staves) == 1:
                        items.append(_measure_rest(measure.length, 0))
                    continue
                staff = _StaffMeasure(read[j], plan, k, n if len(staves) > 1 else 0)
                head += staff.attributes()
                items += staff.body()
                filled = max(filled, staff.filled)
            if filled < measure.length:
                # A staff misread short: the measure still lasts as long as the system's, so
                # every part's next measure starts together.
                # (A trailing <forward> alone is lost on readers: music21 drops it.)
                forward = f"<forward><duration>{_divisions(filled)}</duration></forward>" \
                    if filled else ""
                items.append(f'{forward}<note print-object="no"><rest/><duration>'
                             f'{_divisions(measure.length - filled)}</duration><voice>1</voice>'
                             f'{"<staff>1</staff>" if len(staves) > 1 else ""}</note>')
            # MusicXML's order inside <attributes>: divisions, key, time, staves, clef.
            head.sort(key=lambda x: _ATTRIBUTE_ORDER.index(x[1:x.index(">")].split()[0]))
            attributes = f"<attributes>{''.join(head)}</attributes>" if head else ""
            # A new system where the page had one, so a reader sees the systems as they were.
            brk = '<print new-system="yes"/>' if s and not k else ""
            if k == len(measures) - 1 and not _ends_with_barline(arranged, s, staves[0]):
                items.append('<barline location="right"><bar-style>none</bar-style></barline>')
            out.append(f'<measure number="{number}">{brk}{attributes}{"".join(items)}</measure>')
    return "".join(out)


class _Read:
    """What every measure of one arrangement part needs: each staff's events, the voices, and
    the notes a tie ends on."""

    def __init__(self, arranged: Arrangement, part: int) -> None:
        placed = arranged.layouts[part]
        plans = [p for p in arranged.plans if p.part == part]
        firsts = [p.first_token for p in plans]
        self.events: dict[int, list[semantic.Event]] = {p.staff: [] for p in plans}
        for e in placed.events:
            k = bisect.bisect_right(firsts, e.token) - 1
            if k >= 0:
                self.events[plans[k].staff].append(e)
        self.voice = semantic.voices(placed.events)
        self.stops = {m.tied_to for e in placed.events if isinstance(e.item, semantic.Group)
                      for m in e.item.members if m.tied_to >= 0}


class _StaffMeasure:
    """Measure k of one staff: its attributes, then each voice in turn."""

    def __init__(self, read: _Read, plan: StaffPlan, k: int, staff: int) -> None:
        self.staff = staff  # <staff> number, 0 in a one-staff part
        last = k + 1 >= len(plan.bounds) - 1
        self.start = plan.bounds[k] if k < len(plan.bounds) else plan.bounds[-1]
        end = math.inf if last else plan.bounds[k + 1]
        mine = read.events[plan.staff]
        self.events = [] if k >= len(plan.bounds) - 1 else [
            e for e in mine if (k == 0 or e.onset >= self.start) and e.onset < end]
        self.length = (plan.bounds[k + 1] - self.start) if not last else max(
            [0.0] + [e.onset - self.start + _extent(e) for e in self.events])
        self.voice, self.stops = read.voice, read.stops
        self.measure_rests = [e for e in mine if isinstance(e.item, semantic.MultiRest)
                              and e.onset <= self.start < e.onset + _extent(e, plan)]

    def attributes(self, late: bool = False) -> list[str]:
        """The clef, key and time at the measure's start (or, `late`, after it: by offset)."""
        out = []
        for e in self.events:
            if not isinstance(e.item, (semantic.Clef, semantic.KeySignature, semantic.TimeSignature)):
                continue
            if (e.onset > self.start) != late:
                continue
            if self.staff > 1 and not isinstance(e.item, semantic.Clef):
                continue  # key and time apply to every staff of the part: the top one's
            out.append(_attribute(e.item, self.staff))
        return out

    def _late_attributes(self) -> list[str]:
        """A clef or signature change inside the measure, at its offset."""
        out = []
        for e in self.events:
            if e.onset <= self.start or not isinstance(
                    e.item, (semantic.Clef, semantic.KeySignature, semantic.TimeSignature)):
                continue
            if self.staff > 1 and not isinstance(e.item, semantic.Clef):
                continue
            at = _divisions(e.onset - self.start)
            out.append(f"<forward><duration>{at}</duration></forward><attributes>"
                       f"{_attribute(e.item, self.staff)}</attributes>"
                       f"<backup><duration>{at}</duration></backup>")
        return out

    def body(self) -> list[str]:
        out: list[str] = []
        for e in self.events:
            if isinstance(e.item, semantic.MultiRest) and e.onset >= self.start:
                out.append(f"<attributes><measure-style><multiple-rest>{e.item.measures}"
                           f"</multiple-rest></measure-style></attributes>")
        self.filled = self.length if self.measure_rests else 0.0
        if self.measure_rests:
            return out + [_measure_rest(self.length, self.staff)]
        chords: dict[int, list[tuple[float, list[semantic.Member], tuple]]] = {}
        for e in self.events:
            if not isinstance(e.item, semantic.Group):
                continue
            first = True
            for chord in semantic.chords(e.item):
                voice = self.voice.get(chord[0].token, 1)
                graces = e.item.graces if first else ()
                chords.setdefault(voice, []).append((e.onset - self.start, chord, graces))
                first = False
        self.filled = 0.0
        for voice in sorted(chords):
            out += self._voice(voice, chords[voice])
        return out + self._late_attributes()

    def _voice(self, voice: int, chords: list) -> list[str]:
        out, cursor = [], 0.0
        tags = self._tags(voice)
        for offset, chord, graces in sorted(chords, key=lambda c: c[0]):
            if offset > cursor:
                out.append(f"<forward><duration>{_divisions(offset - cursor)}</duration>"
                           f"{tags}</forward>")
            for run in graces:
                out += [_note(m.symbol, False, False, tags, k > 0) for k, m in enumerate(run)]
            for k, m in enumerate(sorted(chord, key=lambda m: semantic.member_order(m.symbol))):
                if isinstance(m.symbol, semantic.Rest):
                    out.append(_rest(m.symbol, tags))
                else:
                    out.append(_note(m.symbol, m.tie >= 0, m.token in self.stops, tags, k > 0))
            cursor = max(cursor, offset) + chord[0].duration
        self.filled = max(self.filled, cursor)
        if cursor:
            out.append(f"<backup><duration>{_divisions(cursor)}</duration></backup>")
        return out

    def _tags(self, voice: int) -> str:
        number = voice + 4 * (self.staff - 1) if self.staff and voice <= 4 else voice
        return f"<voice>{number}</voice>" + (f"<staff>{self.staff}</staff>" if self.staff else "")


def _ends_with_barline(arranged: Arrangement, system: int, part: int) -> bool:
    plan = next((p for p in arranged.plans if p.system == system and p.part == part), None)
    if plan is None:
        return True
    later = [p.first_token for p in arranged.plans if p.part == part and p.first_token > plan.first_token]
    tokens = arranged.sequences[part][plan.first_token:min(later, default=None)]
    return not tokens or tokens[-1] == "barline"


def _extent(e: semantic.Event, plan: StaffPlan | None = None) -> float:
    if isinstance(e.item, semantic.Group):
        return max((m.duration for m in e.item.members), default=0.0)
    if isinstance(e.item, semantic.MultiRest) and plan is not None:
        inside = [b for b in plan.bounds if b > e.onset]
        return e.item.measures * ((inside[0] - e.onset) if inside else 4.0)
    return 0.0


def _divisions(quarters: float) -> int:
    return round(quarters * DIVISIONS)


def _measure_rest(length: float, staff: int) -> str:
    tag = f"<staff>{staff}</staff>" if staff else ""
    return (f'<note><rest measure="yes"/><duration>{_divisions(length)}</duration>'
            f'<voice>1</voice>{tag}</note>'
            f'<backup><duration>{_divisions(length)}</duration></backup>')


def _attribute(symbol: object, staff: int) -> str:
    if isinstance(symbol, semantic.Clef):
        number = f' number="{staff}"' if staff else ""
        return f"<clef{number}><sign>{symbol.sign[0]}</sign><line>{symbol.sign[1]}</line></clef>"
    if isinstance(symbol, semantic.KeySignature):
        return f"<key><fifths>{symbol.fifths}</fifths></key>"
    assert isinstance(symbol, semantic.TimeSignature)
    sym = {"C": ' symbol="common"', "C/": ' symbol="cut"'}.get(symbol.symbol, "")
    return (f"<time{sym}><beats>{symbol.numerator}</beats>"
            f"<beat-type>{symbol.denominator}</beat-type></time>")


def _duration(kind: str, dots: int) -> int:
    return round(semantic.DURATIONS[kind] * semantic.DOT_FACTOR[dots] * DIVISIONS)


def _note(note: semantic.Note, tie_start: bool, tie_stop: bool, tags: str, chord: bool) -> str:
    alter = f"<alter>{note.alter}</alter>" if note.alter else ""
    grace = "<grace/>" if note.grace else ""
    duration = "" if note.grace else f"<duration>{_duration(note.kind, note.dots)}</duration>"
    ties = ('<tie type="stop"/>' if tie_stop else "") + ('<tie type="start"/>' if tie_start else "")
    notations = ('<tied type="stop"/>' if tie_stop else "") + \
        ('<tied type="start"/>' if tie_start else "") + ("<fermata/>" if note.fermata else "")
    return (f"<note>{grace}{'<chord/>' if chord else ''}<pitch><step>{note.step}</step>{alter}"
            f"<octave>{note.octave}</octave></pitch>{duration}{ties}{_voice_tag(tags)}"
            f"<type>{_TYPES[note.kind]}</type>{'<dot/>' * note.dots}{_staff_tag(tags)}"
            f"{f'<notations>{notations}</notations>' if notations else ''}</note>")


def _voice_tag(tags: str) -> str:
    return tags[:tags.index("</voice>") + 8]


def _staff_tag(tags: str) -> str:
    return tags[tags.index("</voice>") + 8:]


def _rest(rest: semantic.Rest, tags: str) -> str:
    notations = "<notations><fermata/></notations>" if rest.fermata else ""
    return (f"<note><rest/><duration>{_duration(rest.kind, rest.dots)}</duration>"
            f"{_voice_tag(tags)}<type>{_TYPES[rest.kind]}</type>{'<dot/>' * rest.dots}"
            f"{_staff_tag(tags)}{notations}</note>")
