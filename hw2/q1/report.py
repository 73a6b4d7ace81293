"""Question 1's report helpers: the SymPy answers and the attention benchmark run as numbers, tables and
figures for `report/_q1.qmd`. Every sentence, caption included, is written in the .qmd; nothing here trains.
"""
from __future__ import annotations

from hw2.reporting.cache import cached
from hw2.reporting.format import fmt
from hw2.reporting.markdown import figure, table
from hw2.reporting.runs import require_runs

Q1_EXPERIMENT = "q1_attention"
METHOD_NAMES = {"softmax_naive": "softmax, naive", "softmax_sdpa": "softmax, fused SDPA",
                "taylor_linear": "Taylor linear", "taylor_causal": "Taylor linear, causal"}
METHOD_STYLE = {"softmax_naive": ("tab:red", "o"), "softmax_sdpa": ("tab:orange", "s"),
                "taylor_linear": ("tab:blue", "^"), "taylor_causal": ("tab:cyan", "v")}


def display_math(latex: str, label: str | None = None):
    """A display equation as Markdown (numbered and referable as @eq-... when labelled)."""
    from IPython.display import Markdown

    return Markdown(f"$$\n{tex_for_pandoc(latex)}\n$$" + (f" {{#{label}}}" if label else "") + "\n")


def tex_for_pandoc(latex: str) -> str:
    """TeX that pandoc's math converter (used by Quarto and hw2 for Typst) reads: sized delimiters become
    \\left/\\right, which it knows."""
    for sized, plain in (("\\Bigl", "\\left"), ("\\Bigr", "\\right"), ("\\bigl", "\\left"), ("\\bigr", "\\right")):
        latex = latex.replace(sized, plain)
    return latex




def q1_answers() -> dict:
    """`hw2.q1.answers.answers()`: every formula of Question 1 (cached per version of the modules)."""
    import sympy

    def compute():
        from hw2.q1 import answers

        return answers.answers()

    return cached("q1-answers", ["hw2.q1.answers", "hw2.q1.derivations"], compute, (sympy.__version__,))


