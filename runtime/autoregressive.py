"""TrOMR's decoding: the encoder once per batch of staves, then the decoder one token at a time
with its KV cache, every staff of the page in one batch (whisper's decoding.py; optimum's
encoder / decoder-with-past).

A token is a (rhythm, pitch, lift) triple (omr.vocab.FactorVocabulary). The model is two
graphs, and this loop does not care what runs them (ONNX Runtime here; PyTorch, TorchScript
or Core ML in the export's verification), only that they follow this contract:

- encoder: `image` float32 [N, 1, H, W] (ink 1, paper 0, W a multiple of the width stride) and
  `widths` int64 [N] (each staff's own width in pixels) -> `memory_mask` bool [N, 1, 1, S]
  and, for each decoder layer i, `cross_key_i` and `cross_value_i` float32 [N, heads, S, d];
- decoder: `rhythm`, `pitch`, `lift` int64 [N, 1] (the last token), the encoder's outputs, and
  `past_key_i`, `past_value_i` [N, heads, T, d] (T = 0 at the first step) -> `rhythm_logits`,
  `pitch_logits`, `lift_logits` float32 [N, classes] for the next token and
  `present_key_i`, `present_value_i` [N, heads, T + 1, d].

The cache is the model's (its keys and values go out and come back in), not the loop's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .semantic import ALTERS
from .vocab import BOS, EOS, PAD, FactorVocabulary, compose, is_note_rhythm

ENCODER_INPUTS = ("image", "widths")
TOKENS = ("rhythm", "pitch", "lift")
LOGITS = ("rhythm_logits", "pitch_logits", "lift_logits")
MASK = "memory_mask"


def cross_names(layers: int) -> list[str]:
    return [f"cross_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def past_names(layers: int) -> list[str]:
    return [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


@dataclass(frozen=True)
class Seq2SeqInfo:
    """What the loop needs to know about the decoder; travels in the model's metadata."""

    vocab: FactorVocabulary
    layers: int
    heads: int
    head_dim: int
    max_seq_len: int  # decoder positions, BOS included

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> Seq2SeqInfo:
        d = json.loads(meta["decoder"])
        return cls(FactorVocabulary.from_json(meta["vocab"]), int(d["layers"]), int(d["heads"]),
                   int(d["head_dim"]), int(d["max_seq_len"]))

    def to_metadata(self) -> dict[str, str]:
        return {"vocab": self.vocab.to_json(), "decoder": json.dumps(
            {"layers": self.layers, "heads": self.heads, "head_dim": self.head_dim,
             "max_seq_len": self.max_seq_len})}


@dataclass(frozen=True)
class DecodingOptions:
    max_length: int = 0  # tokens, EOS included; 0: as many as the decoder has positions
    # At least this many tokens before EOS: benchmarks use it to fix the decode length.
    min_length: int = 0
    keep_logits: bool = False  # keep each step's raw logits (the export's verification)


