"""TrOMR (Li et al., ICASSP 2023): a convolutional stem and a ViT encoder read the staff, and a
transformer decoder writes its tokens one at a time, each as a (rhythm, pitch, lift) triple.

The whole model is this file, with its `TrOMRConfig` and presets, its loss and its decoding
(greedy and beam search), as nanoGPT and whisper keep theirs. Layout after NetEase's released
Polyphonic-TrOMR inference code: ResNetV2-style stem (bottleneck stages 2, 3, 7, total stride
16), patch embedding, learned 2-D positions, pre-norm ViT; a decoder whose input embedding sums
rhythm, pitch and lift embeddings, with gated (attention-on-attention) outputs and GLU
feed-forwards, four output heads (rhythm, pitch, lift, note or not) and the paper's
consistency loss between them.

Departures, and why: batch norm, not group norm with weight standardisation, in the stem:
group norm's statistics would take in the batch's padding, so a staff's features would hang on
how wide the staves beside it are, and with batch norm the CRNN's conv blocks carry over; a
key-padding mask over the patches past each staff's end, so that the padding is not read
(what is left is the last patch's edge, which sees paper after batch norm in a batch and the
convolution's zeros alone); the lean preset's stem is the CRNN's conv blocks, so that the
shipped CRNN can start it (`start_stem_from_crnn`); tromr-lean-lstm's stem is the CRNN's whole
encoder, conv blocks and BiLSTM (`ColumnStem`), one encoder position per four columns; and
Tachibana et al.'s guided attention loss (`guided_attention_loss`), which the paper does not
use: on two CPU cores, after 60,000 staves, the decoder's cross-attention was still nearly
uniform over the staff and the model a language model (teacher-forced pitch 12 % right).

The decoder keeps no state: `decode` takes the past keys and values and returns them with the
new ones (whisper's KV cache, made explicit), and the cross-attention keys and values are
computed once per staff (`cross_cache`), which is what an encoder / decoder-with-past export
needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from omr.geometry import STAFF_FRACTION
from omr.vocab import FactorVocabulary
from torch import nn

from .model import columns

IGNORE = -100  # target id of padding: no loss


@dataclass(frozen=True)
class TrOMRConfig:
    name: str = "tromr-lean"
    input_height: int = 64
    staff_fraction: float = STAFF_FRACTION  # staff height / input height, as the CRNN's
    max_width: int = 2400  # widest input (px) the position table covers; wider is cropped
    # "crnn": the CRNN's conv blocks (3x3 conv, batch norm, LeakyReLU, max-pool), `stem_pools`
    # the width pooling of each; "resnetv2": a 7x7/2 root and max-pool, then bottleneck stages
    # of `stem_layers` blocks, the first at stride 1, the others 2 (NetEase: 2, 3, 7).
    stem: str = "crnn"
    stem_channels: tuple[int, ...] = (16, 32, 64, 128)  # resnetv2: the root's, then each stage's
    stem_layers: tuple[int, ...] = ()
    stem_pools: tuple[int, ...] = (2, 2, 1, 1)
    # "crnn-lstm": the CRNN's conv blocks and its bidirectional LSTM over their columns, so
    # the encoder reads one position per column (stride 4), as the CRNN's CTC head does.
    lstm_hidden: int = 128
    lstm_layers: int = 2
    patch: tuple[int, int] = (1, 4)  # patch (rows, columns) on the stem's feature map
    dim: int = 128
    heads: int = 4
    encoder_depth: int = 2
    decoder_depth: int = 3
    max_seq_len: int = 256  # decoder positions, BOS included
    dropout: float = 0.1
    # Set from the vocabulary at build time.
    num_rhythms: int = 0
    num_pitches: int = 0
    num_lifts: int = 0
    note_rhythms: tuple[int, ...] = ()  # rhythm ids that carry a pitch

    @property
    def stride(self) -> tuple[int, int]:
        """Input pixels per encoder position, (rows, columns)."""
        if self.stem == "resnetv2":
            s = 4 * 2 ** (len(self.stem_layers) - 1)
            sh, sw = s, s
        elif self.stem == "crnn-lstm":
            sh, sw = self.input_height, math.prod(self.stem_pools)
        else:
            sh, sw = 2 ** len(self.stem_channels), math.prod(self.stem_pools)
        return sh * self.patch[0], sw * self.patch[1]

    @property
    def grid(self) -> tuple[int, int]:
        """Encoder positions: rows, and columns at `max_width`."""
        sh, sw = self.stride
        return self.input_height // sh, math.ceil(self.max_width / sw)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrOMRConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# The presets' window: the staff over 0.30 of the crop's height, 4.7 spaces of room above and
# below it. At 0.45 (2.4 spaces) the crop cuts the heads of far ledger notes, which piano music
# is full of: in 3,000 staves of the polyphonic set, 18 % have a note head centred more than 2
# spaces beyond the staff lines, 10 % more than 2.5 and 1 % more than 4. The CRNN moved to the
# same window for the ties and ledger notes it lost there (model.py, crnn-lite-tall).
TALL = 0.30

PRESETS = {
    # The paper's sizes (NetEase's config.yaml): 128 px high, up to 1280 wide, 16x16 patches of
    # a ResNetV2 stem with 2, 3 and 7 bottleneck blocks, width 256, 8 heads, 4 + 4 layers.
    # The staff over 0.30 of the height, as crnn-lite-tall's (see TALL below).
    "tromr-paper": TrOMRConfig(name="tromr-paper", input_height=128, staff_fraction=TALL,
                               max_width=1280, stem="resnetv2", stem_channels=(64, 256, 512, 1024),
                               stem_layers=(2, 3, 7), stem_pools=(), patch=(1, 1), dim=256,
                               heads=8, encoder_depth=4, decoder_depth=4),
    # What learns on two CPU cores: crnn-lite-tall's window (96 px, staff over 0.30) and the
    # CRNN's conv blocks, 6 patch rows of 16 columns, width 128, 2 encoder and 3 decoder layers.
    "tromr-lean": TrOMRConfig(input_height=96, staff_fraction=TALL),
    # tromr-lean with the CRNN's whole encoder (conv blocks and BiLSTM, one position per
    # 4 columns) under the ViT layers.
    "tromr-lean-lstm": TrOMRConfig(name="tromr-lean-lstm", input_height=96, staff_fraction=TALL,
                                   stem="crnn-lstm", patch=(1, 1)),
}


class Logits(NamedTuple):
    rhythm: torch.Tensor  # [N, T, rhythms]
    pitch: torch.Tensor  # [N, T, pitches]
    lift: torch.Tensor  # [N, T, lifts]
    note: torch.Tensor  # [N, T, 2]: not a note, a note


KV = tuple[torch.Tensor, torch.Tensor]  # keys, values: [N, heads, positions, dim / heads]


# --- the stem ------------------------------------------------------------------------------

def crnn_blocks(channels: tuple[int, ...], pools: tuple[int, ...]) -> nn.Sequential:
    """The CRNN's conv stack, layer for layer (training/model.py), so its weights load as they are."""
    layers: list[nn.Module] = []
    cin = 1
    for cout, wp in zip(channels, pools):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.LeakyReLU(0.2, inplace=True), nn.MaxPool2d((2, wp), (2, wp))]
        cin = cout
    return nn.Sequential(*layers)


