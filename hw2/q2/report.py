"""Question 2's report helpers: the CNN runs as numbers, booleans, tables and figures for `report/_q2.qmd`.
Every sentence, caption included, is written in the .qmd; nothing here trains.
"""
from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from hw2.engine import registry
from hw2.engine.store import LoadedRun, RunError
from hw2.q2 import config, octmnist
from hw2.reporting.cache import cached
from hw2.reporting.format import mean_std, shown
from hw2.reporting.markdown import figure, table
from hw2.reporting.runs import pool_each, require_runs, run_refs

EXPERIMENT = registry.by_question("q2").name
CLASSES = ("CNV", "DME", "DRUSEN", "NORMAL")  # OCTMNIST's classes 0..3
TRAIN_SHARE = dict(zip(CLASSES, (n / sum(octmnist.CLASS_COUNTS["train"]) for n in octmnist.CLASS_COUNTS["train"])))
# A classifier counts as collapsed when one class takes this share of its predictions on the whole (balanced)
# test split: it has stopped telling the classes apart, whatever its accuracy says.
COLLAPSE_SHARE = 0.9
VARIANTS = {False: "max-pooling (Q2.1)", True: "no max-pooling (Q2.2)"}


@dataclass
class Q2Config:
    """One (variant, learning rate) cell of the sweep, over its seeds."""

    no_maxpool: bool
    lr: float
    runs: list[LoadedRun]

    def values(self, key: str) -> list[float]:
        out = []
        for r in self.runs:
            v = r.summary.get(key)
            out.append(float(v) if isinstance(v, (int, float)) or (isinstance(v, str) and v.lower() == "nan")
                       else float("nan"))
        return out

    def mean(self, key: str) -> float:
        vals = [v for v in self.values(key) if v == v]
        return statistics.mean(vals) if vals else float("nan")

    def printed(self, key: str) -> str:
        """The value as the runs table prints it ('0.7215', or '0.7215 ± 0.0040' over seeds): the one string
        both the table and the sentences use."""
        return mean_std(self.values(key))

    def shown(self, key: str) -> float:
        """The (mean) value as printed, as a number: what a sentence's differences are computed from."""
        return shown(self.mean(key))

    @property
    def diverged(self) -> bool:
        return any(r.summary.get("status") == "diverged" for r in self.runs)

    @property
    def diverged_epoch(self) -> int | None:
        """The first epoch at which one of these runs diverged (its accuracies are not results)."""
        epochs = [r.summary.get("diverged_epoch") for r in self.runs if r.summary.get("status") == "diverged"]
        return min(epochs) if epochs else None

    @property
    def variant(self) -> str:
        return VARIANTS[self.no_maxpool]

    @property
    def n_params(self) -> int:
        return int(self.runs[0].summary["n_params"])

    def confusion(self, split: str = "test_full"):
        """(true, predicted) counts summed over the seeds, or None (diverged, or runs that predate the record)."""
        import numpy as np

        matrices = [r.summary.get(f"confusion_{split}") for r in self.runs]
        return None if self.diverged or any(m is None for m in matrices) else np.sum(matrices, axis=0)

    @property
    def prediction_shares(self) -> dict[str, float] | None:
        """The share of the whole test split predicted as each class."""
        confusion = self.confusion()
        return None if confusion is None else dict(zip(CLASSES, (confusion.sum(0) / confusion.sum()).tolist()))

    @property
    def collapsed_to(self) -> str | None:
        """The class this classifier predicts for nearly every image (COLLAPSE_SHARE), if it has collapsed."""
        shares = self.prediction_shares or {}
        top = max(shares, key=shares.get, default=None)
        return top if top is not None and shares[top] >= COLLAPSE_SHARE else None

    @property
    def never_predicted(self) -> list[str]:
        """The classes this classifier predicts for no test image."""
        shares = self.prediction_shares or {}
        return [name for name, share in shares.items() if share == 0]

    def predicted_instead(self, name: str) -> tuple[str, int, int]:
        """Where the whole test split's `name` scans go: the class predicted most for them, how many it takes, and
        how many there are."""
        row = self.confusion()[CLASSES.index(name)]
        return CLASSES[int(row.argmax())], int(row.max()), int(row.sum())

    def class_share(self, name: str, split: str) -> float:
        """The share of the split's images whose true class is `name` (from the recorded confusion matrix)."""
        confusion = self.confusion(split)
        return float(confusion[CLASSES.index(name)].sum() / confusion.sum())

    def recalls(self, split: str = "test_full") -> dict[str, float] | None:
        """Per class, the share of its images classified correctly."""
        confusion = self.confusion(split)
        return None if confusion is None else dict(zip(CLASSES, (confusion.diagonal() / confusion.sum(1)).tolist()))


