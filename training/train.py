"""`omr-train crnn` and `omr-train tromr`: one visible loop (after nanoGPT's train.py) for
the CRNN (CTC) and TrOMR (teacher forcing). What differs between them is one small class
each, `CTC` and `Seq2Seq`: its vocabulary, network, labels, loss and reading.

The same loop runs on one CPU, one GPU, or many processes under `torchrun` (DDP: gloo on
CPU, NCCL on CUDA). Every batch's content and augmentation is a function of (seed, epoch,
index), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from omr.vocab import FactorVocabulary, Vocabulary

from . import checkpoint, tromr
from .align import CRNNAligner, alignment_loss
from .augment import AugmentOptions, augment
from .dataset import Sample, bucket_batches, collate, collate_ink, png_width, read_folder
from .metrics import ctc_greedy, score
from .model import PRESETS, CRNNConfig, build, output_lengths, transfer

CLEAN = AugmentOptions(strength=0.0)


@dataclass(frozen=True)
class TrainOptions:
    model: str = "crnn"  # or "tromr"
    preset: str = "crnn-lite"
    data: str = "data/synth"  # one folder, or several joined by commas (a mix)
    out: str = "runs/crnn"
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    steps: int = 20000
    max_minutes: float = 0.0  # 0 = no limit; otherwise the schedule follows the clock
    warmup: int = 300
    eval_every: int = 500
    eval_samples: int = 400
    augment: float = 1.0
    damaged_start: float = 0.0  # share of staves whose clef and key are cut, smeared, blotted or twisted
    grow: bool = False  # re-read the folder between epochs: omr-synth is still writing it
    grow_every_s: float = 60.0  # at most this often (tests: 0, every epoch)
    seed: int = 0
    workers: int = 2
    threads: int = 2
    amp: bool = True
    max_width: int = 2400
    resume: bool = True
    stop_after: int = 0  # end this invocation at this global step (chunked sessions); 0 = steps
    init: str = ""  # start from these weights (a shipped checkpoint), with a fresh optimizer
    stem_from: str = ""  # tromr: start the conv stem from this CRNN checkpoint's conv blocks
    # tromr: for this many steps train only what is not the stem (a stem from the CRNN keeps
    # what it reads while the decoder is still noise, and the steps skip its backward pass).
    freeze_stem: int = 0
    # tromr: weight of the guided attention loss on the first decoder layer's cross-attention.
    guide: float = 0.0
    # tromr: a CRNN checkpoint whose best path shows where each token is (align.py), and the
    # weight of the loss that teaches the last decoder layer's cross-attention to look there.
    align_from: str = ""
    align: float = 1.0
    # Keep a moving average of the weights with this decay (0: none); validation, the best
    # checkpoint and every reader then use it. At a constant learning rate the weights a step
    # leaves are noisy; their average reads as an annealed run's would, and training goes on.
    ema: float = 0.0
    score_trained: bool = False  # with ema: also validate the weights as trained (a second pass)
    # Tiny models for tests: override the preset's sizes.
    channels: tuple[int, ...] = ()
    lstm_hidden: int = 0
    dim: int = 0  # tromr: width (heads: dim / 32, at least 1)
    depth: int = 0  # tromr: encoder and decoder layers each


class TrainSet(torch.utils.data.Dataset):
    """Keys are (epoch, index, sample): the sampler owns the list of samples, so a folder that
    grows while training (`--grow`) reaches the loader's workers without restarting them."""

    def __init__(self, vocab: Vocabulary, cfg: CRNNConfig, aug: AugmentOptions, seed: int):
        self.vocab, self.aug, self.seed = vocab, aug, seed
        self.height, self.fraction = cfg.input_height, cfg.staff_fraction

    def __getitem__(self, key: tuple[int, int, Sample]):
        epoch, i, s = key
        img = cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE)
        rng = np.random.default_rng([self.seed, epoch, i])
        x = augment(img, self.height, rng, self.aug, self.fraction)
        return x, self.vocab.encode(s.tokens)


def collate_train(items, max_width: int):
    """uint8 batches (dataset.collate_ink); `as_input` brings them to the models' scale on the
    device, so a quarter of the bytes cross from the loader's processes and to the GPU."""
    images, labels = zip(*items)
    batch, widths = collate_ink(list(images), max_width)
    targets = torch.tensor([t for lab in labels for t in lab], dtype=torch.long)
    target_lengths = torch.tensor([len(lab) for lab in labels], dtype=torch.long)
    return torch.from_numpy(batch), torch.from_numpy(widths), targets, target_lengths


