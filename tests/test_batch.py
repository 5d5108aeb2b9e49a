"""Batches on one machine: folders and globs, worker processes, resume, and a worker killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from conftest import make_page
from omr.batch import Job, ReadOptions, SetupError, expand, plan, run
from omr.cli import cli


def omr(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture()
def library(tmp_path) -> Path:
    """Six pages: two at the top, four in nested folders, and a file that is not an input."""
    root = tmp_path / "library"
    for k, rel in enumerate(["a.png", "b.jpg", "op1/c.png", "op1/d.png", "op2/x/e.png",
                             "op2/x/f.png"]):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), make_page(staves=2 + k % 2, width=900, seed=k))
    (root / "notes.txt").write_text("not an image")
    return root


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_folder_is_read_recursively_into_the_same_tree(library, tmp_path, tiny_model):
    out = tmp_path / "out"
    result = omr(str(library), "-o", str(out), "--model", str(tiny_model))
    assert result.exit_code == 0, result.stderr
    assert sorted(_outputs(out)) == ["a.mid", "b.mid", "op1/c.mid", "op1/d.mid", "op2/x/e.mid",
                                     "op2/x/f.mid"]
    assert "6 read (6 pages), 0 failed" in result.stderr


def test_two_workers_write_the_same_bytes_as_one(library, tmp_path, tiny_model):
    one, two = tmp_path / "one", tmp_path / "two"
    assert omr(str(library), "-o", str(one), "--model", str(tiny_model)).exit_code == 0
    result = omr(str(library), "-o", str(two), "--jobs", "2", "--model", str(tiny_model))
    assert result.exit_code == 0, result.stderr
    assert _outputs(one) == _outputs(two) and len(_outputs(two)) == 6


def test_a_rerun_skips_what_exists_and_force_reads_it_again(library, tmp_path, tiny_model):
    out = tmp_path / "out"
    assert omr(str(library), "-o", str(out), "--model", str(tiny_model)).exit_code == 0
    (out / "op1" / "c.mid").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.mid")}
    result = omr(str(library), "-o", str(out), "--model", str(tiny_model))
    assert "1 read (1 page), 0 failed, 5 skipped" in result.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert (out / "op1" / "c.mid").exists()
    result = omr(str(library), "-o", str(out), "--model", str(tiny_model), "--force")
    assert "6 read (6 pages), 0 failed" in result.stderr and "skipped" not in result.stderr


def test_globs_files_and_folders_mix(library, tmp_path, tiny_model):
    entries = expand([str(library / "op1"), str(library / "*.png"), str(library / "b.jpg"),
                      str(library / "op2" / "**" / "*.png")])
    assert [Path(name).name for name, _ in entries] == ["c.png", "d.png", "a.png", "b.jpg",
                                                       "e.png", "f.png"]
    assert [str(rel) for _, rel in entries] == ["c.png", "d.png", "a.png", "b.jpg", "e.png",
                                               "f.png"]


def test_two_inputs_that_would_share_an_output_keep_their_suffix(tmp_path):
    jobs = plan([("p/page.png", Path("page.png")), ("p/page.jpg", Path("page.jpg")),
                 ("p/other.png", Path("other.png"))], str(tmp_path), "midi")
    assert [Path(j.target).name for j in jobs] == ["page.png.mid", "page.jpg.mid", "other.mid"]
    with pytest.raises(SetupError, match="would both write"):
        plan([("a/page.png", Path("page.png")), ("b/page.png", Path("page.png"))],
             str(tmp_path), "midi")


def test_failures_are_named_in_the_summary_and_the_rest_is_written(library, tmp_path,
                                                                   tiny_model):
    (library / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    result = omr(str(library), "-o", str(out), "--jobs", "2", "--model", str(tiny_model))
    assert result.exit_code == 1
    assert "6 read (6 pages), 1 failed" in result.stderr
    assert f"omr-run: failed: {library / 'broken.png'}: truncated PNG header" in result.stderr
    assert len(_outputs(out)) == 6
    assert all(line.startswith("omr-run: ") for line in result.stderr.splitlines())


def test_jsonl_with_workers_keeps_input_order(library, tiny_model):
    names = [str(p) for p in sorted(library.rglob("*.png"))] * 2
    result = omr(*names, "--format", "jsonl", "--jobs", "2", "--model", str(tiny_model))
    import json

    assert [json.loads(line)["image"] for line in result.stdout.splitlines()] == names


def test_broken_model_stops_every_worker_with_one_line(library, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    result = omr(str(library), "-o", str(tmp_path / "out"), "--jobs", "2", "--model", str(bad))
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "cannot load model" in result.stderr


class _Crashing:
    """A worker's converter that dies by a real signal on inputs named crash-*."""

    def __init__(self, options: ReadOptions) -> None:
        from omr.batch import Converter

        self.read = Converter(options)

    def __call__(self, job: Job):
        if Path(job.name).name.startswith("crash-"):
            os.kill(os.getpid(), signal.SIGSEGV if "segv" in job.name else signal.SIGKILL)
        return self.read(job)