class ColumnStem(nn.Module):
    """The CRNN's encoder whole (training/model.py: `conv`, then `lstm` over the columns of its
    feature map, the same names, so a CRNN checkpoint loads into it as it is). Returns
    [N, 2 * hidden, 1, columns]: one row, so each encoder position is a column of the staff."""

    def __init__(self, cfg: TrOMRConfig):
        super().__init__()
        self.conv = crnn_blocks(cfg.stem_channels, cfg.stem_pools)
        rows = cfg.input_height // 2 ** len(cfg.stem_channels)
        self.lstm = nn.LSTM(cfg.stem_channels[-1] * rows, cfg.lstm_hidden, num_layers=cfg.lstm_layers,
                            bidirectional=True, batch_first=True,
                            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, _ = self.lstm(columns(self.conv(x)))
        return f.transpose(1, 2)[:, :, None, :]


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """Transformer positions (Vaswani et al.), [length, dim]."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return table


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3 at the stride, 1x1 at 4x), post-activation as NetEase's
    ResNetV2(preact=False); the last norm starts at zero so each block starts as the identity."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        mid = cout // 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        nn.init.zeros_(self.body[-1].weight)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else \
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def resnetv2_stem(channels: tuple[int, ...], layers: tuple[int, ...]) -> nn.Sequential:
    root, *widths = channels
    mods: list[nn.Module] = [nn.Conv2d(1, root, 7, 2, 3, bias=False), nn.BatchNorm2d(root),
                             nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = root
    for k, (cout, n) in enumerate(zip(widths, layers)):
        for b in range(n):
            mods.append(Bottleneck(cin, cout, 2 if k and not b else 1))
            cin = cout
    return nn.Sequential(*mods)


# --- attention blocks ----------------------------------------------------------------------

class Attention(nn.Module):
    """Multi-head attention with its keys and values computed apart (`keys_values`), so a
    decoder can keep them; `gated` is x-transformers' attention-on-attention output (a GLU)."""

    def __init__(self, dim: int, heads: int, dropout: float, gated: bool = False):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GLU()) if gated else nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # unflatten / flatten, not view(n, t, ...) from x.shape: a trace then holds no ints
        # taken from shapes, which Core ML's converter cannot take (export/spec.py).
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> KV:
        k, v = self.kv(source).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, kv: KV, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask: bool, broadcast to [N, heads, T, S], True where a query may look."""
        q = self._split(self.q(x))
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).flatten(2))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, self.attn.keys_values(h), mask)
        return x + self.mlp(self.norm2(x))


class GLUFeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.proj = nn.Linear(dim, 8 * dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(self.drop(a * F.gelu(gate)))


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dropout, gated=True)
        self.cross_attn = Attention(dim, heads, dropout, gated=True)
        self.ff = GLUFeedForward(dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cross: KV, memory_mask: torch.Tensor,
                past: KV | None) -> tuple[torch.Tensor, KV]:
        h = self.norm1(x)
        k, v = self.self_attn.keys_values(h)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        x = x + self.drop(self.self_attn(h, (k, v), _causal(x.shape[1], k.shape[2], x.device)))
        x = x + self.drop(self.cross_attn(self.norm2(x), cross, memory_mask))
        return x + self.drop(self.ff(self.norm3(x))), (k, v)


def _causal(queries: int, keys: int, device) -> torch.Tensor | None:
    """Query i (the last `queries` of `keys` positions) sees keys up to its own; one new query
    sees them all, so a cached step needs no mask."""
    if queries == 1:
        return None
    offset = keys - queries
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(offset)


# --- the model -----------------------------------------------------------------------------

class TrOMR(nn.Module):
    def __init__(self, cfg: TrOMRConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.stem == "resnetv2":
            self.stem = resnetv2_stem(cfg.stem_channels, cfg.stem_layers)
        elif cfg.stem == "crnn-lstm":
            self.stem = ColumnStem(cfg)
        else:
            self.stem = crnn_blocks(cfg.stem_channels, cfg.stem_pools)
        d = cfg.dim
        features = 2 * cfg.lstm_hidden if cfg.stem == "crnn-lstm" else cfg.stem_channels[-1]
        self.patch = nn.Conv2d(features, d, cfg.patch, cfg.patch)
        rows, cols = cfg.grid
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.enc_pos = nn.Parameter(torch.randn(1, 1 + rows * cols, d) * 0.02)
        if cfg.stem == "crnn-lstm":
            # Cross-attention must find the next column from the start; learned positions
            # begin as noise and take thousands of steps to order themselves.
            self.enc_pos.data[0, 1:] = sinusoids(cols, d) * 0.1
        self.encoder = nn.ModuleList(EncoderBlock(d, cfg.heads, cfg.dropout)
                                     for _ in range(cfg.encoder_depth))
        self.enc_norm = nn.LayerNorm(d)
        self.rhythm_emb = nn.Embedding(cfg.num_rhythms, d)
        self.pitch_emb = nn.Embedding(cfg.num_pitches, d)
        self.lift_emb = nn.Embedding(cfg.num_lifts, d)
        self.dec_pos = nn.Embedding(cfg.max_seq_len, d)
        self.decoder = nn.ModuleList(DecoderBlock(d, cfg.heads, cfg.dropout)
                                     for _ in range(cfg.decoder_depth))
        self.dec_norm = nn.LayerNorm(d)
        self.to_rhythm = nn.Linear(d, cfg.num_rhythms)
        self.to_pitch = nn.Linear(d, cfg.num_pitches)
        self.to_lift = nn.Linear(d, cfg.num_lifts)
        self.to_note = nn.Linear(d, 2)
        for emb in (self.rhythm_emb, self.pitch_emb, self.lift_emb, self.dec_pos):
            nn.init.normal_(emb.weight, std=0.02)
        mask = torch.zeros(cfg.num_rhythms, dtype=torch.bool)
        mask[list(cfg.note_rhythms)] = True
        self.register_buffer("is_note", mask, persistent=False)

    def encode(self, images: torch.Tensor,
               widths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """images [N, 1, H, W] (ink 1, paper 0), widths [N] in pixels (None: all of W).
        Returns the memory [N, 1 + rows * columns, dim] and its mask [N, 1, 1, positions]
        (True: a patch of the staff; the class token always)."""
        sw = self.cfg.stride[1]
        n, _, _, w = images.shape
        rows, max_cols = self.cfg.grid
        w = min(w, max_cols * sw)
        images = F.pad(images[..., :w], (0, -w % sw))  # paper up to a whole patch
        f = self.patch(self.stem(images))  # N, dim, rows, cols
        cols = f.shape[-1]
        x = f.flatten(2).transpose(1, 2)
        index = (torch.arange(rows, device=x.device)[:, None] * max_cols
                 + torch.arange(cols, device=x.device)[None, :]).flatten() + 1
        x = torch.cat([self.cls.expand(n, -1, -1), x], 1) + self.enc_pos[:, torch.cat(
            [index.new_zeros(1), index])]
        if widths is None:
            widths = torch.full((n,), w, device=x.device)
        valid = torch.arange(cols, device=x.device)[None, :] < \
            torch.div(widths.to(x.device) + sw - 1, sw, rounding_mode="floor")[:, None]
        mask = torch.cat([valid.new_ones(n, 1), valid.repeat(1, rows)], 1)[:, None, None, :]
        for block in self.encoder:
            x = block(x, mask)
        return self.enc_norm(x), mask

    def cross_cache(self, memory: torch.Tensor) -> list[KV]:
        """Each decoder layer's cross-attention keys and values: once per staff, not per step."""
        return [block.cross_attn.keys_values(memory) for block in self.decoder]

    def decode(self, rhythms: torch.Tensor, pitches: torch.Tensor, lifts: torch.Tensor,
               cross: list[KV], memory_mask: torch.Tensor,
               past: list[KV] | None = None) -> tuple[Logits, list[KV]]:
        """The next-token logits after each of these tokens ([N, T] ids each), given the
        `past` keys and values of the tokens before them; returns the keys and values of all."""
        start = past[0][0].shape[2] if past else 0
        pos = torch.arange(start, start + rhythms.shape[1], device=rhythms.device)
        x = self.rhythm_emb(rhythms) + self.pitch_emb(pitches) + self.lift_emb(lifts) + self.dec_pos(pos)
        present = []
        for k, block in enumerate(self.decoder):
            x, kv = block(x, cross[k], memory_mask, past[k] if past else None)
            present.append(kv)
        x = self.dec_norm(x)
        return Logits(self.to_rhythm(x), self.to_pitch(x), self.to_lift(x), self.to_note(x)), present

    def forward(self, images: torch.Tensor, widths: torch.Tensor, rhythms: torch.Tensor,
                pitches: torch.Tensor, lifts: torch.Tensor) -> Logits:
        """Teacher forcing: the logits after each input token (BOS first)."""
        memory, mask = self.encode(images, widths)
        return self.decode(rhythms, pitches, lifts, self.cross_cache(memory), mask)[0]


