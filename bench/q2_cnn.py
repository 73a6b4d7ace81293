"""Benchmark: Question 2 training, the skeleton's straightforward way against ours, in one process.

Both train the same epochs on the same data with the same protocol (batch 8, plain SGD, NLLLoss, seed 42,
the same number of SGD steps) and, because ours draws the same random streams, reach the same losses.
  baseline: DataLoader over a Dataset (batch 8, shuffle), nn.Module CNN, optim.SGD, loss.item() every step
  ours:     data resident as one tensor, one gather per epoch, losses kept on the device, one thread,
            and the learning rates of a sweep trained together as one stacked model (G members)
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
from hw2.data import octmnist  # noqa: E402
from hw2.models.cnn import CNN  # noqa: E402
from hw2.profiles import data_dir, resolve_device  # noqa: E402
from hw2.train_cnn import StackedCNN, configure_seed, train_epoch  # noqa: E402

LRS = (0.1, 0.01, 0.001)


class ClassificationDataset(torch.utils.data.Dataset):
    """As the skeleton's utils.ClassificationDataset: one (x, y) pair per __getitem__."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def baseline_epochs(X, y, lr, no_maxpool, epochs, device):
    configure_seed(42)
    loader = torch.utils.data.DataLoader(ClassificationDataset(X, y), batch_size=8, shuffle=True)
    model = CNN(0.7, no_maxpool=no_maxpool).to(device)
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


def ours_epochs(X, y, lrs, no_maxpool, epochs, device):
    configure_seed(42)
    model = StackedCNN([CNN(0.7, no_maxpool).state_dict()] * len(lrs), no_maxpool, 0.7, device)
    X, y, lr_t = X.to(device), y.to(device), torch.tensor(lrs, device=device)
    losses, start = [], time.perf_counter()
    for _ in range(epochs):
        losses.append(train_epoch(model, X, y, lr_t, 8))
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
    data = octmnist.load(octmnist.prepare(data_dir()), n_train=args.n_train)
    X, y = data.train_X, data.train_y
    steps = math.ceil(len(X) / 8)
    print(f"data: {octmnist.data_source(octmnist.prepare(data_dir()))}, {len(X)} training images, "
          f"{steps} SGD steps of batch 8 per epoch; device={device}; variant "
          f"{'no-maxpool' if args.no_maxpool else 'maxpool'}; {args.epochs} epoch(s) per measurement")

    default_threads = torch.get_num_threads()
    base_s, base_loss, base_steps = baseline_epochs(X, y, 0.01, args.no_maxpool, args.epochs, device)
    print(f"baseline  (DataLoader, loss.item(), {default_threads} threads), lr 0.01: {base_s:8.2f} s/epoch  "
          f"mean loss {base_loss:.6f}  steps {base_steps}")
    if device == "cpu":
        torch.set_num_threads(1)
    one_s, one_loss, one_steps = ours_epochs(X, y, [0.01], args.no_maxpool, args.epochs, device)
    print(f"ours      (resident, no per-step sync), lr 0.01:   {one_s:8.2f} s/epoch  "
          f"mean loss {one_loss[0]:.6f}  steps {one_steps}")
    sweep_s, sweep_loss, _ = ours_epochs(X, y, list(LRS), args.no_maxpool, args.epochs, device)
    print(f"ours, the 3 learning rates stacked:             {sweep_s:8.2f} s/epoch for 3 runs = "
          f"{sweep_s / 3:.2f} s per run-epoch  mean losses " + " ".join(f"{v:.6f}" for v in sweep_loss))
    torch.set_num_threads(default_threads)

    print(f"ratio, one run:            {base_s / one_s:5.2f}x  (baseline s/epoch / ours s/epoch)")
    print(f"ratio, per run in a sweep: {base_s / (sweep_s / 3):5.2f}x")
    print(f"same protocol: loss difference |baseline - ours| = {abs(base_loss - one_loss[0]):.2e} (lr 0.01), "
          f"{abs(base_loss - sweep_loss[1]):.2e} (stacked)")
    full_epochs = 2 * 15 * 97_477 / len(X)  # run-epochs of the full sweep, per 3-run group, in units of this data
    print(f"projected full 6-run sweep (2 variants x 15 epochs x 12,185 steps), training only: "
          f"baseline {6 * 15 * base_s * 97_477 / len(X) / 60:.1f} min, "
          f"ours {full_epochs * sweep_s / 60:.1f} min one variant after the other, "
          f"{full_epochs * sweep_s / 2 / 60:.1f} min with the two variants side by side on 2 cores")


if __name__ == "__main__":
    main()
