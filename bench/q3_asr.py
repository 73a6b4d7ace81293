"""Question 3 speed: the skeleton's straightforward way against ours, in one process, on the same batches.

Baseline: log-mel features computed per clip on the CPU inside a DataLoader (the skeleton's 2 workers,
prefetch 2), fp32, explicit attention, and greedy decoding that runs the whole prefix through the decoder at
every step (for the Transformer also the cross-attention keys and values of the encoder output).
Ours: features computed once in batches on the device and kept there (the time to build that cache is
printed separately: a run pays it once), the profile's attention and precision, greedy decoding that carries
the LSTM state or a key/value cache and ends once every clip has stopped, several evaluation batches at once.

Then projects the profile's wall time for each decoder from the step and decoding times measured here
(every epoch: the training steps and a validation pass; then the test pass).
Prints clips per second for training, for greedy decoding from the features (encoder included) and for the
decoding loop alone (both decoders on the same encoder outputs), the ratios, and whether both decode the same
tokens up to each clip's first stop, all that is read (exit status 1 if not). The weights are those of the
profile's finished run when there is one (so the decoded text is meaningful), else the initial weights.

    python bench/q3_asr.py [--profile quick] [--decoder rnn transformer] [--frames N] [--device auto]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import peak as bench_peak  # noqa: E402  (bench/peak.py, beside this script)

from hw2.engine import store  # noqa: E402
from hw2.engine.machine import cpu_threads, resolve_device, torch_threads  # noqa: E402
from hw2.engine.profiles import resolve_profile  # noqa: E402
from hw2.q3 import config, ljspeech, text  # noqa: E402
from hw2.q3.asr import build_asr_model  # noqa: E402
from hw2.q3.audio import log_mel  # noqa: E402
from hw2.q3.experiment import corpus_dir, specs  # noqa: E402
from hw2.q3.metrics import cut_generated  # noqa: E402
from hw2.q3.train import SplitData, feature_cache_bytes  # noqa: E402


class PerClipFeatures(Dataset):
    """The skeleton's data set: each item's features computed on the CPU when the loader asks for it."""

    def __init__(self, clips, frames: int):
        self.clips, self.frames = clips, frames

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i):
        wave, transcript = self.clips[i]
        return log_mel(torch.from_numpy(wave), n_frames=self.frames), text.encode(transcript)


def loader(clips, frames: int, batch_size: int) -> DataLoader:
    return DataLoader(PerClipFeatures(clips, frames), batch_size=batch_size, shuffle=False, num_workers=2,
                      prefetch_factor=2)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_steps(model, batches, device: str, bf16: bool = False) -> float:
    """Seconds for one teacher-forced AdamW step per batch; `batches` yields (audio, tokens)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    sync(device)
    start = time.perf_counter()
    for audio, tokens in batches:
        audio, tokens = audio.to(device), tokens.to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(audio, tokens[:, :-1])
        loss = F.cross_entropy(logits.float(), tokens[:, 1:], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


def step_flops(decoder: str, n_encoder_layers: int, batch: int, frames: int) -> float:
    """Floating-point operations of one training step (forward and backward), counted on the explicit-attention
    model (the fused kernel computes the same products but is not counted by torch), plus the LSTM's, which
    torch does not count either: per token and layer 2 * 4H * (I + H) forward, twice that backward."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_asr_model(decoder, n_encoder_layers, fused=False)
    tokens = torch.zeros(batch, text.MAX_LEN, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(torch.zeros(batch, 80, frames), tokens[:, :-1]), tokens[:, 1:]).backward()
    lstm = sum(3 * 2 * 4 * m.hidden_size * ((m.input_size if layer == 0 else m.hidden_size) + m.hidden_size)
               * batch * (text.MAX_LEN - 1)
               for m in model.modules() if isinstance(m, torch.nn.LSTM) for layer in range(m.num_layers))
    return counter.get_total_flops() + lstm


def bench_decoder(decoder: str, profile: str, frames: int, n_train_batches: int, n_decode: int,
                  device: str, peak: dict[str, float]) -> tuple[bool, float]:
    cfg = config.for_profile(profile, device, decoder=decoder, audio_frames=frames)
    fp32 = config.for_profile(profile, device, decoder=decoder, audio_frames=frames, bf16=False)
    corpus = corpus_dir(profile)
    bs, eval_bs = cfg.batch_size, cfg.eval_batch_size
    train_clips = ljspeech.load_split(corpus, "train")[: n_train_batches * bs]
    test_clips = ljspeech.load_split(corpus, "test")[:n_decode]

    torch.manual_seed(cfg.seed)
    baseline = build_asr_model(decoder, cfg.n_encoder_layers, fused=False).to(device)
    ours = build_asr_model(decoder, cfg.n_encoder_layers, fused=cfg.fused_attention).to(device)
    initial = {k: v.clone() for k, v in baseline.state_dict().items()}
    ours.load_state_dict(initial)

    # Training, on the same batches in the same order (the first clips of the training split).
    t_base = train_steps(baseline, loader(train_clips, frames, bs), device)
    start = time.perf_counter()
    train_data = SplitData(train_clips, frames, device, feature_cache_bytes(device))
    sync(device)
    t_cache = time.perf_counter() - start
    def cached_batches():
        return ((train_data.audio(slice(i, i + bs)), train_data.tokens[i:i + bs]) for i in range(0, train_data.n, bs))

    if cfg.bf16:  # our fp32 step too, on the same batches from the same weights, to show what bf16 brings
        ours32 = build_asr_model(decoder, cfg.n_encoder_layers, fused=fp32.fused_attention).to(device)
        ours32.load_state_dict(initial)
        t_ours32 = train_steps(ours32, cached_batches(), device)
    t_ours = train_steps(ours, cached_batches(), device, cfg.bf16)
    n_train = len(train_clips)
    n_steps = math.ceil(n_train / bs)
    flops = step_flops(decoder, cfg.n_encoder_layers, bs, frames)

    # Decoding, with the weights of the finished run if there is one.
    run_path = specs({"decoder": decoder}, profile, ljspeech.data_source(corpus))[0].path
    trained = store.check_complete(run_path) is None and frames == config.for_profile(profile).audio_frames
    weights = torch.load(run_path / "model.pt", map_location=device) if trained else initial
    baseline.load_state_dict(weights)
    ours.load_state_dict(weights)
    baseline.eval()
    ours.eval()
    with torch.no_grad():
        sync(device)
        start = time.perf_counter()
        base_tokens = [baseline.generate_recomputing(audio.to(device)).cpu()
                       for audio, _ in loader(test_clips, frames, eval_bs)]
        sync(device)
        d_base = time.perf_counter() - start
        test_data = SplitData(test_clips, frames, device, feature_cache_bytes(device))
        chunk = eval_bs * (16 if device == "cuda" else 4)
        sync(device)
        start = time.perf_counter()
        our_tokens = [ours.generate(test_data.audio(slice(i, i + chunk))).cpu() for i in range(0, test_data.n, chunk)]
        sync(device)
        d_ours = time.perf_counter() - start
        # The decoding loop alone: both decoders on the same encoder outputs, in the same batches of 16.
        latents = [ours._enc(test_data.audio(slice(i, i + eval_bs))) for i in range(0, test_data.n, eval_bs)]
        sync(device)
        start = time.perf_counter()
        loop_base = [baseline.generate_recomputing(latent=latent) for latent in latents]
        sync(device)
        l_base = time.perf_counter() - start
        start = time.perf_counter()
        loop_ours = [ours.generate(latent=latent) for latent in latents]
        sync(device)
        l_ours = time.perf_counter() - start
    def read(tokens):  # what a metric reads: each row up to its first stop (ours ends once every row stopped)
        return [cut_generated(row) for row in torch.cat(tokens)]

    same = read(base_tokens) == read(our_tokens)
    same_loop = read(loop_base) == read(loop_ours)

    print(f"\n{decoder} decoder, {frames} frames, {device}, weights: {'trained run' if trained else 'initial'}")
    print(f"  training  ({n_train} clips in batches of {bs}, {flops / 1e9:.1f} GFLOP a step; our one-off feature "
          f"cache: {t_cache:.2f} s)")
    ways = [("baseline (fp32, explicit attention)", t_base, "fp32")]
    if cfg.bf16:
        ways.append((f"ours fp32 ({'fused' if fp32.fused_attention else 'explicit'} attention)", t_ours32, "fp32"))
    ways.append((f"ours {'bf16 autocast' if cfg.bf16 else 'fp32'} ({'fused' if cfg.fused_attention else 'explicit'} "
                 "attention)", t_ours, "bf16" if cfg.bf16 else "fp32"))
    for name, seconds, dtype in ways:
        print(f"    {name:<42} {n_train / seconds:7.2f} clips/s  {seconds / n_steps:6.3f} s/step  "
              f"{t_base / seconds:5.2f}x the baseline  "
              f"{bench_peak.efficiency(flops * n_steps / seconds / 1e9, peak, dtype if dtype in peak else 'fp32')}")
    print(f"  decoding  ({len(test_clips)} clips, greedy: the baseline 98 steps, ours until every clip stopped):  "
          f"baseline {len(test_clips) / d_base:7.2f} clips/s   ours {len(test_clips) / d_ours:7.2f} clips/s   "
          f"ratio {d_base / d_ours:5.2f}x   identical tokens: {same}")
    print(f"  decoding loop alone (same encoder outputs, batches of {eval_bs}):  baseline "
          f"{len(test_clips) / l_base:7.2f} clips/s   ours {len(test_clips) / l_ours:7.2f} clips/s   "
          f"ratio {l_base / l_ours:5.2f}x   identical tokens: {same_loop}")
    example = torch.cat(our_tokens)[0]
    print(f"  first decoded clip: {text.decode_until_stop(example)!r}")

    splits = ljspeech.split_ranges(len(ljspeech.read_metadata(corpus)))
    steps = cfg.epochs * math.ceil(len(splits["train"]) / bs)
    step_s = t_ours / math.ceil(n_train / bs)
    decode_s = d_ours / len(test_clips)  # per clip; the teacher-forced loss of a pass is small beside it
    train_min = steps * step_s / 60
    eval_min = (cfg.epochs * len(splits["validation"]) + len(splits["test"])) * decode_s / 60
    print(f"  profile {profile}: {cfg.epochs} epochs x {math.ceil(len(splits['train']) / bs)} steps = {steps:,} steps "
          f"at {step_s:.3f} s/step -> {train_min:.1f} min training + {eval_min:.1f} min validation and test "
          f"= {train_min + eval_min:.1f} min projected for this decoder")
    return same and same_loop, train_min + eval_min


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="corpus and frame count of this profile (default: auto)")
    parser.add_argument("--decoder", nargs="+", default=["rnn", "transformer"], choices=["rnn", "transformer"])
    parser.add_argument("--frames", type=int, default=None, help="audio frames (default: the profile's)")
    parser.add_argument("--train-batches", type=int, default=6)
    parser.add_argument("--decode-clips", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    profile = resolve_profile(args.profile)
    device = resolve_device(args.device)
    frames = args.frames or config.for_profile(profile).audio_frames
    ok = True
    with torch_threads(cpu_threads() if device == "cpu" else None):
        print(f"[hw2] bench q3: profile={profile} data={ljspeech.data_source(corpus_dir(profile))} "
              f"device={device} torch threads={torch.get_num_threads()}")
        peak = bench_peak.peaks(device)
        print(f"[hw2] {bench_peak.describe(peak)}" if device == "cpu" else
              f"[hw2] {torch.cuda.get_device_name(0)}: " + ", ".join(f"{v:.0f} GFLOP/s in {k}" for k, v in peak.items()))
        projected = {}
        for decoder in args.decoder:
            same, projected[decoder] = bench_decoder(decoder, profile, frames, args.train_batches,
                                                     args.decode_clips, device, peak)
            ok &= same
        threads = torch.get_num_threads()
    if len(projected) > 1:
        line = f"\nprojected wall time of the profile's runs: {sum(projected.values()):.1f} min one after the other"
        if device == "cpu" and threads == 1:
            line += (f"; side by side on 2 cores (make runs-q3: JOBS=2, one thread each) about "
                     f"{max(projected.values()):.1f} min, the longer of the two")
        print(line + f" ({threads} torch thread(s) per run)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