# Both models' conv blocks train in channels-last layout: PyTorch's CPU max-pool over
# [N, C, H, W] took 8x as long as over channels-last (175 against 21 ms for the first block
# of a batch of 16 TrOMR staves), a third of a TrOMR step. The weights saved are the same.
CHANNELS_LAST = torch.channels_last


def as_input(ink: torch.Tensor) -> torch.Tensor:
    """uint8 ink to dataset.collate's float scale (ink = 1, paper = 0), bit for bit."""
    return ink.float().div_(255.0)


class EpochBatches(torch.utils.data.Sampler):
    """Width-bucketed batches for one rank, from global step `start` on, epoch after epoch.

    `refresh`, if given, returns the training samples anew; it is called between epochs, at
    most once every `refresh_s` seconds, so a run can start while omr-synth is still writing
    its folder. A resumed run then starts its epoch count afresh: exact resume needs a
    folder that no longer changes.
    """

    def __init__(self, samples: list[Sample], batch_size, seed, start, rank=0, world=1,
                 refresh=None, refresh_s: float = 60.0):
        self.bs, self.seed, self.start = batch_size, seed, start
        self.rank, self.world = rank, world
        self.refresh, self.refresh_s, self.refreshed = refresh, refresh_s, time.time()
        self._width: dict[Path, int] = {}  # a refresh opens only the staves it has not seen
        self._use(samples)

    def _use(self, samples: list[Sample]) -> None:
        self.samples = samples
        for s in samples:
            if s.image not in self._width:
                self._width[s.image] = png_width(s.image)
        self.widths = [self._width[s.image] for s in samples]
        self.per_epoch = max(1, len(samples) // self.bs // self.world)

    def __iter__(self):
        epoch, k = divmod(self.start, self.per_epoch)
        while True:
            batches = bucket_batches(self.widths, self.bs, np.random.default_rng([self.seed, epoch]))
            batches = [b for b in batches if len(b) == self.bs][self.rank::self.world][:self.per_epoch]
            for b in batches[k:]:
                yield [(epoch, i, self.samples[i]) for i in b]
            epoch, k = epoch + 1, 0
            if self.refresh and not batches:  # not one full batch yet: let omr-synth write
                time.sleep(1.0)
            if self.refresh and time.time() - self.refreshed >= self.refresh_s:
                self._use(self.refresh())
                self.refreshed = time.time()
                if self.rank == 0:
                    print(f"epoch {epoch}: {len(self.samples)} training staves")

    def __len__(self):
        return 1 << 30


def _lr_factor(opt: TrainOptions, step: int, elapsed: float) -> float:
    progress = step / opt.steps
    if opt.max_minutes:
        progress = max(progress, elapsed / (60 * opt.max_minutes))
    warm = min(1.0, (step + 1) / opt.warmup)
    return warm * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def validate(model, samples: list[Sample], vocab, device, batch_size: int = 32,
             task: CTC | None = None) -> float:
    """Validation SER of an unwrapped model on clean canonical crops of the validation split
    (TrOMR: greedy decoding)."""
    task = task or CTC()
    height, fraction = model.cfg.input_height, model.cfg.staff_fraction
    model.eval()
    pairs = []
    with torch.no_grad():
        for k in range(0, len(samples), batch_size):
            chunk = samples[k:k + batch_size]
            imgs = [augment(cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE), height, None, CLEAN, fraction)
                    for s in chunk]
            batch, widths = collate(imgs)
            images = torch.from_numpy(batch).to(device).contiguous(memory_format=CHANNELS_LAST)
            # An untrained decoder runs on to its last position; past twice the reference
            # every token is an insertion anyway, and the cap keeps validation minutes short.
            cap = 2 * max(len(s.tokens) for s in chunk) + 8
            reads = task.read(model, images, torch.from_numpy(widths), vocab, cap)
            pairs += [(tokens, s.tokens) for tokens, s in zip(reads, chunk)]
    model.train()
    return score(pairs).ser


