"""TrOMR on a tiny network built here: the factorised vocabulary round-trips, the KV cache and
batching change no reading, a memorised staff reads back, the loop's loss falls, resume is
exact, torchrun runs it, and checkpoints load without running code."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from omr.vocab import CHORD, FactorVocabulary, compose, factorise, grammar_parts

torch = pytest.importorskip("torch")
pytest.importorskip("verovio")

from click.testing import CliRunner
from conftest import assert_resume_is_exact, teach_tromr
from omr_train import checkpoint, tromr
from omr_train.dataset import read_folder
from omr_train.synth.cli import main as synth_main
from omr_train.train import TrainOptions, train

TINY = {"model": "tromr", "preset": "tromr-lean", "channels": (8, 16, 16, 16), "dim": 32,
        "depth": 1, "batch_size": 4, "workers": 0, "threads": 1, "augment": 0.0, "warmup": 2,
        "lr": 3e-3, "eval_samples": 4}
POLY = ["clef-F4", "keySignature-BbM", "timeSignature-3/4", "note-Bb2_quarter", CHORD,
        "note-D3_quarter", CHORD, "note-F#3_half.", "tie", "rest-quarter_fermata", "barline",
        "gracenote-Ebb4_sixteenth", "note-C##5_eighth..", CHORD, "note-C5_quarter_fermata",
        "multirest-12", "timeSignature-C/", "note-G-1_whole"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    result = CliRunner().invoke(synth_main, ["--out", str(out), "--count", "32", "--workers", "1",
                                             "--seed", "5", "--no-corpus"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def tall_crnn(data, tmp_path_factory) -> Path:
    """A tiny CRNN in tromr-lean-lstm's window (crnn-lite-tall), two steps trained."""
    out = tmp_path_factory.mktemp("tall-crnn")
    train(TrainOptions(data=str(data), out=str(out), steps=2, eval_every=2, channels=(8, 16, 16, 16),
                       lstm_hidden=16, batch_size=4, workers=0, threads=1, augment=0.0,
                       eval_samples=2, preset="crnn-lite-tall"))
    return out


def _tiny(vocab: FactorVocabulary, **over) -> tromr.TrOMR:
    cfg = replace(tromr.configure(tromr.PRESETS["tromr-lean"], vocab), stem_channels=(8, 16, 16, 16),
                  dim=32, heads=2, encoder_depth=1, decoder_depth=1, dropout=0.0, **over)
    torch.manual_seed(0)
    return tromr.build(cfg)


def test_factorisation_round_trips_every_token(data):
    labels = [s.tokens for s in read_folder(data)] + [POLY]
    rhythms, pitches = grammar_parts()
    tokens = {t for seq in labels for t in seq}
    tokens |= {compose(r, p, lift) for r in rhythms for p in pitches[:9] for lift in ("", "#", "bb")}
    for t in tokens:
        assert compose(*factorise(t)) == t, t
    assert factorise("note-C#4_quarter.") == ("note-quarter.", "C4", "#")
    assert factorise("gracenote-Bb3_eighth") == ("gracenote-eighth", "B3", "b")
    assert factorise("rest-half_fermata") == ("rest-half_fermata", None, None)
    assert factorise("note-C4_quarter_fermata") == ("note-quarter_fermata", "C4", "")
    assert factorise(CHORD) == (CHORD, None, None)
    vocab = FactorVocabulary.from_labels(labels)
    for seq in labels:
        assert vocab.decode(*vocab.encode(seq)) == list(seq)
    assert FactorVocabulary.from_json(vocab.to_json()) == vocab
    # A vocabulary made from monophonic staves alone still encodes chords (a run goes on with them).
    mono = FactorVocabulary.from_labels([s.tokens for s in read_folder(data)], grammar=True)
    assert all(t in mono for t in POLY if t not in ("multirest-12", "note-G-1_whole"))


