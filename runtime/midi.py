"""Staff labels to a Standard MIDI File, written with mido: one track per part of the page."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import mido

from .parts import PageNote, arrange
from .semantic import KeySignature, MetaEvent, NoteEvent, TimeSignature, timeline

TICKS_PER_QUARTER = 480


@dataclass(frozen=True)
class MidiOptions:
    tempo: float = 100.0  # quarter notes per minute
    program: int = 0  # General MIDI program, 0 = acoustic grand piano
    velocity: int = 80
    channel: int = 0


def note_list(tokens: Sequence[str]) -> list[dict[str, float]]:
    """The notes of one staff as plain dicts for JSON: pitch, onset and duration in quarter notes."""
    return [{"pitch": n.pitch, "onset": n.onset, "duration": n.duration}
            for n in timeline(tokens)[0]]


def midi_file(tokens: Sequence[str], options: MidiOptions = MidiOptions()) -> mido.MidiFile:
    """One staff (or staves read as one sequence) as one track, tied notes merged."""
    return page_midi([[list(tokens)]], options)


def page_midi(systems: Sequence[Sequence[Sequence[str]]],
              options: MidiOptions = MidiOptions()) -> mido.MidiFile:
    """A page: staff j of every system is track j (one track: a type 0 file, as before), the
    staves of a system in step measure by measure (omr.parts). Track j plays on channel
    `channel + j`, the drum channel skipped; the first track carries tempo and signatures."""
    if not 0 <= options.program <= 127:
        raise ValueError(f"MIDI program must be 0-127, got {options.program}")
    if not 1 <= options.tempo <= 1000:
        raise ValueError(f"tempo must be 1-1000 BPM, got {options.tempo}")
    if not 0 <= options.channel <= 15:
        raise ValueError(f"MIDI channel must be 0-15, got {options.channel}")
    arranged = arrange(systems)
    parts = max(arranged.parts, 1)
    midi = mido.MidiFile(type=0 if parts == 1 else 1, ticks_per_beat=TICKS_PER_QUARTER)
    for j in range(parts):
        channel = _channel(options.channel, j)
        notes = [n for n in arranged.notes if n.part == j]
        metas = arranged.metas[0] if j == 0 and arranged.metas else ()
        midi.tracks.append(_track(notes, metas, options, channel, first=j == 0))
    return midi


def _channel(first: int, part: int) -> int:
    channels = [c for c in range(16) if c != 9]  # channel 10 (index 9) is drums in General MIDI
    start = channels.index(first) if first in channels else 0
    return first if part == 0 else channels[(start + part) % len(channels)]


def _track(notes: Sequence[PageNote], metas: Sequence[MetaEvent], options: MidiOptions,
           channel: int, first: bool) -> mido.MidiTrack:
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = []
    # Order within a tick: meta events, then note-offs, then note-ons, so a repeated pitch
    # is released before it sounds again.
    last: dict[type, object] = {}
    for meta in metas:
        symbol = meta.symbol
        if last.get(type(symbol)) == symbol:
            continue  # every staff repeats its signatures; only changes matter in MIDI
        last[type(symbol)] = symbol
        events.append((_ticks(meta.onset), 0, _meta_message(symbol)))
    for pitch, on, off in _untangle(notes):
        events.append((on, 2, mido.Message("note_on", note=pitch, velocity=options.velocity,
                                           channel=channel)))
        events.append((off, 1, mido.Message("note_off", note=pitch, velocity=0, channel=channel)))
    events.sort(key=lambda e: (e[0], e[1]))

    track = mido.MidiTrack()
    if first:
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(options.tempo)))
    track.append(mido.Message("program_change", program=options.program, channel=channel))
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def sounded(systems: Sequence[Sequence[Sequence[str]]]) -> list[tuple[int, int, int, int]]:
    """(part, pitch, on tick, off tick) of every note the page's MIDI file plays: the page's
    notes, a unison within a part sounded once (see _untangle)."""
    arranged = arrange(systems)
    return sorted((j, *note) for j in range(arranged.parts)
                  for note in _untangle([n for n in arranged.notes if n.part == j]))


def _untangle(notes: Sequence[PageNote]) -> list[tuple[int, int, int]]:
    """(pitch, on tick, off tick) with no pitch sounding twice at once on one channel: two voices
    in unison sound as the longer note, and a note struck again cuts the one still sounding."""
    out: list[list[int]] = []
    sounding: dict[int, list[int]] = {}
    for n in sorted(notes, key=lambda n: (n.onset, -n.duration, n.pitch)):
        on = _ticks(n.onset)
        off = max(_ticks(n.onset + n.duration), on + 1)
        held = sounding.get(n.pitch)
        if held is not None and held[2] > on:
            if held[1] == on:
                continue  # the same onset: the longer note (first in this order) stands
            held[2] = on
        sounding[n.pitch] = [n.pitch, on, off]
        out.append(sounding[n.pitch])
    return [tuple(x) for x in out]


def midi_bytes(tokens: Sequence[str], options: MidiOptions = MidiOptions()) -> bytes:
    return _bytes(midi_file(tokens, options))


def page_midi_bytes(systems: Sequence[Sequence[Sequence[str]]],
                    options: MidiOptions = MidiOptions()) -> bytes:
    return _bytes(page_midi(systems, options))


def _bytes(midi: mido.MidiFile) -> bytes:
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def notes_from_midi(data: bytes) -> list[NoteEvent]:
    """Read back the notes of a MIDI file (used by tests and evaluation)."""
    midi = mido.MidiFile(file=io.BytesIO(data))
    tpq = midi.ticks_per_beat
    sounding: dict[tuple[int, int], int] = {}
    notes: list[NoteEvent] = []
    now = 0
    for message in mido.merge_tracks(midi.tracks):
        now += message.time
        key = (getattr(message, "channel", 0), getattr(message, "note", -1))
        if message.type == "note_on" and message.velocity > 0:
            sounding[key] = now
        elif message.type in ("note_off", "note_on") and key in sounding:
            start = sounding.pop(key)
            notes.append(NoteEvent(message.note, start / tpq, (now - start) / tpq))
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


def _ticks(quarters: float) -> int:
    return round(quarters * TICKS_PER_QUARTER)


def _meta_message(symbol: KeySignature | TimeSignature) -> mido.MetaMessage:
    if isinstance(symbol, KeySignature):
        return mido.MetaMessage("key_signature", key=symbol.key)
    return mido.MetaMessage("time_signature", numerator=symbol.numerator,
                            denominator=symbol.denominator)
