"""Benchmark: Question 2 training, the skeleton's straightforward way against ours, in one process.

Both train the same epochs on the same data with the same protocol (batch 8, plain SGD, NLLLoss, seed 42,
the same number of SGD steps) and, because ours draws the same random streams, reach the same losses.
  baseline: DataLoader over a Dataset (batch 8, shuffle), nn.Module CNN, optim.SGD, loss.item() every step
  ours:     data resident as one tensor, one gather per epoch, losses kept on the device, one thread,
            the learning rates of a sweep trained together (G members), and on the CPU the steps in C
            (hw2/q2/cnn_cpu.c); its PyTorch path is measured too, to show what each part brings
Prints seconds per epoch for each way, the ratios, and the projected time of the full 6-run sweep
(2 variants x 15 epochs); runs on CUDA too when a GPU is present (--device).
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
from hw2.q2 import config, octmnist  # noqa: E402
from hw2.q2.cnn import CNN  # noqa: E402
from hw2.q2.config import CNNConfig  # noqa: E402
from hw2.q2.train import StackedCNN, configure_seed, train_epoch  # noqa: E402
from hw2.q2.train import engine as train_engine  # noqa: E402

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


def ours_epochs(X, y, lrs, no_maxpool, epochs, device, use=None):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=None, help="training images (default: the whole split)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-maxpool", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    path = octmnist.prepare(data_dir())
    data = octmnist.load(path, n_train=args.n_train)
    X, y = data.train_X, data.train_y
    bs = DEFAULT.batch_size
    steps = math.ceil(len(X) / bs)
    print(f"data: {octmnist.data_source(path)}, {len(X)} training images, {steps} SGD steps of batch {bs} per "
          f"epoch; device={device}; variant {'no-maxpool' if args.no_maxpool else 'maxpool'}; "
          f"{args.epochs} epoch(s) per measurement")

    default_threads = torch.get_num_threads()
    base_s, base_loss, base_steps = baseline_epochs(X, y, DEFAULT.lr, args.no_maxpool, args.epochs, device)
    print(f"baseline  (DataLoader, loss.item(), {default_threads} threads), lr {DEFAULT.lr:g}: {base_s:8.2f} s/epoch  "
          f"mean loss {base_loss:.6f}  steps {base_steps}")
    lrs = list(config.LEARNING_RATES["full"])
    engine = train_engine(device)
    with torch_threads(cpu_threads() if device == "cpu" else None):
        if engine == "c":
            torch_s, torch_loss, _ = ours_epochs(X, y, [DEFAULT.lr], args.no_maxpool, args.epochs, device, "torch")
            print(f"ours, PyTorch path, lr {DEFAULT.lr:g}:                {torch_s:8.2f} s/epoch  "
                  f"mean loss {torch_loss[0]:.6f}  ({base_s / torch_s:.2f}x)")
        one_s, one_loss, one_steps = ours_epochs(X, y, [DEFAULT.lr], args.no_maxpool, args.epochs, device)
        print(f"ours ({engine} engine), lr {DEFAULT.lr:g}:                   {one_s:8.2f} s/epoch  "
              f"mean loss {one_loss[0]:.6f}  steps {one_steps}")
        sweep_s, sweep_loss, _ = ours_epochs(X, y, lrs, args.no_maxpool, args.epochs, device)
    G = len(lrs)
    print(f"ours, the {G} learning rates together:            {sweep_s:8.2f} s/epoch for {G} runs = "
          f"{sweep_s / G:.2f} s per run-epoch  mean losses " + " ".join(f"{v:.6f}" for v in sweep_loss))

    print(f"ratio, one run:            {base_s / one_s:5.2f}x  (baseline s/epoch / ours s/epoch)")
    print(f"ratio, per run in a sweep: {base_s / (sweep_s / G):5.2f}x")
    print(f"same protocol: loss difference |baseline - ours| = {abs(base_loss - one_loss[0]):.2e} (lr {DEFAULT.lr:g}), "
          f"{abs(base_loss - sweep_loss[lrs.index(DEFAULT.lr)]):.2e} (together)")
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
