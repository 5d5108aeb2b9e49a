"""The training loop on a tiny CRNN: loss falls, resume is exact, torchrun runs, checkpoints
load without running code."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verovio")

from click.testing import CliRunner
from conftest import assert_resume_is_exact
from omr_train import checkpoint
from omr_train.synth.cli import main as synth_main
from omr_train.train import TrainOptions, train

TINY = {"channels": (8, 16), "lstm_hidden": 16, "batch_size": 4, "workers": 0, "threads": 1,
        "augment": 0.0, "warmup": 2, "lr": 3e-3, "eval_samples": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    result = CliRunner().invoke(synth_main, ["--out", str(out), "--count", "48", "--workers", "1",
                                             "--seed", "5", "--no-corpus"])
    assert result.exit_code == 0, result.output
    return out


def _losses(run: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader((run / "log.csv").open())
            if float(r["samples_per_s"]) > 0]


def test_loss_falls_on_a_tiny_model(data, tmp_path):
    run = tmp_path / "run"
    train(TrainOptions(data=str(data), out=str(run), steps=40, eval_every=10, **TINY))
    losses = _losses(run)
    assert losses[-1] < 0.7 * losses[0], losses


def test_resumed_run_matches_an_uninterrupted_one(data, tmp_path):
    assert_resume_is_exact(data, tmp_path, 8, TINY)


def test_a_growing_folder_reaches_the_loader_between_epochs(data):
    from omr_train.dataset import read_folder
    from omr_train.train import EpochBatches

    samples = read_folder(data, split="train")
    first, later = samples[:8], samples
    batches = iter(EpochBatches(first, 4, seed=0, start=0, refresh=lambda: later, refresh_s=0))
    epoch0 = [next(batches) for _ in range(2)]
    epoch1 = [next(batches) for _ in range(len(later) // 4)]
    assert {k[2].id for b in epoch0 for k in b} == {s.id for s in first}
    assert {k[0] for b in epoch1 for k in b} == {1}
    seen = [k[2].id for b in epoch1 for k in b]
    assert len(set(seen)) == len(seen) == len(later) // 4 * 4  # every full batch, no repeats
    assert set(seen) <= {s.id for s in later} and set(seen) - {s.id for s in first}


def test_a_grow_run_reads_the_folder_again_at_each_epoch(data, tmp_path, capsys):
    # The refresh closes over the training loop's listing of the folder; it once shared its
    # name with a staff counter and failed at the first epoch's end, on the GPU.
    run = tmp_path / "run"
    train(TrainOptions(data=str(data), out=str(run), steps=24, eval_every=12, grow=True,
                       grow_every_s=0, **TINY))
    assert checkpoint.load(run / "last.pt")["step"] == 24
    assert "epoch 2:" in capsys.readouterr().out


def test_staves_missing_from_the_manifest_are_read_from_their_own_json(data, tmp_path):
    from omr_train.dataset import read_folder

    copy = tmp_path / "synth"
    shutil.copytree(data, copy)
    lines = (copy / "manifest.jsonl").read_text().splitlines()
    # omr-synth resumed into a finished folder: the old manifest knows only the first staves
    (copy / "manifest.jsonl").write_text("\n".join(lines[:10]) + "\n")
    def seen(root, split):
        return [(x.id, x.split, x.font, x.tokens) for x in read_folder(root, split=split)]

    for split in ("train", "val", "test"):
        assert seen(copy, split) == seen(data, split) and seen(data, split)


def test_a_folder_read_again_lists_only_what_is_new(data, tmp_path):
    from omr_train.dataset import read_folder

    copy = tmp_path / "synth"
    shutil.copytree(data, copy)
    (copy / "manifest.jsonl").unlink()  # omr-synth still writing: no manifest yet
    staves = sorted(p for p in copy.iterdir() if p.is_dir())
    # the last staff is half written: its image and labels are there, its ID.json not yet
    meta = staves[-1] / f"{staves[-1].name}.json"
    held = meta.read_bytes()
    meta.unlink()
    seen: dict = {}
    first = read_folder(copy, seen=seen)
    assert len(seen) == len(staves) - 1 and not next(s for s in first if s.id == staves[-1].name).split
    # Staves read complete are taken from `seen`, not the disk: it no longer opens them.
    gone = staves[0] / f"{staves[0].name}.semantic"
    gone.rename(gone.with_suffix(".moved"))
    meta.write_bytes(held)
    again = read_folder(copy, seen=seen)
    assert len(seen) == len(staves)
    assert [(s.id, s.split, s.tokens) for s in again] == \
        [(s.id, s.split, s.tokens) for s in read_folder(data)]


def test_uint8_batches_are_the_float_inputs_bit_for_bit(data):
    import cv2
    import numpy as np
    from omr.vocab import Vocabulary
    from omr_train.dataset import collate, read_folder
    from omr_train.train import as_input, collate_train

    samples = read_folder(data, split="train")[:5]
    images = [cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE)[:, :100 + 37 * k] for k, s in enumerate(samples)]
    vocab = Vocabulary.from_labels([s.tokens for s in samples])
    ink, widths, _, _ = collate_train([(im, vocab.encode(s.tokens)) for im, s in zip(images, samples)], 220)
    # The models' scale, as the shipped model was trained on it: ink 1, paper 0, right-padded.
    expected = np.zeros((5, 1, images[0].shape[0], 220), np.float32)
    for i, im in enumerate(images):
        expected[i, 0, :, :min(220, im.shape[1])] = (255.0 - im[:, :220].astype(np.float32)) / 255.0
    assert ink.dtype == torch.uint8
    assert np.array_equal(as_input(ink).numpy(), expected)
    assert np.array_equal(collate(images, 220)[0], expected)
    assert widths.tolist() == [min(220, im.shape[1]) for im in images]


def test_torchrun_trains_with_two_cpu_processes(data, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    run = tmp_path / "ddp"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "omr_train.train",
           "crnn", "--data", str(data), "--out", str(run), "--steps", "4", "--eval-every", "2",
           "--batch-size", "4", "--workers", "0", "--threads", "1", "--channels", "8,16",
           "--lstm-hidden", "16", "--augment", "0", "--warmup", "1", "--eval-samples", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert checkpoint.load(run / "last.pt")["step"] == 4


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


def test_a_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "payload": _Exploit()}, evil)
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        checkpoint.load(evil)
    assert not (tmp_path / "pwned-by-checkpoint").exists()


def test_shipped_checkpoint_loads_and_rebuilds():
    path = Path(__file__).resolve().parents[1] / "models" / "crnn.pt"
    if not path.exists():
        pytest.skip("no shipped model")
    model, cfg, vocab, ckpt = checkpoint.load_model(path)
    assert cfg.num_classes == vocab.size and ckpt["step"] > 0
    x = torch.zeros(1, 1, cfg.input_height, 256)
    assert model(x).shape == (1, 256 // cfg.width_stride, vocab.size)


def test_omr_eval_scores_a_checkpoint_per_font(data, tmp_path):
    import json

    from omr_train.evaluate import main as eval_main

    run = tmp_path / "run"
    train(TrainOptions(data=str(data), out=str(run), steps=4, eval_every=4, **TINY))
    report = tmp_path / "eval.json"
    for extra in ([], ["--greedy"]):
        result = CliRunner().invoke(eval_main, [str(run / "last.pt"), str(data), "--split", "train",
                                                "--limit", "12", "--json", str(report),
                                                "--errors", "3", *extra])
        assert result.exit_code == 0, result.output
        rows = json.loads(report.read_text())
        # A 4-step model misreads plenty: the breakdown accounts for every edit the SER counts.
        edits = round(rows["score"]["ser"] * rows["score"]["tokens"])
        assert edits and sum(rows["errors"].values()) == edits
        assert f"errors by kind ({edits} edits)" in result.output
        assert len(rows["staves"]) == 12 and rows["options"]["metre"] == (not extra)
        fonts = {r["font"] for r in rows["staves"]}
        assert "" not in fonts and all(f"  {f}" in result.output for f in fonts)
        assert "95% interval" in result.output
        # The clef report CLEF_DOUBT is chosen on counts the same staves as the rows.
        wrong = [r for r in rows["staves"] if not r["clef_right"]]
        assert f"of {len(wrong)} clefs read wrong, " in result.output
        assert f"of {12 - len(wrong)} read right" in result.output
        for r in rows["staves"]:
            truth = next(t for t in r["reference"] if t.startswith("clef-"))
            assert r["clef_right"] == (r["clef"] == truth) and 0 <= r["clef_confidence"] <= 1


def test_omr_eval_damages_staff_starts_only_when_asked(data):
    from omr_train.dataset import read_folder
    from omr_train.evaluate import EvalOptions, model_view

    sample = read_folder(data, split="train")[0]
    plain, damaged = (model_view(sample, 64, True, EvalOptions(augment=1.0, damaged_start=p), 0)
                      for p in (0.0, 1.0))
    assert np.array_equal(plain, model_view(sample, 64, True, EvalOptions(augment=1.0), 0))
    assert not np.array_equal(plain, damaged)  # False for unequal shapes too


def test_omr_eval_against_the_same_model_finds_no_difference(data, tmp_path):
    from omr_train.evaluate import main as eval_main

    run = tmp_path / "run"
    train(TrainOptions(data=str(data), out=str(run), steps=4, eval_every=4, **TINY))
    model = str(run / "last.pt")
    result = CliRunner().invoke(eval_main, [model, str(data), "--split", "train", "--limit", "8",
                                            "--against", model])
    assert result.exit_code == 0, result.output
    assert "difference +0.00 points" in result.output and "not told apart" in result.output


def test_omr_eval_refuses_a_file_that_is_not_a_model(data, tmp_path):
    from omr_train.evaluate import main as eval_main

    junk = tmp_path / "model.pt"
    junk.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(eval_main, [str(junk), str(data)])
    assert result.exit_code != 0 and result.output.count("\n") == 1, result.output


def test_a_run_can_start_from_a_checkpoint_of_another_preset(data, tmp_path, capsys):
    lite, edge = tmp_path / "lite", tmp_path / "edge"
    train(TrainOptions(data=str(data), out=str(lite), steps=4, eval_every=4, **TINY))
    train(TrainOptions(data=str(data), out=str(edge), steps=2, eval_every=2, preset="crnn-edge",
                       init=str(lite / "last.pt"), **TINY))
    assert "started crnn-edge from crnn-lite" in capsys.readouterr().out
    started = checkpoint.load(edge / "last.pt")
    assert started["config"]["stem_stride"] and started["config"]["head_rank"] == 64
    assert started["vocab"] == checkpoint.load(lite / "last.pt")["vocab"]


def test_learning_curves_continue_from_an_offset(data, tmp_path):
    from omr_train.train import main as train_main
    from omr_train.train import read_curve

    run = tmp_path / "run"
    train(TrainOptions(data=str(data), out=str(run), steps=4, eval_every=2, **TINY))
    log = run / "log.csv"
    seen, loss, ser = read_curve(log)
    shifted, _, _ = read_curve(log, 1000)
    assert shifted == [x + 1000 for x in seen] and len(loss) == len(ser) == len(seen) >= 2
    png = tmp_path / "curves.png"
    ok = CliRunner().invoke(train_main, ["curves", f"{log}@1000", str(log), "-o", str(png)])
    assert ok.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG", ok.output
    bad = CliRunner().invoke(train_main, ["curves", f"{log}@many", "-o", str(tmp_path / "x.png")])
    assert bad.exit_code != 0 and "offset after @" in bad.output and not (tmp_path / "x.png").exists()
