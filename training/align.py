"""Where each token of a training staff is, for TrOMR's cross-attention: the CRNN's best path.

A CTC network says where it reads each symbol: the frame where its best path first emits it.
Where the shipped CRNN's best path over a training crop is the staff's label exactly, those
frames are that label's alignment, and TrOMR's last decoder layer is taught to look there
(`alignment_loss`). The guide on the first layer only knows the diagonal; this knows the
symbol. Staves with chords, or that the CRNN misreads, keep only the guide.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from omr.decode import best_path
from omr.vocab import FactorVocabulary

from . import checkpoint
from .model import output_lengths
from .tromr import IGNORE, Targets


class CRNNAligner:
    """A frozen CRNN and the map from TrOMR's (rhythm, pitch, lift) ids to its classes."""

    def __init__(self, path: Path, vocab: FactorVocabulary, device: torch.device):
        self.crnn, self.cfg, crnn_vocab, _ = checkpoint.crnn_from(checkpoint.load(path))
        self.crnn = self.crnn.to(device).eval().requires_grad_(False)
        # Triples as one number (rhythm, pitch, lift in mixed radix) -> CRNN class, 0: none.
        sizes = vocab.sizes
        self.radix = (sizes[1] * sizes[2], sizes[2])
        table = torch.zeros(math.prod(sizes), dtype=torch.long)
        for k, token in enumerate(crnn_vocab.tokens):
            try:
                (r,), (p,), (q,) = vocab.encode([token])
            except (KeyError, ValueError):  # a token TrOMR's vocabulary cannot spell
                continue
            table[r * self.radix[0] + p * self.radix[1] + q] = k + 1
        self.table = table.to(device)

    @property
    def stride(self) -> int:
        return self.cfg.width_stride

    @torch.no_grad()
    def frames(self, images: torch.Tensor, widths: torch.Tensor, tgt: Targets) -> torch.Tensor:
        """[N, T]: the CRNN frame of each target token, -1 where the staff has no alignment
        (its best path is not its label) and at EOS and padding."""
        log_probs = self.crnn(images.float()).float().cpu().numpy()  # N, frames, classes
        lengths = output_lengths(widths, self.cfg).clamp(max=log_probs.shape[1])
        valid = tgt.rhythm != IGNORE
        # The label in CRNN classes; EOS maps to none (0), as any token the CRNN lacks.
        ids = self.table[(tgt.rhythm.clamp(min=0) * self.radix[0] + tgt.pitch.clamp(min=0)
                          * self.radix[1] + tgt.lift.clamp(min=0))]
        out = torch.full_like(tgt.rhythm, -1)
        for i in range(len(log_probs)):
            label = ids[i][valid[i]][:-1].tolist()  # without EOS
            emitted = first_emissions(log_probs[i, :int(lengths[i])], label)
            if emitted is not None:
                out[i, :len(label)] = torch.from_numpy(emitted)
        return out


def first_emissions(log_probs: np.ndarray, label: list[int]) -> np.ndarray | None:
    """The frame where the best path (the runtime's, omr.decode.best_path) first emits each
    of its tokens, if what it emits is `label` (0 in it: a token the CRNN lacks); else None."""
    if not label or 0 in label:
        return None
    emitted, spans, _ = best_path(log_probs)
    return spans[:, 0] if emitted == label else None


def alignment_loss(weights: torch.Tensor, frames: torch.Tensor, crnn_stride: int,
                   stride: int, rows: int = 1) -> torch.Tensor | None:
    """Cross-entropy of attention weights [N, T, S] (the class token, then `rows` patch rows
    of the batch's columns) on the column of each aligned token, a column either side
    allowed (a note head spans two or three frames); None where no token is aligned."""
    known = frames >= 0
    if not bool(known.any()):
        return None
    per_row = (weights.shape[-1] - 1) // rows
    column = (frames.clamp(min=0) * crnn_stride + crnn_stride // 2) // stride  # N, T
    near = torch.arange(per_row, device=weights.device)[None, None, :]
    window = (near - column[..., None]).abs() <= 1  # N, T, columns
    mass = (weights[..., 1:].unflatten(-1, (rows, per_row)).sum(-2) * window).sum(-1)
    return -mass[known].clamp(min=1e-6).log().mean()
