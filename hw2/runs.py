"""Run the missing runs of a question's plan, each as a papermill execution of its notebook.

The experiments are those of `hw2.experiments`; each module follows its `ExperimentModule` contract
(prepare_data, plan, specs, run). The executed notebook is kept in each run folder it wrote, as run.ipynb.
"""
from __future__ import annotations

import importlib
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hw2 import store
from hw2.experiments import BY_QUESTION, ExperimentModule
from hw2.profiles import ConfigError, resolve_profile

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = tuple(BY_QUESTION)


def experiment_module(question: str) -> ExperimentModule:
    if question not in BY_QUESTION:
        raise ConfigError(f"unknown question {question!r}: use one of {', '.join(QUESTIONS)}")
    return importlib.import_module(BY_QUESTION[question].module)


# What a fresh IPython kernel defines besides the notebook's own names.
KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def refuse_unknown_parameters(namespace: dict, known: list[str], notebook: str) -> None:
    """Called by each notebook after its parameters cell: papermill silently defines any `-p NAME VALUE`, so a
    misspelt or foreign parameter would otherwise run the default experiment. Raise a ConfigError naming it."""
    unknown = sorted(name for name in namespace if not name.startswith("_") and name not in known
                     and name not in KERNEL_NAMES and not callable(namespace[name]) and not hasattr(namespace[name], "__file__"))
    if unknown:
        raise ConfigError(f"{notebook}: unknown parameter(s) {', '.join(unknown)}; it takes {', '.join(known)}")


def execute_notebook(notebook: Path, parameters: dict, specs: list[store.RunSpec]) -> None:
    """papermill the notebook with `parameters`; copy the executed notebook into the run folders it sealed.

    The executed notebook's temporary name is unique per process, and a run folder that already holds its
    run.ipynb (one that another process trained while this one waited) is never rewritten."""
    import papermill

    first = specs[0]
    first.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = first.path.with_name(f".{first.name}.run.{os.getpid()}.{threading.get_ident()}.ipynb")
    papermill.execute_notebook(
        str(notebook), str(tmp), parameters=parameters, cwd=str(ROOT), kernel_name="python3",
        log_output=True, stdout_file=sys.stdout, stderr_file=sys.stderr, progress_bar=False,
    )
    for spec in specs:
        problem = store.check_complete(spec.path)
        if problem:
            raise store.RunError(f"{notebook} finished but {spec.path} is {problem}; the notebook must call "
                                 f"the experiment's run function with the parameters it was given")
        if (spec.path / "run.ipynb").exists():
            continue  # a finished run's record is never rewritten
        part = spec.path / f".run.ipynb.{os.getpid()}.tmp"
        shutil.copyfile(tmp, part)
        os.replace(part, spec.path / "run.ipynb")
        store.add_to_manifest(spec.path, "run.ipynb")
    tmp.unlink()


def run_question(question: str, profile: str | None = None, jobs: int = 1) -> int:
    module = experiment_module(question)
    profile = resolve_profile(profile)
    source = module.prepare_data(profile)
    planned = [(params, module.specs(params, profile, source)) for params in module.plan(profile)]
    missing = {s.name for _, specs in planned for s in specs if store.check_complete(s.path)}
    if missing and store.use_stale():  # the user chose to keep runs made by earlier code
        for _, specs in planned:
            for spec in specs:
                stale = store.stale_run(spec) if spec.name in missing else None
                if stale:
                    missing.discard(spec.name)
                    print(f"[hw2] {question}: keeping {stale[0].name}, made with earlier code ({', '.join(stale[1])} "
                          f"changed), instead of training {spec.name} ({store.STALE_VARIABLE}=use)", flush=True)
    todo = [(params, specs) for params, specs in planned if any(s.name in missing for s in specs)]
    n_runs, n_todo = sum(len(specs) for _, specs in planned), len(missing)
    print(f"[hw2] {question}: profile={profile} data={source}: {n_runs} runs planned, "
          f"{n_runs - n_todo} complete, {n_todo} to run", flush=True)
    failures = []

    def one(item):
        params, specs = item
        names = ", ".join(s.name for s in specs)
        start = time.time()
        print(f"[hw2] {question}: running {names} with {params}", flush=True)
        try:
            execute_notebook(ROOT / module.NOTEBOOK, {**params, "profile": profile}, specs)
        except Exception as exc:  # one failed execution must not stop the others
            failures.append((names, exc))
            print(f"[hw2] {question}: {names} FAILED: {exc}", file=sys.stderr, flush=True)
            return
        print(f"[hw2] {question}: {names} done in {time.time() - start:.0f} s", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, todo))
    if failures:
        print(f"[hw2] {question}: {len(failures)} run(s) failed: {', '.join(n for n, _ in failures)}",
              file=sys.stderr)
        return 1
    return 0