@dataclass(frozen=True)
class Reading:
    """One staff's ids (EOS not included), its mean log-probability per token (EOS counted),
    and each token's rhythm probability (a clef's is the clef's confidence)."""

    rhythms: tuple[int, ...]
    pitches: tuple[int, ...]
    lifts: tuple[int, ...]
    logprob: float
    rhythm_probs: tuple[float, ...]
    logits: np.ndarray | None = None  # [steps, rhythms + pitches + lifts], with keep_logits
    # [tokens, rhythms]: each token's rhythm log-probabilities as chosen from (the metre
    # check's runner-ups)
    rhythm_logprobs: np.ndarray | None = None
    # [tokens, lifts]: each token's lift log-probabilities, NONE left out (the accidental check)
    lift_logprobs: np.ndarray | None = None

    def tokens(self, vocab: FactorVocabulary) -> list[str]:
        return vocab.decode(self.rhythms, self.pitches, self.lifts)

    def runner_ups(self, vocab: FactorVocabulary, alternatives: int = 8,
                   max_cost: float = 6.0) -> list[list[tuple[str, float]]]:
        """For each token, the other rhythms read at its step with the token's own pitch and
        lift, cheapest first, each with its cost in nats against the rhythm read: what
        omr.decode.fix_metre may take instead (as the CTC's frames give it)."""
        if self.rhythm_logprobs is None:
            return [[] for _ in self.rhythms]
        out = []
        for r, p, q, row in zip(self.rhythms, self.pitches, self.lifts, self.rhythm_logprobs):
            order = np.argsort(-row)[:alternatives + 1]
            mine = []
            for c in order:
                cost = float(row[r] - row[c])
                name = vocab.rhythms[c]
                if c == r or cost > max_cost or name in (PAD, BOS, EOS):
                    continue
                note = is_note_rhythm(name)
                if note and not p:  # a rest's runner-up note would have no pitch
                    continue
                mine.append((compose(name, vocab.pitches[p] if note else None,
                                     vocab.lifts[q] if note else None), cost))
            out.append(mine)
        return out

    def lift_costs(self, vocab: FactorVocabulary) -> list[dict[int, float]]:
        """For each note token, each alteration's cost in nats against the lift read (empty for
        the other tokens): what omr.accidentals.fix_accidentals may take instead."""
        if self.lift_logprobs is None:
            return [{} for _ in self.rhythms]
        alters = [ALTERS.get(name) for name in vocab.lifts[1:]]
        out = []
        for q, row in zip(self.lifts, self.lift_logprobs):
            out.append({} if not q else {a: float(row[q - 1] - lp)
                                         for a, lp in zip(alters, row) if a is not None})
        return out


class Seq2Seq(Protocol):
    """The two graphs, each a function of named arrays to named arrays."""

    def encode(self, images: np.ndarray, widths: np.ndarray) -> dict[str, np.ndarray]: ...

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def greedy(model: Seq2Seq, info: Seq2SeqInfo, images: np.ndarray, widths: np.ndarray,
           options: DecodingOptions = DecodingOptions()) -> list[Reading]:
    """Batched greedy decoding, as omr_train.tromr.greedy: the likeliest rhythm (never PAD or
    BOS), and for a note rhythm its likeliest pitch and lift other than NONE. A staff stops at
    its EOS and leaves the batch; the loop stops when every staff has."""
    vocab = info.vocab
    bos, eos = vocab.rhythms.index(BOS), vocab.rhythms.index(EOS)
    is_note = np.zeros(len(vocab.rhythms), bool)
    is_note[list(vocab.note_rhythms)] = True
    n = len(images)
    steps = options.max_length or info.max_seq_len - 1
    encoded = model.encode(images, np.asarray(widths, np.int64))
    past = {k: np.zeros((n, info.heads, 0, info.head_dim), np.float32)
            for k in past_names(info.layers)}
    last = np.zeros((n, 3), np.int64)
    last[:, 0] = bos
    rows = np.arange(n)  # the staves still decoding, as rows of the full batch
    tokens: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    scores: list[list[float]] = [[] for _ in range(n)]
    probs: list[list[float]] = [[] for _ in range(n)]
    rhythm_lps: list[list[np.ndarray]] = [[] for _ in range(n)]
    lift_lps: list[list[np.ndarray]] = [[] for _ in range(n)]
    logits: list[list[np.ndarray]] = [[] for _ in range(n)]
    for step in range(steps):
        out = model.step({**{name: last[:, j:j + 1] for j, name in enumerate(TOKENS)},
                          **encoded, **past})
        lr, lp, ll = (np.asarray(out[name], np.float32) for name in LOGITS)
        r, p, q, score, prob, rhythm_lp, lift_lp = _choose(lr, lp, ll, is_note, bos, eos,
                                                           step >= options.min_length)
        for j, i in enumerate(rows):
            scores[i].append(float(score[j]))
            if options.keep_logits:
                logits[i].append(np.concatenate([lr[j], lp[j], ll[j]]))
            if r[j] != eos:
                tokens[i].append((int(r[j]), int(p[j]), int(q[j])))
                probs[i].append(float(prob[j]))
                rhythm_lps[i].append(rhythm_lp[j])
                lift_lps[i].append(lift_lp[j])
        going = r != eos
        if not going.any():
            break
        last = np.stack([r, p, q], 1)[going]
        present = {k: out[v] for k, v in zip(past_names(info.layers), present_names(info.layers))}
        if going.all():
            past = present
        else:  # finished staves leave the batch: their rows are not computed again
            rows = rows[going]
            encoded = {k: v[going] for k, v in encoded.items()}
            past = {k: v[going] for k, v in present.items()}
    return [_reading(tokens[i], scores[i], probs[i], logits[i] if options.keep_logits else None,
                     rhythm_lps[i], lift_lps[i]) for i in range(n)]


