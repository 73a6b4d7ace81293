"""Run the missing runs of a question's plan, each as a papermill execution of its notebook.

Every experiment module names its notebook and store experiment and provides:
  prepare_data(profile) -> data source string  (finds, downloads or generates the data)
  plan(profile) -> list of notebook parameter dicts
  spec(params, profile, data_source) -> store.RunSpec (the same call the notebook makes)
The executed notebook is kept in the run folder as run.ipynb.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hw2 import store
from hw2.profiles import resolve_profile

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = {"q1": "hw2.bench_attention", "q2": "hw2.train_cnn", "q3": "hw2.train_asr"}


def experiment_module(question: str):
    if question not in QUESTIONS:
        raise SystemExit(f"unknown question {question!r}: use one of {', '.join(QUESTIONS)}")
    return importlib.import_module(QUESTIONS[question])


def execute_notebook(notebook: Path, parameters: dict, spec: store.RunSpec) -> None:
    """papermill the notebook with `parameters`; move the executed copy into the sealed run folder."""
    import papermill

    spec.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec.path.with_name(f".{spec.name}.run.ipynb")
    papermill.execute_notebook(
        str(notebook), str(tmp), parameters=parameters, cwd=str(ROOT), kernel_name="python3",
        log_output=True, stdout_file=sys.stdout, stderr_file=sys.stderr, progress_bar=False,
    )
    problem = store.check_complete(spec.path)
    if problem:
        raise store.RunError(f"{notebook} finished but {spec.path} is {problem}; the notebook must call the "
                             f"experiment's run function with the parameters it was given")
    os.replace(tmp, spec.path / "run.ipynb")
    store.add_to_manifest(spec.path, "run.ipynb")


def run_question(question: str, profile: str | None = None, jobs: int = 1) -> int:
    module = experiment_module(question)
    profile = resolve_profile(profile)
    source = module.prepare_data(profile)
    planned = [(params, module.spec(params, profile, source)) for params in module.plan(profile)]
    todo = [(params, spec) for params, spec in planned if store.check_complete(spec.path)]
    print(f"[hw2] {question}: profile={profile} data={source}: {len(planned)} runs planned, "
          f"{len(planned) - len(todo)} complete, {len(todo)} to run", flush=True)
    failures = []

    def one(item):
        params, spec = item
        start = time.time()
        print(f"[hw2] {question}: running {spec.name} with {params}", flush=True)
        try:
            execute_notebook(ROOT / module.NOTEBOOK, {**params, "profile": profile}, spec)
        except Exception as exc:  # one failed run must not stop the others
            failures.append((spec.name, exc))
            print(f"[hw2] {question}: {spec.name} FAILED: {exc}", file=sys.stderr, flush=True)
            return
        print(f"[hw2] {question}: {spec.name} done in {time.time() - start:.0f} s -> {spec.path}", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, todo))
    if failures:
        print(f"[hw2] {question}: {len(failures)} run(s) failed: {', '.join(n for n, _ in failures)}",
              file=sys.stderr)
        return 1
    return 0
