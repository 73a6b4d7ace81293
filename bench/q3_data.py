"""Question 3 data throughput: stand-in generation (clips/s) and log-mel features per clip vs batched.

    python bench/q3_data.py [--clips 120] [--device auto] [--threads N]

Generates a fresh stand-in corpus of --clips clips in a temporary folder with 1 and with 2 espeak-ng workers,
then computes the skeleton's features for its clips one at a time (as a data loader would) and in padded
batches of 16 and 64 on the device, in the same process, and prints clips per second and the ratios.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from hw2.engine.machine import resolve_device
from hw2.q3 import ljspeech
from hw2.q3.audio import log_mel, pad_waveforms


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    speeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            start = time.perf_counter()
            corpus = ljspeech.make_standin(f"{tmp}/w{workers}", args.clips, seed=0, workers=workers)
            speeds[workers] = args.clips / (time.perf_counter() - start)
        clips = [ljspeech.load_waveform(corpus, c.id) for c in ljspeech.read_metadata(corpus)]
    seconds = sum(len(c) for c in clips) / ljspeech.SAMPLE_RATE
    print(f"stand-in generation ({args.clips} clips, {seconds / len(clips):.1f} s of speech each on average):")
    for workers, speed in speeds.items():
        print(f"  {workers} espeak-ng worker(s): {speed:7.1f} clips/s")
    print(f"  ratio 2 workers / 1 worker: {speeds[2] / speeds[1]:.2f}")

    def per_clip() -> None:  # the skeleton's way: one clip at a time, then moved to the device
        for clip in clips:
            log_mel(torch.from_numpy(clip)).to(device)

    def batched(size: int):
        def run() -> None:
            for i in range(0, len(clips), size):
                batch, lengths = pad_waveforms(clips[i:i + size], device)
                log_mel(batch, lengths)
        return run

    runs = {"per clip (CPU)": per_clip, f"batches of 16 ({device})": batched(16), f"batches of 64 ({device})": batched(64)}
    for run in runs.values():  # warm-up: allocations, FFT plans
        run()
    _sync(device)
    rates = {}
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        _sync(device)
        rates[name] = len(clips) / (time.perf_counter() - start)
    print(f"log-mel features (80 x 2754) on {len(clips)} clips, {torch.get_num_threads()} CPU thread(s):")
    base = rates["per clip (CPU)"]
    for name, rate in rates.items():
        print(f"  {name:22s} {rate:8.1f} clips/s  ({rate / base:.2f}x per clip)")


if __name__ == "__main__":
    main()
