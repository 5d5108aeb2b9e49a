"""Backends side by side: the same checkpoint and staves on every runtime we ship to.

    python benchmarks/bench_backends.py models/crnn.pt [--batch 16] [--latency-staves 40]
        [--repeats 3] [--threads 2] [--out benchmarks/results]
    python benchmarks/bench_backends.py runs/tromr/best.pt [--steps 40] [--page 10]
    python benchmarks/bench_backends.py --random tromr-paper --steps 40   # speed alone

A TrOMR checkpoint (or --random PRESET: its sizes, random weights) is measured on PyTorch
eager, TorchScript and ONNX Runtime fp32 and int8, every one decoding greedily with its KV
cache through the runtime's loop (omr.autoregressive). Its table adds the page figure: a
--page-staff page (10) read as one batch, per staff. --steps N fixes every decode at N tokens
(EOS ignored until then), so that random weights decode a realistic length.

Exports the checkpoint to TorchScript, ONNX fp32/fp16/int8 (and Core ML on macOS) in a
temporary folder, then measures each backend in a fresh subprocess, one after the other in
the same run: latency p50/p90 at batch 1, throughput at --batch, peak memory (VmHWM, and its
rise over the process with its libraries imported), file size, and SER on
../shared/eval/camera-primus (clean and distorted). PyTorch CUDA and ONNX Runtime CUDA join
when a GPU is present. Every CPU backend gets the same --threads (2).
Writes benchmarks/results/backends.md, backends.png and backends.json.
Bar: ONNX Runtime int8 latency p50 at most 0.6x PyTorch eager's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
INT8_BAR = 0.6
PAGE_BAR_MS = 60.0  # issue 22: TrOMR on ORT with the KV cache, per staff of a 10-staff page


@dataclass(frozen=True)
class Measurement:
    backend: str
    device: str
    file_mib: float
    p50_ms: float
    p90_ms: float
    throughput: float  # staves per second at the large batch
    peak_mib: float  # VmHWM of the worker process
    model_mib: float  # peak minus the RSS once its libraries were imported
    ser_clean: float | None  # percent
    ser_distorted: float | None
    error: str = ""
    page_ms: float | None = None  # TrOMR: per staff, a --page-staff page read as one batch


# --- the worker: one backend, one fresh process ------------------------------------------------

def _vm(field: str) -> float:
    """MiB from /proc/self/status (VmRSS now, VmHWM the peak); 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _runner(backend: str, artifact: str, threads: int):
    """A function batch -> log-probs; imports only what this backend needs (memory is measured)."""
    if backend.startswith("onnxruntime"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CUDAExecutionProvider"] if backend.endswith("cuda") else []
        session = ort.InferenceSession(artifact, options,
                                       providers=providers + ["CPUExecutionProvider"])
        return lambda batch: session.run(["log_probs"], {"image": batch})[0]
    if backend == "coreml":
        import coremltools as ct

        model = ct.models.MLModel(artifact)
        return lambda batch: np.concatenate([model.predict({"image": batch[i:i + 32]})["log_probs"]
                                             for i in range(0, len(batch), 32)])
    import torch

    torch.set_num_threads(threads)
    device = "cuda" if backend.endswith("cuda") else "cpu"
    if backend.startswith("torchscript"):
        model = torch.jit.load(artifact, map_location=device).eval()
    else:
        from omr_train.checkpoint import load_model

        model = load_model(Path(artifact))[0].to(device)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(batch).to(device)).float().cpu().numpy()
        return out

    return run


def _batch(crops: list[np.ndarray], height: int, stride: int) -> tuple[np.ndarray, int]:
    """The runtime's batch (omr.recognize.Recognizer.run): ink 1, right-padded to the stride."""
    width = int(math.ceil(max(c.shape[1] for c in crops) / stride) * stride)
    batch = np.zeros((len(crops), 1, height, width), np.float32)
    for k, c in enumerate(crops):
        batch[k, 0, :, :c.shape[1]] = (255.0 - c.astype(np.float32)) / 255.0
    return batch, width


