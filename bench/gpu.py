"""GPU check: the `full` protocol's training on CUDA, on synthetic inputs of its sizes, with no data and no install.

Meant for a GPU image that has torch, numpy, pandas, matplotlib, sympy, tqdm and pyyaml and nothing else: it
imports those and hw2's own modules only (a test runs it with everything else blocked). On CUDA it measures:
- Question 3, each decoder in fp32 and in bf16 autocast: the training step (`hw2.q3.train.train_epoch`, batches
  of 64 clips of 80 mels x 2,754 frames and 99 tokens), the step's peak GPU memory, and evaluation as a run
  does it (encoder, teacher-forced loss and `generate`, at most 98 greedy steps, in the run's chunks of clips); then
  projects the decoder's run: 15 epochs of ceil(9,825 / 64) steps each followed by the 655 validation clips,
  the 2,620 test clips, and the log-mel features of the 13,100 clips computed once. The string similarities
  scored on the host are not measured (they need textdistance).
- Question 2: one epoch of a learning-rate sweep (its three rates trained together as one stacked model, on the
  PyTorch path that trains on CUDA) over 97,477 images in batches of 8, then validation on 10,832, per
  variant, and the sweep's projection (15 epochs per variant).
Prints one table. Without CUDA it prints one line and exits 0; `--cpu-tiny` runs the same code on the CPU at
tiny sizes, for tests.

    python bench/gpu.py [--steps 20] [--decode-clips 512] [--cpu-tiny]
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hw2.q2 import config as q2_config  # noqa: E402
from hw2.q2.cnn import CNN, N_CLASSES  # noqa: E402
from hw2.q2.octmnist import CLASS_COUNTS  # noqa: E402
from hw2.q2.train import StackedCNN, configure_seed  # noqa: E402
from hw2.q2.train import train_epoch as q2_train_epoch  # noqa: E402
from hw2.q3 import config as q3_config  # noqa: E402
from hw2.q3 import train as q3_train  # noqa: E402
from hw2.q3.asr import build_asr_model  # noqa: E402
from hw2.q3.audio import HOP, N_MELS, log_mel, pad_waveforms  # noqa: E402
from hw2.q3.constants import DECODERS  # noqa: E402
from hw2.q3.ljspeech import split_ranges  # noqa: E402
from hw2.q3.text import MAX_LEN, VOCAB, encode_batch  # noqa: E402

WARMUP_STEPS = 3  # before timing: CUDA's lazy module loading, cuDNN/cuFFT plans, the allocator's first blocks
GIB = 1 << 30


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_bytes(device: str) -> int | None:
    return torch.cuda.max_memory_allocated() if device == "cuda" else None


# --- Question 3 ----------------------------------------------------------------------------------------------

class SyntheticSplit:
    """What `train_epoch` reads of a split (`n`, `device`, `tokens`, `audio(index)`), over a pool of feature
    rows reused in turn: the features of a whole split would only add their own memory to the step's."""

    def __init__(self, features: torch.Tensor, tokens: torch.Tensor, n: int):
        self.features, self.n, self.device = features, n, features.device.type
        self.tokens = tokens[torch.arange(n) % len(tokens)].to(features.device)

    def audio(self, index: torch.Tensor | slice) -> torch.Tensor:
        rows = torch.arange(self.n, device=self.features.device)[index]
        return self.features[rows % len(self.features)]


def synthetic_transcripts(n: int, generator: torch.Generator) -> list[str]:
    """Strings of the vocabulary's characters as long as a transcript can be (97): every position is trained."""
    letters = VOCAB[4:]  # " ,.?-a..z": the characters a transcript is made of
    ids = torch.randint(len(letters), (n, MAX_LEN - 2), generator=generator)
    return ["".join(letters[i] for i in row) for row in ids.tolist()]


def synthetic_features(n: int, frames: int, device: str) -> tuple[torch.Tensor, float]:
    """Log-mel features (n, 80, frames) of noise clips long enough to fill every frame (an upper bound for a real
    clip), made as a run makes them (`pad_waveforms`, `log_mel` on the device), and the seconds per clip."""
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal((frames - 1) * HOP)).astype(np.float32) for _ in range(n)]
    log_mel(*pad_waveforms(waves[:1], device), n_frames=frames)  # warm-up: the FFT plan
    sync(device)
    start = time.perf_counter()
    features = log_mel(*pad_waveforms(waves, device), n_frames=frames)
    sync(device)
    return features, (time.perf_counter() - start) / n


@dataclass
class Q3Row:
    decoder: str
    precision: str
    step_s: float
    loss: float
    peak: int | None
    eval_clips_per_s: float


