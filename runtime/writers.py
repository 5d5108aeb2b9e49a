"""Output writers (MIDI, semantic, JSON, JSON Lines, MusicXML) behind one small interface.

Every writer renders bytes in memory first; `write_atomic` then puts them in place with a
rename, so a failure never leaves a partial file or clobbers an earlier good one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from . import semantic
from .midi import MidiOptions, midi_bytes, note_list

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
    return midi_bytes(score.tokens, options)


def _semantic(score: Score, options: MidiOptions, image: str) -> bytes:
    # One staff per line, tab-separated, as in PrIMuS and ../shared/eval.
    return "".join("\t".join(s.tokens) + "\n" for s in score.staves).encode()


def _json(score: Score, options: MidiOptions, image: str) -> bytes:
    body = record(image, score)
    body["notes"] = note_list(score.tokens)
    return (json.dumps(body, indent=1) + "\n").encode()


def _jsonl(score: Score, options: MidiOptions, image: str) -> bytes:
    return (json.dumps(record(image, score)) + "\n").encode()


def _musicxml(score: Score, options: MidiOptions, image: str) -> bytes:
    return musicxml(score.tokens).encode()


RENDERERS: dict[str, Callable[[Score, MidiOptions, str], bytes]] = {
    "midi": _midi, "semantic": _semantic, "json": _json, "jsonl": _jsonl, "musicxml": _musicxml,
}

# MusicXML -------------------------------------------------------------------------------------

DIVISIONS = 128  # per quarter: a double-dotted 128th note is 7 divisions
_TYPES = {"quadruple_whole": "long", "double_whole": "breve", "whole": "whole", "half": "half",
          "quarter": "quarter", "eighth": "eighth", "sixteenth": "16th", "thirty_second": "32nd",
          "sixty_fourth": "64th", "hundred_twenty_eighth": "128th"}


def musicxml(tokens: list[str]) -> str:
    """A minimal partwise MusicXML score: one part, a measure per barline."""
    measures: list[list[str]] = [[]]
    tie_next = False
    measure = 4 * DIVISIONS  # a multirest with no time signature counts 4/4 measures
    for symbol in semantic.parse(tokens):
        body = measures[-1]
        if isinstance(symbol, semantic.Barline):
            measures.append([])
        elif isinstance(symbol, (semantic.Clef, semantic.KeySignature, semantic.TimeSignature)):
            body.append(_attributes(symbol))
            if isinstance(symbol, semantic.TimeSignature):
                measure = round(symbol.measure * DIVISIONS)
        elif isinstance(symbol, semantic.Tie):
            _start_tie(body)
            tie_next = True
        elif isinstance(symbol, semantic.Note):
            body.append(_note(symbol, tie_stop=tie_next and not symbol.grace))
            tie_next = tie_next and symbol.grace
        elif isinstance(symbol, semantic.Rest):
            body.append(_rest(symbol.kind, symbol.dots, symbol.fermata))
        elif isinstance(symbol, semantic.MultiRest):
            body.append(f'<attributes><measure-style><multiple-rest>{symbol.measures}'
                        f'</multiple-rest></measure-style></attributes>')
            body.append(f'<note><rest measure="yes"/><duration>{measure}</duration></note>')
            for _ in range(symbol.measures - 1):
                measures.append([f'<note><rest measure="yes"/><duration>{measure}</duration></note>'])
    if not measures[-1] and len(measures) > 1:
        measures.pop()
    parts = "".join(f'<measure number="{i + 1}">{"".join(m)}</measure>'
                    for i, m in enumerate(measures))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 4.0 Partwise//EN" '
            '"http://www.musicxml.org/dtds/partwise.dtd">\n'
            '<score-partwise version="4.0"><part-list><score-part id="P1"><part-name>'
            f'{escape("Music")}</part-name></score-part></part-list><part id="P1">'
            f'{parts}</part></score-partwise>\n')


def _attributes(symbol: object) -> str:
    if isinstance(symbol, semantic.Clef):
        inner = f"<clef><sign>{symbol.sign[0]}</sign><line>{symbol.sign[1]}</line></clef>"
    elif isinstance(symbol, semantic.KeySignature):
        inner = f"<key><fifths>{symbol.fifths}</fifths></key>"
    else:
        assert isinstance(symbol, semantic.TimeSignature)
        sym = {"C": ' symbol="common"', "C/": ' symbol="cut"'}.get(symbol.symbol, "")
        inner = (f"<time{sym}><beats>{symbol.numerator}</beats>"
                 f"<beat-type>{symbol.denominator}</beat-type></time>")
    return f"<attributes><divisions>{DIVISIONS}</divisions>{inner}</attributes>"


def _duration(kind: str, dots: int) -> int:
    return round(semantic.DURATIONS[kind] * semantic.DOT_FACTOR[dots] * DIVISIONS)


def _note(note: semantic.Note, tie_stop: bool) -> str:
    alter = f"<alter>{note.alter}</alter>" if note.alter else ""
    grace = "<grace/>" if note.grace else ""
    duration = "" if note.grace else f"<duration>{_duration(note.kind, note.dots)}</duration>"
    tie = '<tie type="stop"/>' if tie_stop else ""
    notations = '<tied type="stop"/>' if tie_stop else ""
    if note.fermata:
        notations += "<fermata/>"
    return (f"<note>{grace}<pitch><step>{note.step}</step>{alter}<octave>{note.octave}</octave>"
            f"</pitch>{duration}{tie}<type>{_TYPES[note.kind]}</type>{'<dot/>' * note.dots}"
            f"{f'<notations>{notations}</notations>' if notations else ''}</note>")


def _start_tie(body: list[str]) -> None:
    """Mark the last note of the measure as the start of a tie."""
    for k in range(len(body) - 1, -1, -1):
        if body[k].startswith("<note>") and "<pitch>" in body[k]:
            note = body[k].replace("<type>", '<tie type="start"/><type>', 1)
            if "<notations>" in note:
                note = note.replace("<notations>", '<notations><tied type="start"/>', 1)
            else:
                note = note.replace("</note>", '<notations><tied type="start"/></notations></note>')
            body[k] = note
            return


def _rest(kind: str, dots: int, fermata: bool) -> str:
    notations = "<notations><fermata/></notations>" if fermata else ""
    return (f"<note><rest/><duration>{_duration(kind, dots)}</duration><type>{_TYPES[kind]}"
            f"</type>{'<dot/>' * dots}{notations}</note>")
