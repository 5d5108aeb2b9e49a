"""The CRNN presets: shapes the runtime relies on, old checkpoints, and the edge variant's export."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from omr_train.model import PRESETS, CRNNConfig, build, output_lengths


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_gives_the_frames_ctc_is_told_about(name):
    cfg = replace(PRESETS[name], num_classes=11)
    model = build(cfg).eval()
    widths = torch.tensor([cfg.input_height * 3, cfg.input_height * 5 + 3])
    with torch.no_grad():
        out = model(torch.zeros(2, 1, cfg.input_height, int(widths.max())))
    assert out.shape[0] == 2 and out.shape[2] == 11
    # CTC may only be told about frames the network really produced.
    assert int(output_lengths(widths, cfg).max()) <= out.shape[1]
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, out.shape[1]), atol=1e-4)


def test_a_config_saved_before_the_edge_fields_still_loads():
    old = CRNNConfig().to_dict()
    del old["stem_stride"], old["head_rank"]
    assert CRNNConfig.from_dict(old) == CRNNConfig()


def test_edge_variant_exports_to_onnx_and_matches_pytorch(tmp_path):
    from omr.vocab import Vocabulary
    from omr_export.spec import load
    from omr_export.to_onnx import export_fp32, verify_onnx
    from omr_export.verify import FP32, Verifier, generated_staves, torch_runner
    from omr_train.checkpoint import save

    torch.manual_seed(0)
    vocab = Vocabulary(("barline", "clef-G2", "note-C4_quarter", "rest-half"))
    cfg = CRNNConfig(name="tiny-edge", channels=(4, 8), width_pools=(2, 1), lstm_hidden=8,
                     input_height=32, num_classes=vocab.size, stem_stride=True, head_rank=3)
    save(tmp_path / "edge.pt", build(cfg), cfg, vocab, step=1)
    exportable = load(tmp_path / "edge.pt")
    verifier = Verifier(exportable.spec, torch_runner(exportable.model), generated_staves(exportable.spec))
    report = verify_onnx(export_fp32(exportable, tmp_path / "edge.onnx"), exportable, "fp32", verifier)
    assert report.ok and report.max_abs_diff < FP32.max_abs_diff


def _tiny(**kw) -> CRNNConfig:
    return CRNNConfig(**{"name": "tiny", "channels": (4, 8), "width_pools": (2, 1),
                         "lstm_hidden": 8, "input_height": 32, "num_classes": 9, **kw})


def test_a_full_rank_factored_head_reproduces_the_trained_one():
    from omr_train.model import transfer

    torch.manual_seed(0)
    src = build(_tiny()).eval()
    dst = build(_tiny(head_rank=9)).eval()  # rank 9 >= min(9 classes, 16 features): exact
    assert transfer(src, dst) == []
    x = torch.rand(2, 1, 32, 96)
    with torch.no_grad():
        assert torch.allclose(src(x), dst(x), atol=1e-4)


def test_a_strided_stem_variant_starts_from_the_trained_layers():
    from omr_train.model import transfer

    torch.manual_seed(0)
    src = build(_tiny())
    dst = build(_tiny(stem_stride=True, head_rank=4))
    assert transfer(src, dst) == []
    convs = [[m.weight for m in net.conv if isinstance(m, torch.nn.Conv2d)] for net in (src, dst)]
    assert all(torch.equal(a, b) for a, b in zip(*convs))
    assert torch.equal(src.lstm.weight_hh_l0, dst.lstm.weight_hh_l0)
    # The rank-4 head is the best rank-4 approximation of the trained one.
    w = dst.head[1].weight @ dst.head[0].weight
    s = torch.linalg.svdvals(src.head.weight.detach())
    assert torch.allclose(torch.linalg.matrix_norm(src.head.weight - w), s[4:].norm(), atol=1e-4)


def test_a_taller_window_at_the_same_scale_starts_reading_as_before(tmp_path):
    from omr import Recognizer
    from omr.vocab import Vocabulary
    from omr_export.spec import load
    from omr_export.to_onnx import export_fp32
    from omr_train.checkpoint import save
    from omr_train.model import transfer

    torch.manual_seed(0)
    src = build(_tiny()).eval()
    tall = _tiny(input_height=48, staff_fraction=0.30)  # the same 14.4 px staff, 8 px more each side
    dst = build(tall).eval()
    assert transfer(src, dst) == []
    # Fresh batch norm maps paper (0) to 0, as zero padding does; only what the convolutions
    # see across the old edge differs, so the two read the same crop nearly alike.
    x = torch.rand(2, 1, 32, 96)
    with torch.no_grad():
        old, new = src(x), dst(torch.nn.functional.pad(x, (0, 0, 8, 8)))
    assert torch.allclose(old, new, atol=0.01) and torch.equal(old.argmax(-1), new.argmax(-1))
    assert "LSTM" in transfer(src, build(_tiny(input_height=48)))  # another scale: no carry
    vocab = Vocabulary(tuple(f"note-C{k}_quarter" for k in range(8)))
    save(tmp_path / "tall.pt", dst, tall, vocab, step=1)
    path = export_fp32(load(tmp_path / "tall.pt"), tmp_path / "tall.onnx")
    assert Recognizer(path, threads=1).info.staff_fraction == 0.30  # the runtime crops to it
