"""Question 3: train, decode and score the speech recogniser as the course notebook does, only faster.

The protocol (`full`) is the skeleton's: AdamW(1e-3, weight decay 0.01), a per-epoch linear warm-up from
lr/100 over int(0.15 E) epochs then a linear decay to lr/100 over int(0.85 E), cross-entropy with label
smoothing 0.1 over all 98 positions (padding included), teacher forcing, batches of 64 (train) and 16
(evaluation), 15 epochs, seed 42. Every epoch: the validation loss and the three string similarities of
greedy decodings (98 steps from "<"), aggregated as the skeleton plots them; at the end the same on test,
aggregated as the skeleton prints them.

The training shuffle is drawn from the global RNG exactly as the skeleton's `DataLoader(shuffle=True)` draws
it after the model is built, and every validation pass consumes the draw of an unshuffled loader's
iterator (`hw2.common.loader_rng`), so the random stream is the skeleton's.

What makes it fast does not change what is computed: the log-mel features are computed in batches on the
device once and kept there when they fit, the training loop never waits for the host, evaluation runs
several of the skeleton's 16-clip batches at once (the aggregation still sees batches of 16), and greedy
decoding carries the LSTM state or a key/value cache. Options that may change results are explicit:
`audio_frames` (crop the 2,754 padded frames; `full` keeps them all), `bf16` (autocast on the CPU or the GPU,
off in `full`) and `fused_attention` (the same attention through `scaled_dot_product_attention`; equal to
float rounding, tested).

Clips longer than `audio_frames` are cropped and transcripts longer than 97 characters truncated, as in the
skeleton; both are counted per split, printed and recorded in the summary.

Run folder: config.json, history.csv (epoch, steps, lr, train_loss, val_loss, val_<similarity> x 3,
val_output ("varied", or "constant"/"looping" for degenerate greedy output), val_looping_share,
val_most_common_share, seconds, train_seconds), val_examples.json (the first validation clips' predictions
after every epoch), summary.json, metrics_raw.json (per-batch records as the skeleton pickles them),
test_predictions.csv, attention.npz (cross-attention of a few validation clips), model.pt, env.json.
"""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hw2.common.loader_rng import loader_iteration_seed, loader_permutation
from hw2.common.params import get_number_trainable_params
from hw2.engine import store
from hw2.engine.errors import ConfigError
from hw2.q3 import text
from hw2.q3.asr import SpeechToText, build_asr_model
from hw2.q3.audio import N_MELS, log_mel, n_valid_frames, pad_waveforms, pcm16_to_float32
from hw2.q3.config import ASRConfig, protocol_deviations
from hw2.q3.metrics import (
    DAMERAU_LEVENSHTEIN,
    SIMILARITY_NAMES,
    EpochAccumulator,
    chance_similarities,
    degenerate_output,
)

SPLITS = ("train", "validation", "test")
N_EXAMPLES = 4  # validation clips whose greedy prediction is kept every epoch (val_examples.json)


def lr_schedule(cfg: ASRConfig) -> list[float]:
    """The learning rate of each epoch: the skeleton's SequentialLR of two LinearLRs, stepped per epoch.

    Warm-up from lr * start_factor to lr over W = int(0.15 E) epochs; at epoch W the decay takes over and
    goes linearly to lr * end_factor over D = int(0.85 E) epochs, then stays there.
    """
    warm, decay = int(cfg.warmup_fraction * cfg.epochs), int(cfg.decay_fraction * cfg.epochs)
    rates = []
    for e in range(cfg.epochs):
        if e < warm:
            factor = cfg.lr_start_factor + (1 - cfg.lr_start_factor) * e / warm
        else:
            factor = 1 + (cfg.lr_end_factor - 1) * min(e - warm, decay) / decay if decay else 1.0
        rates.append(cfg.lr * factor)
    return rates


# --- data on the device ------------------------------------------------------------------------------------