def test_workers_that_die_cost_only_their_inputs(library, tmp_path, tiny_model):
    names = sorted(str(p) for p in library.rglob("*.png"))
    for crash in ("crash-kill.png", "crash-segv.png"):
        (library / crash).write_bytes((library / "a.png").read_bytes())
    names[1:1] = [str(library / "crash-kill.png")]
    names[3:3] = [str(library / "crash-segv.png")]
    jobs = [Job(n, str(tmp_path / f"{k}.mid")) for k, n in enumerate(names)]
    outcomes = list(run(jobs, ReadOptions(model=str(tiny_model)), 2, _Crashing))
    assert sorted(o.job.name for o in outcomes) == sorted(names)  # every input answered once
    errors = {Path(o.job.name).name: o.error for o in outcomes if o.error}
    assert errors == {"crash-kill.png": "worker killed by SIGKILL (out of memory, or killed)",
                      "crash-segv.png": "worker killed by SIGSEGV"}


def _holder(path: Path) -> int | None:
    """The process (not this one) that has `path` open, from /proc."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == str(path) for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker in /proc")
def test_worker_killed_by_sigkill_mid_batch_costs_only_its_file_and_a_rerun_completes(
        library, tmp_path, tiny_model):
    """An input that is a named pipe holds its worker in read() until this test kills that
    worker from outside with SIGKILL, as the out-of-memory killer would."""
    pages = sorted(str(p) for p in library.rglob("*.png"))
    held = tmp_path / "held.png"
    os.mkfifo(held)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "omr.cli", str(held), *pages, "-o", str(out), "--jobs", "2",
               "--model", str(tiny_model)]
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = os.open(held, os.O_WRONLY)  # returns once a worker has opened the pipe to read
    os.write(writer, (library / "a.png").read_bytes()[:100])  # a part, so it keeps waiting
    deadline = time.monotonic() + 30
    while (victim := _holder(held)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim is not None and victim != batch.pid
    os.kill(victim, signal.SIGKILL)
    _, stderr = batch.communicate(timeout=120)
    os.close(writer)
    assert batch.returncode == 1, stderr
    assert f"omr-run: failed: {held}: worker killed by SIGKILL" in stderr
    written = _outputs(out)
    assert sorted(written) == sorted(Path(p).with_suffix(".mid").name for p in pages)
    assert not list(tmp_path.rglob("*.tmp")) and all(written.values())
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    held.unlink()
    held.write_bytes((library / "a.png").read_bytes())  # the rerun finds a page there now
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 read (1 page), 0 failed, 5 skipped" in rerun.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # none written twice
    assert (out / "held.mid").read_bytes() == (out / "a.mid").read_bytes()


def test_a_folder_without_images_is_one_line(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    result = omr(str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--model", str(tiny_model))
    assert result.exit_code == 2 and result.stderr.startswith("omr-run: error: no images or PDFs")
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "out").exists()