def test_cached_steps_and_padding_change_no_logit():
    vocab = FactorVocabulary.from_labels([POLY])
    model = _tiny(vocab).eval()
    torch.manual_seed(1)
    h = model.cfg.input_height
    images = torch.zeros(2, 1, h, 400)
    images[0] = torch.rand(1, h, 400)
    images[1, :, :, :240] = torch.rand(1, h, 240)  # a shorter staff, padded with paper
    widths = torch.tensor([400, 240])
    t = tromr.targets([vocab.encode(POLY), vocab.encode(POLY[:5])])
    with torch.no_grad():
        memory, mask = model.encode(images, widths)
        cross = model.cross_cache(memory)
        whole, _ = model.decode(t.rhythm_in, t.pitch_in, t.lift_in, cross, mask)
        past, steps = None, []
        for i in range(t.rhythm_in.shape[1]):
            step, past = model.decode(t.rhythm_in[:, i:i + 1], t.pitch_in[:, i:i + 1],
                                      t.lift_in[:, i:i + 1], cross, mask, past)
            steps.append(step)
        for head in range(4):
            assert torch.allclose(torch.cat([s[head] for s in steps], 1), whole[head], atol=1e-5)
        # What lies past a staff's end is masked out: junk there changes nothing...
        junk = images.clone()
        junk[1, :, :, 320:] = torch.rand(1, h, 80)
        assert torch.allclose(model(junk, widths, t.rhythm_in, t.pitch_in, t.lift_in).rhythm,
                              whole.rhythm, atol=1e-5)
        # ...and read alone, a staff differs only at its last patch's edge, where the batch's
        # padding is paper after batch norm and its own is the convolution's zeros.
        alone = model(images[1:, :, :, :240], None, t.rhythm_in[1:], t.pitch_in[1:], t.lift_in[1:])
        assert torch.allclose(alone.rhythm, whole.rhythm[1:], atol=2e-2)


def test_a_memorised_staff_reads_back_greedy_and_with_beams(data):
    import cv2
    from omr_train.augment import AugmentOptions, augment
    from omr_train.dataset import collate

    sample = read_folder(data, split="train")[0]
    tokens = list(sample.tokens[:12])
    vocab = FactorVocabulary.from_labels([tokens])
    model = _tiny(vocab)
    img = augment(cv2.imread(str(sample.image), cv2.IMREAD_GRAYSCALE), model.cfg.input_height,
                  None, AugmentOptions(strength=0.0), model.cfg.staff_fraction)
    batch, widths = (torch.from_numpy(a) for a in collate([img]))
    t = tromr.targets([vocab.encode(tokens)])
    torch.set_num_threads(1)
    losses = teach_tromr(model, batch, widths, t, steps=150, lr=3e-3)
    assert losses[-1] < 0.05 * losses[0], losses[::25]
    model.eval()
    assert tromr.read(model, vocab, batch, widths) == [tokens]
    assert tromr.read(model, vocab, batch, widths, tromr.DecodingOptions(beam_size=3)) == [tokens]
    one = tromr.beam_search(model, batch, int(widths[0]), beam=1)
    assert one.rhythms == tromr.greedy(model, batch, widths)[0].rhythms


def _losses(run: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader((run / "log.csv").open())
            if float(r["samples_per_s"]) > 0]


def test_loss_falls_in_the_training_loop(data, tmp_path):
    run = tmp_path / "run"
    train(TrainOptions(data=str(data), out=str(run), steps=40, eval_every=10, **{**TINY, "lr": 1e-2}))
    losses = _losses(run)
    assert losses[-1] < 0.7 * losses[0], losses
    model, cfg, vocab, ckpt = checkpoint.load_tromr(run / "best.pt")
    assert ckpt["format"] == checkpoint.TROMR_FORMAT and cfg.dim == 32 and CHORD in vocab.rhythms
    assert not model.training and model.is_note.sum() == len(vocab.note_rhythms)
    with pytest.raises(ValueError, match="not an omr CRNN checkpoint"):
        checkpoint.load_model(run / "best.pt")

    # omr-eval reads a TrOMR checkpoint, side by side with a second model on the same staves
    # (here itself: greedy reading is deterministic, so the difference is exactly zero).
    from omr_train.evaluate import main as eval_main

    result = CliRunner().invoke(eval_main, [str(run / "best.pt"), str(data), "--split", "train",
                                            "--limit", "6", "--against", str(run / "best.pt")])
    assert result.exit_code == 0, result.output
    assert "SER" in result.output and "notes, per staff" in result.output
    assert "difference +0.00 points" in result.output, result.output