class SplitData:
    """One split: token ids on the device, and log-mel features cached on the device when they fit
    (else computed per batch from the waveforms, on the device). The waveforms stay on the host as loaded:
    int16 for 16-bit PCM (half the memory of float32; 24 hours of LJ Speech take 3.8 GB), turned into the
    same float32 samples as a float32 load, bit for bit, only for the clips of a batch."""

    FEATURE_CHUNK = 64

    def __init__(self, clips: list[tuple[np.ndarray, str]], n_frames: int, device: str, cache_bytes: int):
        if not clips:
            raise ConfigError("a split has no clips: use a larger corpus (n_clips)")
        self.n = len(clips)
        self.texts = [t for _, t in clips]
        self.waves = [w if w.dtype == np.int16 else np.asarray(w, dtype=np.float32) for w, _ in clips]
        self.n_frames = n_frames
        self.device = device
        self.tokens = text.encode_batch(self.texts).to(device)
        frames = [int(n_valid_frames(len(w))) for w in self.waves]
        self.valid_frames = [min(f, n_frames) for f in frames]
        self.n_cropped = sum(f > n_frames for f in frames)  # the skeleton's crop to its frames, counted
        self.n_truncated = sum(len(t) > text.MAX_LEN - 2 for t in self.texts)  # encode keeps 97 characters
        self.features: torch.Tensor | None = None
        if self.n * N_MELS * n_frames * 4 <= cache_bytes:
            self.features = torch.empty(self.n, N_MELS, n_frames, device=device)
            for start in range(0, self.n, self.FEATURE_CHUNK):
                stop = min(start + self.FEATURE_CHUNK, self.n)
                self.features[start:stop] = self._compute(range(start, stop))
            self.waves = []  # the features are all that is needed now: free the host memory

    def _compute(self, index) -> torch.Tensor:
        batch, lengths = pad_waveforms([pcm16_to_float32(self.waves[i]) for i in index], self.device)
        return log_mel(batch, lengths, n_frames=self.n_frames)

    def audio(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Features (B, 80, frames) of the clips at `index` (a LongTensor on the device, or a slice)."""
        if self.features is not None:
            return self.features[index]
        rows = range(self.n)[index] if isinstance(index, slice) else index.tolist()
        return self._compute(rows)


HOST_FEATURE_CACHE = 2 << 30  # bytes of features a CPU run keeps in host memory
# GPU memory left free beyond a step's measured peak: the caching allocator's fragmentation, and the kernels'
# workspaces that a step of another length of batch may choose.
GPU_RESERVE = 1 << 30


def feature_cache_bytes(device: str, step_bytes: int | None = None) -> int:
    """How many bytes of features to keep resident: on CUDA the free memory less what the largest step takes
    (`step_bytes`, measured by `step_peak_bytes`; half the free memory where it is not given) and GPU_RESERVE;
    on the CPU HOST_FEATURE_CACHE of host memory."""
    if device != "cuda":
        return HOST_FEATURE_CACHE
    free, _ = torch.cuda.mem_get_info()
    return free // 2 if step_bytes is None else max(0, free - step_bytes - GPU_RESERVE)


def feature_bytes(n_clips: int, n_frames: int) -> int:
    """The bytes of a split's cached fp32 features."""
    return n_clips * N_MELS * n_frames * 4


def cached_splits(sizes: dict[str, int], budget: int) -> dict[str, bool]:
    """Which splits' features are cached, in the order train, validation, test (each where what is left of
    `budget` holds it; `sizes` in bytes): what `load_data` does, for a plan made before any data is loaded."""
    cached = {}
    for split, size in sizes.items():
        cached[split] = size <= budget
        budget -= size if cached[split] else 0
    return cached


def step_peak_bytes(cfg: ASRConfig, device: str) -> int:
    """The most GPU memory one step of the run takes beyond what is allocated now, its features computed per
    batch from clips of the longest length: a training step at `batch_size`, and an evaluation chunk (teacher
    forcing and greedy decoding, as `evaluate` runs them). Measured on a model of the run's shape and a batch of
    silence, in a forked RNG, so the run's random stream is unchanged."""
    chunk = cfg.eval_batch_size * 16
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.random.fork_rng(devices=[torch.cuda.current_device()]):
        model = build_asr_model(cfg.decoder, cfg.n_encoder_layers, fused=cfg.fused_attention).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        longest = (cfg.audio_frames - 1) * 160  # samples of a clip of exactly audio_frames frames
        for rows, train in ((cfg.batch_size, True), (chunk, False)):
            waves = torch.full((rows, longest), 0.01, device=device)
            tokens = torch.zeros(rows, text.MAX_LEN, dtype=torch.long, device=device)
            with torch.set_grad_enabled(train), _autocast(cfg, device):
                audio = log_mel(waves, torch.full((rows,), longest, device=device), n_frames=cfg.audio_frames)
                if train:
                    loss = _loss(model(audio, tokens[:, :-1]), tokens[:, 1:], cfg)
                else:
                    latent = model._enc(audio)
                    model._dec(tokens[:, :-1], latent)
                    model.generate(latent=latent)
            if train:
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            del waves, tokens, audio
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del model, optimizer
    torch.cuda.empty_cache()
    return peak


def load_data(corpus: Path, cfg: ASRConfig, device: str) -> dict[str, SplitData]:
    from hw2.q3 import ljspeech

    budget = feature_cache_bytes(device, step_peak_bytes(cfg, device) if device == "cuda" else None)
    data = {}
    for split in SPLITS:
        data[split] = SplitData(ljspeech.load_split(corpus, split, keep_pcm16=True), cfg.audio_frames, device,
                                budget)
        if data[split].features is not None:
            budget -= data[split].features.numel() * 4
    return data


# --- training and evaluation -------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(cfg: ASRConfig, device: str):
    return torch.autocast(device, dtype=torch.bfloat16, enabled=cfg.bf16)


def _loss(logits: torch.Tensor, target: torch.Tensor, cfg: ASRConfig, reduction: str = "mean") -> torch.Tensor:
    # No ignore_index: the "@" padding positions count, as in the skeleton.
    return F.cross_entropy(logits.float(), target, label_smoothing=cfg.label_smoothing, reduction=reduction)


def train_epoch(model: SpeechToText, optimizer: torch.optim.Optimizer, data: SplitData, cfg: ASRConfig,
                epoch: int, progress: bool = False) -> list[float]:
    """One teacher-forced pass over the training split in the skeleton's shuffled order (drawn from the global
    RNG as its DataLoader draws it); the batch losses (one sync at the end)."""
    order = loader_permutation(data.n).to(data.device)  # one copy per epoch: a copy per step would wait for the GPU
    batches = [order[i:i + cfg.batch_size] for i in range(0, data.n, cfg.batch_size)][:cfg.max_steps]
    losses = torch.empty(len(batches), device=data.device)
    for b, index in enumerate(tqdm(batches, desc=f"epoch {epoch + 1} train", leave=False, disable=not progress,
                                   mininterval=2.0, file=sys.stdout)):
        tokens = data.tokens[index]
        with _autocast(cfg, data.device):
            logits = model(data.audio(index), tokens[:, :-1])
        loss = _loss(logits, tokens[:, 1:], cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[b] = loss.detach()
    return losses.tolist()


@torch.no_grad()
def evaluate(model: SpeechToText, data: SplitData, cfg: ASRConfig, progress: bool = False,
             desc: str = "eval") -> tuple[EpochAccumulator, list[dict[str, float]], torch.Tensor]:
    """Teacher-forced loss and greedy decoding of a split, aggregated in the skeleton's batches of 16.

    Several batches run at once; the accumulator still gets one entry per skeleton batch. Returns it, the
    per-sample similarities and the generated ids (N, 99) on the host. Consumes the global-RNG draw of the
    skeleton's DataLoader iterator.
    """
    loader_iteration_seed()
    chunk = cfg.eval_batch_size * (16 if data.device == "cuda" else 4)
    losses, generated = [], []
    for start in tqdm(range(0, data.n, chunk), desc=desc, leave=False, disable=not progress, mininterval=2.0,
                      file=sys.stdout):
        part = slice(start, min(start + chunk, data.n))
        tokens = data.tokens[part]
        with _autocast(cfg, data.device):
            latent = model._enc(data.audio(part))
            logits = model._dec(tokens[:, :-1], latent)
            generated.append(model.generate(latent=latent))
        losses.append(_loss(logits, tokens[:, 1:], cfg, reduction="none").mean(dim=1))
    losses_host = torch.cat(losses).cpu().double()
    generated_host = torch.cat(generated).cpu()
    tokens_host = data.tokens.cpu()
    acc, per_sample = EpochAccumulator(), []
    for start in range(0, data.n, cfg.eval_batch_size):
        part = slice(start, min(start + cfg.eval_batch_size, data.n))
        sims = acc.add_batch(losses_host[part].mean().item(), tokens_host[part], generated_host[part])
        per_sample += [dict(zip(sims, values)) for values in zip(*sims.values())]
    return acc, per_sample, generated_host


def attention_sample(model: SpeechToText, data: SplitData, cfg: ASRConfig) -> dict[str, np.ndarray]:
    """Cross-attention weights of the first validation clips, teacher-forced on their transcripts."""
    n = min(cfg.n_attention_clips, data.n)
    tokens = data.tokens[:n]
    audio = data.audio(slice(0, n))
    weights = model.cross_attention(audio, tokens[:, :-1])  # (n, heads, 98, T_enc)
    return {
        "weights": weights.half().cpu().numpy(),
        "tokens": tokens[:, :-1].cpu().numpy(),
        "generated": model.generate(audio).cpu().numpy(),
        "texts": np.array(data.texts[:n]),
        "audio_frames": np.array(data.valid_frames[:n]),
        "encoder_frames": np.array([(f + 1) // 2 for f in data.valid_frames[:n]]),
    }


def _predictions_csv(data: SplitData, predictions: list[str], per_sample: list[dict], seen: list[bool]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "target", "prediction", *SIMILARITY_NAMES, "seen_in_train"])
    for i, (target, prediction, sims, in_train) in enumerate(zip(data.tokens.cpu(), predictions, per_sample, seen)):
        writer.writerow([i, text.decode(target), prediction,
                         *(f"{sims[name]:.6f}" for name in SIMILARITY_NAMES), int(in_train)])
    return buf.getvalue()


def seen_texts(train_texts: list[str], texts: list[str]) -> list[bool]:
    """For each text, whether the same transcript (as the recogniser sees it: lowercased) is in training."""
    known = {t.lower() for t in train_texts}
    return [t.lower() in known for t in texts]


def counts_text(counts: dict[str, int]) -> str:
    """'0 train / 0 validation / 0 test'."""
    return " / ".join(f"{n} {split}" for split, n in counts.items())


def cropped_clips(data: dict[str, SplitData]) -> dict[str, int]:
    return {split: d.n_cropped for split, d in data.items()}


def truncated_transcripts(data: dict[str, SplitData]) -> dict[str, int]:
    return {split: d.n_truncated for split, d in data.items()}


@dataclass
class Training:
    """One run in progress: the model and its optimizer, the splits, and what the finished epochs recorded
    (restored from the checkpoint when the run resumes)."""

    model: SpeechToText
    optimizer: torch.optim.Optimizer
    rates: list[float]
    data: dict[str, SplitData]
    feature_seconds: float
    test_seen: list[bool]  # per test clip: whether its transcript is also in training
    steps_per_epoch: int
    start_epoch: int = 0
    raw_val: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"train_seconds": 0.0, "val_seconds": 0.0})
    examples: list[dict] = field(default_factory=list)  # per epoch: the first validation clips' predictions
    diverged_epoch: int | None = None

    def checkpoint(self, epoch: int) -> dict:
        return {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "raw_val": self.raw_val, "timings": self.timings, "rng": torch.get_rng_state(),
                "examples": self.examples}


def resume(run: store.Run, model: SpeechToText, optimizer: torch.optim.Optimizer) -> dict:
    """Restore the model, optimizer and global RNG from the run's checkpoint; return the epoch to start from and
    what the finished epochs recorded, as `Training` fields ({} when there is no checkpoint)."""
    state = run.load_checkpoint()
    if state is None:
        return {}
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])  # the shuffles of the remaining epochs, as without the interruption
    return {"start_epoch": state["epoch"], "raw_val": state["raw_val"], "timings": state["timings"],
            "examples": state["examples"]}


