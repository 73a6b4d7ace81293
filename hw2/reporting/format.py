"""Numbers as the report prints them: fixed decimals, mean ± std over seeds, percentages, memory sizes.

A leaf module (no runs, no words) so that every other report module and the .qmd cells share one way of
writing a number.
"""
from __future__ import annotations

import statistics
from typing import Iterable


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:.{digits}f}"


def shown(value: float | None, digits: int = 4) -> float:
    """`value` as the report prints it with `digits` decimals, as a number (NaN for none). A sentence that
    subtracts or divides printed values computes from these, so that its result is what a reader gets from
    the table beside it."""
    return float("nan") if value is None or value != value else float(fmt(value, digits))


def relative(a: float, b: float) -> dict:
    """How far apart two printed values are: the difference, and that difference as a share of the larger
    and of the smaller (a sentence names which it uses)."""
    diff = abs(a - b)
    return {"difference": diff, "of_larger": diff / max(abs(a), abs(b)), "of_smaller": diff / min(abs(a), abs(b))}


def mean_std(values: Iterable[float], digits: int = 4) -> str:
    """'0.8123' for one value, '0.8123 ± 0.0040' (sample std) for several."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{fmt(statistics.mean(values), digits)} ± {fmt(statistics.stdev(values), digits)}"


def percent(share: float, digits: int = 0) -> str:
    """'42%' for 0.42."""
    return f"{100 * share:.{digits}f}%"


def size(n_bytes: float) -> str:
    """'512 MiB', '64 KiB': a memory size in the binary unit the text uses."""
    return f"{n_bytes / 2**20:,.0f} MiB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:,.0f} KiB"