def measure_q3(decoder: str, bf16: bool, features: torch.Tensor, tokens: torch.Tensor, device: str, batch_size: int,
               steps: int, decode_clips: int) -> Q3Row:
    """One decoder at one precision: training steps as a run takes them, then evaluation as a run does it."""
    cfg = q3_config.for_profile("full", decoder=decoder, bf16=bf16, batch_size=batch_size)
    q3_train.seed_everything(cfg.seed)
    model = build_asr_model(cfg.decoder, cfg.n_encoder_layers, fused=cfg.fused_attention).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device == "cuda")
    model.train()
    q3_train.train_epoch(model, optimizer, SyntheticSplit(features, tokens, WARMUP_STEPS * batch_size), cfg, 0)
    reset_peak(device)
    start = time.perf_counter()
    losses = q3_train.train_epoch(model, optimizer, SyntheticSplit(features, tokens, steps * batch_size), cfg, 0)
    step_s = (time.perf_counter() - start) / steps  # train_epoch returns after reading its losses: synced
    train_loss = sum(losses) / len(losses)
    peak = peak_bytes(device)

    model.eval()
    split = SyntheticSplit(features, tokens, decode_clips)
    chunk = cfg.eval_batch_size * (16 if device == "cuda" else 4)  # as hw2.q3.train.evaluate takes them
    with torch.no_grad():
        sync(device)
        start = time.perf_counter()
        generated, eval_losses = [], []
        for first in range(0, split.n, chunk):
            part = slice(first, min(first + chunk, split.n))
            with q3_train._autocast(cfg, device):
                latent = model._enc(split.audio(part))
                logits = model._dec(split.tokens[part, :-1], latent)
                generated.append(model.generate(latent=latent))
            eval_losses.append(q3_train._loss(logits, split.tokens[part, 1:], cfg, reduction="none").mean(dim=1))
        torch.cat(eval_losses).cpu()
        generated = torch.cat(generated).cpu()
        eval_s = time.perf_counter() - start
    if generated.shape != (decode_clips, MAX_LEN):
        raise RuntimeError(f"greedy decoding gave shape {tuple(generated.shape)}, expected {(decode_clips, MAX_LEN)}")
    return Q3Row(decoder, "bf16" if bf16 else "fp32", step_s, train_loss, peak, decode_clips / eval_s)


# --- Question 2 ----------------------------------------------------------------------------------------------

@dataclass
class Q2Row:
    variant: str
    epoch_s: float
    validation_s: float
    loss: float
    peak: int | None


def measure_q2(no_maxpool: bool, device: str, n_train: int, n_val: int) -> Q2Row:
    """One epoch of the sweep's stacked model on random images, then its validation accuracy, as a run does."""
    cfg = q2_config.for_profile("full", no_maxpool=no_maxpool)
    rates = q2_config.LEARNING_RATES["full"]
    generator = torch.Generator().manual_seed(0)
    X = (torch.randint(256, (n_train, 28 * 28), generator=generator) / 256).to(device)  # pixels / 256, as loaded
    y = torch.randint(N_CLASSES, (n_train,), generator=generator).to(device)
    X_val, y_val = X[:n_val], y[:n_val]
    configure_seed(cfg.seed)
    model = StackedCNN([CNN(cfg.dropout, no_maxpool).state_dict()] * len(rates), no_maxpool, cfg.dropout, device)
    lrs = torch.tensor(rates, device=device)
    warm = WARMUP_STEPS * cfg.batch_size
    q2_train_epoch(model, X[:warm], y[:warm], lrs, cfg.batch_size, cfg.l2_decay, use="torch").cpu()
    reset_peak(device)
    start = time.perf_counter()
    losses = q2_train_epoch(model, X, y, lrs, cfg.batch_size, cfg.l2_decay, use="torch").cpu()  # the epoch's sync
    epoch_s = time.perf_counter() - start
    start = time.perf_counter()
    model.accuracy(X_val, y_val)
    validation_s = time.perf_counter() - start
    return Q2Row("no max pooling" if no_maxpool else "max pooling", epoch_s, validation_s,
                 float(losses.double().mean()), peak_bytes(device))


# --- the table -----------------------------------------------------------------------------------------------

def gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed Q3 training steps per decoder and precision")
    parser.add_argument("--decode-clips", type=int, default=512, help="Q3 clips evaluated per decoder and precision")
    parser.add_argument("--cpu-tiny", action="store_true",
                        help="measure on the CPU at tiny sizes instead (for tests: the same code, meaningless numbers)")
    args = parser.parse_args(argv)
    cfg, q2 = q3_config.for_profile("full"), q2_config.for_profile("full")
    n_train, n_val = sum(CLASS_COUNTS["train"]), sum(CLASS_COUNTS["val"])
    if args.cpu_tiny:
        device, batch, frames, steps, clips, images, val_images = "cpu", 2, 64, 2, 3, 40, 16
        name = f"the CPU at tiny sizes ({platform.machine()})"
    elif not torch.cuda.is_available():
        built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"[hw2] bench gpu: no CUDA GPU is visible (torch {torch.__version__}, {built}); nothing measured")
        return 0
    else:
        device, batch, frames, steps, clips = "cuda", cfg.batch_size, cfg.audio_frames, args.steps, args.decode_clips
        images, val_images, name = n_train, n_val, torch.cuda.get_device_name()
    started = time.perf_counter()
    print(f"[hw2] bench gpu: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"Python {platform.python_version()}")

    splits = {split: len(r) for split, r in split_ranges(cfg.n_clips).items()}
    steps_per_epoch = math.ceil(splits["train"] / cfg.batch_size)
    features, feature_s = synthetic_features(batch, frames, device)
    tokens = encode_batch(synthetic_transcripts(batch, torch.Generator().manual_seed(0)))
    rows = [measure_q3(decoder, bf16, features, tokens, device, batch, steps, clips)
            for decoder in DECODERS for bf16 in (False, True)]
    features_min = cfg.n_clips * feature_s / 60
    print(f"\nQuestion 3, the full protocol: {splits['train']:,} / {splits['validation']:,} / {splits['test']:,} clips, "
          f"batches of {cfg.batch_size}, {N_MELS} mels x {cfg.audio_frames:,} frames, {MAX_LEN} tokens, "
          f"{cfg.epochs} epochs of {steps_per_epoch} steps; measured: {steps} steps of {batch} clips of {frames:,} "
          f"frames and {clips} clips evaluated, per decoder and precision")
    print(f"{'decoder':<12}{'precision':<11}{'step s':>8}{'loss':>7}{'peak GiB':>10}{'eval clips/s':>14}"
          f"{'train min':>11}{'eval min':>10}{'run min':>9}")
    for row in rows:
        train_min = cfg.epochs * steps_per_epoch * row.step_s / 60
        eval_min = (cfg.epochs * splits["validation"] + splits["test"]) / row.eval_clips_per_s / 60
        print(f"{row.decoder:<12}{row.precision:<11}{row.step_s:>8.3f}{row.loss:>7.3f}{gib(row.peak):>10}"
              f"{row.eval_clips_per_s:>14.1f}{train_min:>11.1f}{eval_min:>10.1f}"
              f"{train_min + eval_min + features_min:>9.1f}")
    print(f"features: {feature_s * 1000:.2f} ms a clip of {frames:,} frames ({features_min:.1f} min for "
          f"{cfg.n_clips:,} clips, in each run min); kept on the GPU, {cfg.n_clips:,} clips' features take "
          f"{gib(cfg.n_clips * N_MELS * cfg.audio_frames * 4)} GiB beside the step's peak")

    if device == "cuda":  # the plan a full run makes here, by the run's own measurement (hw2.q3.train)
        del features
        torch.cuda.empty_cache()
        step = q3_train.step_peak_bytes(cfg, device)
        cached = q3_train.cached_splits({s: q3_train.feature_bytes(n, cfg.audio_frames) for s, n in splits.items()},
                                        q3_train.feature_cache_bytes(device, step))
        print(f"a full run here: its largest step takes {gib(step)} GiB (step_peak_bytes); features "
              + ", ".join(f"{s} {'cached on the GPU' if c else 'computed per batch'}" for s, c in cached.items()))

    rates = q2_config.LEARNING_RATES["full"]
    q2_rows = [measure_q2(no_maxpool, device, images, val_images) for no_maxpool in q2_config.VARIANTS]
    print(f"\nQuestion 2, the full protocol: {n_train:,} training images in batches of {q2.batch_size} "
          f"({math.ceil(n_train / q2.batch_size):,} steps), {n_val:,} validation images; learning rates "
          f"{', '.join(map(str, rates))} trained together; measured: one epoch of {images:,} images, {val_images:,} "
          f"validated")
    print(f"{'variant':<16}{'epoch s':>9}{'valid s':>9}{'loss':>7}{'peak GiB':>10}{'sweep min':>11}")
    for row in q2_rows:
        sweep_min = q2.epochs * (row.epoch_s * n_train / images + row.validation_s * n_val / val_images) / 60
        print(f"{row.variant:<16}{row.epoch_s:>9.1f}{row.validation_s:>9.2f}{row.loss:>7.3f}{gib(row.peak):>10}"
              f"{sweep_min:>11.1f}")
    print(f"\nmeasured in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
