"""The symbol vocabulary shared by training, export and the runtime.

Index 0 is the CTC blank; token i sits at index i + 1. The vocabulary travels with every
model (checkpoint dict, ONNX metadata, Core ML metadata), so a model never depends on a
vocabulary file that might have changed since it was trained.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BLANK = "<blank>"


@dataclass(frozen=True)
class Vocabulary:
    tokens: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: Iterable[Sequence[str]]) -> Vocabulary:
        seen: set[str] = set()
        for seq in labels:
            seen.update(seq)
        return cls(tuple(sorted(seen)))

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        return cls(tuple(json.loads(text)))

    def to_json(self) -> str:
        return json.dumps(list(self.tokens))

    @property
    def size(self) -> int:
        """Number of classes the network predicts, blank included."""
        return len(self.tokens) + 1

    def __contains__(self, token: str) -> bool:
        return token in self._index

    @property
    def _index(self) -> dict[str, int]:
        # Built lazily and cached on the instance; frozen dataclasses forbid plain assignment.
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = {t: i + 1 for i, t in enumerate(self.tokens)}
            object.__setattr__(self, "_cache", cache)
        return cache

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token strings to class ids; unknown tokens raise KeyError (a label the model cannot learn)."""
        return [self._index[t] for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i - 1] for i in ids if i > 0]


# --- TrOMR's factorised vocabulary -------------------------------------------------------
# The transformer predicts each token as three parts (Li et al., ICASSP 2023): its rhythm (the
# token with the pitch taken out), its pitch (letter and octave) and its lift (the accidental),
# so that a few hundred rhythms and some seventy pitches stand for thousands of note tokens.

NONE = "<none>"  # the pitch and the lift of a token that is not a note
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
LIFTS = ("", "#", "##", "b", "bb")
CHORD = "|"  # the chord joiner of the polyphonic notation: the next token starts at this onset
_PITCHED = re.compile(r"^(note|gracenote)-([A-G])(##|bb|#|b)?(-?\d+)_(.+)$")


def factorise(token: str) -> tuple[str, str | None, str | None]:
    """`note-C#4_quarter.` -> ("note-quarter.", "C4", "#"); any token without a pitch -> (token,
    None, None). `compose` inverts it."""
    m = _PITCHED.match(token)
    if not m:
        return token, None, None
    kind, letter, lift, octave, rest = m.groups()
    return f"{kind}-{rest}", f"{letter}{octave}", lift or ""


def compose(rhythm: str, pitch: str | None, lift: str | None) -> str:
    """The token of a (rhythm, pitch, lift) triple; a note rhythm without a pitch is malformed."""
    if not is_note_rhythm(rhythm):
        return rhythm
    if not pitch or lift is None:
        raise ValueError(f"{rhythm}: a note needs a pitch and a lift")
    kind, rest = rhythm.split("-", 1)
    return f"{kind}-{pitch[0]}{lift}{pitch[1:]}_{rest}"


def is_note_rhythm(rhythm: str) -> bool:
    return rhythm.startswith(("note-", "gracenote-"))