class CTC:
    """The CRNN: a frame of log-probabilities per `width_stride` columns, CTC loss, best path."""

    name, presets, format = "crnn", PRESETS, checkpoint.FORMAT

    def vocabulary(self, labels) -> Vocabulary:
        return Vocabulary.from_labels(labels)

    def stored(self, ckpt: dict) -> tuple[Vocabulary, CRNNConfig]:
        return Vocabulary(tuple(ckpt["vocab"])), CRNNConfig.from_dict(ckpt["config"])

    def configure(self, opt: TrainOptions, vocab: Vocabulary) -> CRNNConfig:
        cfg = replace(PRESETS[opt.preset], num_classes=vocab.size)
        if opt.channels:
            cfg = replace(cfg, channels=tuple(opt.channels), width_pools=cfg.width_pools[:len(opt.channels)])
        if opt.lstm_hidden:
            cfg = replace(cfg, lstm_hidden=opt.lstm_hidden)
        return cfg

    def build(self, cfg: CRNNConfig) -> torch.nn.Module:
        return build(cfg)

    def fits(self, cfg, tokens) -> bool:
        return True

    def max_width(self, cfg, opt: TrainOptions) -> int:
        return opt.max_width

    def collate(self, items, max_width: int):
        return collate_train(items, max_width)

    def to_device(self, labels, device):
        return labels  # ctc_loss takes its targets on the CPU

    def forward(self, model, images, widths, labels):
        return model(images)

    def loss(self, model, out, widths, labels) -> torch.Tensor:
        targets, tlens = labels
        lp = out.float().transpose(0, 1)  # T, N, C for ctc_loss
        in_lens = output_lengths(widths, checkpoint.unwrap(model).cfg).clamp(max=lp.shape[0])
        return F.ctc_loss(lp, targets, in_lens, tlens, blank=0, reduction="mean", zero_infinity=True)

    def with_options(self, opt: TrainOptions, vocab, device) -> CTC:
        return self

    def read(self, model, batch, widths, vocab, max_tokens: int = 0) -> list[list[str]]:
        lp = model(batch).float().cpu().numpy()
        lengths = output_lengths(widths, model.cfg).numpy()
        return [vocab.decode(ctc_greedy(row, int(n))) for row, n in zip(lp, lengths)]

    def start_from(self, model, init: dict, rank: int) -> None:
        _start_from(model, init, rank)

    def start_stem(self, model, path: str, rank: int) -> None:
        raise click.ClickException("--stem-from starts a TrOMR stem; a CRNN starts with --init")


