"""Benchmark: Question 2 training, the skeleton's straightforward way against ours, in one process.

Both train the same epochs on the same data with the same protocol (batch 8, plain SGD, NLLLoss, seed 42,
the same number of SGD steps) and, because ours draws the same random streams, reach the same losses.
  baseline: DataLoader over a Dataset (batch 8, shuffle), nn.Module CNN, optim.SGD, loss.item() every step
  ours:     data resident as one tensor, one gather per epoch, losses kept on the device, one thread,
            the learning rates of a sweep trained together (G members), with the engine that a sweep's
            calibration picks on this machine (the C steps of hw2/q2/cnn_cpu.c or the PyTorch path); each
            engine is measured alone too, to show what each part brings
Prints the CPU and its measured matrix-product speed (bench/peak.py), the engine the calibration chose, then
per way its seconds per epoch, its ratio to the baseline and its achieved GFLOP/s as a fraction of that
speed (the FLOPs of a step counted from the layer shapes), and the projected time of the full 6-run sweep
(2 variants x 15 epochs). The ways are measured in alternation, --repeats times, and the fastest of each
counts: other processes only ever slow a measurement down. Runs on CUDA too when a GPU is present (--device).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hw2.engine.machine import cpu_threads, resolve_device, torch_threads  # noqa: E402
from hw2.engine.paths import data_dir  # noqa: E402
from hw2.q2 import cnn_cpu, config, octmnist, train  # noqa: E402
from hw2.q2.cnn import CNN  # noqa: E402
from hw2.q2.config import CNNConfig  # noqa: E402
from hw2.q2.train import StackedCNN, configure_seed, train_epoch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak import describe, efficiency, peaks  # noqa: E402  (bench/peak.py, beside this script)

DEFAULT = CNNConfig()  # the homework's seed, dropout and batch size


class ClassificationDataset(torch.utils.data.Dataset):
    """As the skeleton's utils.ClassificationDataset: one (x, y) pair per __getitem__."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def baseline_epochs(X, y, lr, no_maxpool, epochs, device):
    configure_seed(DEFAULT.seed)
    loader = torch.utils.data.DataLoader(ClassificationDataset(X, y), batch_size=DEFAULT.batch_size, shuffle=True)
    model = CNN(DEFAULT.dropout, no_maxpool=no_maxpool).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    criterion = nn.NLLLoss()
    losses, start = [], time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return (time.perf_counter() - start) / epochs, float(np.mean(losses)), len(losses)


def ours_epochs(X, y, lrs, no_maxpool, epochs, device, use):
    configure_seed(DEFAULT.seed)
    model = StackedCNN([CNN(DEFAULT.dropout, no_maxpool).state_dict()] * len(lrs), no_maxpool, DEFAULT.dropout, device)
    X, y, lr_t = X.to(device), y.to(device), torch.tensor(lrs, device=device)
    losses, start = [], time.perf_counter()
    for _ in range(epochs):
        losses.append(train_epoch(model, X, y, lr_t, DEFAULT.batch_size, use=use))
    losses = torch.cat(losses).cpu()  # the only host sync
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / epochs, losses.double().mean(0).tolist(), len(losses)


