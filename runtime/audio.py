"""Hearing what was read: the MIDI rendered to a WAV with a General MIDI SoundFont, and played.

Everything comes from pip wheels (the `[audio]` extra), no system package: midirenderer
synthesises (a SoundFont 2 synthesizer compiled into its wheel; tinysoundfont's wheel would
pull PyAudio, which builds only against the system's PortAudio) with TimGM6mb, the 6 MB GM
SoundFont that pretty_midi ships; sounddevice plays. The instrument is the MIDI's own
program change (--program). OMR_SOUNDFONT names another .sf2.
"""

from __future__ import annotations

import importlib.util
import io
import os
import wave
from pathlib import Path

SOUNDFONT_PACKAGE, SOUNDFONT_FILE = "pretty_midi", "TimGM6mb.sf2"
_MISSING = "audio needs the [audio] extra: pip install 'omr-midi[audio]'"


class AudioError(RuntimeError):
    """Sound cannot be made or played here; the message says why."""


def soundfont() -> Path:
    """The SoundFont to synthesise with: $OMR_SOUNDFONT, else the one pretty_midi ships."""
    if os.environ.get("OMR_SOUNDFONT"):
        path = Path(os.environ["OMR_SOUNDFONT"])
        if not path.is_file():
            raise AudioError(f"OMR_SOUNDFONT names no file: {path}")
        return path
    # Found without importing pretty_midi: only its data file is needed.
    spec = importlib.util.find_spec(SOUNDFONT_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / SOUNDFONT_FILE \
        if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise AudioError(f"no General MIDI SoundFont found; {_MISSING}")
    return path


def require() -> None:
    """Fail before any input is read when the synthesizer or its SoundFont is missing."""
    if importlib.util.find_spec("midirenderer") is None:
        raise AudioError(_MISSING)
    soundfont()


def render_wav(midi: bytes) -> bytes:
    """A 48 kHz stereo 16-bit WAV of `midi`, as long as the MIDI itself."""
    try:
        import midirenderer
    except ImportError as err:
        raise AudioError(_MISSING) from err
    try:
        return bytes(midirenderer.render_wave_from(soundfont().read_bytes(), midi))
    except (ValueError, RuntimeError) as err:
        raise AudioError(f"cannot synthesise the MIDI: {err}") from err


def decode_wav(data: bytes):
    """(samples as float32 in [-1, 1], frames x channels; sample rate) of a 16-bit WAV."""
    import numpy as np

    with wave.open(io.BytesIO(data)) as w:
        if w.getsampwidth() != 2:
            raise AudioError("only 16-bit WAV can be played")
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return frames.reshape(-1, w.getnchannels()).astype(np.float32) / 32768.0, w.getframerate()


def play(data: bytes) -> None:
    """Play a WAV on the default output device, waiting until it ends."""
    try:
        import sounddevice
    except ImportError as err:
        raise AudioError(_MISSING) from err
    except OSError as err:  # the PortAudio library itself is missing
        raise AudioError(f"cannot play here: {err} (write a file with --format wav)") from err
    samples, rate = decode_wav(data)
    try:
        sounddevice.check_output_settings(channels=samples.shape[1], samplerate=rate)
        sounddevice.play(samples, rate, blocking=True)
    except (sounddevice.PortAudioError, ValueError) as err:
        raise AudioError(f"no audio output device here ({str(err).splitlines()[0]}); "
                         f"write a file with --format wav instead") from err