def _choose(lr: np.ndarray, lp: np.ndarray, ll: np.ndarray, is_note: np.ndarray, bos: int,
            eos: int, may_end: bool) -> tuple[np.ndarray, ...]:
    """The greedy triple of each row (omr_train.tromr._choose), its log-probability, its
    rhythm's probability, the rhythms' and the lifts' log-probabilities (the lifts' without
    NONE); NONE (id 0) as the pitch and lift of what is not a note."""
    masked = lr.copy()
    masked[:, :bos + 1] = -np.inf  # PAD and BOS are never a target
    if not may_end:
        masked[:, eos] = -np.inf
    rhythm_lp = _log_softmax(masked)
    rows = np.arange(len(lr))
    r = masked.argmax(-1)
    p = lp[:, 1:].argmax(-1) + 1  # NONE left out: a note has a pitch
    q = ll[:, 1:].argmax(-1) + 1
    note = is_note[r]
    lift_lp = _log_softmax(ll[:, 1:])
    score = rhythm_lp[rows, r] + np.where(note, _log_softmax(lp[:, 1:])[rows, p - 1]
                                          + lift_lp[rows, q - 1], 0.0)
    return (r, np.where(note, p, 0), np.where(note, q, 0), score, np.exp(rhythm_lp[rows, r]),
            rhythm_lp, lift_lp)


def _reading(tokens: list[tuple[int, int, int]], scores: list[float], probs: list[float],
             logits: list[np.ndarray] | None, rhythm_lps: list[np.ndarray],
             lift_lps: list[np.ndarray]) -> Reading:
    rs, ps, ls = zip(*tokens) if tokens else ((), (), ())
    return Reading(tuple(rs), tuple(ps), tuple(ls), float(np.mean(scores)) if scores else 0.0,
                   tuple(probs), np.stack(logits) if logits else None,
                   np.stack(rhythm_lps) if rhythm_lps else None,
                   np.stack(lift_lps) if lift_lps else None)


def batch(crops: Sequence[np.ndarray], stride: int, max_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops (uint8 gray, paper white) as one batch: ink 1, right-padded with paper (0) to a
    multiple of the stride, cut at the widest input the model covers; and their widths."""
    widths = np.array([min(c.shape[1], max_width) for c in crops], np.int64)
    width = int(-(-widths.max() // stride) * stride)
    out = np.zeros((len(crops), 1, crops[0].shape[0], width), np.float32)
    for k, crop in enumerate(crops):
        out[k, 0, :, :widths[k]] = (255.0 - crop[:, :widths[k]].astype(np.float32)) / 255.0
    return out, widths


class OnnxSeq2Seq:
    """The encoder and decoder as two ONNX Runtime sessions."""

    def __init__(self, encoder, decoder) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.encoder_outputs = [o.name for o in encoder.get_outputs()]
        self.decoder_outputs = [o.name for o in decoder.get_outputs()]

    def encode(self, images: np.ndarray, widths: np.ndarray) -> dict[str, np.ndarray]:
        out = self.encoder.run(self.encoder_outputs, {"image": images, "widths": widths})
        return dict(zip(self.encoder_outputs, out))

    def step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.decoder_outputs, self.decoder.run(self.decoder_outputs, feeds)))
