"""The runtime must never import torch: not on import, not while reading a page."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
from conftest import make_page

SCRIPT = textwrap.dedent("""
    import sys, time
    start = time.perf_counter()
    import omr
    import_seconds = time.perf_counter() - start
    from omr import Recognizer
    score = Recognizer(sys.argv[1]).read(sys.argv[2])
    score.to_midi(sys.argv[3])
    assert len(score.staves) == 2, score.staves
    assert "torch" not in sys.modules, "torch was imported"
    print(f"ok {import_seconds:.3f}")
""")


def test_pipeline_runs_without_importing_torch(tmp_path, tiny_model):
    page = tmp_path / "page.jpg"
    cv2.imwrite(str(page), make_page(staves=2))
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_model), str(page),
                             str(tmp_path / "page.mid")], capture_output=True, text=True, check=False,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
    assert (tmp_path / "page.mid").exists()


def test_import_is_light():
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import omr"],
                            capture_output=True, text=True, check=False, timeout=60)
    heavy = [m for m in ("onnxruntime", "cv2", "torch", "mido")
             if f"| {m}\n" in result.stderr or f" {m}\n" in result.stderr]
    assert heavy == []