class Seq2Seq(CTC):
    """TrOMR: teacher forcing on (rhythm, pitch, lift) triples, the heads' losses plus the
    consistency loss, greedy reading."""

    name, presets, format = "tromr", tromr.PRESETS, checkpoint.TROMR_FORMAT

    def __init__(self, guide: float = 0.0, aligner=None, align: float = 0.0):
        self.guide = guide  # weight of the guided attention loss (0: none)
        self.aligner, self.align = aligner, align  # align.CRNNAligner, the loss's weight

    def with_options(self, opt: TrainOptions, vocab, device) -> Seq2Seq:
        aligner = CRNNAligner(Path(opt.align_from), vocab, device) if opt.align_from else None
        return Seq2Seq(opt.guide, aligner, opt.align)

    def vocabulary(self, labels) -> FactorVocabulary:
        # Every rhythm and pitch the notation has, so the run can go on with chords later.
        return FactorVocabulary.from_labels(labels, grammar=True)

    def stored(self, ckpt: dict) -> tuple[FactorVocabulary, tromr.TrOMRConfig]:
        return FactorVocabulary.from_dict(ckpt["vocab"]), tromr.TrOMRConfig.from_dict(ckpt["config"])

    def configure(self, opt: TrainOptions, vocab: FactorVocabulary) -> tromr.TrOMRConfig:
        cfg = tromr.configure(tromr.PRESETS[opt.preset], vocab)
        if opt.channels:
            cfg = replace(cfg, stem_channels=tuple(opt.channels),
                          stem_pools=cfg.stem_pools[:len(opt.channels)])
        if opt.dim:
            cfg = replace(cfg, dim=opt.dim, heads=max(1, opt.dim // 32))
        if opt.depth:
            cfg = replace(cfg, encoder_depth=opt.depth, decoder_depth=opt.depth)
        if opt.lstm_hidden:
            cfg = replace(cfg, lstm_hidden=opt.lstm_hidden)
        return cfg

    def build(self, cfg: tromr.TrOMRConfig) -> torch.nn.Module:
        return tromr.build(cfg)

    def fits(self, cfg, tokens) -> bool:
        return len(tokens) < cfg.max_seq_len  # BOS + tokens, or tokens + EOS

    def max_width(self, cfg, opt: TrainOptions) -> int:
        return min(opt.max_width, cfg.max_width)

    def collate(self, items, max_width: int):
        images, labels = zip(*items)
        batch, widths = collate_ink(list(images), max_width)
        return torch.from_numpy(batch), torch.from_numpy(widths), tromr.targets(list(labels))

    def to_device(self, labels, device):
        return [tromr.Targets(*(x.to(device, non_blocking=True) for x in labels[0]))]

    def forward(self, model, images, widths, labels):
        t = labels[0]
        args = (images, widths.to(images.device), t.rhythm_in, t.pitch_in, t.lift_in)
        layers = checkpoint.unwrap(model).decoder
        first = tromr.CrossAttentionSeen(layers[0].cross_attn) if self.guide else None
        last = tromr.CrossAttentionSeen(layers[-1].cross_attn) if self.aligner else None
        with contextlib.ExitStack() as stack:
            for seen in (first, last):
                if seen:
                    stack.enter_context(seen)
            logits = model(*args)
        frames = self.aligner.frames(images, widths, t) if self.aligner else None
        return logits, first, last, frames

    def loss(self, model, out, widths, labels) -> torch.Tensor:
        logits, first, last, frames = out
        m = checkpoint.unwrap(model)
        total = tromr.loss(logits, labels[0], m.is_note)["total"]
        rows = m.cfg.grid[0]
        if first:
            total = total + self.guide * tromr.guided_attention_loss(first.weights, first.mask,
                                                                     labels[0], rows)
        if last:
            aligned = alignment_loss(last.weights, frames, self.aligner.stride, m.cfg.stride[1], rows)
            if aligned is not None:
                total = total + self.align * aligned
        return total

    def read(self, model, batch, widths, vocab, max_tokens: int = 0) -> list[list[str]]:
        return tromr.read(model, vocab, batch, widths, tromr.DecodingOptions(max_length=max_tokens))

    def start_from(self, model, init: dict, rank: int) -> None:
        source = tromr.TrOMRConfig.from_dict(init["config"])
        if source != model.cfg:
            raise click.ClickException(f"--init: a {source.name} checkpoint carries into the same "
                                       f"network only, not {model.cfg.name}")
        model.load_state_dict(checkpoint.weights(init))

    def start_stem(self, model, path: str, rank: int) -> None:
        crnn = checkpoint.load(Path(path), formats=(checkpoint.FORMAT,))
        skipped = tromr.start_stem_from_crnn(model, crnn["model"])
        if rank == 0:
            print(f"stem started from {path}" + (f"; not carried: {', '.join(skipped)}" if skipped else ""))


TASKS = {"crnn": CTC(), "tromr": Seq2Seq()}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def _setup_distributed():
    if "RANK" not in os.environ:
        return 0, 1, False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), True


def train(opt: TrainOptions) -> Path:
    rank, world, ddp = _setup_distributed()
    torch.set_num_threads(opt.threads)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(opt.seed + rank)
    out = Path(opt.out)
    last, best = out / "last.pt", out / "best.pt"

    kind = TASKS[opt.model]
    seen: dict = {}  # one listing of the folders, kept for --grow's refreshes
    sets = [read_folder(Path(root), seen=seen) for root in _roots(opt.data)]
    train_set = [s for staves in sets for s in staves if s.split == "train"]
    val_set = _val_mix([[s for s in staves if s.split == "val"] for staves in sets], opt.eval_samples)
    if not train_set:
        raise click.ClickException(f"no training samples (split 'train') under {opt.data}")
    ckpt = checkpoint.load(last, formats=(kind.format,)) if opt.resume and last.exists() else None
    init = checkpoint.load(Path(opt.init), formats=(kind.format,)) if opt.init and not ckpt else None
    vocab, cfg = _vocab_and_config(opt, ckpt, init, train_set + val_set)
    # Validation labels with tokens the vocabulary lacks cannot be predicted; keep them anyway.
    train_set = _known(train_set, vocab, kind, cfg)
    if len(train_set) < opt.batch_size * world and not opt.grow:
        raise click.ClickException(f"{len(train_set)} training staves under {opt.data}: "
                                   f"fewer than one batch of {opt.batch_size * world}")
    kind = kind.with_options(opt, vocab, device)
    model = kind.build(cfg)
    if init:
        kind.start_from(model, init, rank)
    elif opt.stem_from and not ckpt:
        kind.start_stem(model, opt.stem_from, rank)
    model = model.to(device, memory_format=CHANNELS_LAST)
    optim = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    step, elapsed, best_ser = 0, 0.0, float("inf")
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optimizer"])
        step, elapsed, best_ser = ckpt["step"], ckpt["elapsed"], ckpt["best_ser"]
        torch.set_rng_state(ckpt["torch_rng"])
    average = _moving_average(model, opt.ema, ckpt)
    if ckpt and average and "ema" not in ckpt:
        best_ser = float("inf")  # scored on the weights, not on their average
    if ddp:
        if opt.freeze_stem:
            raise click.ClickException("--freeze-stem: not with torchrun (DDP fixes which "
                                       "parameters learn when it wraps the model)")
        model = torch.nn.parallel.DistributedDataParallel(model)

    camera = AugmentOptions(strength=opt.augment, p_damaged_start=opt.damaged_start)
    data = TrainSet(vocab, cfg, camera, opt.seed)
    # The listing is bound here, not looked up when called: this function is long, and a later
    # use of the name once turned it into a staff count under the loader's feet.
    refresh = (lambda listing=seen: _known(_read_data(opt.data, listing, split="train"),
                                           vocab, kind, cfg)) if opt.grow else None
    batches = EpochBatches(train_set, opt.batch_size, opt.seed, step, rank, world, refresh,
                           opt.grow_every_s)
    loader = _loader(opt, data, batches, device, kind, kind.max_width(cfg, opt))
    # bf16 autocast: on CUDA, and on CPUs with native bf16 (1.5x faster on this box's AVX512-BF16).
    use_amp = opt.amp and (device.type == "cuda" or cpu_has_bf16())
    log_path = out / "log.csv"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not log_path.exists():
            log_path.write_text("step,elapsed_s,samples,loss,val_ser,lr,samples_per_s\n")
    state = {"best_ser": best_ser}

    def save_state(path: Path) -> None:
        extra = {"ema": average.module.state_dict()} if average else {}
        checkpoint.save(path, model, cfg, vocab, optimizer=optim.state_dict(), step=step,
                        elapsed=elapsed, best_ser=state["best_ser"], args=_args(opt),
                        torch_rng=torch.get_rng_state(), **extra)

    def log_validation(lr_text: str, rate, keep_first: bool = False) -> None:
        """Validate, append a log row, keep the best checkpoint (`keep_first`: keep one anyway)."""
        reader = average.module if average else checkpoint.unwrap(model)
        ser = validate(reader, val_set, vocab, device, task=kind) if val_set else float("nan")
        if average and val_set and opt.score_trained:  # what the average buys
            print(f"step {step}: validation SER {ser:.4f} averaged, "
                  f"{validate(checkpoint.unwrap(model), val_set, vocab, device, task=kind):.4f} "
                  "as trained", flush=True)
        elif val_set:  # the progress bar draws on the terminal alone: a log file keeps this
            print(f"step {step}: validation SER {ser:.4f}", flush=True)
        mean_loss = round(float(np.mean(window)), 4) if window else 0.0
        with log_path.open("a") as f:
            csv.writer(f).writerow([step, round(elapsed, 1), step * opt.batch_size * world, mean_loss,
                                    round(ser, 4), lr_text, rate])
        if ser < state["best_ser"] or (keep_first and not best.exists()):
            state["best_ser"] = min(ser, state["best_ser"])
            save_state(best)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[info]}"), disable=rank != 0)
    start_time = time.time() - elapsed
    window, counted, t_window = [], 0, time.time()
    stem = getattr(checkpoint.unwrap(model), "stem", None)
    if stem is not None and step < opt.freeze_stem:
        stem.requires_grad_(False)
    with progress:
        task = progress.add_task(cfg.name, total=opt.steps, completed=step, info="")
        for images, wids, *labels in loader:
            if step >= opt.steps or (opt.max_minutes and elapsed >= 60 * opt.max_minutes) \
                    or (opt.stop_after and step >= opt.stop_after):
                break
            if stem is not None and step == opt.freeze_stem > 0:
                stem.requires_grad_(True)
            lr = opt.lr * _lr_factor(opt, step, elapsed)
            for g in optim.param_groups:
                g["lr"] = lr
            images = as_input(images.to(device, non_blocking=True)).contiguous(
                memory_format=CHANNELS_LAST)
            labels = kind.to_device(labels, device)
            try:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    out = kind.forward(model, images, wids, labels)
            except RuntimeError as err:  # a device without bf16 kernels for some op: go on in fp32
                if not use_amp:
                    raise
                print(f"mixed precision off: {err}")
                use_amp = False
                out = kind.forward(model, images, wids, labels)
            loss = kind.loss(model, out, wids, labels)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optim.step()
            if average:
                average.update_parameters(checkpoint.unwrap(model))
            step += 1
            elapsed = time.time() - start_time
            window.append(loss.item())
            counted += images.shape[0] * world
            rate = counted / max(time.time() - t_window, 1e-6)
            if rank == 0:
                progress.update(task, completed=step,
                                info=f"loss {np.mean(window[-50:]):.3f}  val SER {state['best_ser']:.3f}  {rate:.0f} staves/s")
            if step % opt.eval_every == 0 or step == opt.steps:
                if rank == 0:
                    log_validation(f"{lr:.2e}", round(rate, 1))
                    window = []
                    save_state(last)
                if ddp:
                    torch.distributed.barrier()
    if rank == 0:
        if val_set and step % opt.eval_every:
            # The closing row has rate 0: plots skip it, the best checkpoint still counts it.
            log_validation("0", "0", keep_first=True)
        save_state(last)
        if not best.exists():  # no validation split: the last state is the best we know
            save_state(best)
    if ddp:
        torch.distributed.destroy_process_group()
    return best


