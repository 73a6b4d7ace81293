"""Run folders in the store's format, written through the store API, for the report's tests.

The values are generated (deterministic, plausible shapes), never shown as results: the tests render the
report from them and check that every number printed equals the one in the folders.
"""
from __future__ import annotations

import math
import random

from hw2.engine import registry, store
from hw2.q2 import config as q2_config

STANDIN = "standin-0123abcd"


def write_run(experiment: str, config: dict, profile: str, slug: str, history: list[dict], summary: dict,
              files: dict | None = None) -> store.LoadedRun:
    spec = store.RunSpec.of(registry.by_name(experiment), config, profile, STANDIN, slug)

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


Q2_SWEEP = q2_config.plan("smoke")  # the statement's sweep, as every profile plans it


def confusion(quality: float, counts: tuple[int, ...], rng: random.Random, collapsed: bool = False) -> list[list[int]]:
    """A 4x4 (true, predicted) count matrix whose rows hold `counts`: about `quality` of each class right (the
    last class best, the third worst, as in OCTMNIST), the rest spread over the other classes; or, `collapsed`,
    every image predicted as the last class."""
    matrix = []
    for c, n in enumerate(counts):
        if collapsed:
            matrix.append([0, 0, 0, n])
            continue
        right = min(n, round(n * min(0.99, quality + {0: 0.0, 1: -0.05, 2: -0.15, 3: 0.1}[c] + rng.uniform(0, 0.02))))
        row = [0] * len(counts)
        row[c] = right
        for _ in range(n - right):
            row[rng.choice([k for k in range(len(counts)) if k != c])] += 1
        matrix.append(row)
    return matrix


def q2_runs(profile: str = "smoke", seeds: tuple[int, ...] = (42,), epochs: int = 3,
            diverged: dict | None = None, collapsed: tuple = ()) -> list[store.LoadedRun]:
    """The statement's sweep in q2_cnn's format; `diverged` = {(lr, no_maxpool): epoch} marks runs whose loss
    became NaN at that epoch (their accuracies are those of a NaN model predicting class 0); `collapsed` lists
    the (lr, no_maxpool) whose network predicts one class for every image."""
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
                                "valid_acc": 0.45 if (lr, nm) in collapsed else
                                round(quality * (1 - 0.3 / epoch) + rng.uniform(0, 0.01), 6),
                                "lr": lr, "seconds": 1.0})
            config = {"lr": lr, "no_maxpool": nm, "epochs": epochs, "batch_size": 8, "dropout": 0.7,
                      "l2_decay": 0.0, "optimizer": "sgd", "seed": seed, "n_train": 400, "n_val": 200,
                      "eq_test_dist": False}
            summary = {"status": "complete", "diverged_epoch": None,
                       "final_train_loss": history[-1]["train_loss_cumulative"],
                       "final_train_loss_epoch": history[-1]["train_loss_epoch"],
                       "final_valid_acc": history[-1]["valid_acc"],
                       "best_valid_acc": max(h["valid_acc"] for h in history),
                       **{f"confusion_{split}": confusion(quality, counts, rng, (lr, nm) in collapsed)
                          for split, counts in (("valid", (60, 30, 20, 90)), ("test", (182, 55, 42, 250)),
                                                ("test_full", (250, 250, 250, 250)))},
                       "n_params": 224892, "n_train": 400, "n_val": 200, "n_test": 529, "n_test_full": 1000,
                       "epochs_completed": epochs, "device": "cpu", "seconds_per_epoch": 1.0}
            for split, n in (("test", 529), ("test_full", 1000)):  # the accuracies the matrices imply
                summary[f"{split.replace('test', 'test_acc')}"] = round(
                    sum(summary[f"confusion_{split}"][c][c] for c in range(4)) / n, 6)
            if diverged and (lr, nm) in diverged:
                summary.update({"status": "diverged", "diverged_epoch": diverged[(lr, nm)],
                                "final_train_loss": float("nan"), "final_valid_acc": 0.325, "test_acc": 0.3440,
                                "test_acc_full": 0.25, "confusion_valid": None, "confusion_test": None,
                                "confusion_test_full": None})
            slug = f"lr{lr:g}-{'nomaxpool' if nm else 'maxpool'}-s{seed}"
            runs.append(write_run("q2_cnn", config, profile, slug, history, summary))
    return runs



Q3_SIMILARITIES = ("jaccard_similarity", "cosine_similarity", "damerau-levenshtein_similarity")
Q3_TEXTS = ["printing in the only sense with which we are at present concerned",
            "differs from most if not from all the arts and crafts represented in the exhibition",
            "in being comparatively modern", "for although the chinese took impressions from wood blocks"]


