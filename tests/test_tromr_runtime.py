"""TrOMR exported and run without torch, on a tiny network trained here for a few seconds (so
that its greedy reading is neither empty nor one token repeated): ONNX (encoder and decoder
with its KV cache), TorchScript and Core ML from the exporters the CRNN uses, each read by the
runtime's own decoding loop with the same tokens as PyTorch's greedy search; the Recognizer
picks the autoregressive reader from the model's metadata."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verovio")

from conftest import teach_tromr
from omr import autoregressive as ar
from omr.vocab import CHORD, FactorVocabulary
from omr_export.spec import Seq2SeqSpec, load
from omr_export.verify import (
    FP32,
    REDUCED,
    Stave,
    VerificationError,
    Verifier,
    engraved_staves,
    onnx_runner,
    reference_runner,
    require,
    seq2seq_runner,
)
from omr_train import checkpoint, tromr

CHORDS = ["clef-G2", "timeSignature-3/4", "note-C4_quarter", CHORD, "note-E4_quarter", CHORD,
          "note-G4_quarter", "note-F#4_half", CHORD, "note-A4_half", "barline", "note-G4_half.",
          "barline"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two engraved staves with their labels' first 14 tokens and one labelled with chords,
    200 steps of teacher forcing on a TrOMR 32 wide: what comes out is the labels' stuff."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    lean = tromr.PRESETS["tromr-lean"]
    engraved = engraved_staves(lean.input_height, lean.staff_fraction, 3, 7)
    labels = [list(engraved[0].tokens[:14]), list(engraved[1].tokens[:14]), CHORDS]
    vocab = FactorVocabulary.from_labels(labels)
    cfg = replace(tromr.configure(lean, vocab), stem_channels=(8, 16, 16, 16),
                  dim=32, heads=2, encoder_depth=1, decoder_depth=2, dropout=0.0, max_seq_len=48)
    model = tromr.build(cfg)
    batch, widths = ar.batch([s.pixels for s in engraved], cfg.stride[1], cfg.max_width)
    images, w = torch.from_numpy(batch), torch.from_numpy(widths)
    teach_tromr(model, images, w, tromr.targets([vocab.encode(x) for x in labels]), steps=200,
                lr=3e-3)
    path = tmp_path_factory.mktemp("tromr") / "tiny.pt"
    checkpoint.save(path, model, cfg, vocab, step=200)
    staves = [Stave(f"train/{k}", s.pixels, tuple(x), "folder/train")
              for k, (s, x) in enumerate(zip(engraved, labels))]
    # Edge widths one at a time: a single patch, and one a few columns past a patch.
    staves += [Stave(f"generated/w{n}", engraved[0].pixels[:, :n], None, "generated")
               for n in (cfg.stride[1], 3 * cfg.stride[1] + 5)]
    return path, staves


@pytest.fixture(scope="module")
def exportable(trained):
    return load(trained[0])


@pytest.fixture(scope="module")
def verifier(exportable, trained):
    return Verifier(exportable.spec, reference_runner(exportable), trained[1])


@pytest.fixture(scope="module")
def onnx_model(exportable, tmp_path_factory):
    from omr_export.to_onnx import export_fp32

    return export_fp32(exportable, tmp_path_factory.mktemp("onnx") / "tromr.onnx")


def test_the_spec_describes_an_encoder_and_a_decoder_with_its_cache(exportable):
    spec = exportable.spec
    assert isinstance(spec, Seq2SeqSpec) and spec.family == "tromr"
    encoder, decoder = spec.graphs
    assert encoder.inputs == ("image", "widths") and decoder.suffix == ".decoder"
    assert decoder.inputs[-4:] == ("past_key_0", "past_value_0", "past_key_1", "past_value_1")
    assert decoder.outputs[-1] == "present_value_1"
    meta = spec.metadata()
    assert ar.Seq2SeqInfo.from_metadata(meta) == spec.info
    assert FactorVocabulary.from_json(meta["vocab"]) == spec.vocab
    assert meta["model_family"] == "tromr" and meta["width_stride"] == "16"


def test_the_tiny_model_reads_something_worth_comparing(verifier):
    readings = [verifier.tokens(o.ids) for o in verifier.reference]
    assert all(len(r) >= 5 for r in readings[:3])
    assert CHORD in readings[2] and len({t for r in readings for t in r}) >= 6


def test_onnx_encoder_and_decoder_read_what_pytorch_reads(exportable, verifier, onnx_model):
    from omr_export.to_onnx import verify_onnx

    assert onnx_model.with_name("tromr.decoder.onnx").exists()
    report = verify_onnx(onnx_model, exportable, "fp32", verifier)
    assert report.ok and report.token_mismatches == 0
    assert report.max_abs_diff < FP32.max_abs_diff and report.ser_reference is not None


def test_torchscript_encoder_and_decoder_read_what_pytorch_reads(exportable, verifier, tmp_path):
    from omr_export.to_torchscript import export_torchscript, load_torchscript, verify_torchscript

    path = export_torchscript(exportable, tmp_path / "tiny.torchscript.pt")
    report = verify_torchscript(path, exportable, verifier)
    assert report.ok and report.token_mismatches == 0
    _, meta = load_torchscript(tmp_path / "tiny.decoder.torchscript.pt")
    assert meta == exportable.spec.metadata()


def test_torchscript_export_takes_any_output_name(trained, tmp_path):
    from click.testing import CliRunner
    from omr_export.to_torchscript import main

    result = CliRunner().invoke(main, [str(trained[0]), "-o", str(tmp_path / "tromr.ts")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tromr.ts.torchscript.pt").exists()
    assert (tmp_path / "tromr.ts.decoder.torchscript.pt").exists()
    assert "tromr.ts.torchscript.pt" in result.output


def test_int8_quantizes_both_graphs_and_names_its_own_decoder(exportable, verifier, onnx_model,
                                                              tmp_path):
    import onnx
    from omr_export.to_onnx import export_int8

    path = export_int8(exportable, onnx_model, tmp_path / "tromr.int8.onnx")
    for name in ("tromr.int8.onnx", "tromr.int8.decoder.onnx"):
        model = onnx.load(str(tmp_path / name))
        assert "MatMulInteger" in {n.op_type for n in model.graph.node}, name
        heads = {n.op_type for n in model.graph.node if "to_rhythm" in n.name}
        assert not heads & {"MatMulInteger", "DynamicQuantizeLinear"}, name  # heads stay float
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["precision"] == "int8" and meta["model_family"] == "tromr"
    first = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert first["decoder_file"] == "tromr.int8.decoder.onnx"
    # What the exporter asks of int8: the SER, not the numbers (they move by design).
    report = verifier.check(path.name, onnx_runner(path, spec=exportable.spec), REDUCED)
    assert report.ok, report


def test_verification_fails_loudly_when_the_decoder_differs(exportable, verifier, onnx_model):
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p)) for p in
                (onnx_model, onnx_model.with_name("tromr.decoder.onnx"))]

    class Shifted(ar.OnnxSeq2Seq):
        def step(self, feeds):
            out = super().step(feeds)
            out["rhythm_logits"] = out["rhythm_logits"].copy()
            out["rhythm_logits"][:, -1] += 20.0  # the last rhythm wins every step
            return out

    report = verifier.check("shifted", seq2seq_runner(Shifted(*sessions), exportable.spec.info),
                            FP32)
    assert not report.ok and report.token_mismatches > 0
    with pytest.raises(VerificationError, match="shifted failed verification"):
        require(report)


def test_min_length_fixes_the_decode_length(exportable, onnx_model, trained):
    import onnxruntime as ort

    model = ar.OnnxSeq2Seq(ort.InferenceSession(str(onnx_model)),
                           ort.InferenceSession(str(onnx_model.with_name("tromr.decoder.onnx"))))
    batch, widths = ar.batch([s.pixels for s in trained[1][:3]], 16, exportable.spec.max_width)
    readings = ar.greedy(model, exportable.spec.info, batch, widths,
                         ar.DecodingOptions(max_length=20, min_length=20))
    assert [len(r.rhythms) for r in readings] == [20, 20, 20]


RUNTIME = textwrap.dedent("""
    import json, sys
    import cv2
    from omr import Recognizer
    from omr.decode import DecodeOptions
    crops = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in sys.argv[3:]]
    rec = Recognizer(sys.argv[1], threads=1, decoding=DecodeOptions(
        paint_clef=False, second_look_below=float("-inf")))
    read = [d.tokens for d in rec.reader.read(crops)]
    score = Recognizer(sys.argv[1], threads=1).read(sys.argv[2])
    assert "torch" not in sys.modules, "torch was imported"
    print(json.dumps({"family": rec.info.family, "read": read,
                      "page": [list(s.tokens) for s in score.staves]}))
