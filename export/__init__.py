"""Exporters: a training checkpoint to TorchScript, ONNX (fp32, fp16, int8) and Core ML.

    python export/to_torchscript.py models/crnn.pt
    python export/to_onnx.py models/crnn.pt [--precision fp32|fp16|int8|all]
    python export/to_coreml.py models/crnn.pt [--fp32]

Each takes a CRNN or a TrOMR checkpoint (TrOMR: an encoder file and a decoder file beside
it, X.decoder.*). `spec` describes a model for export (its graphs' names, dynamic axes, dummy
inputs, metadata), one description per model family; `verify` runs every artifact against PyTorch on the same staves
and fails loudly on a mismatch; `common` holds what the three scripts share.
"""
