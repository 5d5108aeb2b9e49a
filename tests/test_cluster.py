"""Ray batches (the [cluster] extra) on a local Ray instance: the same bytes as one process."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from conftest import make_page
from omr.batch import ReadOptions, expand, plan, run, write_result

ray = pytest.importorskip("ray", reason="the [cluster] extra (ray[data]) is not installed")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_batch_writes_the_same_bytes_as_one_process_and_names_failures(
        local_ray, tmp_path, tiny_model):
    from omr.cluster import cli

    pages = tmp_path / "pages"
    for k in range(4):
        path = pages / ("sub" if k % 2 else "") / f"p{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), make_page(staves=2 + k % 2, width=900, seed=k))
    (pages / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    alone = tmp_path / "alone"
    for outcome in run(plan(expand([str(pages)]), str(alone), "midi"),
                       ReadOptions(model=str(tiny_model))):
        if outcome.error is None:
            write_result(outcome)
    shared = tmp_path / "shared"
    result = CliRunner().invoke(cli, [str(pages), "-o", str(shared), "--workers", "2",
                                      "--model", str(tiny_model)])
    assert result.exit_code == 1, result.stderr
    assert "4 read (4 pages), 1 failed" in result.stderr
    assert f"failed: {pages / 'broken.png'}: truncated PNG header" in result.stderr

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
                if p.is_file()}

    assert files(shared) == files(alone) and len(files(shared)) == 4
