"""Question 2 training: the skeleton's protocol (hw2-q2.py), run fast.

Semantics kept from the skeleton: `configure_seed(42)`, then the model, then per epoch a shuffled pass in
batches of 8 with plain SGD (no momentum) on NLLLoss; the printed training loss is the cumulative running
mean of every batch loss so far; validation accuracy after each epoch; test accuracy at the end on the
529-image subsample (and, as an extra, the full 1,000-image test set).

Where the speed comes from, without changing what is computed:
- the data lives on the device as one tensor; each epoch is permuted once and sliced (no DataLoader);
- the shuffle order is drawn from the global RNG exactly as `DataLoader(shuffle=True)` draws it, and
  dropout masks exactly as `nn.Dropout` draws them, so the random streams match the skeleton's;
- batch losses stay on the device (no `loss.item()` per step), read once per epoch;
- the runs of a learning-rate sweep share initial weights, batches and dropout masks in the skeleton
  (each run seeds 42, and the RNG stream does not depend on lr), so they are trained together as one
  stacked model (`StackedCNN`): per-step overhead is paid once for all of them;
- on the CPU the steps themselves run in C (`hw2/q2/cnn_cpu.c`, one call per 500 steps) where a sweep's
  calibration measures them faster, since at batch 8 PyTorch's per-operator overhead is most of a step; the
  PyTorch path below stays the reference (and the GPU's path), and a test holds the two together.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hw2.common.loader_rng import loader_permutation
from hw2.common.params import get_number_trainable_params
from hw2.engine import store
from hw2.q2 import cnn_cpu, octmnist
from hw2.q2.cnn import CNN, N_CLASSES
from hw2.q2.config import CNNConfig

EVAL_CHUNK = 4096
PROGRESS_EVERY = 500  # steps between loss readings for the progress bar


def configure_seed(seed: int) -> None:
    """The skeleton's `utils.configure_seed`."""
    import os

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


# --- the stacked model ----------------------------------------------------------------------------------------