def start_training(run: store.Run, cfg: ASRConfig, corpus: Path, device: str) -> Training:
    """Seed, build the model and optimizer (in the skeleton's order: the RNG stream depends on it), resume from
    the checkpoint if there is one, then load the splits onto the device and say what the run trains on."""
    seed_everything(cfg.seed)
    model = build_asr_model(cfg.decoder, cfg.n_encoder_layers, fused=cfg.fused_attention).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device == "cuda")
    resumed = resume(run, model, optimizer)
    t0 = time.perf_counter()
    data = load_data(corpus, cfg, device)
    training = Training(model=model, optimizer=optimizer, rates=lr_schedule(cfg), data=data,
                        feature_seconds=time.perf_counter() - t0,
                        test_seen=seen_texts(data["train"].texts, data["test"].texts),
                        steps_per_epoch=min(math.ceil(data["train"].n / cfg.batch_size), cfg.max_steps or math.inf),
                        **resumed)
    print_data_overview(training, cfg, device)
    return training


def print_data_overview(training: Training, cfg: ASRConfig, device: str) -> None:
    data, seen = training.data, training.test_seen
    print(f"[hw2] clips: {data['train'].n} train / {data['validation'].n} validation / {data['test'].n} test; "
          f"{cfg.audio_frames} frames; features {'cached on ' + device if data['train'].features is not None else 'per batch'} "
          f"({training.feature_seconds:.1f} s); {get_number_trainable_params(training.model):,} parameters", flush=True)
    print(f"[hw2] clips cropped to {cfg.audio_frames} frames: {counts_text(cropped_clips(data))}; transcripts truncated "
          f"to {text.MAX_LEN - 2} characters: {counts_text(truncated_transcripts(data))}; test transcripts also in "
          f"training: {sum(seen)} of {len(seen)}", flush=True)


