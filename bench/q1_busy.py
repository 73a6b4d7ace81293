"""Question 1's benchmark on a busy machine: the fitted time exponents stay near the operation counts'.

    python bench/q1_busy.py [--profile quick] [--busy 1] [--runs 2]

Starts --busy processes that each keep a core busy, makes the profile's Q1 benchmark run --runs times (each
a fresh run in a temporary results folder, through `python -m hw2 runs q1`), stops the busy processes, and
prints every fitted time exponent beside the operation count's, with the wall time of each run. Exits with
status 1 when a softmax exponent falls outside [1.7, 2.5] or a Taylor one outside [0.8, 1.3].
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BANDS = {"softmax": (1.7, 2.5), "taylor": (0.8, 1.3)}


def one_run(profile: str) -> tuple[dict, float]:
    """(summary.json of a fresh Q1 run of `profile`, its wall seconds)."""
    with tempfile.TemporaryDirectory() as results:
        env = {**os.environ, "PROFILE": profile, "HW2_RESULTS_DIR": results}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hw2", "runs", "q1"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"the Q1 run failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        (summary,) = Path(results, "q1_attention").glob("*/summary.json")
        return json.loads(summary.read_text()), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--busy", type=int, default=1, help="processes that keep a core busy (default 1)")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    outside = []
    try:
        for n in range(1, args.runs + 1):
            summary, seconds = one_run(args.profile)
            print(f"run {n}: {seconds:.0f} s wall, {args.busy} busy process(es), clock {summary['clock']}")
            for method, per_dim in summary["exponents"].items():
                low, high = BANDS[method.split("_")[0]]
                for dim, fit in per_dim.items():
                    b, window = fit["time"]["exponent"], fit["time"]["lengths"]
                    ok = b is not None and low <= b <= high
                    outside += [] if ok else [(n, method, dim, b)]
                    print(f"  {method:14s} D={dim:>3s}: L^{b:.2f} (count L^{fit['predicted']:.2f}) over "
                          f"{window[0]}-{window[-1]}{'' if ok else f'  OUTSIDE [{low}, {high}]'}"
                          + (f"  [{fit['reason']}]" if fit.get("reason") else ""))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    if outside:
        print(f"{len(outside)} exponent(s) outside their band: {outside}")
        return 1
    print("every exponent within its band")
    return 0


if __name__ == "__main__":
    sys.exit(main())