def _moving_average(model: torch.nn.Module, decay: float, ckpt: dict | None):
    """The exponential moving average of the weights (batch-norm statistics too), resumed from
    the checkpoint's or begun at the weights as they are; None when `decay` is 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    average = AveragedModel(checkpoint.unwrap(model), multi_avg_fn=get_ema_multi_avg_fn(decay),
                            use_buffers=True)
    if ckpt and "ema" in ckpt:
        average.module.load_state_dict(ckpt["ema"])
    # Counted as averaged already, so the first update blends in instead of copying.
    average.n_averaged += 1
    return average


def _vocab_and_config(opt: TrainOptions, ckpt: dict | None, init: dict | None,
                      labelled: list[Sample]):
    """A resumed run keeps its network; a run started from another checkpoint keeps that
    checkpoint's vocabulary, and its network too unless --preset names another one."""
    kind = TASKS[opt.model]
    if ckpt:
        return kind.stored(ckpt)
    if init:
        vocab, cfg = kind.stored(init)
        if cfg.name == opt.preset:
            return vocab, cfg
    else:
        vocab = kind.vocabulary([s.tokens for s in labelled])
    return vocab, kind.configure(opt, vocab)


def _known(samples: list[Sample], vocab, kind: CTC | None = None, cfg=None) -> list[Sample]:
    """The staves this network can learn: every token in its vocabulary (and, for TrOMR, no
    more tokens than its decoder has positions)."""
    kind = kind or CTC()
    return [s for s in samples if all(t in vocab for t in s.tokens) and kind.fits(cfg, s.tokens)]


