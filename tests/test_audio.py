"""--format wav checked in the sound itself: its length, and the pitch heard at each onset."""

from __future__ import annotations

import math

import mido
import numpy as np
import pytest
from click.testing import CliRunner
from omr.audio import AudioError, decode_wav, render_wav
from omr.cli import cli

pytest.importorskip("midirenderer", reason="the [audio] extra is not installed")
pytest.importorskip("verovio")


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def engraved_page(tmp_path_factory):
    """A one-part page engraved by the engine: a melody, one note at a time."""
    import cv2
    from omr_train.synth.layout import PageLayout, engrave_page

    layout = PageLayout(width_px=1654, systems=5, measures=4, key=2, time="3/4")
    page, _, _ = engrave_page(layout, np.random.default_rng(5))
    path = tmp_path_factory.mktemp("audio") / "melody.png"
    cv2.imwrite(str(path), page)
    return path


def _onsets(midi: mido.MidiFile) -> list[tuple[float, float, int]]:
    """(onset s, duration s, pitch) of every note."""
    now, start, out = 0.0, {}, []
    for message in midi:
        now += message.time
        if message.type == "note_on" and message.velocity:
            start[message.note] = now
        elif message.type in ("note_off", "note_on") and message.note in start:
            begun = start.pop(message.note)
            out.append((begun, now - begun, message.note))
    return sorted(out)


def _strongest(samples: np.ndarray, rate: int, at: float, length: float) -> float:
    """The frequency of the strongest partial in the note's first `length` seconds."""
    a = int((at + 0.01) * rate)  # past the attack's click
    chunk = samples[a:a + max(int(length * rate), 256)]
    spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk)), 1 << 17))
    spectrum[: int(40 * (1 << 17) / rate)] = 0  # below any note's fundamental: hum, offset
    k = int(np.argmax(spectrum))
    # Parabolic interpolation of the peak: a fraction of a bin.
    y0, y1, y2 = np.log(spectrum[k - 1:k + 2] + 1e-12)
    shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return (k + shift) * rate / (1 << 17)


def _heard(freq: float, pitch: int) -> bool:
    """Within a quarter tone (50 cents) of the note's fundamental or one of its harmonics."""
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    return any(abs(1200 * math.log2(freq / (h * f0))) < 50 for h in range(1, 9))


# The piano (the default) at every note; the violin's slow attack lets the previous note's
# release drown a note shorter than about 60 ms, so it is held to the notes of 0.1 s or more.
@pytest.mark.parametrize("program, shortest", [(0, 0.0), (40, 0.1)])
def test_wav_lasts_as_long_as_the_midi_and_sounds_its_notes(tmp_path, engraved_page, program,
                                                            shortest):
    midi_path, wav_path = tmp_path / "melody.mid", tmp_path / "melody.wav"
    assert run(str(engraved_page), "-o", str(midi_path), "--program", str(program)).exit_code == 0
    result = run(str(engraved_page), "-o", str(wav_path), "--format", "wav", "--program",
                 str(program))
    assert result.exit_code == 0, result.stderr
    midi = mido.MidiFile(str(midi_path))
    assert [m.program for t in midi.tracks for m in t if m.type == "program_change"] == [program]
    samples, rate = decode_wav(wav_path.read_bytes())
    assert abs(len(samples) / rate - midi.length) < 0.1, (len(samples) / rate, midi.length)
    mono = samples.mean(axis=1)
    notes = [n for n in _onsets(midi) if n[1] >= shortest]
    assert len(notes) > 40
    heard = [_heard(_strongest(mono, rate, at, min(duration, 0.25)), pitch)
             for at, duration, pitch in notes]
    assert sum(heard) >= 0.95 * len(notes), f"{sum(heard)} of {len(notes)}"


def test_program_changes_the_instrument_heard(tmp_path, engraved_page):
    outputs = []
    for program in (0, 40):
        out = tmp_path / f"p{program}.wav"
        assert run(str(engraved_page), "-o", str(out), "--format", "wav",
                   "--program", str(program)).exit_code == 0
        outputs.append(decode_wav(out.read_bytes())[0])
    assert outputs[0].shape == outputs[1].shape and not np.allclose(outputs[0], outputs[1])


def test_unreadable_midi_is_an_audio_error():
    with pytest.raises(AudioError):
        render_wav(b"MThd not really a midi file")


def test_play_says_clearly_where_no_audio_device_exists(tmp_path, engraved_page):
    try:
        import sounddevice

        if any(d["max_output_channels"] > 0 for d in sounddevice.query_devices()):
            pytest.skip("this machine has an audio output device: --play would play")
    except (ImportError, OSError):
        pass  # no PortAudio here: the case under test
    out = tmp_path / "melody.mid"
    result = run(str(engraved_page), "-o", str(out), "--play")
    assert result.exit_code == 1 and out.exists()
    (line,) = result.stderr.splitlines()[-1:]
    assert line.startswith("omr-run: error: --play: ") and "--format wav" in line, line
    assert "Traceback" not in result.output + result.stderr
