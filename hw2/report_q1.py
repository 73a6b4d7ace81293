"""Question 1's report helpers: the SymPy answers and the attention benchmark run as numbers, tables and
figures for `report/_q1.qmd`. Every sentence, caption included, is written in the .qmd; nothing here trains.
"""
from __future__ import annotations

from hw2.report import cached, figure, fmt, require_runs, table

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
    """`hw2.attention.derivations.answers()`: every formula of Question 1 (cached per module version)."""
    import sympy

    def answers():
        from hw2.attention import derivations

        return derivations.answers()

    return cached("q1-derivations", ["hw2.attention.derivations"], answers, (sympy.__version__,))


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

    def scaling_figure(self, quantity: str, label: str, text: str):
        """Time or peak memory against L, log-log, one panel per D, with fitted exponents in the legend."""
        import matplotlib.pyplot as plt

        column, ylabel = {"time": ("time_s", "Time per call (s)"),
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
                b = self.exponent(method, dim, quantity)
                ax.loglog(rows["length"], rows[column].clip(lower=1e-12), marker=marker, color=colour,
                          markersize=3.5, label=f"{METHOD_NAMES.get(method, method)} ($L^{{{b:.2f}}}$)"
                          if b is not None else METHOD_NAMES.get(method, method))
            lengths = sorted(self.history["length"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(lengths[::-(-len(lengths) // 4)])  # at most four labels
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x / 1024:g}k" if x >= 1024 else f"{x:g}"))
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_title(f"D = {dim}", fontsize=9)
            ax.set_xlabel("Sequence length L")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6.5, frameon=False)
        return figure(fig, label, text, [self.run], width="100%")

    def error_figure(self, label: str, text: str):
        """Median relative error of Taylor attention against softmax attention, by the std of q^T k."""
        import matplotlib.pyplot as plt

        kinds = list(self.summary["error_study"]["kinds"])
        fig, axes = plt.subplots(1, len(kinds), figsize=(2.2 * len(kinds) + 0.6, 2.8), squeeze=False,
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
        axes[0][0].legend(fontsize=7, frameon=False)
        return figure(fig, label, text, [self.run], width="100%")

    def exponent_table(self, label: str, text: str):
        import pandas as pd

        rows = []
        for method in self.summary["methods"]:
            for dim in self.dims:
                rows.append({"Method": METHOD_NAMES.get(method, method), "D": str(dim),
                             "Time exponent": fmt(self.exponent(method, dim, "time"), 2),
                             "Memory exponent": fmt(self.exponent(method, dim, "memory"), 2),
                             "Longest L": f"{self.summary['max_length'][method][str(dim)]:,}"})
        return table(pd.DataFrame(rows), label, text, [self.run])

    def crossover_table(self, label: str, text: str):
        import pandas as pd

        kinds = {"measured": "measured", "below_range": "below the shortest L", "extrapolated": "extrapolated",
                 "none": "none in range"}
        rows = []
        for method, per_dim in self.summary["crossovers"].items():
            for dim, c in per_dim.items():
                rows.append({"Against": METHOD_NAMES.get(method, method), "D": dim,
                             "M": f"{self.summary['feature_dims'][dim]:,}",
                             "Flop-count L*": f"{c['L_star']:,.0f}",
                             "Measured crossover": f"{c['length']:,.0f}" if c["length"] is not None else "–",
                             "How": kinds.get(c["kind"], c["kind"]),
                             "Speed-up at longest L": f"{c['ratio_at_longest']:.2f}×"})
        return table(pd.DataFrame(rows), label, text, [self.run])
