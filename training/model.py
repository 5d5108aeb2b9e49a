"""The CRNN of Calvo-Zaragoza and Rizo (PrIMuS, 2018), and a CPU-trainable variant of it.

Both are the same network: conv blocks (3x3 conv, batch norm, LeakyReLU 0.2, max-pool), then
the columns of the feature map, read left to right by a bidirectional LSTM, then one linear
layer over the vocabulary plus the CTC blank. Only the `CRNNConfig` differs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from omr.geometry import STAFF_FRACTION
from torch import nn


@dataclass(frozen=True)
class CRNNConfig:
    name: str = "crnn-lite"
    input_height: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 128)
    # Width pooling per block; 2 everywhere is the paper's 2x2 pooling (width stride 16).
    width_pools: tuple[int, ...] = (2, 2, 1, 1)
    lstm_hidden: int = 128
    lstm_layers: int = 2
    dropout: float = 0.25
    num_classes: int = 0  # vocabulary + blank, set from the vocabulary at build time
    # First block as one stride-2 convolution, with no batch norm, activation and max-pool
    # over the full-resolution map: on a CPU those memory-bound passes cost more than the
    # convolutions themselves.
    stem_stride: bool = False
    # 0: one linear layer onto the classes. r > 0: factor it through r dimensions; with
    # ~3,900 classes the output layer is a sixth of the lite network's training time.
    head_rank: int = 0
    # Staff height / input height (the runtime crops to it, from the exported metadata).
    staff_fraction: float = STAFF_FRACTION

    @property
    def width_stride(self) -> int:
        s = 1
        for p in self.width_pools:
            s *= p
        return s

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CRNNConfig:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        d["width_pools"] = tuple(d["width_pools"])
        return cls(**d)


PRESETS = {
    # The paper's network: 128 px high, 32/64/128/256 filters, 2x2 pooling, BiLSTM 256.
    "crnn-paper": CRNNConfig(name="crnn-paper", input_height=128, channels=(32, 64, 128, 256),
                             width_pools=(2, 2, 2, 2), lstm_hidden=256),
    # Half the height, slimmer convolutions (they take nearly all the time), width stride 4 so
    # CTC keeps at least one frame per token even on dense sixteenth runs.
    "crnn-lite": CRNNConfig(),
    # crnn-lite with a strided stem, a rank-64 output layer and the width pooled 3 times
    # (stride 8). The LSTM, output layer and CTC run per frame, so half the frames halve
    # them; each staff keeps as many frames as crnn-paper's (stride 16 at twice the height).
    # Frames per token, speed and accuracy: benchmarks/bench_train_speed.py, models/README.md.
    "crnn-edge": CRNNConfig(name="crnn-edge", stem_stride=True, head_rank=64,
                            width_pools=(2, 2, 2, 1)),
    # crnn-lite's staff, at the same scale (28.8 px), in a window one pooled row (16 px) taller
    # above and below: at 0.45 the crop cuts off the ties on notes outside the staff (half of
    # those ties were missed, against 4-8 % inside it) and the heads of far ledger notes.
    # A crnn-lite checkpoint carries over whole (`transfer`): its rows become the middle ones.
    "crnn-lite-tall": CRNNConfig(name="crnn-lite-tall", input_height=96, staff_fraction=0.30),
}


class CRNN(nn.Module):
    def __init__(self, cfg: CRNNConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 1
        for k, (cout, wp) in enumerate(zip(cfg.channels, cfg.width_pools)):
            if k == 0 and cfg.stem_stride:
                layers += [nn.Conv2d(cin, cout, 3, stride=(2, wp), padding=1, bias=False),
                           nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]
            else:
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                           nn.LeakyReLU(0.2, inplace=True), nn.MaxPool2d((2, wp), (2, wp))]
            cin = cout
        self.conv = nn.Sequential(*layers)
        rows = cfg.input_height // 2 ** len(cfg.channels)
        self.lstm = nn.LSTM(cin * rows, cfg.lstm_hidden, num_layers=cfg.lstm_layers,
                            bidirectional=True, batch_first=True,
                            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        features = 2 * cfg.lstm_hidden
        self.head = nn.Linear(features, cfg.num_classes) if not cfg.head_rank else \
            nn.Sequential(nn.Linear(features, cfg.head_rank, bias=False),
                          nn.Linear(cfg.head_rank, cfg.num_classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: [N, 1, H, W], ink = 1, paper = 0. Returns log-probabilities [N, T, C]."""
        f = self.conv(image)  # N, C, H', T
        f, _ = self.lstm(columns(f))
        return self.head(self.drop(f)).log_softmax(-1)