def diverged_columns(train_seconds: float) -> dict:
    """The validation columns of a history row whose training loss was not finite."""
    return {"val_loss": float("nan"), **{f"val_{n}": float("nan") for n in SIMILARITY_NAMES},
            "val_output": "diverged", "val_looping_share": float("nan"), "val_most_common_share": float("nan"),
            "seconds": round(train_seconds, 3), "train_seconds": round(train_seconds, 3)}


def validation_columns(values: dict[str, float], predictions: list[str], seconds: float, train_seconds: float) -> dict:
    """The validation columns of a history row: loss, similarities and what the greedy output looks like."""
    output = degenerate_output(predictions)
    return {"val_loss": values["loss"], **{f"val_{n}": values[n] for n in SIMILARITY_NAMES},
            "val_output": output["kind"] or "varied", "val_looping_share": round(output["looping_share"], 4),
            "val_most_common_share": round(output["most_common_share"], 4),
            "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3)}


def run_epoch(run: store.Run, training: Training, cfg: ASRConfig, epoch: int, progress: bool) -> None:
    """One epoch at its scheduled learning rate: train; then, unless the loss diverged (recorded in `training`
    and in the history), validate, log the history row, keep the example predictions and checkpoint."""
    model, data, lr = training.model, training.data, training.rates[epoch]
    for group in training.optimizer.param_groups:
        group["lr"] = lr
    t_start = time.perf_counter()
    model.train()
    batch_losses = train_epoch(model, training.optimizer, data["train"], cfg, epoch, progress)
    train_seconds = time.perf_counter() - t_start
    train_loss = sum(batch_losses) / len(batch_losses)
    row = {"epoch": epoch + 1, "steps": (epoch + 1) * training.steps_per_epoch, "lr": lr, "train_loss": train_loss}
    if not all(math.isfinite(v) for v in batch_losses):
        training.diverged_epoch = epoch + 1
        run.log_epoch({**row, **diverged_columns(train_seconds)})
        tqdm.write(f"[hw2] epoch {epoch + 1}: the training loss is not finite; the run diverged", sys.stdout)
        return
    model.eval()
    acc, _, generated = evaluate(model, data["validation"], cfg, progress, desc=f"epoch {epoch + 1} validation")
    seconds = time.perf_counter() - t_start
    values = acc.epoch_values()
    predictions = [text.decode_until_stop(g) for g in generated]
    training.examples.append({"epoch": epoch + 1, "predictions": predictions[:N_EXAMPLES]})
    training.raw_val.append(acc.as_dict())
    training.timings = {"train_seconds": training.timings["train_seconds"] + train_seconds,
                        "val_seconds": training.timings["val_seconds"] + seconds - train_seconds}
    run.log_epoch({**row, **validation_columns(values, predictions, seconds, train_seconds)})
    run.write_json("val_examples.json", {"targets": data["validation"].texts[:N_EXAMPLES], "epochs": training.examples})
    run.save_checkpoint(training.checkpoint(epoch + 1))
    tqdm.write(f"[{epoch + 1}] lr {lr:.3g} train loss {train_loss:.3f} val loss {values['loss']:.3f} "
               + " ".join(f"{n.split('_')[0]} {values[n]:.3f}" for n in SIMILARITY_NAMES)
               + f" ({seconds:.1f} s)", sys.stdout)


def training_summary(run: store.Run, training: Training, cfg: ASRConfig, device: str) -> dict:
    """What was trained, on what, and how training went (the test's entries come after)."""
    data, seen = training.data, training.test_seen
    return {"decoder": cfg.decoder, "n_encoder_layers": cfg.n_encoder_layers,
            "n_params": get_number_trainable_params(training.model),
            "epochs": cfg.epochs, "epochs_run": len(run.history), "diverged_epoch": training.diverged_epoch,
            "device": device, "torch_threads": torch.get_num_threads(),
            "precision": "bf16" if cfg.bf16 else "fp32",
            "fused_attention": cfg.fused_attention, "audio_frames": cfg.audio_frames,
            "n_train": data["train"].n, "n_validation": data["validation"].n, "n_test": data["test"].n,
            "corpus": cfg.corpus, "protocol_deviations": protocol_deviations(cfg),
            "batch_size": cfg.batch_size, "steps_per_epoch": training.steps_per_epoch,
            "cropped_clips": cropped_clips(data), "truncated_transcripts": truncated_transcripts(data),
            "test_seen_in_train": sum(seen), "test_unseen": len(seen) - sum(seen),
            "features_cached": data["train"].features is not None,
            "feature_seconds": round(training.feature_seconds, 3),
            **{k: round(v, 3) for k, v in training.timings.items()}}


def evaluate_test_and_save(run: store.Run, training: Training, cfg: ASRConfig, progress: bool) -> dict:
    """Evaluate the trained model on test; write metrics_raw.json, test_predictions.csv, attention.npz and
    model.pt; print the test metrics; return the summary's test entries."""
    model, data, seen = training.model, training.data, training.test_seen
    model.eval()
    t_start = time.perf_counter()
    acc, per_sample, generated = evaluate(model, data["test"], cfg, progress, desc="test")
    test_seconds = time.perf_counter() - t_start
    test = acc.summary()
    run.write_json("metrics_raw.json", {"validation": training.raw_val, "test": acc.as_dict()})
    predictions = [text.decode_until_stop(g) for g in generated]
    run.write_text("test_predictions.csv", _predictions_csv(data["test"], predictions, per_sample, seen))
    dl = DAMERAU_LEVENSHTEIN
    by_seen = {flag: [p[dl] for p, s in zip(per_sample, seen) if s == flag] for flag in (True, False)}
    np.savez_compressed(run.dir / "attention.npz", **attention_sample(model, data["validation"], cfg))
    run.save_torch("model.pt", model.state_dict())
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()), flush=True)
    return {"test_loss": test["loss"], **{f"test_{n}": test[n] for n in SIMILARITY_NAMES},
            "test_seconds": round(test_seconds, 3),
            "test_dl_seen": sum(by_seen[True]) / len(by_seen[True]) if by_seen[True] else None,
            "test_dl_unseen": sum(by_seen[False]) / len(by_seen[False]) if by_seen[False] else None,
            "test_degenerate": degenerate_output(predictions),
            "chance": chance_similarities(data["test"].tokens.cpu()),
            "test_clips_per_s": round(data["test"].n / test_seconds, 2)}


def train(run: store.Run, cfg: ASRConfig, corpus: Path, device: str, progress: bool = True) -> dict:
    """Train, validate every epoch, test; write the artifacts into `run.dir`; return the summary."""
    training = start_training(run, cfg, corpus, device)
    epochs = tqdm(range(training.start_epoch, cfg.epochs), desc=f"{cfg.decoder} epochs", initial=training.start_epoch,
                  total=cfg.epochs, disable=not progress, file=sys.stdout)
    for epoch in epochs:
        run_epoch(run, training, cfg, epoch, progress)
        if training.diverged_epoch is not None:
            break
    summary = training_summary(run, training, cfg, device)
    if training.diverged_epoch is not None:
        run.write_json("metrics_raw.json", {"validation": training.raw_val})
        return {"status": "diverged", **summary, **{f"test_{k}": None for k in ("loss", *SIMILARITY_NAMES)}}
    test = evaluate_test_and_save(run, training, cfg, progress)
    train_clips = min(training.data["train"].n, training.steps_per_epoch * cfg.batch_size) * len(run.history)
    return {**summary, **test, "train_clips_per_s": round(train_clips / max(training.timings["train_seconds"], 1e-9), 2)}