class Q1Results:
    """The benchmark run of a profile: timings, fitted exponents, crossovers and the error study."""

    def __init__(self, profile: str):
        runs = require_runs(Q1_EXPERIMENT, profile)
        # One run per device: prefer the GPU run where there is one (the full protocol), else the CPU run.
        runs.sort(key=lambda r: (r.summary.get("device") != "cuda", r.name))
        self.run = runs[0]
        self.summary = self.run.summary
        self.history = self.run.history
        import pandas as pd

        self.errors = pd.read_csv(self.run.file("approx_error.csv"))

    @property
    def dims(self) -> list[int]:
        return [int(d) for d in self.summary["dims"]]

    @property
    def device(self) -> str:
        return str(self.summary["device"])

    @property
    def threads(self) -> int:
        return int(self.summary["threads"])

    @property
    def order(self) -> int:
        """K, the order of the Taylor feature map benchmarked."""
        return int(self.summary["order"])

    def min_kernel(self, order: int) -> float | None:
        """The smallest approximate kernel value the error study met for order K."""
        return self.summary["error_study"]["min_kernel"].get(str(order))

    def l_star(self, dim: int) -> float:
        """The flop-count crossover length L* for head size D."""
        return float(self.summary["L_star"][str(dim)])

    def feature_dim(self, dim: int) -> int:
        """M, the feature dimension of the order-K map for head size D."""
        return int(self.summary["feature_dims"][str(dim)])

    @property
    def error_dim(self) -> int:
        return int(self.summary["error_study"]["dim"])

    @property
    def error_length(self) -> int:
        return int(self.summary["error_study"]["length"])

    def exponent(self, method: str, dim: int, quantity: str = "time") -> float:
        return self.summary["exponents"][method][str(dim)][quantity]["exponent"]

    def fit(self, method: str, dim: int) -> dict:
        """The time fit of one method and D with its diagnosis (`q1_attention.diagnose`): fitted lengths,
        the operation count's exponent, whether it falls outside, the reason and the numbers behind it."""
        return self.summary["exponents"][method][str(dim)]

    def fitted_span(self, method: str, dim: int) -> str:
        """'1,024–8,192': the lengths a time exponent is fitted over ('–' for none)."""
        window = self.fit(method, dim)["time"]["lengths"]
        return f"{window[0]:,}–{window[-1]:,}" if window else "–"

    def flagged(self) -> list[dict]:
        """Every time exponent further from the operation count's than the tolerance, with its method, D,
        window and diagnosis, in the order of the exponent table; `fixed_share` is the share of the first fitted
        call that the fixed cost per call takes."""
        return [{"method": method, "name": METHOD_NAMES.get(method, method), "dim": dim,
                 "exponent": self.exponent(method, dim), "first": self.fit(method, dim)["time"]["lengths"][0],
                 "last": self.fit(method, dim)["time"]["lengths"][-1], **self.fit(method, dim),
                 "fixed_share": self.fit(method, dim)["fixed_cost_s"] / self.fit(method, dim)["first_time_s"]}
                for method in self.summary["methods"] for dim in self.dims if self.fit(method, dim).get("outside")]

    @property
    def tolerance(self) -> float:
        return float(self.run.config["config"]["exponent_tolerance"])

    @property
    def repeats(self) -> int:
        return int(self.summary["repeats"])

    @property
    def fit_points(self) -> int:
        return int(self.run.config["config"]["fit_points"])

    @property
    def fit_min_time_ms(self) -> float:
        return float(self.run.config["config"]["fit_min_time_s"]) * 1e3

    @property
    def time_limit_s(self) -> float:
        return float(self.run.config["config"]["time_limit_s"])

    @property
    def memory_limit_gb(self) -> float | None:
        """The memory limit of the run in GiB; None: half the device's memory."""
        return self.run.config["config"]["memory_limit_gb"]

    @property
    def min_sample_ms(self) -> float:
        return float(self.run.config["config"]["min_sample_s"]) * 1e3

    @property
    def cpu_clock(self) -> bool:
        """Whether times are the CPU time of the one thread doing the work (else wall time)."""
        return self.summary["clock"] == "cpu_s"

    @property
    def heap_kept(self) -> bool:
        return bool(self.summary["heap_kept"])

    @property
    def faults_per_call(self) -> float:
        """The largest median number of minor page faults per call over all methods and lengths."""
        return float(self.history["faults_per_call"].max())

    @property
    def n_cells(self) -> int:
        """The (method, dim, length) cells timed."""
        return len(self.history)

    @property
    def faulting_cells(self) -> list[dict]:
        """The (method, dim, length) cells whose calls still page-faulted (median > 0), largest memory first."""
        rows = self.history[self.history["faults_per_call"] > 0].sort_values("peak_memory_bytes", ascending=False)
        return rows[["method", "dim", "length", "faults_per_call", "peak_memory_bytes"]].to_dict("records")

    @property
    def faulting_from_bytes(self) -> int | None:
        """The peak memory of the smallest call that still page-faulted (None when none did)."""
        cells = self.faulting_cells
        return min(c["peak_memory_bytes"] for c in cells) if cells else None

    @property
    def load_factor(self) -> float:
        """Median over all cells of median wall time / median time on the run's clock (1 on a free core)."""
        return float((self.history["wall_time_s"] / self.history["time_s"]).median())

    @property
    def quartile_spread(self) -> dict[str, float]:
        """The spread between the quartiles of a cell's samples as a share of their median: its median and its
        largest over all (method, D, length) cells (too small to see on a log scale when a few percent)."""
        spread = (self.history["time_q3_s"] - self.history["time_q1_s"]) / self.history["time_s"]
        return {"median": float(spread.median()), "max": float(spread.max())}

    @property
    def caches(self) -> dict[str, int]:
        """The device's data cache sizes in bytes by level, as the run read them."""
        return dict(self.summary["caches"])

    def crossover(self, method: str, dim: int) -> dict | None:
        """Where Taylor linear attention overtakes `method` at head size D (`q1_attention.crossover`)."""
        return self.summary["crossovers"].get(method, {}).get(str(dim))

    def error_scale_near(self, target: float) -> float:
        """The std of q^T k in the error study closest to `target` (on a log scale)."""
        import math

        return min(self.summary["error_study"]["scales"], key=lambda s: abs(math.log(s / target)))

    def median_error(self, kind: str, order: int, scale: float) -> float:
        """Median relative error of order-K Taylor attention on one input kind at one std of q^T k."""
        scales = self.summary["error_study"]["scales"]
        return float(self.summary["error_study"]["median_rel_error"][kind][str(order)][scales.index(scale)])

    def scaling_figure(self, quantity: str, label: str, text: str):
        """`scaling_plot` as a captioned figure."""
        return figure(self.scaling_plot(quantity), label, text, [self.run], width="100%")

    def scaling_plot(self, quantity: str):
        """Time (median over the rounds, bars from the lower to the upper quartile) or peak memory against L,
        log-log, one panel per D: filled markers are the lengths fitted, the dashed line the fitted power law
        whose exponent the legend gives."""
        import matplotlib.pyplot as plt
        import numpy as np

        column, ylabel = {"time": ("time_s", "CPU time per call (s)" if self.cpu_clock else "Time per call (s)"),
                          "memory": ("peak_memory_bytes", "Peak memory (bytes)")}[quantity]
        fig, axes = plt.subplots(1, len(self.dims), figsize=(3.1 * len(self.dims), 3.0), squeeze=False,
                                 layout="constrained")
        for ax, dim in zip(axes[0], self.dims):
            for method in self.summary["methods"]:
                rows = self.history[(self.history["method"] == method) & (self.history["dim"] == dim)]
                rows = rows.sort_values("length")
                if rows.empty:
                    continue
                colour, marker = METHOD_STYLE.get(method, ("black", "."))
                fit = self.fit(method, dim)[quantity]
                fitted = rows["length"].isin(fit["lengths"])
                name = METHOD_NAMES.get(method, method)
                values = rows[column].clip(lower=1e-12)
                ax.plot(rows["length"], values, color=colour, linewidth=0.8, alpha=0.6)
                if quantity == "time":
                    ax.errorbar(rows["length"], values, yerr=[values - rows["time_q1_s"], rows["time_q3_s"] - values],
                                fmt="none", ecolor=colour, elinewidth=0.8, capsize=1.5)
                ax.plot(rows["length"][~fitted], values[~fitted], linestyle="none", marker=marker, markersize=3.5,
                        markerfacecolor="white", color=colour)
                ax.plot(rows["length"][fitted], values[fitted], linestyle="none", marker=marker, markersize=3.5,
                        color=colour, label=f"{name} ($L^{{{fit['exponent']:.2f}}}$)" if fit["exponent"] is not None
                        else name)
                if fit["exponent"] is not None:
                    span = np.array([fit["lengths"][0], fit["lengths"][-1]], dtype=float)
                    ax.plot(span, np.exp(fit["log_coefficient"]) * span ** fit["exponent"], color=colour,
                            linestyle="--", linewidth=1.6, alpha=0.8)
            lengths = sorted(self.history["length"].unique())
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(lengths[::-(-len(lengths) // 4)])  # at most four labels
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x / 1024:g}k" if x >= 1024 else f"{x:g}"))
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_title(f"D = {dim}", fontsize=9)
            ax.set_xlabel("Sequence length L")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8, frameon=False)
        return fig

    def error_figure(self, label: str, text: str):
        """Median relative error of Taylor attention against softmax attention, by the std of q^T k."""
        import matplotlib.pyplot as plt

        kinds = list(self.summary["error_study"]["kinds"])
        fig, axes = plt.subplots(1, len(kinds), figsize=(min(2.2 * len(kinds) + 0.6, 6.4), 2.8), squeeze=False,
                                 sharey=True, layout="constrained")
        for ax, kind in zip(axes[0], kinds):
            for order in self.summary["error_study"]["orders"]:
                rows = self.errors[(self.errors["kind"] == kind) & (self.errors["order"] == order)]
                med = rows.groupby("target_score_std")["rel_error"].median()
                ax.loglog(med.index, med.values, marker="o", markersize=3, label=f"K = {order}")
            ax.set_title(f"{kind} inputs", fontsize=9)
            ax.set_xlabel("Std of q⊤k")
            ax.set_ylabel("Median relative error" if ax is axes[0][0] else " ")
            scales = self.summary["error_study"]["scales"]
            ax.set_xticks(scales[::-(-len(scales) // 4)])  # at most four labels
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.grid(alpha=0.3, which="both")
        axes[0][0].legend(fontsize=8, frameon=False)
        return figure(fig, label, text, [self.run], width="100%")

    def exponent_table(self, label: str, text: str):
        return table(self.exponent_rows(), label, text, [self.run])

    def exponent_rows(self):
        """Per method and D: time and memory exponents, the operation count's, the fitted lengths, the
        longest L and why the method stopped there."""
        import pandas as pd

        rows = []
        for method in self.summary["methods"]:
            for dim in self.dims:
                fit = self.fit(method, dim)
                rows.append({"Method": METHOD_NAMES.get(method, method), "D": str(dim),
                             "Time exponent": fmt(self.exponent(method, dim, "time"), 2),
                             "Operation count": fmt(fit.get("predicted"), 2),
                             "Memory exponent": fmt(self.exponent(method, dim, "memory"), 2),
                             "Fitted over L": self.fitted_span(method, dim),
                             "Longest L": f"{self.summary['max_length'][method][str(dim)]:,}",
                             "Stops because": self.stop_reason(method, dim)})
        return pd.DataFrame(rows)

    def stop_reason(self, method: str, dim: int) -> str:
        """Why a method's longest L is where it is, from the run's cut-off record."""
        cut = self.summary["cutoffs"].get(method, {}).get(str(dim))
        if cut is None:
            return "last length planned"
        if cut["kind"] == "time":
            return f"{cut['length']:,} would take ≈ {significant(cut['expected'], 2)} s > {cut['limit']:g} s"
        return (f"{cut['length']:,} would need ≈ {significant(cut['expected'] / 2**30, 2)} GiB "
                f"> {significant(cut['limit'] / 2**30, 2)} GiB")

    def crossover_table(self, label: str, text: str):
        return table(self.crossover_rows(), label, text, [self.run])

    def crossover_rows(self):
        """Per softmax method and D: M, the flop-count L*, the measured crossover and where it lies, and the
        speed-up at the longest common length (two significant figures: the medians vary by a few percent)."""
        import pandas as pd

        rows = []
        for method, per_dim in self.summary["crossovers"].items():
            for dim, c in per_dim.items():
                where = {"measured": lambda: f"between {c['between'][0]:,} and {c['between'][1]:,}",
                         "below_range": lambda: f"at or below {int(c['length']):,}",
                         "extrapolated": lambda: "where the fits meet",
                         "none": lambda: "never"}[c["kind"]]()
                rows.append({"Against": METHOD_NAMES.get(method, method), "D": dim,
                             "M": f"{self.summary['feature_dims'][dim]:,}",
                             "Flop-count L*": f"{c['L_star']:,.0f}",
                             "Crossover L": f"{significant(c['length'], 2)}" if c["length"] is not None else "–",
                             "Crossing": where,
                             "Speed-up at longest common L": f"{significant(c['ratio_at_longest'], 2)}× at "
                                                             f"{c['longest_common']:,}"})
        return pd.DataFrame(rows)


def significant(value: float, digits: int = 2) -> str:
    """`value` rounded to `digits` significant figures, with thousands separators: 625.24 -> '630',
    35.8 -> '36', 2.43 -> '2.4', 0.0712 -> '0.071'."""
    import math

    if value == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, decimals)
    decimals = digits - 1 - math.floor(math.log10(abs(rounded)))  # 9.96 rounds to 10: one digit fewer
    return f"{round(rounded, decimals):,.{max(decimals, 0)}f}"