class Q2Results:
    """All complete Q2 runs of a profile, grouped by (variant, lr); checks the statement's sweep is there."""

    def __init__(self, profile: str):
        self.profile = profile
        self.runs = require_runs(EXPERIMENT, profile)
        groups: dict[tuple, list[LoadedRun]] = {}
        for run in self.runs:
            c = run.config["config"]
            groups.setdefault((bool(c["no_maxpool"]), float(c["lr"])), []).append(run)
        self.learning_rates = config.LEARNING_RATES[profile]  # the profile's sweep, for each variant
        missing = [p for p in config.plan(profile) if (bool(p["no_maxpool"]), float(p["lr"])) not in groups]
        if missing:
            which = ", ".join(f"lr={p['lr']} no_maxpool={p['no_maxpool']}" for p in missing)
            raise RunError(f"Q2 runs missing for profile {profile!r} ({which}): run `PROFILE={profile} make runs-q2`")
        # Only runs that differ in the seed alone are averaged; a hand run with another batch size, other epochs or
        # other data is left out, and the report names it.
        shown, self.left_out = pool_each(groups, lambda cell: dataclasses.asdict(
            config.for_profile(profile, no_maxpool=cell[0], lr=cell[1])))
        self.configs = [Q2Config(nm, lr, shown[nm, lr]) for nm, lr in sorted(shown, key=lambda c: (c[0], -c[1]))]
        self.runs = [r for c in self.configs for r in c.runs]

    def variant(self, no_maxpool: bool) -> list[Q2Config]:
        return [c for c in self.configs if c.no_maxpool == no_maxpool]

    def best(self, no_maxpool: bool) -> Q2Config:
        """The learning rate chosen on the validation data: the highest final validation accuracy."""
        candidates = [c for c in self.variant(no_maxpool) if not c.diverged
                      and c.mean("final_valid_acc") == c.mean("final_valid_acc")]  # a diverged model is no candidate
        return max(candidates, key=lambda c: c.mean("final_valid_acc"))

    def at(self, no_maxpool: bool, lr: float) -> Q2Config:
        return next(c for c in self.variant(no_maxpool) if c.lr == lr)

    @property
    def seeds(self) -> int:
        return max(len(c.runs) for c in self.configs)

    @property
    def epochs(self) -> int:
        return int(self.configs[0].runs[0].config["config"]["epochs"])

    @property
    def best_pool(self) -> Q2Config:
        """The network with max pooling at its chosen learning rate (Q2.1)."""
        return self.best(False)

    @property
    def best_no_pool(self) -> Q2Config:
        """The network without max pooling at its own best learning rate."""
        return self.best(True)

    @property
    def no_pool_at_chosen_lr(self) -> Q2Config:
        """The network without max pooling at the learning rate chosen for the one with pooling (Q2.2)."""
        return self.at(True, self.best_pool.lr)

    @property
    def standin(self) -> bool:
        """Whether these runs trained on hw2's generated stand-in rather than OCTMNIST itself."""
        return any(r.summary["data_source"].startswith("standin-") for r in self.runs)

    @property
    def choice_margin(self) -> float:
        """How far the chosen learning rate is ahead of the next best on validation accuracy (max pooling), from
        the values the runs table prints."""
        ranked = sorted((c.shown("final_valid_acc") for c in self.variant(False) if not c.diverged), reverse=True)
        return ranked[0] - ranked[1] if len(ranked) > 1 else float("nan")

    @property
    def close_choice(self) -> bool:
        """Whether one seed chose the learning rate by a margin under 0.01 of validation accuracy, which another
        seed could overturn."""
        margin = self.choice_margin
        return self.seeds == 1 and margin == margin and margin < 0.01

    @property
    def choice_margin_images(self) -> int:
        """The choice margin in validation images (from the printed accuracies, as a reader would compute it)."""
        return round(self.choice_margin * self.n_val)

    @property
    def pooling_ahead(self) -> bool:
        """Whether, at the chosen learning rate, pooling is ahead in both validation and test accuracy."""
        pooled, strided = self.best_pool, self.no_pool_at_chosen_lr
        return all(pooled.mean(k) > strided.mean(k) for k in ("final_valid_acc", "test_acc"))

    def _summary(self, key: str) -> int:
        return int(self.configs[0].runs[0].summary[key])

    @property
    def n_train(self) -> int:
        return self._summary("n_train")

    @property
    def n_test(self) -> int:
        """The skeleton's class-ordered test subsample."""
        return self._summary("n_test")

    @property
    def n_test_full(self) -> int:
        return self._summary("n_test_full")

    def config_value(self, key: str):
        return self.configs[0].runs[0].config["config"][key]

    @property
    def protocol(self) -> dict:
        """The statement's protocol: epochs and training images (all of OCTMNIST's training split)."""
        return {"epochs": config.for_profile("full").epochs, "n_train": sum(octmnist.CLASS_COUNTS["train"]),
                "n_val": sum(octmnist.CLASS_COUNTS["val"])}

    @property
    def n_val(self) -> int:
        return self._summary("n_val")

    @property
    def follows_protocol(self) -> bool:
        """Whether these runs train the statement's epochs on its whole training split."""
        return (self.epochs, self.n_train) == (self.protocol["epochs"], self.protocol["n_train"])

    @property
    def collapsed(self) -> list[Q2Config]:
        return [c for c in self.configs if c.collapsed_to is not None]

    def confusion_table(self, config: Q2Config, label: str, text: str):
        """The configuration's confusion matrix on the whole test split, with each class's recall there and on
        the skeleton's subsample, and the subsample's class counts."""
        import pandas as pd

        full, sub = config.confusion("test_full"), config.confusion("test")
        rows = []
        for i, name in enumerate(CLASSES):
            rows.append({"True class": name, **{f"→ {p}": f"{int(full[i, j]):,}" for j, p in enumerate(CLASSES)},
                         "Recall (all)": f"{full[i, i] / full[i].sum():.3f}",
                         "Subsample images": f"{int(sub[i].sum()):,}",
                         "Recall (subsample)": f"{sub[i, i] / sub[i].sum():.3f}"})
        return table(pd.DataFrame(rows), label, text, config.runs)

    def table(self, label: str, text: str):
        import pandas as pd

        rows = []
        best = {nm: self.best(nm) for nm in (False, True)}
        for c in self.configs:
            mark = " (best)" if c is best[c.no_maxpool] else ""
            # A diverged run's accuracies are those of a NaN model predicting class 0: no result to show.
            status = f"diverged at epoch {c.diverged_epoch}" if c.diverged else ""
            rows.append({
                "Run": run_refs(c.runs),
                "Pooling": "max" if not c.no_maxpool else "none",
                "lr": f"**{c.lr:g}{mark}**" if mark else f"{c.lr:g}",
                "Train loss": c.printed("final_train_loss") if not c.diverged else status,
                "Val. acc.": (c.printed("final_valid_acc") + (" (collapsed)" if c.collapsed_to else "")
                              if not c.diverged else "–"),
                "Test acc.": c.printed("test_acc") if not c.diverged else "–",
                "Test acc. (all)": c.printed("test_acc_full") if not c.diverged else "–",
                "Params": f"{int(c.runs[0].summary['n_params']):,}",
            })
        return table(pd.DataFrame(rows), label, text, self.runs)

    def learning_rate_figure(self, label: str, text: str):
        """Q2.1's network (max pooling) at every learning rate of the sweep: the training loss (the skeleton's
        running mean, left) and the validation accuracy (right) against the epoch, the chosen learning rate drawn
        thick and the others thin."""
        import matplotlib.pyplot as plt
        import numpy as np

        fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.7), layout="constrained")
        chosen, colours = self.best_pool, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
        for c, colour in zip(self.variant(False), colours):
            thick = c is chosen
            for ax, column in zip(axes, ("train_loss_cumulative", "valid_acc")):
                curves = np.array([r.history[column].to_numpy(dtype=float) for r in c.runs])
                epochs = c.runs[0].history["epoch"].to_numpy()
                mean = np.nanmean(curves, axis=0)
                ax.plot(epochs, mean, "-", color=colour, marker="o", markersize=3.5 if thick else 2.5,
                        linewidth=2.4 if thick else 1.0, alpha=1 if thick else 0.75, zorder=3 if thick else 2,
                        label=f"lr {c.lr:g}" + (" (chosen)" if thick else "")
                        + (f", diverged at epoch {c.diverged_epoch}" if c.diverged else ""))
                if len(c.runs) > 1:
                    std = np.nanstd(curves, axis=0, ddof=1)
                    ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        for ax, ylabel in zip(axes, ("Training loss (running mean)", "Validation accuracy")):
            ax.set_xlabel("Epoch")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8, frameon=False)
        return figure(fig, label, text, [r for c in self.variant(False) for r in c.runs], width="100%")


