"""Checkpoint files: one file holds the model config, vocabulary, weights, optimizer and step.

Two formats, one per model: the CRNN's (its vocabulary a token list) and TrOMR's (its
vocabulary the rhythm, pitch and lift lists of `FactorVocabulary`).

Loading always uses `torch.load(weights_only=True)`: a checkpoint from someone else can carry
tensors and plain data, never code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omr.vocab import FactorVocabulary, Vocabulary

from . import tromr
from .model import CRNN, CRNNConfig, build

FORMAT = "omr-crnn-checkpoint/1"
TROMR_FORMAT = "omr-tromr-checkpoint/1"
_KIND = {FORMAT: "CRNN", TROMR_FORMAT: "TrOMR"}


def save(path: Path, model: torch.nn.Module, cfg: CRNNConfig | tromr.TrOMRConfig,
         vocab: Vocabulary | FactorVocabulary, **state) -> None:
    """Atomic save: a run killed mid-write leaves the previous checkpoint intact."""
    seq2seq = isinstance(cfg, tromr.TrOMRConfig)
    payload = {"format": TROMR_FORMAT if seq2seq else FORMAT, "config": cfg.to_dict(),
               "vocab": vocab.to_dict() if seq2seq else list(vocab.tokens),
               "model": unwrap(model).state_dict(), **state}
    _write(payload, Path(path))


def _write(payload: dict, path: Path) -> None:
    """Write beside, then rename: a run killed mid-write leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load(path: Path, map_location: str = "cpu", formats: tuple[str, ...] = (FORMAT, TROMR_FORMAT)) -> dict:
    try:
        ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such checkpoint") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is one clear message
        # torch's own text advises weights_only=False, exactly what must not be done with a
        # file from someone else; name the failure and nothing more.
        raise ValueError(f"{path}: not a loadable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") not in formats:
        raise ValueError(f"{path}: not an omr {' or '.join(_KIND[f] for f in formats)} checkpoint")
    return ckpt


def load_model(path: Path, map_location: str = "cpu") -> tuple[CRNN, CRNNConfig, Vocabulary, dict]:
    """Rebuild the model from the config stored in the checkpoint, in eval mode, fp32."""
    return crnn_from(load(path, map_location, formats=(FORMAT,)))


def weights(ckpt: dict) -> dict[str, torch.Tensor]:
    """The weights to read with, in fp32: a run's moving average of its weights where it kept
    one (`--ema`; its validation scored those), else the weights it trained."""
    return {k: v.float() for k, v in ckpt.get("ema", ckpt["model"]).items()}


def crnn_from(ckpt: dict) -> tuple[CRNN, CRNNConfig, Vocabulary, dict]:
    """load_model for a checkpoint already loaded (by load)."""
    cfg = CRNNConfig.from_dict(ckpt["config"])
    model = build(cfg)
    model.load_state_dict(weights(ckpt))
    model.eval()
    return model, cfg, Vocabulary(tuple(ckpt["vocab"])), ckpt


def load_tromr(path: Path, map_location: str = "cpu") -> tuple[tromr.TrOMR, tromr.TrOMRConfig,
                                                                FactorVocabulary, dict]:
    """load_model for TrOMR checkpoints."""
    return tromr_from(load(path, map_location, formats=(TROMR_FORMAT,)))


def tromr_from(ckpt: dict) -> tuple[tromr.TrOMR, tromr.TrOMRConfig, FactorVocabulary, dict]:
    """load_tromr for a checkpoint already loaded (by load)."""
    cfg = tromr.TrOMRConfig.from_dict(ckpt["config"])
    model = tromr.build(cfg)
    model.load_state_dict(weights(ckpt))
    model.eval()
    return model, cfg, FactorVocabulary.from_dict(ckpt["vocab"]), ckpt


def slim(src: Path, dst: Path) -> None:
    """The file we ship: fp16 weights, config, vocabulary and provenance; no optimizer state."""
    ckpt = load(src)
    keep = {k: ckpt[k] for k in ("format", "config", "vocab", "step", "best_ser", "args",
                                 "elapsed") if k in ckpt}
    keep["model"] = {k: v.half() if v.is_floating_point() else v for k, v in weights(ckpt).items()}
    _write(keep, Path(dst))


def portable(src: Path, dst: Path) -> None:
    """A run's last state as a file small enough to commit (a session's end, to resume on a
    fresh machine): everything as it was, but AdamW's moments in bf16, fp32's range in half the
    bytes. The optimizer casts them back to fp32 on loading; that run resumes close to, not
    bit for bit as, one that never stopped."""
    ckpt = load(src)
    for state in ckpt["optimizer"]["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key] = state[key].to(torch.bfloat16)
    _write(ckpt, Path(dst))


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, out of its DistributedDataParallel wrapper if it has one."""
    return model.module if hasattr(model, "module") else model
