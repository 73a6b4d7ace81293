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