def test_resumed_run_matches_an_uninterrupted_one(data, tmp_path):
    assert_resume_is_exact(data, tmp_path, 6, TINY)


def test_the_moving_average_resumes_exactly_and_is_what_reads(data, tmp_path):
    options = {**TINY, "ema": 0.9}
    assert_resume_is_exact(data, tmp_path, 6, options)
    ckpt = checkpoint.load(tmp_path / "whole" / "last.pt")
    assert ckpt["ema"].keys() == ckpt["model"].keys()
    moved = [k for k, v in ckpt["model"].items()
             if v.is_floating_point() and not torch.allclose(v, ckpt["ema"][k])]
    assert moved, "the average is the weights themselves"
    model, *_ = checkpoint.load_tromr(tmp_path / "whole" / "last.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["ema"][k].float()), k


def test_a_portable_checkpoint_resumes_close_to_the_full_one(data, tmp_path):
    options = {**TINY, "ema": 0.9}
    full, small, fresh = tmp_path / "full", tmp_path / "small", tmp_path / "fresh"
    train(TrainOptions(data=str(data), out=str(full), steps=4, eval_every=4, **options))
    small.mkdir()
    checkpoint.portable(full / "last.pt", small / "last.pt")
    assert (small / "last.pt").stat().st_size < 0.8 * (full / "last.pt").stat().st_size
    packed = checkpoint.load(small / "last.pt")
    moments = [v for state in packed["optimizer"]["state"].values() for k, v in state.items()
               if k.startswith("exp_avg")]
    assert moments and all(m.dtype == torch.bfloat16 for m in moments)
    # The yardstick: the same state with the optimizer's moments lost.
    packed["optimizer"]["state"] = {}
    fresh.mkdir()
    torch.save(packed, fresh / "last.pt")
    for run in (full, small, fresh):
        train(TrainOptions(data=str(data), out=str(run), steps=6, eval_every=2, **options))
    ends = [checkpoint.load(run / "last.pt")["model"] for run in (full, small, fresh)]

    def apart(a: dict, b: dict) -> float:
        return float(np.mean([(a[k] - b[k]).abs().mean() for k in a if a[k].is_floating_point()]))

    assert apart(ends[0], ends[1]) < 0.1 * apart(ends[0], ends[2])


def test_the_stem_starts_from_a_crnn_checkpoint(data, tmp_path, capsys):
    crnn = tmp_path / "crnn"
    train(TrainOptions(data=str(data), out=str(crnn), steps=2, eval_every=2, channels=(8, 16, 16, 16),
                       lstm_hidden=16, batch_size=4, workers=0, threads=1, augment=0.0,
                       eval_samples=2))
    run = tmp_path / "tromr"
    train(TrainOptions(data=str(data), out=str(run), steps=1, eval_every=1,
                       stem_from=str(crnn / "last.pt"), **{**TINY, "lr": 0.0}))
    assert "stem started from" in capsys.readouterr().out
    source = checkpoint.load(crnn / "last.pt")["model"]
    started = checkpoint.load(run / "last.pt")["model"]
    for k in ("0.weight", "4.weight", "13.weight"):
        assert torch.equal(started["stem." + k].float(), source["conv." + k].float()), k


def _column_run(data: Path, crnn: Path, out: Path, freeze_stem: int) -> dict:
    """Two steps of a tiny tromr-lean-lstm started from `crnn`'s encoder: its last.pt."""
    train(TrainOptions(data=str(data), out=str(out), steps=2, eval_every=2, stem_from=str(crnn / "last.pt"),
                       freeze_stem=freeze_stem, lstm_hidden=16, **{**TINY, "preset": "tromr-lean-lstm"}))
    return checkpoint.load(out / "last.pt")


def test_the_column_stem_starts_from_the_crnns_whole_encoder(data, tall_crnn, tmp_path):
    started = _column_run(data, tall_crnn, tmp_path / "tromr", freeze_stem=1)
    source = checkpoint.load(tall_crnn / "last.pt")["model"]
    assert started["config"]["stem"] == "crnn-lstm" and started["config"]["lstm_hidden"] == 16
    weights = started["model"]
    # Step 1 froze the stem, step 2 trained it: the LSTM moved, from the CRNN's weights.
    assert weights["stem.lstm.weight_ih_l0"].shape == source["lstm.weight_ih_l0"].shape
    assert not torch.equal(weights["stem.lstm.weight_ih_l0"].float(), source["lstm.weight_ih_l0"].float())
    assert (weights["stem.lstm.weight_ih_l0"].float() - source["lstm.weight_ih_l0"].float()).abs().max() < 0.1


def test_a_frozen_stem_keeps_the_crnns_weights(data, tall_crnn, tmp_path):
    weights = _column_run(data, tall_crnn, tmp_path / "tromr", freeze_stem=5)["model"]
    source = checkpoint.load(tall_crnn / "last.pt")["model"]
    for k in ("conv.0.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l1_reverse"):
        assert torch.equal(weights["stem." + k].float(), source[k].float()), k


def test_the_column_stem_reads_one_position_per_four_columns():
    vocab = FactorVocabulary.from_labels([POLY])
    column = tromr.PRESETS["tromr-lean-lstm"]
    assert column.stride == (96, 4) and column.grid == (1, 600)
    cfg = replace(tromr.configure(column, vocab), stem_channels=(8, 16, 16, 16), lstm_hidden=16,
                  dim=32, heads=2, encoder_depth=1, decoder_depth=1)
    model = tromr.build(cfg).eval()
    memory, mask = model.encode(torch.zeros(2, 1, 96, 250), torch.tensor([250, 100]))
    assert memory.shape == (2, 1 + 63, 32)  # 250 px: 63 columns of 4 (the last padded)
    assert mask[1, 0, 0, 1:26].all() and not mask[1, 0, 0, 26:].any()  # 100 px: 25 columns


def test_torchrun_trains_tromr_with_two_cpu_processes(data, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    run = tmp_path / "ddp"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29518", "-m", "omr_train.train",
           "tromr", "--data", str(data), "--out", str(run), "--steps", "2", "--eval-every", "2",
           "--batch-size", "2", "--workers", "0", "--threads", "1", "--channels", "8,16,16,16",
           "--dim", "32", "--depth", "1", "--augment", "0", "--warmup", "1", "--eval-samples", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert checkpoint.load(run / "last.pt")["step"] == 2


def test_a_mix_reads_every_folder_and_validates_on_each(data, tmp_path):
    from omr_train.train import _read_data, _val_mix

    copy = tmp_path / "other"
    shutil.copytree(data, copy)
    mix = _read_data(f"{data},{copy}", {}, split="val")
    assert len(mix) == 2 * len(read_folder(data, split="val")) > 0
    sets = [read_folder(data)[:3], read_folder(copy)[:1]]
    picked = _val_mix(sets, 3)
    assert picked[:2] == [sets[0][0], sets[1][0]] and picked[2] == sets[0][1]


def test_the_paper_stem_patches_the_staff_16_pixels_square():
    vocab = FactorVocabulary.from_labels([POLY])
    paper = tromr.PRESETS["tromr-paper"]
    assert paper.stride == (16, 16) and paper.grid == (8, 80)
    cfg = replace(tromr.configure(paper, vocab), stem_channels=(8, 16, 16, 32), stem_layers=(1, 1, 1),
                  dim=32, heads=2, encoder_depth=1, decoder_depth=1)
    model = tromr.build(cfg).eval()
    memory, mask = model.encode(torch.zeros(2, 1, 128, 250), torch.tensor([250, 100]))
    assert memory.shape == (2, 1 + 8 * 16, 32)  # 250 px: 16 columns of patches, 8 rows
    assert mask[1, 0, 0].view(-1)[1:].view(8, 16)[:, :7].all()  # 100 px: 7 columns
    assert not mask[1, 0, 0].view(-1)[1:].view(8, 16)[:, 7:].any()
    t = tromr.targets([vocab.encode(POLY[:4])] * 2)
    out = model(torch.zeros(2, 1, 128, 250), torch.tensor([250, 100]), t.rhythm_in, t.pitch_in, t.lift_in)
    assert out.rhythm.shape == (2, 5, vocab.sizes[0]) and out.note.shape == (2, 5, 2)


def _on_line(mask: torch.Tensor, tgt: tromr.Targets, reverse: bool, rows: int = 1) -> torch.Tensor:
    """Attention weights with each token on one column (of one of the patch rows): in step
    with the staff, or backwards."""
    n, s = mask.shape[0], mask.shape[-1]
    per_row = (s - 1) // rows
    valid = tgt.rhythm != tromr.IGNORE
    w = torch.zeros(n, tgt.rhythm.shape[1], s)
    for i in range(n):
        cols, tokens = int(mask[i, 0, 0, 1:1 + per_row].sum()), int(valid[i].sum())
        for t in range(tokens):
            c = int((t + 0.5) / tokens * cols)
            w[i, t, 1 + t % rows * per_row + (cols - 1 - c if reverse else c)] = 1
    return w


@pytest.mark.parametrize("rows", [1, 3])
def test_guided_attention_costs_little_in_step_and_much_out_of_it(rows):
    vocab = FactorVocabulary.from_labels([POLY])
    tgt = tromr.targets([vocab.encode(POLY), vocab.encode(POLY[:6])])
    cols = 40
    valid = torch.arange(cols)[None, :] < torch.tensor([40, 17])[:, None]
    mask = torch.cat([torch.ones(2, 1, dtype=torch.bool), valid.repeat(1, rows)], 1)[:, None, None, :]
    in_step = tromr.guided_attention_loss(_on_line(mask, tgt, False, rows), mask, tgt, rows)
    backwards = tromr.guided_attention_loss(_on_line(mask, tgt, True, rows), mask, tgt, rows)
    on_class = torch.zeros_like(_on_line(mask, tgt, False, rows))
    on_class[..., 0] = 1  # the class token is not on the staff: no way round the guide
    assert in_step < 0.02 and backwards > 0.5, (in_step, backwards)
    assert tromr.guided_attention_loss(on_class, mask, tgt, rows) == 1.0


def test_the_guided_loss_trains_in_the_loop(data, tmp_path):
    run = tmp_path / "run"
    train(TrainOptions(data=str(data), out=str(run), steps=20, eval_every=10, guide=1.0,
                       **{**TINY, "lr": 1e-2}))
    losses = _losses(run)
    assert len(losses) == 2 and losses[-1] < losses[0], losses


def test_the_crnns_best_path_gives_each_tokens_first_frame():
    from omr_train.align import first_emissions

    path = [0, 3, 3, 0, 0, 5, 0, 5, 5, 2, 0]
    log_probs = np.log(np.eye(6)[path] * 0.9 + 0.02)  # the path's class likeliest in each frame
    assert first_emissions(log_probs, [3, 5, 5, 2]).tolist() == [1, 5, 7, 9]
    assert first_emissions(log_probs, [3, 5, 2]) is None  # the path reads another label
    assert first_emissions(log_probs, [3, 0, 5, 2]) is None  # a token the CRNN lacks


def test_alignment_loss_is_low_on_the_tokens_columns_and_skips_the_rest():
    from omr_train.align import alignment_loss

    frames = torch.tensor([[0, 4, 9, -1], [-1, -1, -1, -1]])
    weights = torch.full((2, 4, 1 + 2 * 6), 1e-4)  # class token, 2 rows of 6 columns (of 8 px)
    for t, f in enumerate([0, 4, 9]):
        weights[0, t, 1 + 6 + (f * 4 + 2) // 8] = 1.0  # row 1, the frame's column
    low = alignment_loss(weights, frames, crnn_stride=4, stride=8, rows=2)
    weights[0, :, 1:] = weights[0, :, 1:].flip(-1)
    assert low < 0.01 < alignment_loss(weights, frames, crnn_stride=4, stride=8, rows=2)
    assert alignment_loss(weights, torch.full_like(frames, -1), 4, 8, 2) is None


def test_the_aligned_loss_trains_in_the_loop(data, tall_crnn, tmp_path):
    run = tmp_path / "run"
    train(TrainOptions(data=str(data), out=str(run), steps=4, eval_every=2, guide=1.0,
                       align_from=str(tall_crnn / "last.pt"), lstm_hidden=16,
                       **{**TINY, "preset": "tromr-lean-lstm"}))
    assert len(_losses(run)) == 2