def build(cfg: TrOMRConfig) -> TrOMR:
    if min(cfg.num_rhythms, cfg.num_pitches, cfg.num_lifts) < 2:
        raise ValueError("TrOMRConfig's vocabulary sizes must be set from the vocabulary")
    return TrOMR(cfg)


def configure(cfg: TrOMRConfig, vocab: FactorVocabulary) -> TrOMRConfig:
    rhythms, pitches, lifts = vocab.sizes
    return replace(cfg, num_rhythms=rhythms, num_pitches=pitches, num_lifts=lifts,
                   note_rhythms=vocab.note_rhythms)


def start_stem_from_crnn(model: TrOMR, crnn_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy a CRNN checkpoint's conv blocks into a "crnn" stem, and its LSTM too into a
    "crnn-lstm" one; returns the layers left as they were (shapes that differ, or layers the
    CRNN lacks)."""
    own = model.stem.state_dict()
    source = crnn_state if isinstance(model.stem, ColumnStem) else \
        {k[len("conv."):]: v for k, v in crnn_state.items() if k.startswith("conv.")}
    carried = {k: source[k].float() for k in own if k in source and source[k].shape == own[k].shape}
    model.stem.load_state_dict({**own, **carried})
    return sorted({k.rsplit(".", 1)[0] for k in own if k not in carried})


# --- the loss ------------------------------------------------------------------------------

class Targets(NamedTuple):
    """Decoder inputs (BOS, tokens) and targets (tokens, EOS), [N, T] each; targets are IGNORE
    past a staff's end."""
    rhythm_in: torch.Tensor
    pitch_in: torch.Tensor
    lift_in: torch.Tensor
    rhythm: torch.Tensor
    pitch: torch.Tensor
    lift: torch.Tensor


def targets(labels: list[tuple[list[int], list[int], list[int]]], bos: int = 1,
            eos: int = 2) -> Targets:
    """Encoded staves (FactorVocabulary.encode) into one padded batch."""
    t = max(len(r) for r, _, _ in labels) + 1
    n = len(labels)
    ins = [torch.zeros(n, t, dtype=torch.long) for _ in range(3)]
    outs = [torch.full((n, t), IGNORE, dtype=torch.long) for _ in range(3)]
    for i, parts in enumerate(labels):
        k = len(parts[0])
        for j, ids in enumerate(parts):
            ins[j][i, 0] = bos if j == 0 else 0
            ins[j][i, 1:k + 1] = torch.tensor(ids, dtype=torch.long)
            outs[j][i, :k] = ins[j][i, 1:k + 1]
            outs[j][i, k] = eos if j == 0 else 0
    return Targets(*ins, *outs)


def loss(logits: Logits, tgt: Targets, is_note: torch.Tensor,
         gamma: float = 10.0) -> dict[str, torch.Tensor]:
    """Cross-entropy on each head plus the paper's consistency loss: the note head's belief
    that a token is a note must equal the rhythm head's mass on note rhythms and the pitch and
    lift heads' mass off NONE (NetEase's gamma 10). `total` is their sum."""
    logits = Logits(*(x.float() for x in logits))
    valid = tgt.rhythm != IGNORE
    note_target = torch.where(valid, is_note[tgt.rhythm.clamp(min=0)].long(), IGNORE)
    parts = {name: F.cross_entropy(getattr(logits, name).transpose(1, 2), target, ignore_index=IGNORE)
             for name, target in (("rhythm", tgt.rhythm), ("pitch", tgt.pitch),
                                  ("lift", tgt.lift), ("note", note_target))}
    p_note = logits.note.softmax(-1)[..., 1][valid]
    rhythm_note = (logits.rhythm.softmax(-1) * is_note).sum(-1)[valid]
    pitch_note = 1 - logits.pitch.softmax(-1)[..., 0][valid]
    lift_note = 1 - logits.lift.softmax(-1)[..., 0][valid]
    parts["consistency"] = gamma * (F.l1_loss(rhythm_note, p_note) + F.l1_loss(p_note, pitch_note)
                                    + F.l1_loss(p_note, lift_note)) / 3
    parts["total"] = sum(parts.values())
    return parts


class CrossAttentionSeen:
    """The weights of one cross-attention layer in a forward pass, for `guided_attention_loss`
    (taken by a hook, so that the model and its exported graphs stay as they are)."""

    def __init__(self, attn: Attention):
        self.attn = attn
        self.weights = self.mask = None  # head-averaged weights [N, T, S], the memory mask

    def __enter__(self):  # -> Self (typing.Self: Python 3.11)
        self.handle = self.attn.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def _keep(self, module, args, output) -> None:
        # Computed here, inside the forward pass and its autocast, as the layer computed them.
        x, (k, _), mask = args
        q = self.attn._split(self.attn.q(x))
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(q.shape[-1])
        self.mask = mask
        self.weights = scores.masked_fill(~mask, -math.inf).softmax(-1).mean(1)  # [N, T, S]


def guided_attention_loss(weights: torch.Tensor, memory_mask: torch.Tensor, tgt: Targets,
                          rows: int = 1, width: float = 0.2) -> torch.Tensor:
    """Tachibana et al.'s guided attention (DCTTS, 2018): attention to column c for token t
    costs 1 - exp(-(c/C - t/T)^2 / 2 width^2), C the staff's columns and T its tokens, so the
    decoder learns early to read the staff left to right, in step with what it writes.
    weights [N, T, S]: the class token, then `rows` patch rows of the batch's columns."""
    valid = tgt.rhythm != IGNORE  # [N, T]
    per_row = (weights.shape[-1] - 1) // rows
    staff_cols = memory_mask[:, 0, 0, 1:1 + per_row].sum(-1).clamp(min=1).float()  # [N]
    lengths = valid.sum(-1).clamp(min=1).float()
    col = (torch.arange(rows * per_row, device=weights.device) % per_row).float()
    t = torch.arange(weights.shape[1], device=weights.device).float()
    offset = (col[None, None, :] + 0.5) / staff_cols[:, None, None] \
        - (t[None, :, None] + 0.5) / lengths[:, None, None]
    cost = 1 - torch.exp(-offset.square() / (2 * width ** 2))
    # The class token is off the staff and costs in full: a first run, where it cost nothing,
    # put 90 % of its attention there and learned nothing from the guide.
    return ((weights[..., 1:] * cost).sum(-1) + weights[..., 0])[valid].mean()


# --- decoding ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodingOptions:
    beam_size: int = 1  # 1: greedy
    max_length: int = 0  # tokens, EOS included; 0: as many as the decoder has positions


@dataclass(frozen=True)
class Reading:
    """One staff's ids (EOS not included) and its mean log-probability per token; greedy also
    keeps each token's rhythm log-probabilities [tokens, rhythms] (the metre check's runner-ups)
    and lift log-probabilities [tokens, lifts without NONE] (the accidental check's)."""
    rhythms: tuple[int, ...]
    pitches: tuple[int, ...]
    lifts: tuple[int, ...]
    logprob: float
    rhythm_logprobs: torch.Tensor | None = None
    lift_logprobs: torch.Tensor | None = None


def _last_logprobs(logits: Logits) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities at the last position: rhythms without PAD and BOS (never a target),
    and the pitch and lift of a note, NONE left out (ids shifted down by one)."""
    lr = logits.rhythm[:, -1].float()
    lr = torch.cat([torch.full_like(lr[:, :2], -math.inf), lr[:, 2:]], 1).log_softmax(-1)
    return lr, logits.pitch[:, -1, 1:].float().log_softmax(-1), \
        logits.lift[:, -1, 1:].float().log_softmax(-1)


def _choose(logits: Logits, is_note: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The greedy triple at the last position: the likeliest rhythm, and for a note rhythm its
    likeliest pitch and lift other than NONE (NONE otherwise), with the triple's log-probability
    and the rhythms' and lifts' log-probabilities."""
    lr, lp, ll = _last_logprobs(logits)
    score, r = lr.max(-1)
    note = is_note[r]
    bp, p = lp.max(-1)
    bl, q = ll.max(-1)
    zero = torch.zeros_like(r)
    return r, torch.where(note, p + 1, zero), torch.where(note, q + 1, zero), \
        score + torch.where(note, bp + bl, torch.zeros_like(score)), lr, ll


@torch.no_grad()
def _steps(model: TrOMR, max_length: int) -> int:
    """Decoding steps: `max_length` (0: no limit), never more than the decoder has positions."""
    most = model.cfg.max_seq_len - 1
    return min(max_length or most, most)


def greedy(model: TrOMR, images: torch.Tensor, widths: torch.Tensor | None = None,
           max_length: int = 0, bos: int = 1, eos: int = 2) -> list[Reading]:
    """Batched greedy decoding with the KV cache; a staff stops at its EOS."""
    n = images.shape[0]
    steps = _steps(model, max_length)
    memory, mask = model.encode(images, widths)
    cross = model.cross_cache(memory)
    r = torch.full((n, 1), bos, dtype=torch.long, device=images.device)
    p, q = torch.zeros_like(r), torch.zeros_like(r)
    out, rhythm_lps, lift_lps, past = [], [], [], None
    total = torch.zeros(n, device=images.device)
    length = torch.zeros(n, device=images.device)
    done = torch.zeros(n, dtype=torch.bool, device=images.device)
    for _ in range(steps):
        logits, past = model.decode(r, p, q, cross, mask, past)
        rr, pp, qq, score, lr, ll = _choose(logits, model.is_note)
        rhythm_lps.append(lr)
        lift_lps.append(ll)
        total += torch.where(done, torch.zeros_like(score), score)
        length += (~done).float()
        out.append((torch.where(done, eos, rr), pp, qq))
        done |= rr == eos
        if done.all():
            break
        r, p, q = rr[:, None], pp[:, None], qq[:, None]
    readings = []
    lps = torch.stack(rhythm_lps, 1)  # N, steps, rhythms
    lifts = torch.stack(lift_lps, 1)  # N, steps, lifts without NONE
    for i in range(n):
        ids = [(a[i].item(), b[i].item(), c[i].item()) for a, b, c in out]
        k = next((j for j, t in enumerate(ids) if t[0] == eos), len(ids))
        rs, ps, ls = zip(*ids[:k]) if k else ((), (), ())
        readings.append(Reading(tuple(rs), tuple(ps), tuple(ls),
                                (total[i] / length[i].clamp(min=1)).item(), lps[i, :k],
                                lifts[i, :k]))
    return readings


@torch.no_grad()
def beam_search(model: TrOMR, image: torch.Tensor, width: int | None = None, beam: int = 4,
                max_length: int = 0, bos: int = 1, eos: int = 2) -> Reading:
    """Beam search over whole tokens for one staff ([1, 1, H, W]). Each beam grows by its
    `beam` likeliest rhythms, a note rhythm by each of its `beam` likeliest pitches with the
    likeliest lift; hypotheses are ranked by mean log-probability per token, as whisper's."""
    steps = _steps(model, max_length)
    widths = None if width is None else torch.tensor([width], device=image.device)
    memory, mask = model.encode(image, widths)
    cross = model.cross_cache(memory)
    seqs: list[list[tuple[int, int, int]]] = [[]]
    scores = torch.zeros(1, device=image.device)
    finished: list[tuple[float, list[tuple[int, int, int]]]] = []
    last = torch.tensor([[bos, 0, 0]], device=image.device)
    past = None
    for step in range(steps):
        b = len(seqs)
        logits, past = model.decode(last[:, :1], last[:, 1:2], last[:, 2:], [
            (k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in cross], mask, past)
        lr, lp, ll = _last_logprobs(logits)
        kr, kp = min(beam, lr.shape[1]), min(beam, lp.shape[1])
        sr, r = lr.topk(kr, -1)  # b, kr
        sp, p = lp.topk(kp, -1)  # b, kp
        sl, q = ll.max(-1)  # b
        note = model.is_note[r]  # b, kr
        cand = torch.where(note[:, :, None], sr[:, :, None] + sp[:, None, :] + sl[:, None, None],
                           torch.where(torch.arange(kp, device=lr.device) == 0, sr[:, :, None], -math.inf))
        total = (scores[:, None, None] + cand).flatten()
        # The `beam` best continuations: those ending here are done, the others go on.
        best = total.topk(min(beam, int(torch.isfinite(total).sum()))).indices.tolist()
        new_seqs, new_scores, rows, nxt = [], [], [], []
        for idx in best:
            i, rest = divmod(idx, kr * kp)
            j, m = divmod(rest, kp)
            rid = r[i, j].item()
            token = (rid, p[i, m].item() + 1, q[i].item() + 1) if note[i, j] else (rid, 0, 0)
            if rid == eos:
                finished.append((total[idx].item() / (step + 1), seqs[i]))
            else:
                new_seqs.append(seqs[i] + [token])
                new_scores.append(total[idx])
                rows.append(i)
                nxt.append(token)
        if len(finished) >= beam or not new_seqs:
            break
        seqs, scores = new_seqs, torch.stack(new_scores)
        index = torch.tensor(rows, device=image.device)
        past = [(k[index], v[index]) for k, v in past]
        last = torch.tensor(nxt, device=image.device)
    if not finished:
        finished = [(s.item() / max(len(seq), 1), seq) for s, seq in zip(scores, seqs)]
    score, seq = max(finished, key=lambda f: f[0])
    rs, ps, ls = zip(*seq) if seq else ((), (), ())
    return Reading(tuple(rs), tuple(ps), tuple(ls), score)


def read(model: TrOMR, vocab: FactorVocabulary, images: torch.Tensor,
         widths: torch.Tensor | None = None,
         options: DecodingOptions = DecodingOptions()) -> list[list[str]]:
    """Token strings of a batch of staves, greedy or with beam search."""
    if options.beam_size <= 1:
        readings = greedy(model, images, widths, options.max_length)
    else:
        readings = [beam_search(model, images[i:i + 1],
                                None if widths is None else int(widths[i]), options.beam_size,
                                options.max_length) for i in range(images.shape[0])]
    return [vocab.decode(x.rhythms, x.pitches, x.lifts) for x in readings]