@dataclass(frozen=True)
class FactorVocabulary:
    """Three id spaces. Rhythm ids start with PAD, BOS, EOS; pitch and lift ids with NONE, the
    part of every token that is not a note. Travels with the model, as `Vocabulary` does."""

    rhythms: tuple[str, ...]
    pitches: tuple[str, ...]
    lifts: tuple[str, ...] = (NONE, *LIFTS)

    @classmethod
    def from_labels(cls, labels: Iterable[Sequence[str]], grammar: bool = False) -> FactorVocabulary:
        """The parts of these labels' tokens; `grammar`: and every part `grammar_parts` lists."""
        rhythms: set[str] = set()
        pitches: set[str] = set()
        if grammar:
            rhythms.update(grammar_parts()[0])
            pitches.update(grammar_parts()[1])
        for seq in labels:
            for token in seq:
                rhythm, pitch, _ = factorise(token)
                rhythms.add(rhythm)
                if pitch:
                    pitches.add(pitch)
        return cls((PAD, BOS, EOS, *sorted(rhythms)), (NONE, *sorted(pitches, key=_pitch_order)))

    def to_dict(self) -> dict[str, list[str]]:
        return {"rhythms": list(self.rhythms), "pitches": list(self.pitches),
                "lifts": list(self.lifts)}

    @classmethod
    def from_dict(cls, d: dict) -> FactorVocabulary:
        return cls(tuple(d["rhythms"]), tuple(d["pitches"]), tuple(d["lifts"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> FactorVocabulary:
        return cls.from_dict(json.loads(text))

    @property
    def sizes(self) -> tuple[int, int, int]:
        return len(self.rhythms), len(self.pitches), len(self.lifts)

    @property
    def note_rhythms(self) -> tuple[int, ...]:
        """Ids of the rhythms that carry a pitch (the consistency loss and the decoders use it)."""
        return tuple(i for i, r in enumerate(self.rhythms) if is_note_rhythm(r))

    def _maps(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = tuple({t: i for i, t in enumerate(part)}
                          for part in (self.rhythms, self.pitches, self.lifts))
            object.__setattr__(self, "_cache", cache)
        return cache

    def __contains__(self, token: str) -> bool:
        rhythm, pitch, lift = factorise(token)
        r, p, q = self._maps()
        return rhythm in r and (pitch is None or (pitch in p and lift in q))

    def encode(self, tokens: Sequence[str]) -> tuple[list[int], list[int], list[int]]:
        """Token strings to (rhythm, pitch, lift) ids, without BOS or EOS; unknown parts raise
        KeyError."""
        r, p, q = self._maps()
        parts = [factorise(t) for t in tokens]
        return ([r[a] for a, _, _ in parts], [p[b or NONE] for _, b, _ in parts],
                [q[NONE if c is None else c] for _, _, c in parts])

    def decode(self, rhythms: Iterable[int], pitches: Iterable[int],
               lifts: Iterable[int]) -> list[str]:
        """Ids back to tokens, up to the first EOS; PAD and BOS are skipped. A note rhythm read
        with no pitch or lift (NONE) is dropped: it cannot be written as a token."""
        out = []
        for r, p, q in zip(rhythms, pitches, lifts):
            rhythm = self.rhythms[r]
            if rhythm == EOS:
                break
            if rhythm in (PAD, BOS):
                continue
            pitch, lift = self.pitches[p], self.lifts[q]
            if is_note_rhythm(rhythm) and NONE in (pitch, lift):
                continue
            out.append(compose(rhythm, pitch, lift))
        return out


def grammar_parts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Rhythms and pitches the notation allows, seen in a set or not, so that a vocabulary made
    from monophonic staves still encodes the chords, durations and octaves a later polyphonic
    set brings (a run resumes on it with the same heads). Multirests and rare time signatures
    come from the labels."""
    from .semantic import CLEFS, DURATIONS, KEYS

    timed = [f"{d}{dots}{f}" for d in DURATIONS for dots in ("", ".", "..") for f in ("", "_fermata")]
    rhythms = [f"{kind}-{t}" for kind in ("note", "gracenote", "rest") for t in timed]
    rhythms += [f"clef-{c}" for c in CLEFS] + [f"keySignature-{k}M" for k in KEYS]
    rhythms += ["timeSignature-C", "timeSignature-C/", "barline", "tie", CHORD]
    rhythms += [f"timeSignature-{n}/{d}" for d in (1, 2, 4, 8, 16) for n in range(1, 17)]
    pitches = [f"{letter}{octave}" for octave in range(9) for letter in "CDEFGAB"]
    return tuple(rhythms), tuple(pitches)


def _pitch_order(pitch: str) -> tuple[int, str]:
    """C4 before D4 before C5: pitches sorted by octave, then letter, so ids run up the staff."""
    return int(pitch[1:]), "CDEFGAB".index(pitch[0])