def _roots(data: str) -> list[str]:
    """One folder, or several joined by commas (a mix of sets)."""
    return [root for root in data.split(",") if root]


def _read_data(data: str, seen: dict, split: str | None = None) -> list[Sample]:
    return [s for root in _roots(data) for s in read_folder(Path(root), split=split, seen=seen)]


def _val_mix(sets: list[list[Sample]], n: int) -> list[Sample]:
    """`n` validation staves taken in turn from each set of a mix, so that each is scored;
    one set: its first `n`, as before mixes."""
    mixed = [s for group in zip(*sets) for s in group]
    longest = max((len(v) for v in sets), default=0)
    mixed += [v[k] for k in range(min(len(v) for v in sets) if sets else 0, longest)
              for v in sets if k < len(v)]
    return mixed[:n]


def _start_from(model: torch.nn.Module, init: dict, rank: int) -> None:
    source_cfg = CRNNConfig.from_dict(init["config"])
    weights = checkpoint.weights(init)
    if source_cfg == model.cfg:
        model.load_state_dict(weights)
        return
    source = build(source_cfg)
    source.load_state_dict(weights)
    skipped = transfer(source, model)
    if rank == 0:
        print(f"started {model.cfg.name} from {source_cfg.name}"
              + (f"; not carried over: {', '.join(skipped)}" if skipped else ""))


