"""Run folders in the store's format, written through the store API, for the report's tests.

The values are generated (deterministic, plausible shapes), never shown as results: the tests render the
report from them and check that every number printed equals the one in the folders.
"""
from __future__ import annotations

import math
import random

from hw2 import store

STANDIN = "standin-0123abcd"


def write_run(experiment: str, config: dict, profile: str, slug: str, history: list[dict], summary: dict,
              files: dict | None = None) -> store.LoadedRun:
    spec = store.RunSpec.create(experiment, config, profile, STANDIN, slug)

    def train(run):
        for row in history:
            run.log_epoch(row)
        for name, obj in (files or {}).items():
            if isinstance(obj, str):
                run.write_text(name, obj)
            else:
                run.write_json(name, obj)
        return summary

    return store.execute(spec, train)


Q2_SWEEP = [{"lr": lr, "no_maxpool": nm} for nm in (False, True) for lr in (0.1, 0.01, 0.001)]


def q2_runs(profile: str = "smoke", seeds: tuple[int, ...] = (42,), epochs: int = 3) -> list[store.LoadedRun]:
    runs = []
    for params in Q2_SWEEP:
        for seed in seeds:
            lr, nm = params["lr"], params["no_maxpool"]
            rng = random.Random(f"{lr}-{nm}-{seed}")
            quality = {0.1: 0.70, 0.01: 0.85, 0.001: 0.75}[lr] - (0.03 if nm else 0.0)
            history, cumulative = [], []
            for epoch in range(1, epochs + 1):
                epoch_loss = 1.2 * math.exp(-epoch * quality) + rng.uniform(0, 0.02)
                cumulative.append(epoch_loss)
                history.append({"epoch": epoch, "train_loss_cumulative": round(sum(cumulative) / epoch, 6),
                                "train_loss_epoch": round(epoch_loss, 6),
                                "valid_acc": round(quality * (1 - 0.3 / epoch) + rng.uniform(0, 0.01), 6),
                                "lr": lr, "seconds": 1.0})
            config = {"lr": lr, "no_maxpool": nm, "epochs": epochs, "batch_size": 8, "dropout": 0.7,
                      "l2_decay": 0.0, "optimizer": "sgd", "seed": seed, "n_train": 400, "n_val": 200,
                      "eq_test_dist": False}
            summary = {"status": "complete", "diverged_epoch": None,
                       "final_train_loss": history[-1]["train_loss_cumulative"],
                       "final_train_loss_epoch": history[-1]["train_loss_epoch"],
                       "final_valid_acc": history[-1]["valid_acc"],
                       "best_valid_acc": max(h["valid_acc"] for h in history),
                       "test_acc": round(quality - rng.uniform(0, 0.02), 6),
                       "test_acc_full": round(quality - rng.uniform(0.02, 0.04), 6),
                       "n_params": 224892, "n_train": 400, "n_val": 200, "n_test": 529,
                       "epochs_completed": epochs, "device": "cpu", "seconds_per_epoch": 1.0}
            slug = f"lr{lr:g}-{'nomaxpool' if nm else 'maxpool'}-s{seed}"
            runs.append(write_run("q2_cnn", config, profile, slug, history, summary))
    return runs


def q3_runs(profile: str = "smoke") -> list[store.LoadedRun]:
    return []


def q3_test_metrics(run) -> dict:
    return {}