def step_flops(no_maxpool: bool, batch_size: int) -> int:
    """The FLOPs of one SGD step of one CNN, from its layer shapes: each convolution's and linear layer's
    multiply-adds (2 FLOPs each) forward, again for its weight gradient, and again for its input gradient but
    the first layer's (the images need none). Pooling, ReLU, dropout, the loss and the update are left out
    (element-wise, under 2% of it)."""
    model = CNN(DEFAULT.dropout, no_maxpool)
    macs = []  # per layer, the multiply-adds of one image: outputs x inputs per output
    hooks = [m.register_forward_hook(lambda mod, inp, out: macs.append(out[0].numel() * mod.weight[0].numel()))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 784))
    for hook in hooks:
        hook.remove()
    return 2 * (3 * sum(macs) - macs[0]) * batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=None, help="training images (default: the whole split)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-maxpool", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="measurements of each way, in alternation")
    args = parser.parse_args()
    device = resolve_device(args.device)
    path = octmnist.prepare(data_dir())
    data = octmnist.load(path, n_train=args.n_train)
    X, y = data.train_X, data.train_y
    bs = DEFAULT.batch_size
    steps = math.ceil(len(X) / bs)
    lrs = list(config.LEARNING_RATES["full"])
    G = len(lrs)
    flops = step_flops(args.no_maxpool, bs)
    with torch_threads(cpu_threads() if device == "cpu" else None):
        peak = peaks(device)
        print(f"[hw2] {describe(peak)}" if device == "cpu" else
              f"[hw2] {torch.cuda.get_device_name(0)}: " + ", ".join(f"{v:.0f} GFLOP/s in {k}" for k, v in peak.items()))
        choice = train.engine(device)
        if choice is None:
            init = CNN(DEFAULT.dropout, args.no_maxpool).state_dict()
            sweep = StackedCNN([init] * G, args.no_maxpool, DEFAULT.dropout, device)
            calibration = train.calibrate(sweep, X, y, torch.tensor(lrs), bs, DEFAULT.l2_decay)
            choice = calibration["engine"]
            print(f"engine chosen by a sweep's calibration: {train.describe_choice(calibration, G)}")
        else:
            print(f"engine: {choice} (no calibration: {'forced by HW2_CNN_KERNEL' if cnn_cpu.forced() else 'the only one here'})")
    print(f"data: {octmnist.data_source(path)}, {len(X)} training images, {steps} SGD steps of batch {bs} per "
          f"epoch; device={device}; variant {'no-maxpool' if args.no_maxpool else 'maxpool'}; "
          f"{args.epochs} epoch(s) per measurement, {args.repeats} measurement(s) of each way in alternation; "
          f"{flops / 1e6:.1f} MFLOP per step of one CNN (forward and backward, from the layer shapes)")

    default_threads = torch.get_num_threads()
    lr = DEFAULT.lr
    ways = {f"baseline (DataLoader, loss.item(), {default_threads} threads), lr {lr:g}":
            (1, lambda: baseline_epochs(X, y, lr, args.no_maxpool, args.epochs, device))}
    for use in ("torch", "c") if train.engine(device) is None else (choice,):
        ways[f"ours, {use} engine, lr {lr:g}"] = (1, lambda use=use: ours_epochs(X, y, [lr], args.no_maxpool,
                                                                                  args.epochs, device, use))
    ways[f"ours, {choice} engine, the {G} learning rates together"] = (
        G, lambda: ours_epochs(X, y, lrs, args.no_maxpool, args.epochs, device, choice))
    best = {}
    for _ in range(args.repeats):
        for name, (members, measure) in ways.items():
            threads = None if name.startswith("baseline") else cpu_threads() if device == "cpu" else None
            with torch_threads(threads):
                seconds, loss, _ = measure()
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, loss)
    base_s, base_loss = best[next(iter(ways))]
    for name, (members, _) in ways.items():
        seconds, _ = best[name]
        gflops = flops * members * steps / seconds / 1e9
        extra = f", {gflops / peak['bf16']:.0%} of bf16" if "bf16" in peak else ""
        print(f"{name:<52} {seconds:8.2f} s/epoch = {seconds / members:6.2f} per run  {base_s / (seconds / members):6.2f}x"
              f"  {efficiency(gflops, peak)}{extra}")
    sweep_name = list(ways)[-1]
    sweep_s, sweep_loss = best[sweep_name]
    one_loss = best[f"ours, {choice} engine, lr {lr:g}"][1]
    print(f"ratio, per run in a sweep: {base_s / (sweep_s / G):5.2f}x  (baseline s/epoch / ours s per run-epoch, "
          f"{choice} engine)")
    print(f"same protocol: loss difference |baseline - ours| = {abs(base_loss - one_loss[0]):.2e} (lr {lr:g}), "
          f"{abs(base_loss - sweep_loss[lrs.index(lr)]):.2e} (together)")
    # Projection to the full protocol from this measurement (this variant's time per step for every run).
    full = config.for_profile("full")
    full_steps = math.ceil(sum(octmnist.CLASS_COUNTS["train"]) / full.batch_size)
    n_runs, n_groups = len(config.plan("full")), len(config.plan("full")) // G
    per_step = {"baseline": base_s / steps, "stacked": sweep_s / steps}
    print(f"projected full sweep ({n_runs} runs, {full.epochs} epochs of {full_steps:,} steps), training only: "
          f"baseline {n_runs * full.epochs * full_steps * per_step['baseline'] / 60:.1f} min, ours "
          f"{n_groups * full.epochs * full_steps * per_step['stacked'] / 60:.1f} min one variant after the other, "
          f"{full.epochs * full_steps * per_step['stacked'] / 60:.1f} min with the variants side by side "
          f"(one core each)")


if __name__ == "__main__":
    main()