LAYERS = ("input", "conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "fc3")


def _layer_shapes() -> dict:
    """{no_maxpool: {layer: (how it is set up, output shape, trainable parameters)}}, traced through the model code
    on one image; a variant without a layer has no entry for it."""
    import torch

    from hw2.common.params import get_number_trainable_params
    from hw2.q2.cnn import CNN

    out = {}
    for no_maxpool in (False, True):
        model, rows = CNN(0.7, no_maxpool=no_maxpool).eval(), {}
        x = torch.zeros(1, 1, 28, 28)
        rows["input"] = ("", tuple(x.shape[1:]), 0)
        for name in LAYERS[1:]:
            module = {"pool1": model.pool, "pool2": model.pool, "flatten": torch.nn.Flatten()}.get(name,
                                                                                              getattr(model, name, None))
            if module is None:
                continue
            x = module(x)
            if isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
                k, st, pad = (v if isinstance(v, int) else v[0] for v in (module.kernel_size, module.stride, module.padding))
                how = f"{k}×{k}, stride {st}, padding {pad}"
            else:
                how = ""
            rows[name] = (how, tuple(x.shape[1:]), get_number_trainable_params(module))
        out[no_maxpool] = rows
    return out


def layer_shapes() -> dict:
    return cached("q2-layer-shapes", ["hw2.q2.cnn"], _layer_shapes)


def layer_table(label: str, text: str, note: str):
    """Both variants layer by layer: kernel, stride and padding, output shape (channels×height×width), and the
    trainable parameters (the same in both). Traced through the model code, so its caption ends with `note`
    instead of runs."""
    import pandas as pd

    shapes, rows = layer_shapes(), []
    for name in LAYERS:
        cells = {}
        for no_maxpool, column in ((False, "With max pooling"), (True, "Without max pooling")):
            if name in shapes[no_maxpool]:
                how, out, _ = shapes[no_maxpool][name]
                cells[column] = (f"{how} → " if how else "image " if name == "input" else "") + "×".join(map(str, out))
            else:
                cells[column] = "–"
        n = next(shapes[nm][name][2] for nm in (False, True) if name in shapes[nm])
        rows.append({"Layer": name, **cells, "Parameters": f"{n:,}" if n else "0"})
    return table(pd.DataFrame(rows), label, text, note)


def _count_cnn_params() -> dict:
    """Trainable parameters of both variants, per layer, and the features entering fc1, from the model code."""
    from hw2.common.params import get_number_trainable_params
    from hw2.q2.cnn import CNN

    out = {}
    for no_maxpool in (False, True):
        model = CNN(0.7, no_maxpool=no_maxpool)
        layers = {name: get_number_trainable_params(m) for name, m in model.named_children()}
        out[no_maxpool] = {"total": get_number_trainable_params(model), "features": model.fc1.in_features,
                           "layers": {name: n for name, n in layers.items() if n}}
    return out


def q2_params() -> dict:
    """{no_maxpool: {"total", "features", "layers"}} counted on `hw2.q2.cnn` (cached per module version;
    importing torch alone takes seconds)."""
    return cached("q2-params", ["hw2.q2.cnn"], _count_cnn_params)


def conv_output(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output height (or width) of a convolution or pooling over n pixels: floor((n + 2p - k) / s) + 1."""
    return (n + 2 * padding - kernel) // stride + 1