def columns(f: torch.Tensor) -> torch.Tensor:
    """A conv feature map [N, C, H, T] as the sequence of its columns [N, T, C * H], the
    recurrent layers' input (CRNN, and TrOMR's column stem, which loads the CRNN's LSTM)."""
    n, c, h, t = f.shape
    return f.permute(0, 3, 1, 2).reshape(n, t, c * h)


def build(cfg: CRNNConfig) -> CRNN:
    if cfg.num_classes <= 1:
        raise ValueError("CRNNConfig.num_classes must be set from the vocabulary")
    return CRNN(cfg)


def output_lengths(widths: torch.Tensor, cfg: CRNNConfig) -> torch.Tensor:
    return torch.div(widths, cfg.width_stride, rounding_mode="floor")


def transfer(src: CRNN, dst: CRNN) -> list[str]:
    """Start `dst` from a trained `src` of another preset; returns what could not be carried.

    Conv and batch-norm layers pair up in order (a strided stem shifts the Sequential's
    indices but keeps the layer order), the LSTM carries over when its sizes match or the target
    only reads a taller window at the same scale (`_carry_lstm`), and a
    full output layer becomes a low-rank one through its truncated SVD, which is the best
    rank-r approximation of it.
    """
    skipped = []
    kinds = (nn.Conv2d, nn.BatchNorm2d)
    pairs = list(zip([m for m in src.conv if isinstance(m, kinds)],
                     [m for m in dst.conv if isinstance(m, kinds)]))
    for a, b in pairs:
        try:
            b.load_state_dict(a.state_dict())
        except RuntimeError:
            skipped.append(type(b).__name__)
    if not _carry_lstm(src, dst):
        skipped.append("LSTM")
    if isinstance(src.head, nn.Linear) and isinstance(dst.head, nn.Sequential) and \
            src.head.weight.shape == (dst.head[1].out_features, dst.head[0].in_features):
        _low_rank(src.head, dst.head)
    elif type(src.head) is type(dst.head) and \
            all(a.shape == b.shape for a, b in zip(src.head.parameters(), dst.head.parameters())):
        dst.head.load_state_dict(src.head.state_dict())
    else:
        skipped.append("head")
    return skipped


def _carry_lstm(src: CRNN, dst: CRNN) -> bool:
    """Copy the LSTM, also into one that reads more feature rows: a taller window around a
    staff at the same scale. The source's rows become the middle ones and the new rows start
    with zero input weights, so the network reads as before until training uses them."""
    rows = [c.input_height // 2 ** len(c.channels) for c in (src.cfg, dst.cfg)]
    extra = rows[1] - rows[0]
    same_scale = math.isclose(src.cfg.input_height * src.cfg.staff_fraction,
                              dst.cfg.input_height * dst.cfg.staff_fraction)
    state = src.lstm.state_dict()
    if extra and extra % 2 == 0 and same_scale and src.cfg.channels[-1] == dst.cfg.channels[-1]:
        for name in [k for k in state if k.startswith("weight_ih_l0")]:
            w = state[name].view(state[name].shape[0], -1, rows[0])  # gates, channel, row
            wide = w.new_zeros(w.shape[0], w.shape[1], rows[1])
            wide[:, :, extra // 2: extra // 2 + rows[0]] = w
            state[name] = wide.flatten(1)
    try:
        dst.lstm.load_state_dict(state)
    except RuntimeError:
        return False
    return True


def _low_rank(full: nn.Linear, factored: nn.Sequential) -> None:
    u, s, vh = torch.linalg.svd(full.weight.detach().float(), full_matrices=False)
    r = min(factored[0].out_features, len(s))
    root = s[:r].sqrt()
    with torch.no_grad():
        # Beyond rank r: random rows in, zero columns out. The product is still the
        # approximation, and those directions can still learn (zero on both sides could not).
        factored[1].weight.zero_()
        factored[0].weight[:r] = root[:, None] * vh[:r]
        factored[1].weight[:, :r] = u[:, :r] * root[None, :]
        factored[1].bias.copy_(full.bias)