""")


def test_the_recognizer_reads_with_tromr_without_torch(exportable, onnx_model, trained, tmp_path):
    import cv2
    from conftest import make_page
    from omr import semantic

    crops = []
    for k, stave in enumerate(trained[1][:3]):
        crops.append(tmp_path / f"crop{k}.png")
        cv2.imwrite(str(crops[-1]), stave.pixels)
    page = tmp_path / "page.png"
    cv2.imwrite(str(page), make_page(staves=2))
    done = subprocess.run([sys.executable, "-c", RUNTIME, str(onnx_model), str(page),
                           *map(str, crops)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["family"] == "tromr"
    pixels = [s.pixels for s in trained[1][:3]]
    batch, widths = ar.batch(pixels, 16, exportable.spec.max_width)
    expected = tromr.read(exportable.model, exportable.spec.vocab, torch.from_numpy(batch),
                          torch.from_numpy(widths))
    assert out["read"] == expected  # one batch, as PyTorch read it
    assert len(out["page"]) == 2
    for staff in out["page"]:  # the page's staves come out repaired, in the notation
        assert staff == semantic.repair(staff, open_end=True)


def test_the_second_look_keeps_the_likeliest_of_three_readings(onnx_model, trained):
    from omr.decode import DecodeOptions
    from omr.readers import look_shifts, open_reader
    from omr.second_look import shifted

    reader = open_reader(onnx_model, threads=1, decoding=DecodeOptions(second_look_below=0.0))
    crops = [s.pixels for s in trained[1][:3]]
    dy = look_shifts(reader.decoding, reader.info.input_height)
    assert dy == (3, -3)
    first = reader.greedy(crops)
    again = reader.greedy([shifted(c, d) for d in dy for c in crops])
    got = reader.readings(crops)
    for k, reading in enumerate(got):
        options = [first[k], again[k], again[k + len(crops)]]
        assert reading.logprob == max(r.logprob for r in options)
        assert reading.rhythms in [r.rhythms for r in options]
    never = open_reader(onnx_model, threads=1,
                        decoding=DecodeOptions(second_look_below=float("-inf")))
    assert [r.rhythms for r in never.readings(crops)] == [r.rhythms for r in first]


def test_model_tromr_is_the_packaged_file_or_a_clear_error(exportable, onnx_model, tmp_path,
                                                           monkeypatch):
    from omr import readers
    from omr.recognize import Recognizer

    monkeypatch.setattr(readers, "MODELS", tmp_path)
    with pytest.raises(readers.ModelError, match="no packaged tromr model"):
        Recognizer("tromr")
    for name in ("tromr.onnx", "tromr.decoder.onnx"):
        shutil.copy(onnx_model.with_name(name), tmp_path / name)
    rec = Recognizer("tromr", threads=1)
    assert rec.model_path == tmp_path / "tromr.onnx" and rec.info.family == "tromr"
    (tmp_path / "tromr.decoder.onnx").unlink()
    with pytest.raises(readers.ModelError, match="decoder tromr.decoder.onnx is not beside it"):
        Recognizer("tromr")


def test_coreml_encoder_and_decoder_have_valid_specs(exportable, tmp_path):
    pytest.importorskip("coremltools")
    from omr_export.to_coreml import check_saved_spec, export_coreml, verify_coreml

    path = export_coreml(exportable, tmp_path / "tiny.mlpackage")
    encoder, decoder = exportable.spec.graphs
    assert check_saved_spec(path, exportable.spec, "fp16", encoder) == []
    assert check_saved_spec(tmp_path / "tiny.decoder.mlpackage", exportable.spec, "fp16",
                            decoder) == []
    assert verify_coreml(path, exportable, "fp16", platform="linux") is None


def test_batches_pad_to_whole_patches_and_cut_at_the_widest_input():
    crops = [np.full((8, 5), 255, np.uint8), np.zeros((8, 40), np.uint8)]
    batch, widths = ar.batch(crops, 16, 32)
    assert batch.shape == (2, 1, 8, 32) and list(widths) == [5, 32]
    assert batch[0].max() == 0 and batch[1, 0, :, :32].min() == 1


def test_the_column_stem_exports_and_reads_as_pytorch_reads(trained, tmp_path):
    """tromr-lean-lstm (the CRNN's conv blocks and LSTM under the encoder): the same export
    and verification, ONNX encoder and decoder against PyTorch's greedy tokens."""
    from omr_export.to_onnx import export_fp32, verify_onnx

    torch.manual_seed(0)
    column = tromr.PRESETS["tromr-lean-lstm"]
    engraved = engraved_staves(column.input_height, column.staff_fraction, 3, 7)
    labels = [list(engraved[0].tokens[:14]), list(engraved[1].tokens[:14]), CHORDS]
    vocab = FactorVocabulary.from_labels(labels)
    cfg = replace(tromr.configure(column, vocab), stem_channels=(8, 16, 16, 16), lstm_hidden=16,
                  dim=32, heads=2, encoder_depth=1, decoder_depth=1, dropout=0.0, max_seq_len=48)
    model = tromr.build(cfg)
    batch, widths = ar.batch([s.pixels for s in engraved], cfg.stride[1], cfg.max_width)
    teach_tromr(model, torch.from_numpy(batch), torch.from_numpy(widths),
                tromr.targets([vocab.encode(x) for x in labels]), steps=120, lr=3e-3)
    path = tmp_path / "column.pt"
    checkpoint.save(path, model, cfg, vocab, step=120)
    exportable = load(path)
    staves = [Stave(f"train/{k}", s.pixels, tuple(x), "folder/train")
              for k, (s, x) in enumerate(zip(engraved, labels))]
    verifier = Verifier(exportable.spec, reference_runner(exportable), staves)
    assert max(len(verifier.tokens(o.ids)) for o in verifier.reference) >= 5
    onnx = export_fp32(exportable, tmp_path / "column.onnx")
    report = verify_onnx(onnx, exportable, "fp32", verifier)
    assert report.ok and report.token_mismatches == 0