def _loader(opt: TrainOptions, data: TrainSet, sampler: EpochBatches, device, kind: CTC,
            max_width: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        data, batch_sampler=sampler, num_workers=opt.workers,
        collate_fn=lambda items: kind.collate(items, max_width),
        persistent_workers=opt.workers > 0, prefetch_factor=4 if opt.workers else None,
        worker_init_fn=_one_cv2_thread,
        # Its own generator: seeding workers must not draw from the global RNG that dropout
        # uses, or a resumed run would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(opt.seed),
        pin_memory=device.type == "cuda")


def _one_cv2_thread(_worker: int) -> None:
    # Each loader process is one of many: OpenCV's own thread pool per process would
    # oversubscribe the cores (16 workers x 16 threads on a GPU machine).
    cv2.setNumThreads(1)


def _args(opt: TrainOptions) -> dict:
    d = asdict(opt)
    d["channels"] = list(d["channels"])
    return d


@click.group()
def main() -> None:
    """Train the recognizers."""


def _train_options(presets: dict, preset: str, out: str):
    """The options both models' commands share."""
    options = [
        click.option("--data", default=TrainOptions.data, show_default=True,
                     help="A PrIMuS-layout folder, or several joined by commas (a mix)."),
        click.option("--out", default=out, show_default=True),
        click.option("--preset", type=click.Choice(sorted(presets)), default=preset, show_default=True),
        click.option("--batch-size", default=TrainOptions.batch_size, show_default=True),
        click.option("--lr", default=TrainOptions.lr, show_default=True),
        click.option("--steps", default=TrainOptions.steps, show_default=True),
        click.option("--max-minutes", default=TrainOptions.max_minutes, show_default=True,
                     help="Stop after this long; the learning-rate schedule then follows the clock."),
        click.option("--warmup", default=TrainOptions.warmup, show_default=True),
        click.option("--eval-every", default=TrainOptions.eval_every, show_default=True),
        click.option("--eval-samples", default=TrainOptions.eval_samples, show_default=True),
        click.option("--augment", default=TrainOptions.augment, show_default=True,
                     help="Augmentation strength, 0 = clean."),
        click.option("--damaged-start", default=TrainOptions.damaged_start, show_default=True,
                     help="Share of staves whose start (clef, key) is cut off, smeared, blotted or twisted."),
        click.option("--seed", default=TrainOptions.seed, show_default=True),
        click.option("--workers", default=TrainOptions.workers, show_default=True),
        click.option("--threads", default=TrainOptions.threads, show_default=True),
        click.option("--no-amp", is_flag=True,
                     help="fp32 throughout (mixed precision is bf16, on CUDA and on CPUs with native bf16)."),
        click.option("--fresh", is_flag=True, help="Ignore OUT/last.pt instead of resuming from it."),
        click.option("--channels", default="", help="Override conv widths, e.g. 8,16 (tiny test models)."),
        click.option("--stop-after", default=0, help="End this run at this global step; resume later."),
        click.option("--grow", is_flag=True,
                     help="omr-synth is still writing DATA: take its new staves between epochs."),
        click.option("--grow-every", default=TrainOptions.grow_every_s, show_default=True,
                     help="With --grow: read DATA again at most this often (seconds)."),
        click.option("--init", default="", help="Start from the weights of this checkpoint (fine-tuning)."),
        click.option("--ema", default=TrainOptions.ema, show_default=True,
                     help="Keep a moving average of the weights with this decay (e.g. 0.999); "
                          "validation and the checkpoints' readers use it."),
        click.option("--score-trained", is_flag=True,
                     help="With --ema: validate the weights as trained too, beside their average."),
    ]

    def wrap(f):
        for option in reversed(options):
            f = option(f)
        return f
    return wrap


