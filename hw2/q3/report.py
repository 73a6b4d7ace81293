"""Question 3's report helpers: both decoders' runs as numbers, booleans, tables and figures for
`report/_q3.qmd`. Every sentence, caption included, is written in the .qmd; nothing here trains.
"""
from __future__ import annotations

import dataclasses
import re
import statistics
from dataclasses import dataclass
from functools import cached_property

from hw2.engine import registry
from hw2.engine.store import LoadedRun, RunError
from hw2.q3 import config
from hw2.q3.constants import DECODERS, N_FRAMES
from hw2.q3.metrics import SIMILARITIES
from hw2.reporting.format import fmt, mean_std, shown
from hw2.reporting.markdown import figure, table
from hw2.reporting.runs import pool_each, require_runs

EXPERIMENT = registry.by_question("q3").name
DECODER_NAMES = dict(zip(DECODERS, ("LSTM decoder", "Transformer decoder")))  # rnn, transformer
SIMILARITY_LABELS = dict(zip(SIMILARITIES, ("Jaccard", "Cosine", "Damerau–Levenshtein")))


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def listening_threshold(chance_dl: float) -> float:
    """The validation Damerau–Levenshtein similarity past which a decoder counts as listening: halfway
    from the chance baseline (fluent text that ignores the audio) to a perfect transcript."""
    return (chance_dl + 1) / 2


