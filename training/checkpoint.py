"""Checkpoint files: one file holds the model config, vocabulary, weights, optimizer and step.

Loading always uses `torch.load(weights_only=True)`: a checkpoint from someone else can carry
tensors and plain data, never code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omr.vocab import Vocabulary

from .model import CRNN, CRNNConfig, build

FORMAT = "omr-crnn-checkpoint/1"


def save(path: Path, model: torch.nn.Module, cfg: CRNNConfig, vocab: Vocabulary, **state) -> None:
    """Atomic save: a run killed mid-write leaves the previous checkpoint intact."""
    payload = {"format": FORMAT, "config": cfg.to_dict(), "vocab": list(vocab.tokens),
               "model": unwrap(model).state_dict(), **state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load(path: Path, map_location: str = "cpu") -> dict:
    try:
        ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such checkpoint") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is one clear message
        # torch's own text advises weights_only=False, exactly what must not be done with a
        # file from someone else; name the failure and nothing more.
        raise ValueError(f"{path}: not a loadable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not an omr CRNN checkpoint")
    return ckpt


def load_model(path: Path, map_location: str = "cpu") -> tuple[CRNN, CRNNConfig, Vocabulary, dict]:
    """Rebuild the model from the config stored in the checkpoint, in eval mode, fp32."""
    ckpt = load(path, map_location)
    cfg = CRNNConfig.from_dict(ckpt["config"])
    model = build(cfg)
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    model.eval()
    return model, cfg, Vocabulary(tuple(ckpt["vocab"])), ckpt


def slim(src: Path, dst: Path) -> None:
    """The file we ship: fp16 weights, config, vocabulary and provenance; no optimizer state."""
    ckpt = load(src)
    keep = {k: ckpt[k] for k in ("format", "config", "vocab", "step", "best_ser", "args",
                                 "elapsed") if k in ckpt}
    keep["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    tmp = Path(dst).with_name(Path(dst).name + ".tmp")
    torch.save(keep, tmp)
    os.replace(tmp, dst)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, out of its DistributedDataParallel wrapper if it has one."""
    return model.module if hasattr(model, "module") else model