def _run(model: str, fresh: bool, no_amp: bool, channels: str, grow_every: float, **kw) -> None:
    opt = TrainOptions(model=model, resume=not fresh, amp=not no_amp, grow_every_s=grow_every,
                       channels=tuple(int(c) for c in channels.split(",") if c), **kw)
    best = train(opt)
    click.echo(f"best checkpoint: {best}")


@main.command()
@_train_options(PRESETS, TrainOptions.preset, TrainOptions.out)
@click.option("--lstm-hidden", default=0)
def crnn(**kw) -> None:
    """Train a CRNN on a PrIMuS-layout folder (resumes from OUT/last.pt)."""
    _run("crnn", **kw)


@main.command("tromr")
@_train_options(tromr.PRESETS, "tromr-lean", "runs/tromr")
@click.option("--stem-from", default="", help="Start the conv stem from this CRNN checkpoint "
              "(tromr-lean: models/crnn.pt's conv blocks; tromr-lean-lstm: its conv blocks and LSTM).")
@click.option("--guide", default=0.0, show_default=True,
              help="Weight of the guided attention loss (DCTTS): the first decoder layer's "
                   "cross-attention is pulled towards reading the staff left to right.")
@click.option("--align-from", default="", help="A CRNN checkpoint (models/crnn.pt): where its "
              "best path reads a staff's label, the last decoder layer learns to look at each "
              "token's frames.")
@click.option("--align", default=TrainOptions.align, show_default=True,
              help="With --align-from: the weight of that loss.")
@click.option("--freeze-stem", default=0, show_default=True,
              help="Train all but the stem for this many steps (a stem started --stem-from).")
@click.option("--dim", default=0, help="Override the width (tiny test models).")
@click.option("--depth", default=0, help="Override the encoder and decoder depth (tiny test models).")
def tromr_command(**kw) -> None:
    """Train TrOMR on PrIMuS-layout folders (resumes from OUT/last.pt)."""
    _run("tromr", **kw)


@main.command()
@click.argument("logs", nargs=-1, required=True)
@click.option("-o", "out", required=True, type=click.Path(dir_okay=False))
def curves(logs, out) -> None:
    """Plot learning curves (training loss, validation SER) from training log.csv files.

    LOG@N shifts a log's x axis by N staves: a run started from another run's checkpoint
    then continues that run's curve instead of starting again at zero.
    """
    parsed = []
    for arg in logs:
        path, _, start = arg.partition("@")
        if not Path(path).is_file():
            raise click.BadParameter(f"no such log file: {path}", param_hint="LOGS")
        if start and not start.isdigit():
            raise click.BadParameter(f"{arg}: the offset after @ must be a number of staves",
                                     param_hint="LOGS")
        parsed.append((Path(path), int(start or 0)))
    plot_curves(parsed, Path(out))
    click.echo(f"wrote {out}")


def read_curve(log: Path, start: int = 0) -> tuple[list[int], list[float], list[float]]:
    """Staves seen (from `start`), training loss and validation SER at each logged step.

    Rows with no throughput are the validation-only rows a run writes when it ends."""
    rows = [r for r in csv.DictReader(log.open()) if float(r["samples_per_s"] or 0) > 0]
    return ([start + int(r["samples"]) for r in rows], [float(r["loss"]) for r in rows],
            [float(r["val_ser"]) for r in rows])


def plot_curves(logs: list[tuple[Path, int]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4))
    # The default cycle repeats after ten colours; a long chain of runs needs more.
    colours = plt.get_cmap("tab10" if len(logs) <= 10 else "tab20").colors
    for k, (log, start) in enumerate(logs):
        seen, loss, ser = read_curve(log, start)
        style = {"label": log.stem.replace("-log", ""), "color": colours[k % len(colours)]}
        a.plot([x / 1000 for x in seen], loss, **style)
        b.plot([x / 1000 for x in seen], [100 * x for x in ser], **style)
    a.set(xlabel="staves seen (thousands)", ylabel="loss (CTC; TrOMR: its heads + consistency)", yscale="log", title="training loss")
    b.set(xlabel="staves seen (thousands)", ylabel="validation SER (%)", yscale="log",
          title="validation symbol error rate (clean synthetic)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    # One legend beside the plots: inside them it hides the latest runs, which end at the right.
    b.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
