"""Semantic tokens to a one-track Standard MIDI File, written with mido."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import mido

from .semantic import KeySignature, NoteEvent, TimeSignature, timeline

TICKS_PER_QUARTER = 480


@dataclass(frozen=True)
class MidiOptions:
    tempo: float = 100.0  # quarter notes per minute
    program: int = 0  # General MIDI program, 0 = acoustic grand piano
    velocity: int = 80
    channel: int = 0


def note_list(tokens: Sequence[str]) -> list[dict[str, float]]:
    """The notes as plain dicts for JSON: pitch, onset and duration in quarter notes."""
    return [{"pitch": n.pitch, "onset": n.onset, "duration": n.duration}
            for n in timeline(tokens)[0]]


def midi_file(tokens: Sequence[str], options: MidiOptions = MidiOptions()) -> mido.MidiFile:
    """One track: tempo, program, signature changes and the notes, tied notes merged."""
    if not 0 <= options.program <= 127:
        raise ValueError(f"MIDI program must be 0-127, got {options.program}")
    if not 1 <= options.tempo <= 1000:
        raise ValueError(f"tempo must be 1-1000 BPM, got {options.tempo}")
    notes, metas, _ = timeline(tokens)
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
    for note in notes:
        on, off = _ticks(note.onset), max(_ticks(note.onset + note.duration), _ticks(note.onset) + 1)
        events.append((on, 2, mido.Message("note_on", note=note.pitch, velocity=options.velocity,
                                           channel=options.channel)))
        events.append((off, 1, mido.Message("note_off", note=note.pitch, velocity=0,
                                            channel=options.channel)))
    events.sort(key=lambda e: (e[0], e[1]))

    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(options.tempo)))
    track.append(mido.Message("program_change", program=options.program, channel=options.channel))
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_QUARTER)
    midi.tracks.append(track)
    return midi


def midi_bytes(tokens: Sequence[str], options: MidiOptions = MidiOptions()) -> bytes:
    buffer = io.BytesIO()
    midi_file(tokens, options).save(file=buffer)
    return buffer.getvalue()


def notes_from_midi(data: bytes) -> list[NoteEvent]:
    """Read back the notes of a MIDI file (used by tests and evaluation)."""
    midi = mido.MidiFile(file=io.BytesIO(data))
    tpq = midi.ticks_per_beat
    sounding: dict[int, int] = {}
    notes: list[NoteEvent] = []
    now = 0
    for message in mido.merge_tracks(midi.tracks):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            sounding[message.note] = now
        elif message.type in ("note_off", "note_on") and message.note in sounding:
            start = sounding.pop(message.note)
            notes.append(NoteEvent(message.note, start / tpq, (now - start) / tpq))
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


def _ticks(quarters: float) -> int:
    return round(quarters * TICKS_PER_QUARTER)


def _meta_message(symbol: KeySignature | TimeSignature) -> mido.MetaMessage:
    if isinstance(symbol, KeySignature):
        return mido.MetaMessage("key_signature", key=symbol.key)
    return mido.MetaMessage("time_signature", numerator=symbol.numerator,
                            denominator=symbol.denominator)