@dataclass
class Q3Decoder:
    """The runs of one decoder (one per seed)."""

    name: str
    runs: list[LoadedRun]

    @property
    def label(self) -> str:
        return DECODER_NAMES.get(self.name, self.name)

    @property
    def run(self) -> LoadedRun:
        return self.runs[0]

    def summary(self, key: str):
        return self.run.summary[key]

    def test_values(self, metric: str) -> list[float]:
        key = "test_loss" if metric == "loss" else f"test_{SIMILARITIES[metric]}"
        return [_number(r.summary.get(key)) for r in self.runs]

    def test(self, metric: str) -> float:
        values = [v for v in self.test_values(metric) if v == v]
        return statistics.mean(values) if values else float("nan")

    def printed(self, metric: str) -> str:
        """A test value as the test table prints it (mean ± std over seeds): the table and the sentences use
        this one string."""
        return mean_std(self.test_values(metric))

    def shown(self, metric: str) -> float:
        """The (mean) test value as printed, as a number: what a sentence compares and subtracts."""
        return shown(self.test(metric))

    def last_val(self, metric: str) -> float:
        column = "val_loss" if metric == "loss" else f"val_{SIMILARITIES[metric]}"
        return float(self.run.history[column].iloc[-1])

    @property
    def n_params(self) -> int:
        return int(self.summary("n_params"))

    @property
    def n_train(self) -> int:
        return int(self.summary("n_train"))

    @property
    def n_val(self) -> int:
        return int(self.summary("n_validation"))

    @property
    def n_test(self) -> int:
        return int(self.summary("n_test"))

    @property
    def epochs(self) -> int:
        return int(self.run.config["config"]["epochs"])

    @property
    def batch_size(self) -> int:
        return int(self.run.config["config"]["batch_size"])

    @property
    def warmup_epochs(self) -> int:
        """The epochs before the learning rate first reached its peak, as the run recorded them: the skeleton's
        int(0.15 E) warm-up (none for 6 epochs or fewer)."""
        rates = self.run.history["lr"].tolist()
        return rates.index(max(rates))

    @property
    def encoder_layers(self) -> int:
        return int(self.run.config["config"]["n_encoder_layers"])

    @property
    def steps_per_epoch(self) -> int:
        return int(self.summary("steps_per_epoch"))

    @property
    def steps(self) -> int:
        return self.steps_per_epoch * len(self.run.history)

    @property
    def train_minutes(self) -> float:
        """The minutes of the training steps alone (the run's wall time, in the provenance table, adds the
        features, validation and test)."""
        return float(self.summary("train_seconds")) / 60

    @property
    def train_minutes_printed(self) -> str:
        return f"{self.train_minutes:.1f}"

    @property
    def seconds_per_step(self) -> float:
        return float(self.summary("train_seconds")) / self.steps

    # --- what the greedy predictions look like

    @property
    def degenerate(self) -> str | None:
        """"constant" or "looping" when the test predictions are degenerate (`metrics.degenerate_output`)."""
        return (self.summary("test_degenerate") or {}).get("kind")

    @property
    def looping_share(self) -> float:
        return float(self.summary("test_degenerate")["looping_share"])

    @property
    def distinct_predictions(self) -> int:
        return int(self.summary("test_degenerate")["distinct"])

    @property
    def dl_seen(self) -> float:
        return _number(self.summary("test_dl_seen"))

    @property
    def dl_unseen(self) -> float:
        return _number(self.summary("test_dl_unseen"))

    def listening_epoch(self, threshold: float) -> int | None:
        """The first epoch whose validation Damerau–Levenshtein similarity reaches `threshold`."""
        history = self.run.history
        reached = history[history[f"val_{SIMILARITIES['damerau_levenshtein']}"] >= threshold]
        return int(reached["epoch"].iloc[0]) if len(reached) else None

    def listening_steps(self, threshold: float) -> int | None:
        epoch = self.listening_epoch(threshold)
        return None if epoch is None else epoch * self.steps_per_epoch

    @cached_property
    def predictions(self):
        import pandas as pd

        return pd.read_csv(self.run.file("test_predictions.csv"), keep_default_na=False)

    @cached_property
    def attention(self) -> dict:
        import numpy as np

        with np.load(self.run.file("attention.npz")) as z:
            return {k: z[k] for k in z.files}

    def attention_map(self, clip: int = 0):
        """(tokens, frames) cross-attention of a validation clip, mean over heads, cut to its transcript and
        its encoder frames."""
        import numpy as np

        z = self.attention
        weights = z["weights"][clip].astype(np.float32).mean(axis=0)
        n_tokens = min(len(str(z["texts"][clip])) + 2, weights.shape[0])  # "<", transcript, ">"
        return weights[:n_tokens, : int(z["encoder_frames"][clip])]

    @property
    def backward_share(self) -> float:
        """Over the saved validation clips, the share of consecutive output tokens whose most-attended encoder
        frame lies before the previous token's: 0 for a strict left-to-right reading, about one half for
        attention with no order."""
        import numpy as np

        moves = []
        for clip in range(len(self.attention["texts"])):
            peaks = self.attention_map(clip).argmax(axis=1)
            moves.extend(np.diff(peaks) < 0)
        return float(np.mean(moves))

    @property
    def attention_tokens(self) -> int:
        """Output tokens over the saved validation clips (the moves counted by `backward_share` + clips)."""
        return sum(self.attention_map(clip).shape[0] for clip in range(len(self.attention["texts"])))

    @property
    def n_attention_clips(self) -> int:
        return len(self.attention["texts"])

    @property
    def exact_share(self) -> float:
        """The share of test clips whose greedy prediction is exactly the target."""
        return float((self.predictions["prediction"] == self.predictions["target"]).mean())

    @property
    def wrong_clips(self) -> int:
        """Test clips whose greedy prediction is not exactly the target."""
        return int((self.predictions["prediction"] != self.predictions["target"]).sum())

    @property
    def distinct_targets(self) -> int:
        return int(self.predictions["target"].nunique())

    def wrong(self):
        """The test clips whose greedy prediction is not exactly the target (index, target, prediction, ...)."""
        p = self.predictions
        return p[p["prediction"] != p["target"]]

    def error_operations(self) -> dict[str, int]:
        """Over the test clips, the character edits (Levenshtein: replace, insert, delete) that turn each
        prediction into its target, counted by kind."""
        from rapidfuzz.distance import Levenshtein

        counts = {"replace": 0, "insert": 0, "delete": 0}
        for target, prediction in zip(self.predictions["target"], self.predictions["prediction"]):
            for op in Levenshtein.editops(prediction, target):
                counts[op.tag] += 1
        return counts

    # --- the phases of training, from the per-epoch validation output

    def degenerate_epochs(self) -> list[int]:
        """Epochs after which the validation predictions were degenerate (constant or looping)."""
        history = self.run.history
        return [int(e) for e, kind in zip(history["epoch"], history["val_output"]) if kind in ("constant", "looping")]

    def deaf_epochs(self, threshold: float) -> list[int]:
        """Epochs whose validation output was varied but below the listening threshold: fluent text that
        does not follow the audio."""
        history = self.run.history
        dl = history[f"val_{SIMILARITIES['damerau_levenshtein']}"]
        return [int(e) for e, kind, v in zip(history["epoch"], history["val_output"], dl)
                if kind == "varied" and v < threshold]

    @cached_property
    def examples(self) -> dict:
        import json

        return json.loads(self.run.file("val_examples.json").read_text())