class StackedCNN:
    """G copies of `CNN` (same variant) held as stacked tensors and run in one forward pass.

    conv1 of all members is one convolution (8G output channels on the shared input), conv2 a grouped one,
    the fully connected layers batched matrix products; one dropout mask is shared by all members, as the
    separate skeleton runs share it. Gradients of the summed loss are each member's own gradients.
    """

    NAMES = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
             "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")

    FC_WEIGHTS = ("fc1.weight", "fc2.weight", "fc3.weight")  # held transposed, (G, in, out), as bmm wants them

    def __init__(self, state_dicts: list[dict], no_maxpool: bool, dropout: float, device: str):
        self.G = len(state_dicts)
        self.no_maxpool = no_maxpool
        self.dropout = dropout
        self.params = {}
        for name in self.NAMES:
            stacked = torch.stack([sd[name] for sd in state_dicts])
            if name in self.FC_WEIGHTS:
                stacked = stacked.transpose(1, 2)
            self.params[name] = stacked.contiguous().to(device).requires_grad_()

    def state_dicts(self) -> list[dict]:
        """Each member as a `CNN` state dict."""
        out = []
        for g in range(self.G):
            sd = {}
            for name, p in self.params.items():
                value = p[g].detach()
                sd[name] = (value.t() if name in self.FC_WEIGHTS else value).contiguous().cpu().clone()
            out.append(sd)
        return out

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """x (B, 784) -> log-probabilities (G, B, 4)."""
        p, G, B = self.params, self.G, x.shape[0]
        stride = 2 if self.no_maxpool else 1
        h = x.reshape(B, 1, 28, 28)
        h = F.relu(F.conv2d(h, p["conv1.weight"].flatten(0, 1), p["conv1.bias"].flatten(), stride, padding=1))
        if not self.no_maxpool:
            h = F.max_pool2d(h, 2, 2)
        h = F.relu(F.conv2d(h, p["conv2.weight"].flatten(0, 1), p["conv2.bias"].flatten(), stride, groups=G))
        if not self.no_maxpool:
            h = F.max_pool2d(h, 2, 2)
        h = h.reshape(B, G, 576).transpose(0, 1)  # (G, B, 576): member g's channels are contiguous
        h = F.relu(torch.baddbmm(p["fc1.bias"].unsqueeze(1), h, p["fc1.weight"]))
        if train and self.dropout > 0:  # one mask, shared by the members as in the separate runs
            h = h * dropout_noise_(torch.empty(B, 320, device=x.device), self.dropout)
        h = F.relu(torch.baddbmm(p["fc2.bias"].unsqueeze(1), h, p["fc2.weight"]))
        logits = torch.baddbmm(p["fc3.bias"].unsqueeze(1), h, p["fc3.weight"])
        return F.log_softmax(logits, dim=-1)

    @torch.no_grad()
    def sgd_step(self, lrs: torch.Tensor, l2_decay: float) -> None:
        """p <- p - lr_g (grad + l2 p), each member with its own learning rate; no momentum (the skeleton's SGD)."""
        for p in self.params.values():
            if l2_decay:
                p.grad.add_(p, alpha=l2_decay)
            p.addcmul_(p.grad, lrs.view(-1, *([1] * (p.dim() - 1))), value=-1.0)  # in place: no temporaries
            p.grad = None

    @torch.no_grad()
    def accuracy(self, X: torch.Tensor, y: torch.Tensor) -> list[float]:
        """The skeleton's `evaluate`: argmax accuracy over a whole split (in chunks, no dropout)."""
        correct = torch.zeros(self.G, device=X.device)
        for start in range(0, len(X), EVAL_CHUNK):
            pred = self.forward(X[start:start + EVAL_CHUNK], train=False).argmax(-1)
            correct += (pred == y[start:start + EVAL_CHUNK]).sum(1)
        return (correct / float(len(X))).tolist()

    def confusion(self, X: torch.Tensor, y: torch.Tensor) -> list[list[list[int]]]:
        """Per member, the 4x4 counts of (true class, predicted class) over a split: what the accuracy hides,
        such as a classifier that predicts one class for every image."""
        counts = torch.zeros(self.G, N_CLASSES * N_CLASSES, dtype=torch.long, device=X.device)
        for start in range(0, len(X), EVAL_CHUNK):
            pred = self.forward(X[start:start + EVAL_CHUNK], train=False).argmax(-1)
            cells = y[start:start + EVAL_CHUNK] * N_CLASSES + pred
            counts.scatter_add_(1, cells, torch.ones_like(cells))
        return counts.view(self.G, N_CLASSES, N_CLASSES).tolist()


def dropout_noise_(out: torch.Tensor, p: float) -> torch.Tensor:
    """Fill `out` with nn.Dropout's noise (kept / (1 - p), else 0), drawn as it draws it on CPU and CUDA
    alike (`bernoulli_(1 - p)`, then `div_(1 - p)`), so the global random stream matches the skeleton's."""
    keep = 1.0 - p
    return out.bernoulli_(keep).div_(keep)