def _seq2seq(backend: str, artifact: str, threads: int):
    """TrOMR's two graphs on one backend behind omr.autoregressive's Seq2Seq protocol."""
    if backend.startswith("onnxruntime"):
        from omr import autoregressive as ar
        from omr_export.verify import onnx_session

        decoder = artifact.removesuffix(".onnx") + ".decoder.onnx"
        return ar.OnnxSeq2Seq(onnx_session(Path(artifact), threads),
                              onnx_session(Path(decoder), threads))
    import torch
    from omr_export.verify import TorchSeq2Seq

    torch.set_num_threads(threads)
    if backend == "torchscript":
        from omr_export.to_torchscript import load_torchscript

        decoder = artifact.removesuffix(".torchscript.pt") + ".decoder.torchscript.pt"
        spec = _spec_of(artifact)
        return TorchSeq2Seq(load_torchscript(Path(artifact))[0],
                            load_torchscript(Path(decoder))[0], spec)
    from omr_export.spec import load

    ex = load(Path(artifact))  # eager: the model's own modules, in its encode/decode order
    return TorchSeq2Seq(ex.parts["encoder"], ex.parts["decoder"], ex.spec)


def _spec_of(artifact: str):
    """The spec that the parent saved beside the staves (TorchScript files carry no config)."""
    import pickle

    return pickle.loads((Path(artifact).parent / "spec.pickle").read_bytes())


def tromr_worker(args: argparse.Namespace, meta: dict, crops: list[np.ndarray]) -> None:
    from omr import autoregressive as ar

    if args.backend.startswith("onnxruntime"):
        import onnxruntime  # noqa: F401 - the baseline includes the library, not the model
    else:
        import torch  # noqa: F401
    info = ar.Seq2SeqInfo.from_metadata(meta["metadata"])
    stride, max_width = meta["width_stride"], int(meta["metadata"]["max_width"])
    options = ar.DecodingOptions(max_length=args.steps, min_length=args.steps)
    baseline = _vm("VmRSS")
    model = _seq2seq(args.backend, args.artifact, args.threads)

    def read(group: list[np.ndarray]) -> list[ar.Reading]:
        batch, widths = ar.batch(group, stride, max_width)
        return ar.greedy(model, info, batch, widths, options)

    read(crops[:2])  # warm-up: first-run allocations and kernel selection
    latency_set = [k for k, s in enumerate(meta["staves"]) if s["latency"]]
    times = []
    for _ in range(args.repeats):
        for k in latency_set:
            start = time.perf_counter()
            read([crops[k]])
            times.append(time.perf_counter() - start)
    # A page: the first --page real staves (or every stave, repeated) as one batch.
    page = [crops[k % len(crops)] for k in range(args.page)]
    page_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        read(page)
        page_times.append(time.perf_counter() - start)
    decoded: dict[int, list[str]] = {}
    start = time.perf_counter()
    for group in _groups(meta, args.batch):
        for k, reading in zip(group, read([crops[k] for k in group])):
            decoded[k] = reading.tokens(info.vocab)
    elapsed = time.perf_counter() - start
    _report(meta, decoded, times, len(crops) / elapsed, baseline,
            page_ms=1000 * float(np.median(page_times)) / args.page)


def _report(meta: dict, decoded: dict[int, list[str]], times: list[float], throughput: float,
            baseline: float, **extra) -> None:
    """One backend's figures as the JSON line the parent reads: latency, throughput, memory and
    the SER of each variant (clean, distorted) of the staves."""
    from omr_train.metrics import score

    def ser(variant: str) -> float | None:
        pairs = [(decoded[k], s["tokens"]) for k, s in enumerate(meta["staves"])
                 if s["variant"] == variant]
        return 100 * score(pairs).ser if pairs else None

    peak = _vm("VmHWM")
    print(json.dumps({"p50_ms": 1000 * float(np.percentile(times, 50)),
                      "p90_ms": 1000 * float(np.percentile(times, 90)),
                      "throughput": throughput, "peak_mib": peak,
                      "model_mib": peak - baseline, "ser_clean": ser("clean"),
                      "ser_distorted": ser("distorted"), **extra}))


def _groups(meta: dict, batch: int) -> list[list[int]]:
    """Folder order, one variant at a time, as omr-eval batches them."""
    groups = []
    for variant in dict.fromkeys(s["variant"] for s in meta["staves"]):
        same = [k for k, s in enumerate(meta["staves"]) if s["variant"] == variant]
        groups += [same[i:i + batch] for i in range(0, len(same), batch)]
    return groups