class Q3Results:
    """Both decoders' runs of a profile (the notebook's cells (a) and (b))."""

    def __init__(self, profile: str):
        self.profile = profile
        self.runs = require_runs(EXPERIMENT, profile)
        by_decoder: dict[str, list[LoadedRun]] = {}
        for run in self.runs:
            by_decoder.setdefault(run.config["config"]["decoder"], []).append(run)
        missing = [d for d in DECODER_NAMES if d not in by_decoder]
        if missing:
            raise RunError(f"Q3 runs missing for profile {profile!r} (decoder {', '.join(missing)}): "
                           f"run `PROFILE={profile} make runs-q3`")
        # Only runs that differ in the seed alone are averaged; the others are left out, and the report names them.
        shown, self.left_out = pool_each(by_decoder, lambda d: dataclasses.asdict(config.for_profile(profile, decoder=d)))
        self.decoders = {d: Q3Decoder(d, shown[d]) for d in DECODER_NAMES}
        self.runs = [r for d in self.decoders.values() for r in d.runs]
        self.rnn, self.transformer = self.decoders["rnn"], self.decoders["transformer"]

    def decoder(self, name: str) -> Q3Decoder:
        return self.decoders[name]

    # --- what was run

    @property
    def deviations(self) -> dict[str, dict]:
        """The protocol fields these runs changed: {field: {"value", "protocol"}} (the same for both decoders)."""
        return self.rnn.summary("protocol_deviations")

    @property
    def follows_protocol(self) -> bool:
        return not self.deviations

    @property
    def frames_ratio(self) -> float:
        """How many times more frames per clip the protocol pads to than these runs."""
        return N_FRAMES / self.frames

    @property
    def short_corpus(self) -> bool:
        return self.rnn.summary("corpus") == "short"

    @property
    def frames(self) -> int:
        return int(self.rnn.run.config["config"]["audio_frames"])

    def cropped(self, split: str | None = None) -> int:
        counts = self.rnn.summary("cropped_clips")
        return int(counts[split] if split else sum(counts.values()))

    def truncated(self, split: str | None = None) -> int:
        counts = self.rnn.summary("truncated_transcripts")
        return int(counts[split] if split else sum(counts.values()))

    @property
    def test_seen(self) -> int:
        return int(self.rnn.summary("test_seen_in_train"))

    @property
    def test_unseen(self) -> int:
        return int(self.rnn.summary("test_unseen"))

    # --- comparisons

    def chance(self, metric: str) -> float:
        """The similarity of unrelated test transcripts (each scored against the next), a chance baseline."""
        return float(self.rnn.summary("chance")[SIMILARITIES[metric]])

    def chance_printed(self, metric: str) -> str:
        return fmt(self.chance(metric))

    @property
    def threshold(self) -> float:
        return listening_threshold(self.chance("damerau_levenshtein"))

    def faster_learner(self) -> str | None:
        """The decoder ("rnn" or "transformer") that reached the listening threshold after fewer optimizer
        steps; None when both reached it in the same epoch or neither reached it."""
        steps = {name: d.listening_steps(self.threshold) for name, d in self.decoders.items()}
        reached = {name: s for name, s in steps.items() if s is not None}
        if not reached or (len(reached) == len(steps) and len(set(reached.values())) == 1):
            return None
        return min(reached, key=reached.get)

    def gap(self, metric: str) -> float:
        """|Transformer - LSTM| on the test set, from the printed values."""
        return abs(self.transformer.shown(metric) - self.rnn.shown(metric))

    @property
    def loss_floor(self) -> float:
        """The lowest possible loss with label smoothing: the entropy of the smoothed target distribution."""
        import math

        from hw2.q3.text import N_VOCAB

        eps = float(self.rnn.run.config["config"]["label_smoothing"])
        true, other = 1 - eps + eps / N_VOCAB, eps / N_VOCAB
        return -(true * math.log(true) + (N_VOCAB - 1) * other * math.log(other)) if eps else 0.0

    def excess_loss(self, decoder: Q3Decoder) -> float:
        """A decoder's test loss above the label-smoothing floor."""
        return decoder.test("loss") - self.loss_floor

    @property
    def padding_share(self) -> float:
        """The share of the 98 predicted positions of a test clip that are padding "@", averaged over clips."""
        characters = self.rnn.predictions["target"].str.len() - 1  # the transcript and ">", without "<"
        return float((1 - characters / 98).mean())

    def widest_gap_epoch(self) -> dict:
        """The epoch where the validation Damerau–Levenshtein similarities of the decoders differed most, with
        both decoders' validation loss and similarity then."""
        dl = f"val_{SIMILARITIES['damerau_levenshtein']}"
        a, b = self.rnn.run.history, self.transformer.run.history
        n = min(len(a), len(b))
        epoch = max(range(n), key=lambda i: abs(a[dl].iloc[i] - b[dl].iloc[i]))
        return {"epoch": int(a["epoch"].iloc[epoch]), "rnn_dl": float(a[dl].iloc[epoch]),
                "transformer_dl": float(b[dl].iloc[epoch]), "rnn_loss": float(a["val_loss"].iloc[epoch]),
                "transformer_loss": float(b["val_loss"].iloc[epoch])}

    def relative_gap(self, metric: str) -> float:
        """The similarity gap as a share of the room above chance, 1 - chance."""
        return self.gap(metric) / (1 - shown(self.chance(metric)))

    def most_separating(self) -> str | None:
        """The similarity whose gap between the decoders is largest both in raw terms and relative to its room
        above chance; None when the two criteria disagree (the ranking then depends on the normalisation)."""
        raw, relative = max(SIMILARITIES, key=self.gap), max(SIMILARITIES, key=self.relative_gap)
        return raw if raw == relative else None

    def lowest_similarity(self, decoder: Q3Decoder) -> str:
        return self.ordering(decoder)[-1]

    @property
    def same_lowest(self) -> str | None:
        """The similarity that is lowest for both decoders, if it is the same one."""
        lowest = {self.lowest_similarity(d) for d in self.decoders.values()}
        return lowest.pop() if len(lowest) == 1 else None

    @property
    def fewer_wrong(self) -> tuple[Q3Decoder, float] | None:
        """The decoder with fewer wrong test transcripts and how many times fewer (the other's count over its own,
        counted as at least one); None when both have as many."""
        if self.rnn.wrong_clips == self.transformer.wrong_clips:
            return None
        best, other = sorted((self.rnn, self.transformer), key=lambda d: d.wrong_clips)
        return best, other.wrong_clips / max(best.wrong_clips, 1)

    @property
    def same_output_share(self) -> float:
        """The share of test clips on which both decoders predict exactly the same transcript."""
        a, b = self.rnn.predictions["prediction"], self.transformer.predictions["prediction"]
        return float((a == b).mean())

    def ordering(self, decoder: Q3Decoder) -> list[str]:
        """The similarities from highest to lowest printed test value."""
        return sorted(SIMILARITIES, key=lambda m: -decoder.shown(m))

    def lowest_two(self, decoder: Q3Decoder) -> tuple[str, str, float]:
        """The two lowest similarities of a decoder and how far apart their printed test values are."""
        order = self.ordering(decoder)
        low, next_low = order[-1], order[-2]
        return low, next_low, decoder.shown(next_low) - decoder.shown(low)

    # --- where the decoders' test errors are

    @cached_property
    def vocabulary(self) -> set[str]:
        """The words of all test transcripts (the corpus's vocabulary as far as the runs record it)."""
        return {w for t in self.rnn.predictions["target"] for w in _words(t)}

    @cached_property
    def error_study(self) -> dict[str, dict]:
        """Per decoder, what its wrong test transcripts look like, from its saved predictions: how many; how many
        hold a word found in no test transcript (a misspelling) and how many only real words in a wrong place
        or the wrong word; the character edits by kind; where the first wrong character falls (its share of the
        transcript's length, median); the mean length of the wrong transcripts against all; the error rate on
        the longer and the shorter half of the transcripts (split at the median length)."""
        import numpy as np

        out = {}
        lengths = self.rnn.predictions["target"].str.len() - 2  # without "<" and ">"
        longer = lengths > lengths.median()
        for name, d in self.decoders.items():
            wrong = d.wrong()
            misspelt = sum(any(w not in self.vocabulary for w in _words(p)) for p in wrong["prediction"])
            firsts = [_first_difference(t, p) for t, p in zip(wrong["target"], wrong["prediction"])]
            is_wrong = d.predictions["prediction"] != d.predictions["target"]
            out[name] = {"wrong": len(wrong), "misspelt": int(misspelt), "real_words": len(wrong) - int(misspelt),
                         **d.error_operations(),
                         "first_error": float(np.median(firsts)) if firsts else float("nan"),
                         "wrong_length": float((wrong["target"].str.len() - 2).mean()) if len(wrong) else float("nan"),
                         "length": float(lengths.mean()),
                         "rate_longer": float(is_wrong[longer].mean()), "rate_shorter": float(is_wrong[~longer].mean())}
        return out

    def error_example(self, decoder: str, misspelt: bool) -> dict | None:
        """The first wrong test transcript of a decoder that holds a misspelt word (or, `misspelt` false, only
        real words): its target and prediction, without "<" and ">"."""
        for target, prediction in zip(self.decoders[decoder].wrong()["target"], self.decoders[decoder].wrong()["prediction"]):
            if any(w not in self.vocabulary for w in _words(prediction)) == misspelt:
                return {"target": str(target).strip("<>"), "prediction": str(prediction).strip("<>")}
        return None

    @property
    def both_wrong(self) -> int:
        """Test clips that both decoders get wrong."""
        a, b = self.rnn.predictions, self.transformer.predictions
        return int(((a["prediction"] != a["target"]) & (b["prediction"] != b["target"])).sum())

    @property
    def median_length(self) -> float:
        lengths = self.rnn.predictions["target"].str.len() - 2
        return float(lengths.median())

    def error_table(self, label: str, text: str):
        """`error_study` side by side: one row per measure, one column per decoder."""
        import pandas as pd

        study = self.error_study
        rows = [("Wrong transcripts", "wrong", "{:,}"),
                ("… holding a word of no test transcript", "misspelt", "{:,}"),
                ("… of real words only", "real_words", "{:,}"),
                ("Character substitutions", "replace", "{:,}"),
                ("Character insertions", "insert", "{:,}"),
                ("Character deletions", "delete", "{:,}"),
                ("First wrong character (median share of the transcript)", "first_error", "{:.0%}"),
                ("Wrong transcripts, mean length (characters)", "wrong_length", "{:.1f}"),
                ("All test transcripts, mean length (characters)", "length", "{:.1f}"),
                (f"Error rate, transcripts over {self.median_length:g} characters", "rate_longer", "{:.1%}"),
                (f"Error rate, transcripts up to {self.median_length:g} characters", "rate_shorter", "{:.1%}")]
        frame = pd.DataFrame([{"": name, **{DECODER_NAMES[d].replace(" decoder", ""): form.format(study[d][key])
                                             for d in self.decoders}} for name, key, form in rows])
        return table(frame, label, text, self.runs)


    # --- tables and figures

    def test_table(self, label: str, text: str):
        import pandas as pd

        decoders = list(self.decoders.values())
        rows = [("Trainable parameters", [f"{d.n_params:,}" for d in decoders], ""),
                ("Training steps (min)", [d.train_minutes_printed for d in decoders], ""),
                ("Validation loss, last epoch", [fmt(d.last_val("loss")) for d in decoders], ""),
                ("Validation Damerau–Levenshtein, last epoch", [fmt(d.last_val("damerau_levenshtein")) for d in decoders],
                 ""),
                ("Test loss", [d.printed("loss") for d in decoders], ""),
                *((f"Test {SIMILARITY_LABELS[m]}", [d.printed(m) for d in decoders], self.chance_printed(m))
                  for m in SIMILARITIES)]
        frame = pd.DataFrame([{"": name, **{d.label.replace(" decoder", ""): v for d, v in zip(decoders, values)},
                               "Chance": chance} for name, values, chance in rows])
        return table(frame, label, text, self.runs)

    def evolution_table(self, label: str, text: str, clip: int = 0, first: int = 5, width: int = 40):
        """One validation clip's greedy prediction by each decoder after the first epochs and the last."""
        import pandas as pd

        by_epoch = {d: {e["epoch"]: e["predictions"][clip] for e in dec.examples["epochs"]}
                    for d, dec in self.decoders.items()}
        epochs = sorted(set.intersection(*(set(v) for v in by_epoch.values())))
        shown = epochs[:first] + ([epochs[-1]] if len(epochs) > first else [])
        steps = self.rnn.steps_per_epoch
        rows = [{"Epoch (steps)": "target", **{DECODER_NAMES[d].replace(" decoder", ""):
                 _markdown_text(_clip(self.rnn.examples["targets"][clip].lower(), width)) for d in self.decoders}}]
        rows += [{"Epoch (steps)": f"{e} ({e * steps:,})",
                  **{DECODER_NAMES[d].replace(" decoder", ""): _markdown_text(_clip(_runs(by_epoch[d][e]), width))
                     for d in self.decoders}} for e in shown]
        return table(pd.DataFrame(rows), label, text, [d.run for d in self.decoders.values()])

    def examples_table(self, label: str, text: str, n: int = 5, width: int = 48):
        import pandas as pd

        preds = {d: dec.predictions for d, dec in self.decoders.items()}
        rows = []
        for i in range(min(n, *(len(p) for p in preds.values()))):
            row = {"Target": _markdown_text(_clip(preds["rnn"]["target"][i], width))}
            for d, p in preds.items():
                row[DECODER_NAMES[d].replace(" decoder", "")] = _markdown_text(_clip(_runs(p["prediction"][i]), width))
            rows.append(row)
        return table(pd.DataFrame(rows), label, text, [d.run for d in self.decoders.values()])

    def _panels(self, columns: dict[str, str], ylabel: str, label: str, text: str, threshold: bool = False,
                log: bool = False):
        import matplotlib.pyplot as plt
        import numpy as np

        fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.9), sharey=True, layout="constrained")
        for ax, dec in zip(axes, self.decoders.values()):
            steps = dec.run.history["steps"].to_numpy()
            for column, name in columns.items():
                curves = np.array([r.history[column].to_numpy(dtype=float) for r in dec.runs])
                mean = np.nanmean(curves, axis=0)
                ax.plot(steps, mean, marker="o", markersize=2.5, label=name)
                if len(dec.runs) > 1:
                    std = np.nanstd(curves, axis=0, ddof=1)
                    ax.fill_between(steps, mean - std, mean + std, alpha=0.2, linewidth=0)
            if threshold:
                ax.axhline(self.threshold, color="grey", linestyle="--", linewidth=0.8, label="listening threshold")
                ax.axhline(self.chance("damerau_levenshtein"), color="grey", linestyle=":", linewidth=0.8,
                           label="chance (DL)")
            ax.set_title(dec.label, fontsize=9)
            ax.set_xlabel("Optimizer steps")
            ax.set_ylabel(ylabel if ax is axes[0] else " ")
            if log:
                from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

                ax.set_yscale("log")
                ax.axhline(self.loss_floor, color="grey", linestyle=":", linewidth=0.8, label="floor (label smoothing)")
                ax.yaxis.set_major_locator(FixedLocator([0.7, 1.0, 1.5, 2.0, 3.0]))
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
            top = ax.secondary_xaxis("top", functions=(lambda x, n=dec.steps_per_epoch: x / n,
                                                       lambda e, n=dec.steps_per_epoch: e * n))
            top.set_xlabel("Epoch", fontsize=8)
            top.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8, frameon=False)
        return figure(fig, label, text, self.runs, width="100%")

    def loss_figure(self, label: str, text: str):
        return self._panels({"train_loss": "training", "val_loss": "validation"}, "Loss (log scale)", label, text,
                            log=True)

    def similarity_figure(self, label: str, text: str):
        return self._panels({f"val_{key}": SIMILARITY_LABELS[short] for short, key in SIMILARITIES.items()},
                            "Validation similarity", label, text, threshold=True)

    def alignment_figure(self, label: str, text: str, clip: int = 0):
        """Cross-attention (mean over heads) of one validation clip for each decoder, with a colour bar."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8), layout="constrained")
        for ax, dec in zip(axes, self.decoders.values()):
            image = ax.imshow(dec.attention_map(clip), aspect="auto", origin="lower", cmap="viridis",
                              interpolation="nearest", vmin=0)
            ax.set_title(dec.label, fontsize=9)
            ax.set_xlabel("Encoder frame")
            ax.set_ylabel("Output token" if ax is axes[0] else " ")
            fig.colorbar(image, ax=ax, shrink=0.9).set_label("Attention weight", fontsize=8)
        return figure(fig, label, text, [d.run for d in self.decoders.values()], width="100%")

    @property
    def alignment_text(self) -> str:
        return str(self.rnn.attention["texts"][0]).lower()  # as the recogniser sees it


def decoder_access_figure(label: str, text: str, note: str, transcript: str = "<tina saw"):
    """What each decoder reads when it writes token t: the Transformer's causal mask (every earlier token,
    directly) beside the LSTM's recurrence (token t and the state carried from t - 1). An illustration, so its
    caption ends with `note` instead of runs."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    n = len(transcript)
    causal = np.tril(np.ones((n, n)))  # 1: read directly
    recurrent = np.tril(np.full((n, n), 0.5))  # 0.5: reaches step t only through the state h_{t-1}, c_{t-1}
    np.fill_diagonal(recurrent, 1)
    cmap = ListedColormap(["white", "#9ecae1", "#08519c"])
    ticks = [repr(c)[1:-1] if c != " " else "␣" for c in transcript]
    fig, axes = plt.subplots(1, 2, figsize=(6.0, 2.9), layout="constrained")
    for ax, grid, title in ((axes[0], recurrent, "LSTM: token t and the state from t − 1"),
                            (axes[1], causal, "Transformer: tokens 1..t, causal mask")):
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks(range(n), ticks, fontsize=8)
        ax.set_yticks(range(n), ticks, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("Token read")
        ax.set_ylabel("Input token of the position")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(2)), plt.Rectangle((0, 0), 1, 1, color=cmap(1)),
               plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="grey")]
    fig.legend(handles, ["read directly", "only through the recurrent state", "hidden (future)"],
               loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    return figure(fig, label, text, note, width="85%")


def _scores(target: str, prediction: str) -> dict:
    from hw2.q3 import text as tokens
    from hw2.q3.metrics import string_similarities

    scores = string_similarities(tokens.encode_batch([target]), tokens.encode_batch([prediction]))
    return {m: scores[SIMILARITIES[m]][0] for m in SIMILARITIES}


def transposition_example(text: str = "tina saw five carpets.") -> dict:
    """A transcript, the same with two adjacent letters swapped, and the three similarities of the pair as the
    skeleton computes them (token ids with "<" and ">")."""
    word = next(w for w in text.split() if len(w) >= 4)
    swapped_word = word[0] + word[2] + word[1] + word[3:]
    swapped = text.replace(word, swapped_word, 1)
    return {"target": text, "prediction": swapped, "word": word, "swapped_word": swapped_word,
            "length": len(text) + 2, **_scores(text, swapped)}


def substitution_example(text: str = "tina saw five carpets.", old: str = "v", new: str = "f") -> dict:
    """The same transcript with one letter replaced by another: one error, counted twice by Jaccard."""
    changed = text.replace(old, new, 1)
    return {"target": text, "prediction": changed, "old": old, "new": new, "length": len(text) + 2,
            **_scores(text, changed)}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", str(text).lower())


def _first_difference(target: str, prediction: str) -> float:
    """Where the first character of `prediction` that differs from `target` falls, as a share of the target's
    length (without "<" and ">"); 1 when one is a prefix of the other."""
    target, prediction = str(target).strip("<>"), str(prediction).strip("<>")
    first = next((i for i, (a, b) in enumerate(zip(target, prediction)) if a != b), min(len(target), len(prediction)))
    return first / max(len(target), 1)


def deletion_example(text: str = "tina saw five carpets.", drop: str = "v") -> dict:
    """The same transcript with one letter left out: one element fewer in the union for Jaccard, one edit for
    Damerau–Levenshtein."""
    changed = text.replace(drop, "", 1)
    return {"target": text, "prediction": changed, "dropped": drop, **_scores(text, changed)}


def _runs(text: str, longest: int = 5) -> str:
    """A prediction with every run of more than `longest` equal characters written as "c×N" (a degenerate
    output of 97 "@" would not fit a table cell)."""
    return re.sub(r"(.)\1{%d,}" % longest, lambda m: f"{m.group(1)}×{len(m.group(0))}", text)


def _clip(text: str, width: int) -> str:
    text = str(text).strip("<>")
    return text if len(text) <= width else text[:width - 1] + "…"


def _markdown_text(text: str) -> str:
    """Transcript text safe inside a Markdown table cell."""
    return "".join("\\" + c if c in "\\`*_{}[]<>()#+-.!|@$~^" else c for c in text) or " "