def member_loss(logp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """NLLLoss (batch mean) of each member: (G, B, 4), (B,) -> (G,)."""
    return -logp.gather(2, y.expand(logp.shape[0], -1).unsqueeze(-1)).squeeze(-1).mean(1)


# --- training ------------------------------------------------------------------------------------------------

# The engine is chosen per machine by measuring both, since which is faster depends on the CPU and the
# compiler. A trial is a few steps (milliseconds in C); trials alternate and the fastest of each engine
# counts, since other processes only ever slow a trial down.
CALIBRATION_STEPS = 24
CALIBRATION_ROUNDS = 3


def engine(device: str) -> str | None:
    """The engine that trains on `device` without measuring: "torch" off the CPU and where the C steps cannot be
    built, else the one HW2_CNN_KERNEL forces ("c" or "torch"); None where a sweep measures both (`calibrate`)."""
    if device != "cpu" or not cnn_cpu.available():
        return "torch"
    return cnn_cpu.forced()


def calibrate(model: StackedCNN, X: torch.Tensor, y: torch.Tensor, lrs: torch.Tensor, batch_size: int,
              l2_decay: float) -> dict:
    """Time CALIBRATION_STEPS steps of each engine on copies of `model`, alternated over CALIBRATION_ROUNDS
    rounds, and pick the faster. The model and the global random stream are left as they were."""
    ways = {"c": _train_epoch_c, "torch": _train_epoch_torch}  # looked up here, so that tests can stub them
    n = min(len(X), CALIBRATION_STEPS * batch_size)
    states, bar = model.state_dicts(), tqdm(disable=True)
    best = dict.fromkeys(ways, math.inf)
    with torch.random.fork_rng(devices=[]):
        for fn in ways.values():  # warm-up: loading the C library, PyTorch's first calls
            fn(StackedCNN(states, model.no_maxpool, model.dropout, "cpu"), X[:batch_size], y[:batch_size], lrs,
               batch_size, l2_decay, bar)
        for _ in range(CALIBRATION_ROUNDS):
            for name, fn in ways.items():
                copy = StackedCNN(states, model.no_maxpool, model.dropout, "cpu")
                start = time.perf_counter()
                fn(copy, X[:n], y[:n], lrs, batch_size, l2_decay, bar)
                best[name] = min(best[name], time.perf_counter() - start)
    steps = math.ceil(n / batch_size)
    per_step = {name: seconds / steps for name, seconds in best.items()}
    return {"engine": min(per_step, key=per_step.get), "how": "measured", "seconds_per_step": per_step,
            "trial_steps": steps, "rounds": CALIBRATION_ROUNDS}


def describe_choice(choice: dict, members: int) -> str:
    """One line: the engine, how it was chosen and, where measured, the time of a step of all members."""
    line = f"{choice['engine']} ({choice['how']})"
    if "seconds_per_step" in choice:
        ms = {name: seconds * 1e3 for name, seconds in choice["seconds_per_step"].items()}
        line += (f": a step of the {members} member(s) took {ms['c']:.2f} ms in C, {ms['torch']:.2f} ms with "
                 f"PyTorch (the fastest of {choice['rounds']} alternated trials of {choice['trial_steps']} steps each)")
    return line


def train_epoch(model: StackedCNN, X: torch.Tensor, y: torch.Tensor, lrs: torch.Tensor, batch_size: int,
                l2_decay: float = 0.0, progress: bool = False, desc: str = "epoch", *,
                use: str, max_steps: int | None = None) -> torch.Tensor:
    """One shuffled pass of SGD in batches of `batch_size` (its first `max_steps` batches when given); returns
    the batch losses (steps, G), on the device. `use` is the engine: "c" or "torch"."""
    perm = loader_permutation(len(X)).to(X.device)
    perm = perm[:max_steps * batch_size] if max_steps else perm  # the same shuffle, cut short
    X, y = X[perm], y[perm]  # one gather per epoch; batches are then contiguous slices
    steps = math.ceil(len(X) / batch_size)
    bar = tqdm(total=steps, desc=desc, leave=False, disable=not progress, mininterval=1)
    if use == "c":
        losses = _train_epoch_c(model, X, y, lrs, batch_size, l2_decay, bar)
    else:
        losses = _train_epoch_torch(model, X, y, lrs, batch_size, l2_decay, bar)
    bar.close()
    return losses


def _show_loss(bar, recent: torch.Tensor) -> None:
    bar.set_postfix(loss=" ".join(f"{v:.3f}" for v in recent.mean(0).tolist()), refresh=False)


def _train_epoch_torch(model, X, y, lrs, batch_size, l2_decay, bar) -> torch.Tensor:
    steps = math.ceil(len(X) / batch_size)
    losses = torch.empty(steps, model.G, device=X.device)
    for step in range(steps):
        xb, yb = X[step * batch_size:(step + 1) * batch_size], y[step * batch_size:(step + 1) * batch_size]
        loss = member_loss(model.forward(xb, train=True), yb)
        loss.sum().backward()
        model.sgd_step(lrs, l2_decay)
        losses[step] = loss.detach()
        bar.update()
        if not bar.disable and step % PROGRESS_EVERY == PROGRESS_EVERY - 1:  # a host sync, but a rare one
            _show_loss(bar, losses[step + 1 - PROGRESS_EVERY:step + 1])
    return losses


def _train_epoch_c(model, X, y, lrs, batch_size, l2_decay, bar) -> torch.Tensor:
    """The same steps through hw2/q2/cnn_cpu.c, PROGRESS_EVERY at a time. The dropout noise is drawn here, a
    (B, 320) tensor per step exactly as nn.Dropout draws it, so the random stream is the torch path's."""
    steps = math.ceil(len(X) / batch_size)
    noise = torch.empty(PROGRESS_EVERY, batch_size, 320) if model.dropout > 0 else None
    out = []
    for first in range(0, steps, PROGRESS_EVERY):
        n_steps = min(PROGRESS_EVERY, steps - first)
        lo, hi = first * batch_size, min((first + n_steps) * batch_size, len(X))
        if noise is not None:
            for step in range(n_steps):
                rows = min(batch_size, hi - lo - step * batch_size)
                dropout_noise_(noise[step, :rows], model.dropout)
        out.append(cnn_cpu.train_steps(model.params, model.no_maxpool, lrs, l2_decay, X[lo:hi], y[lo:hi],
                                       batch_size, None if noise is None else noise[:n_steps]))
        bar.update(n_steps)
        _show_loss(bar, out[-1])
    return torch.cat(out)


@dataclass
class Sweep:
    """Runs that differ only in learning rate, trained together as one stacked model, and what their
    checkpoints carry from epoch to epoch."""

    runs: list[store.Run]
    configs: list[CNNConfig]
    device: str
    model: StackedCNN
    lrs: torch.Tensor  # one per member
    steps_per_epoch: int
    start_epoch: int
    totals: list[float]  # per member, the sum of every batch loss so far (the cumulative mean's numerator)
    diverged: dict[int, int]  # member -> epoch at which its loss became NaN/inf
    engine_choice: dict  # the engine ("c" or "torch"), how it was chosen and, where measured, the timings

    @property
    def protocol(self) -> CNNConfig:
        """The configuration the members share (all of it but the learning rate)."""
        return self.configs[0]


def rng_state(device: str) -> dict:
    return {"rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state() if device == "cuda" else None}


def restore_rng(state: dict, device: str) -> None:
    torch.set_rng_state(state["rng"])
    if device == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"])


def start_sweep(runs: list[store.Run], configs: list[CNNConfig], data: octmnist.OctSplits, device: str) -> Sweep:
    """Seed and build the skeleton's model, then resume from the last epoch that every run has a checkpoint of
    (`store.load_shared_checkpoint`: a kill or a full disk between the members' checkpoint writes leaves them an
    epoch apart)."""
    first = configs[0]
    configure_seed(first.seed)
    init = CNN(first.dropout, no_maxpool=first.no_maxpool).state_dict()  # the skeleton's model, seed 42
    resumed = store.load_shared_checkpoint(runs)
    if resumed is not None:
        start_epoch, states = resumed
        restore_rng(states[0], device)
        model_states = [s["model"] for s in states]
        totals = [s["loss_total"] for s in states]
        diverged = {g: s["diverged_epoch"] for g, s in enumerate(states) if s.get("diverged_epoch") is not None}
    else:
        model_states, start_epoch, totals, diverged = [init] * len(runs), 0, [0.0] * len(runs), {}
    model = StackedCNN(model_states, first.no_maxpool, first.dropout, device)
    lrs = torch.tensor([c.lr for c in configs], device=device)
    choice = choose_engine(model, data, lrs, first, device, states[0] if resumed is not None else {})
    print(f"[hw2] Question 2 engine: {describe_choice(choice, model.G)}", flush=True)
    return Sweep(runs=runs, configs=configs, device=device, model=model, lrs=lrs,
                 steps_per_epoch=min(math.ceil(len(data.train_X) / first.batch_size), first.max_steps or math.inf),
                 start_epoch=start_epoch, totals=totals, diverged=diverged, engine_choice=choice)


def choose_engine(model: StackedCNN, data: octmnist.OctSplits, lrs: torch.Tensor, protocol: CNNConfig, device: str,
                  checkpoint: dict) -> dict:
    """The engine of a sweep: the only one or the forced one (`engine`); else, resuming, the one its checkpoint
    trained with (the engines agree to float rounding only, so a resumed sweep keeps its engine and ends as an
    uninterrupted one); else the faster on this machine (`calibrate`)."""
    fixed = engine(device)
    if fixed is not None:
        how = (f"forced by HW2_CNN_KERNEL={fixed}" if cnn_cpu.forced() == fixed else
               "the C steps run on the CPU only" if device != "cpu" else "the C steps could not be built")
        return {"engine": fixed, "how": how}
    if "engine_choice" in checkpoint:
        return {**checkpoint["engine_choice"], "how": "as the interrupted sweep chose"}
    return calibrate(model, data.train_X, data.train_y, lrs, protocol.batch_size, protocol.l2_decay)


def run_sweep_epoch(sweep: Sweep, data: octmnist.OctSplits, epoch: int, progress: bool) -> None:
    """One epoch of every member: train, validate, and log each member that has not diverged."""
    start = time.time()
    losses = train_epoch(sweep.model, data.train_X, data.train_y, sweep.lrs, sweep.protocol.batch_size,
                         sweep.protocol.l2_decay, progress=progress, desc=f"epoch {epoch}",
                         use=sweep.engine_choice["engine"], max_steps=sweep.protocol.max_steps).double().cpu()
    train_seconds = time.time() - start
    valid = sweep.model.accuracy(data.dev_X, data.dev_y)
    seconds = time.time() - start
    for g in range(sweep.model.G):
        if g not in sweep.diverged:
            log_member_epoch(sweep, g, epoch, losses[:, g], valid[g], seconds, train_seconds)


def log_member_epoch(sweep: Sweep, g: int, epoch: int, losses: torch.Tensor, valid_acc: float, seconds: float,
                     train_seconds: float) -> None:
    """Member g's history row for the epoch (`losses`: its batch losses); a loss that is not finite marks it
    diverged, and the others go on."""
    run = sweep.runs[g]
    sweep.totals[g] += losses.sum().item()
    epoch_mean = losses.mean().item()
    if not math.isfinite(epoch_mean):
        sweep.diverged[g] = epoch
    run.log_epoch({"epoch": epoch, "train_loss_cumulative": sweep.totals[g] / (epoch * sweep.steps_per_epoch),
                   "train_loss_epoch": epoch_mean, "valid_acc": valid_acc, "lr": sweep.configs[g].lr,
                   "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3)})
    if g in sweep.diverged:
        print(f"[hw2] {run.spec.name}: training loss became {epoch_mean} at epoch {epoch}; "
              f"marked diverged, the sweep goes on", flush=True)


def show_cumulative_losses(epoch_bar: tqdm, sweep: Sweep) -> None:
    epoch_bar.set_postfix({f"loss@lr{c.lr:g}": f"{run.history[-1]['train_loss_cumulative']:.4f}"
                           for c, run in zip(sweep.configs, sweep.runs)})


def save_checkpoints(sweep: Sweep, epoch: int) -> None:
    rng = rng_state(sweep.device)
    for g, (run, sd) in enumerate(zip(sweep.runs, sweep.model.state_dicts())):
        run.save_checkpoint({"model": sd, "loss_total": sweep.totals[g], "diverged_epoch": sweep.diverged.get(g),
                             "engine_choice": sweep.engine_choice, **rng}, epoch=epoch)


def evaluation_results(model: StackedCNN, data: octmnist.OctSplits) -> dict[str, list]:
    """Per summary entry, each member's value: test accuracies, and confusion counts on every split."""
    return {"test_acc": model.accuracy(data.test_X, data.test_y),
            "test_acc_full": model.accuracy(data.test_full_X, data.test_full_y),
            **{f"confusion_{name}": model.confusion(X, y) for name, (X, y) in {
                "valid": (data.dev_X, data.dev_y), "test": (data.test_X, data.test_y),
                "test_full": (data.test_full_X, data.test_full_y)}.items()}}


def member_summary(sweep: Sweep, g: int, tests: dict[str, list], data: octmnist.OctSplits) -> dict:
    """Member g's summary: its status, its last and best epoch, its test results (none if it diverged), the
    data and how it was trained."""
    cfg, hist = sweep.configs[g], sweep.runs[g].history
    ok = g not in sweep.diverged
    return {
        "status": "complete" if ok else "diverged",
        "diverged_epoch": sweep.diverged.get(g),
        "config_label": cfg.label,
        "final_train_loss": hist[-1]["train_loss_cumulative"],
        "final_train_loss_epoch": hist[-1]["train_loss_epoch"],
        "final_valid_acc": hist[-1]["valid_acc"],
        "best_valid_acc": max(h["valid_acc"] for h in hist),
        **{key: values[g] if ok else None for key, values in tests.items()},
        "n_params": get_number_trainable_params(CNN(cfg.dropout, cfg.no_maxpool)),
        "n_train": len(data.train_X), "n_val": len(data.dev_X),
        "n_test": len(data.test_X), "n_test_full": len(data.test_full_X),
        "epochs_completed": len(hist), "steps_per_epoch": sweep.steps_per_epoch, "device": sweep.device,
        "members_trained_together": sweep.model.G, "engine": sweep.engine_choice["engine"],
        "engine_choice": sweep.engine_choice,
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in hist])),
    }


def evaluate_and_summarise(sweep: Sweep, data: octmnist.OctSplits) -> list[dict]:
    """Test every member, write each run's model.pt, and return their summaries."""
    tests = evaluation_results(sweep.model, data)
    summaries = []
    for g, (run, sd) in enumerate(zip(sweep.runs, sweep.model.state_dicts())):
        run.save_torch("model.pt", sd)
        summaries.append(member_summary(sweep, g, tests, data))
    return summaries


def train_together(runs: list[store.Run], configs: list[CNNConfig], data: octmnist.OctSplits, device: str,
                   progress: bool = True) -> list[dict]:
    """Train runs that differ only in learning rate as one stacked model; return their summaries. Resumes
    from the last epoch that every run has a checkpoint of (`start_sweep`)."""
    first = configs[0]
    assert all(asdict(c) | {"lr": 0} == asdict(first) | {"lr": 0} for c in configs), "only lr may differ"
    sweep = start_sweep(runs, configs, data, device)
    epoch_bar = tqdm(range(sweep.start_epoch + 1, first.epochs + 1), desc="epochs", disable=not progress,
                     initial=sweep.start_epoch, total=first.epochs)
    for epoch in epoch_bar:
        run_sweep_epoch(sweep, data, epoch, progress)
        show_cumulative_losses(epoch_bar, sweep)
        save_checkpoints(sweep, epoch)
        if len(sweep.diverged) == sweep.model.G:
            break
    return evaluate_and_summarise(sweep, data)
