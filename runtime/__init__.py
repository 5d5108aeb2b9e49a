"""omr: a photo or scan of printed sheet music in, MIDI out, on ONNX Runtime (no PyTorch).

    from omr import Recognizer
    score = Recognizer().read("page.jpg")
    score.to_midi("page.mid")

The heavy imports (onnxruntime, OpenCV) happen on first use, so `import omr` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Recognizer", "Score", "Staff"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .recognize import Recognizer, Score, Staff


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import recognize

        return getattr(recognize, name)
    raise AttributeError(f"module 'omr' has no attribute {name!r}")
