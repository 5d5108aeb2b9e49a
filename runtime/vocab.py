"""The symbol vocabulary shared by training, export and the runtime.

Index 0 is the CTC blank; token i sits at index i + 1. The vocabulary travels with every
model (checkpoint dict, ONNX metadata, Core ML metadata), so a model never depends on a
vocabulary file that might have changed since it was trained.
"""

from __future__ import annotations

import json
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