def worker(args: argparse.Namespace) -> None:
    from omr.decode import greedy_decode
    from omr.vocab import Vocabulary

    meta = json.loads((Path(args.data) / "staves.json").read_text())
    pixels = np.load(Path(args.data) / "staves.npz")
    crops = [pixels[str(k)] for k in range(len(meta["staves"]))]
    if meta["family"] == "tromr":
        tromr_worker(args, meta, crops)
        return
    height, stride = meta["input_height"], meta["width_stride"]
    vocab = Vocabulary.from_json(meta["vocab"])
    if args.backend.startswith("onnxruntime"):
        import onnxruntime  # noqa: F401 - the baseline includes the library, not the model
    elif args.backend != "coreml":
        import torch  # noqa: F401
    baseline = _vm("VmRSS")
    run = _runner(args.backend, args.artifact, args.threads)
    sync = _cuda_sync(args.backend)
    for crop in crops[:3]:  # warm-up: first-run allocations and kernel selection
        run(_batch([crop], height, stride)[0])

    latency_set = [k for k, s in enumerate(meta["staves"]) if s["latency"]]
    times = []
    for _ in range(args.repeats):
        for k in latency_set:
            batch, _ = _batch([crops[k]], height, stride)
            start = time.perf_counter()
            run(batch)
            sync()
            times.append(time.perf_counter() - start)

    # Folder order, one variant at a time, as omr-eval batches them: the SER here is omr-eval's.
    groups = _groups(meta, args.batch)
    decoded: dict[int, list[str]] = {}
    start = time.perf_counter()
    for group in groups:
        batch, width = _batch([crops[k] for k in group], height, stride)
        out = run(batch)
        sync()
        for row, k in enumerate(group):
            frames = max(1, min(out.shape[1], math.ceil(crops[k].shape[1] * out.shape[1] / width)))
            decoded[k] = vocab.decode(greedy_decode(out[row, :frames])[0])
    elapsed = time.perf_counter() - start
    _report(meta, decoded, times, len(crops) / elapsed, baseline)


def _cuda_sync(backend: str):
    if backend == "pytorch-cuda":
        import torch

        return torch.cuda.synchronize
    return lambda: None  # CPU backends and ORT (its run() returns host arrays) are synchronous


# --- the parent: export, prepare staves, run every backend, write the report --------------------

def export_all(checkpoint: Path, folder: Path) -> tuple[object, dict[str, tuple[str, Path]]]:
    """Every artifact of the checkpoint, in `folder`; backend -> (device, file)."""
    import torch
    from omr_export.spec import Seq2SeqSpec, load
    from omr_export.to_onnx import export_fp16, export_fp32, export_int8
    from omr_export.to_torchscript import export_torchscript

    torch.set_num_threads(2)
    ex = load(checkpoint)
    fp32 = export_fp32(ex, folder / "model.onnx")
    if isinstance(ex.spec, Seq2SeqSpec):  # the formats issue 22 asks of TrOMR, on the CPU
        import pickle

        (folder / "spec.pickle").write_bytes(pickle.dumps(ex.spec))
        return ex, {"pytorch": ("cpu", checkpoint),
                    "torchscript": ("cpu", export_torchscript(ex, folder / "model.torchscript.pt")),
                    "onnxruntime-fp32": ("cpu", fp32),
                    "onnxruntime-int8": ("cpu", export_int8(ex, fp32, folder / "model.int8.onnx"))}
    backends = {
        "pytorch": ("cpu", checkpoint),
        "torchscript": ("cpu", export_torchscript(ex, folder / "model.torchscript.pt")),
        "onnxruntime-fp32": ("cpu", fp32),
        "onnxruntime-fp16": ("cpu", export_fp16(ex, fp32, folder / "model.fp16.onnx")),
        "onnxruntime-int8": ("cpu", export_int8(ex, fp32, folder / "model.int8.onnx")),
    }
    if torch.cuda.is_available():
        backends["pytorch-cuda"] = ("cuda", checkpoint)
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        backends["onnxruntime-cuda"] = ("cuda", fp32)
    if sys.platform == "darwin":
        from omr_export.to_coreml import export_coreml

        backends["coreml"] = ("ane/gpu/cpu", export_coreml(ex, folder / "model.mlpackage"))
    return ex, backends