def q3_runs(profile: str = "smoke", epochs: int = 3) -> list[store.LoadedRun]:
    """One run per decoder in q3_asr's format: history.csv, summary.json, test_predictions.csv,
    attention.npz (cross-attention of validation clips)."""
    import io

    import numpy as np

    runs = []
    for decoder, quality in (("rnn", 0.55), ("transformer", 0.6)):
        rng = random.Random(decoder)
        history = []
        for epoch in range(1, epochs + 1):
            sims = {f"val_{n}": round(quality * w * epoch / epochs, 6)
                    for n, w in zip(Q3_SIMILARITIES, (1.0, 1.15, 0.8))}
            history.append({"epoch": epoch, "steps": 3 * epoch, "lr": 1e-3, "train_loss": round(3.0 / epoch, 6),
                            "val_loss": round(3.1 / epoch + rng.uniform(0, 0.05), 6), **sims,
                            "val_output": "looping" if epoch == 1 else "varied", "val_looping_share": 0.0,
                            "val_most_common_share": 0.5, "seconds": 1.0, "train_seconds": 0.8})
        test = {"test_loss": round(1.2 - quality / 10 + rng.uniform(0, 0.01), 6),
                **{f"test_{n}": round(quality * w + rng.uniform(0, 0.01), 6)
                   for n, w in zip(Q3_SIMILARITIES, (1.0, 1.15, 0.8))}}
        predictions = "index,target,prediction," + ",".join(Q3_SIMILARITIES) + ",seen_in_train\n" + "".join(
            f"{i},<{t}>,<{t[: len(t) // 2]} the the>,0.5,0.6,0.4,{i % 2}\n" for i, t in enumerate(Q3_TEXTS))
        weights = np.random.default_rng(0).random((2, 2, 98, 64)).astype(np.float16)
        buf = io.BytesIO()
        np.savez_compressed(buf, weights=weights, tokens=np.zeros((2, 98), dtype=np.int64),
                            generated=np.zeros((2, 99), dtype=np.int64), texts=np.array(Q3_TEXTS[:2]),
                            audio_frames=np.array([120, 100]), encoder_frames=np.array([60, 50]))
        config = {"decoder": decoder, "corpus": "short", "n_encoder_layers": 2, "epochs": epochs, "lr": 1e-3,
                  "seed": 42, "n_clips": 24, "audio_frames": 352, "batch_size": 8, "label_smoothing": 0.1}
        summary = {"decoder": decoder, "n_params": 1471235 if decoder == "rnn" else 1329835, "epochs": epochs,
                   "epochs_run": epochs, "diverged_epoch": None, "device": "cpu", "n_train": 18,
                   "n_validation": 2, "n_test": 4, "corpus": "short", "batch_size": 8, "steps_per_epoch": 3,
                   "protocol_deviations": {"corpus": {"value": "short", "protocol": "ljspeech"},
                                           "batch_size": {"value": 8, "protocol": 64}},
                   "cropped_clips": {"train": 0, "validation": 0, "test": 0},
                   "truncated_transcripts": {"train": 0, "validation": 0, "test": 0},
                   "test_seen_in_train": 2, "test_unseen": 2, "test_dl_seen": 0.5, "test_dl_unseen": 0.3,
                   "train_seconds": 2.4, "test_degenerate": {"kind": "looping", "distinct": 4, "most_common": "x",
                                                             "most_common_share": 0.25, "looping_share": 1.0},
                   "chance": {n: c for n, c in zip(Q3_SIMILARITIES, (0.6, 0.75, 0.2))}, **test}
        spec = store.RunSpec.of(registry.by_name("q3_asr"), config, profile, STANDIN, f"{decoder}")

        examples = {"targets": Q3_TEXTS[:2], "epochs": [{"epoch": e, "predictions": [f"<{decoder} {e}>"] * 2}
                                                        for e in range(1, epochs + 1)]}

        def train(run, history=history, predictions=predictions, npz=buf.getvalue(), summary=summary,
                  examples=examples):
            for row in history:
                run.log_epoch(row)
            run.write_json("val_examples.json", examples)
            run.write_text("test_predictions.csv", predictions)
            store.atomic_write_bytes(run.dir / "attention.npz", npz)
            return summary

        runs.append(store.execute(spec, train))
    return runs


def q3_test_metrics(run) -> dict:
    """The test loss and the three similarities of a Q3 run, as the report prints them."""
    from hw2.q3.metrics import SIMILARITY_NAMES

    return {k: run.summary[k] for k in ("test_loss", *(f"test_{name}" for name in SIMILARITY_NAMES))}
