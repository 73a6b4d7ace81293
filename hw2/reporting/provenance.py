"""The provenance appendix: one row per run the report shows (R1, R2, ... as the captions cite them), every field
read from the run's folder, so that a reader can find each number's run and what made it.
"""
from __future__ import annotations

import json

from hw2.engine import store
from hw2.engine.store import LoadedRun, RunError
from hw2.reporting.markdown import markdown_text
from hw2.reporting.runs import PROVENANCE_LABEL, numbered_runs
from hw2.reporting.wording import earlier_code

PROVENANCE_COLUMNS = {"Run": 4, "Run folder; data": 20, "Configuration": 36, "Code": 14,
                      "Environment": 16, "Wall time": 10}  # relative widths (dashes of the separator row)


def provenance_table(profile: str, text: str):
    """The provenance appendix, labelled PROVENANCE_LABEL: one row per run the report shows (R1, R2, ... as the
    captions cite them), each field read from the run's folder: configuration, code identity and data source
    (config.json, summary.json), environment, commit and wall time (env.json)."""
    from IPython.display import Markdown

    runs = numbered_runs(profile)
    if not runs:
        raise RunError(f"no runs of profile {profile!r} in {store.results_dir()} to list in the provenance appendix: "
                       f"run `PROFILE={profile} make runs` first")
    rows = [[f"R{n}", f"{run.summary['experiment']}/{run.name}; data {run.summary['data_source']}",
             _configuration(run), _code(run), _environment(run.env), _wall_time(run.env, run.summary)]
            for n, run in enumerate(runs, start=1)]
    lines = ["| " + " | ".join(PROVENANCE_COLUMNS) + " |",
             "|" + "|".join(":" + "-" * w for w in PROVENANCE_COLUMNS.values()) + "|"]
    lines += ["| " + " | ".join(markdown_text(cell) for cell in row) + " |" for row in rows]
    return Markdown("\n".join(lines) + f"\n\n: {text} {{#{PROVENANCE_LABEL}}}\n")


def _value(value) -> str:
    """A configuration value as config.json holds it, without JSON's quotes."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _configuration(run: LoadedRun) -> str:
    return "; ".join(f"{k}={_value(v)}" for k, v in run.config.get("config", {}).items())


def _code(run: LoadedRun) -> str:
    """The code hash of the run's key and the commit it ran at; a stale run also names what changed since."""
    code = f"code {run.summary['code'][:12]}, commit {run.env.get('git_commit') or 'not recorded'}"
    return code + (f"; {earlier_code(run)}" if run.stale else "")


def _environment(env: dict) -> str:
    def get(key):
        return env[key] if env.get(key) is not None else "not recorded"

    device = f"{get('device')}" + (f" ({env['cuda']})" if env.get("cuda") else "")
    return (f"Python {get('python')}, torch {get('torch')}, NumPy {get('numpy')}; {device}, "
            f"{get('torch_threads')} torch thread(s) of {get('cpu_count')} CPUs; {get('platform')}")


def _wall_time(env: dict, summary: dict | None = None) -> str:
    """'108.2 s, finished …'; runs trained together in one process (a Q2 sweep) share that process's time."""
    seconds = env.get("wall_time_s")
    if seconds is None:
        return "not recorded"
    took = f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
    finished = env.get("finished_at")
    together = (summary or {}).get("members_trained_together") or 1
    took += f" for the {together} runs trained together" if together > 1 else ""
    return took + (f", finished {finished.replace('T', ' ').replace('Z', ' UTC')}" if finished else "")