def prepare_staves(ex, folder: Path, latency_staves: int, ser_staves: int = 0) -> dict:
    """Real staves (both variants) and generated ones, saved for the workers to share;
    `ser_staves`: an even spread of that many incipits, in both variants (0: all)."""
    from omr_export.verify import generated_staves, real_staves

    real = real_staves(ex.spec.input_height, fraction=ex.spec.staff_fraction)
    if ser_staves:
        half = len(real) // 2  # clean, then distorted, incipit for incipit
        keep = list(range(0, half, max(1, half // ser_staves)))[:ser_staves]
        real = [real[k] for k in keep] + [real[half + k] for k in keep]
    generated = [s for s in generated_staves(ex.spec) if s.tokens is not None]
    staves = real + generated
    # Latency on an even spread of real staves plus every generated one.
    step = max(1, len(real) // max(1, latency_staves))
    chosen = set(range(0, len(real), step)[:latency_staves]) | set(range(len(real), len(staves)))
    meta = {"input_height": ex.spec.input_height, "width_stride": ex.spec.width_stride,
            "vocab": ex.spec.vocab.to_json(), "family": ex.spec.family,
            "metadata": ex.spec.metadata(), "staves": [
                {"name": s.name, "tokens": list(s.tokens or ()), "latency": k in chosen,
                 "variant": s.source.removeprefix("camera-primus/")}
                for k, s in enumerate(staves)]}
    np.savez(folder / "staves.npz", **{str(k): s.pixels for k, s in enumerate(staves)})
    (folder / "staves.json").write_text(json.dumps(meta))
    return meta


def measure(backend: str, device: str, artifact: Path, data: Path, args) -> Measurement:
    from omr_export.common import size_of

    cmd = [sys.executable, __file__, "--worker", backend, "--artifact", str(artifact),
           "--data", str(data), "--threads", str(args.threads), "--batch", str(args.batch),
           "--repeats", str(args.repeats), "--steps", str(args.steps), "--page", str(args.page)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    # TrOMR's decoder file lies beside its encoder's: the model's size is both.
    decoder = {".onnx": ".decoder.onnx", ".torchscript.pt": ".decoder.torchscript.pt"}
    siblings = [artifact.with_name(artifact.name.removesuffix(a) + b)
                for a, b in decoder.items() if artifact.name.endswith(a)]
    size = sum(size_of(p) for p in [artifact, *siblings] if p.exists()) / 2 ** 20
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return Measurement(backend, device, size, math.nan, math.nan, math.nan, math.nan,
                           math.nan, None, None, tail[:200])
    return Measurement(backend, device, size, **json.loads(done.stdout.strip().splitlines()[-1]))


def machine() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
                "numpy": np.__version__}
    try:
        import logging

        logging.getLogger("coremltools").setLevel(logging.ERROR)  # no native library off macOS
        import coremltools

        versions["coremltools"] = coremltools.__version__
    except ImportError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"cpu": cpu, "cores": str(os.cpu_count()), "gpu": gpu, "os": platform.platform(),
            "load average at start": load, **versions}


def report(results: list[Measurement], info: dict, spec, args, staves: dict) -> str:
    real = sum(s["variant"] in ("clean", "distorted") for s in staves["staves"])
    latency = sum(s["latency"] for s in staves["staves"])
    seq2seq = staves["family"] == "tromr"
    steps = (f"every decode fixed at {args.steps} tokens" if args.steps else
             "each staff decoded to its EOS")
    how = (f"TrOMR, greedy with the KV cache through omr.autoregressive on every backend, "
           f"{steps}; page: {args.page} staves read as one batch, median of {args.repeats}, "
           f"per staff. " if seq2seq else "")
    lines = [f"# Backends: {spec.name} {spec.version}", "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: "
             + "; ".join(f"{k} {v}" for k, v in info.items()) + ".", "",
             (f"{how}Threads per CPU backend: {args.threads}. Latency: batch 1, {args.repeats} passes "
              f"over {latency} staves (real and generated). Throughput: "
              f"{len(staves['staves'])} staves in folder-order batches of {args.batch}. SER: {real} "
              f"camera-primus staves (greedy, no repair). Peak: VmHWM of the backend's own process; model: its rise once the "
              f"libraries were imported."), "",
             ("| backend | device | file MiB | p50 ms | p90 ms | staves/s | peak MiB | model MiB "
              "| SER clean % | SER distorted % |" + (" page ms/staff |" if seq2seq else "")),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if seq2seq else "")]
    for m in results:
        if m.error:
            lines.append(f"| {m.backend} | {m.device} | {m.file_mib:.2f} | failed: {m.error} "
                         f"| | | | | | |")
            continue
        ser = [f"{v:.2f}" if v is not None else "-" for v in (m.ser_clean, m.ser_distorted)]
        lines.append(f"| {m.backend} | {m.device} | {m.file_mib:.2f} | {m.p50_ms:.1f} | "
                     f"{m.p90_ms:.1f} | {m.throughput:.1f} | {m.peak_mib:.0f} | {m.model_mib:.0f} "
                     f"| {ser[0]} | {ser[1]} |"
                     + (f" {m.page_ms:.1f} |" if m.page_ms is not None else ""))
    busy = os.getloadavg()[0] - (os.cpu_count() or 1)
    if busy > 0.5:
        lines += ["", (f"The machine was busy (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
                       f"cores at the end): PyTorch's OpenMP threads wait for descheduled peers "
                       f"at every barrier, so its p90 suffers most. Rerun on an idle machine, "
                       f"or compare with --threads 1.")]
    by = {m.backend: m for m in results}
    if "pytorch" in by and "onnxruntime-int8" in by:
        ratio = by["onnxruntime-int8"].p50_ms / by["pytorch"].p50_ms
        verdict = "PASS" if ratio <= INT8_BAR else "FAIL"
        lines += ["", (f"ONNX Runtime int8 / PyTorch eager latency p50: {ratio:.2f} "
                       f"(bar {INT8_BAR}): {verdict}")]
    for name in ("onnxruntime-fp32", "onnxruntime-int8"):
        if seq2seq and name in by and by[name].page_ms is not None:
            verdict = "PASS" if by[name].page_ms <= PAGE_BAR_MS else "FAIL"
            lines.append(f"{name}: {by[name].page_ms:.1f} ms a staff on a {args.page}-staff page "
                         f"(bar {PAGE_BAR_MS} ms): {verdict}")
    return "\n".join(lines) + "\n"


def chart(results: list[Measurement], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [m for m in results if not m.error]
    names = [m.backend for m in ok]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    p50 = np.array([m.p50_ms for m in ok])
    p90 = np.array([m.p90_ms for m in ok])
    left.barh(names, p50, xerr=[np.zeros_like(p50), p90 - p50], color="tab:blue", capsize=3)
    left.set_xlabel("latency per staff, batch 1 (ms): p50, whisker to p90")
    left.invert_yaxis()
    right.barh(names, [m.throughput for m in ok], color="tab:green")
    right.set_xlabel("throughput (staves/s)")
    right.invert_yaxis()
    right.set_yticklabels([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-staves", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the latency staves")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--ser-staves", type=int, default=0,
                        help="camera-primus incipits read for throughput and SER (0: all)")
    parser.add_argument("--steps", type=int, default=0,
                        help="TrOMR: fix every decode at this many tokens (0: to each EOS)")
    parser.add_argument("--page", type=int, default=10, help="TrOMR: staves on the page")
    parser.add_argument("--random", metavar="PRESET",
                        help="TrOMR: this preset with random weights instead of a checkpoint")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--artifact", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.backend = args.worker
        worker(args)
        return
    if args.checkpoint is None and not args.random:
        parser.error("give the checkpoint to benchmark, e.g. models/crnn.pt")
    from omr_export.spec import ExportError

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.random:
            args.checkpoint = random_tromr(args.random, folder / f"{args.random}.pt")
        try:
            ex, backends = export_all(args.checkpoint, folder)
        except ExportError as err:
            sys.exit(f"error: {err}")
        staves = prepare_staves(ex, folder, args.latency_staves, args.ser_staves)
        info = machine()
        results = []
        for backend, (device, artifact) in backends.items():
            print(f"measuring {backend} ...", flush=True)
            results.append(measure(backend, device, artifact, folder, args))
    text = report(results, info, ex.spec, args, staves)
    args.out.mkdir(parents=True, exist_ok=True)
    # The CRNN's files keep their names; TrOMR's are named for the preset.
    stem = "backends" if ex.spec.family == "crnn" else f"backends-{ex.spec.name}" + (
        "-random" if args.random else "")
    (args.out / f"{stem}.md").write_text(text)
    (args.out / f"{stem}.json").write_text(json.dumps(
        {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
         "results": [asdict(m) for m in results]}, indent=1))
    title = f"{ex.spec.name}: {info['cpu']}, {args.threads} threads"
    chart(results, title, args.out / f"{stem}.png")
    print(text)
    print(f"wrote {args.out / stem}.md, .png, .json")


def random_tromr(preset: str, path: Path) -> Path:
    """A checkpoint of the preset's sizes with random weights and the grammar's vocabulary:
    what speed depends on, with no training run needed."""
    import torch
    from omr.vocab import FactorVocabulary
    from omr_train import checkpoint, tromr

    torch.manual_seed(0)
    vocab = FactorVocabulary.from_labels([], grammar=True)
    cfg = tromr.configure(tromr.PRESETS[preset], vocab)
    checkpoint.save(path, tromr.build(cfg).eval(), cfg, vocab, step=0)
    return path


if __name__ == "__main__":
    main()
