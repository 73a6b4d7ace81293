"""Run the missing runs of a question's plan, each as a papermill execution of its notebook.

The experiments are those of `hw2.engine.registry`; each module follows its `ExperimentModule` contract
(prepare_data, plan, specs, run). The executed notebook is kept in each run folder it wrote, as run.ipynb.

Ctrl-C stops the notebooks being executed (their runs keep the checkpoint of their last finished epoch) and
the runner, which says what was kept and exits with status 130 (`Interrupted`); the same command resumes.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from hw2.engine import registry, store
from hw2.engine.errors import ConfigError
from hw2.engine.paths import project_root
from hw2.engine.profiles import resolve_profile
from hw2.engine.registry import ExperimentModule


def experiment_module(question: str) -> ExperimentModule:
    try:
        return importlib.import_module(registry.by_question(question).module)
    except KeyError:
        raise ConfigError(f"unknown question {question!r}: use one of {', '.join(registry.questions())}") from None


# What a fresh IPython kernel defines besides the notebook's own names.
KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def notebook_parameters(namespace: dict, module: ExperimentModule) -> dict:
    """The experiment's parameters as the notebook's kernel holds them after papermill's injected cell (the
    notebook's parameters cell sets the defaults, `module.PARAMETERS`). papermill silently defines any
    `-p NAME VALUE`, so a misspelt or foreign parameter would otherwise run the default experiment: raise a
    ConfigError naming it and the parameters the notebook takes."""
    known = list(module.PARAMETERS)
    unknown = sorted(name for name in namespace if not name.startswith("_") and name not in known
                     and name not in KERNEL_NAMES and not callable(namespace[name])
                     and not hasattr(namespace[name], "__file__"))
    if unknown:
        notebook = registry.by_module(module.__name__).notebook
        raise ConfigError(f"{notebook}: unknown parameter(s) {', '.join(unknown)}; it takes {', '.join(known)}")
    return {name: namespace.get(name, default) for name, default in module.PARAMETERS.items()}


def execute_notebook(notebook: Path, parameters: dict, specs: list[store.RunSpec], **papermill_options) -> None:
    """papermill the notebook with `parameters`; copy the executed notebook into the run folders it sealed.

    The executed notebook's temporary name is unique per process (and removed however the execution ends), and
    a run folder that already holds its run.ipynb (one that another process trained while this one waited) is
    never rewritten."""
    import papermill

    first = specs[0]
    first.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.temporary_path(first.path.with_name(first.name + ".run"), suffix=".ipynb")
    try:
        papermill.execute_notebook(
            str(notebook), str(tmp), parameters=parameters, cwd=str(project_root()), kernel_name="python3",
            # the kernel's output streams to ours once (log_output would also log its stderr, printing it twice)
            log_output=False, stdout_file=sys.stdout, stderr_file=sys.stderr, progress_bar=False,
            **papermill_options,
        )
        for spec in specs:
            problem = store.check_complete(spec.path)
            if problem:
                raise store.RunError(f"{notebook} finished but {spec.path}: {problem}; the notebook must call "
                                     f"the experiment's run function with the parameters it was given")
            if (spec.path / "run.ipynb").exists():
                continue  # a finished run's record is never rewritten
            part = store.temporary_path(spec.path / "run.ipynb")
            shutil.copyfile(tmp, part)
            os.replace(part, spec.path / "run.ipynb")
            store.add_to_manifest(spec.path, "run.ipynb")
    finally:
        tmp.unlink(missing_ok=True)


# After Ctrl-C, how long the notebooks may take to stop by themselves (their kernels interrupted, so the
# training code unwinds) before their kernels are killed; the checkpoints on disk are whole either way.
STOP_GRACE_S = 15.0


class Interrupted(Exception):
    """Ctrl-C stopped the runner; the message is the line that says what was kept and how to resume."""


class _Stopper:
    """Ctrl-C for the notebooks that worker threads execute. Jupyter starts each kernel in a session of its own,
    so a terminal's Ctrl-C reaches only this process: the first one interrupts each kernel once (one still
    starting, or between two cells, ignores it) and lets queued executions never start; after STOP_GRACE_S,
    or at a second Ctrl-C, the kernels are killed."""

    def __init__(self):
        self.requested = threading.Event()
        self.hurry = False
        self.kernels: list = []  # the kernel manager of every execution started
        self.running: dict[int, tuple[list[store.RunSpec], str]] = {}  # worker thread -> its runs, their unit

    def on_sigint(self, signum, frame) -> None:
        if self.requested.is_set():
            self.hurry = True
        self.requested.set()

    def kernel_manager_class(self):
        """nbclient's kernel manager, recording each one it makes so that its kernel can be signalled."""
        from jupyter_client import AsyncKernelManager

        kernels = self.kernels

        class RecordedKernelManager(AsyncKernelManager):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                kernels.append(self)

        return RecordedKernelManager

    def signal_kernels(self, signum: int, skip: set | None = None) -> set:
        """Send `signum` to the kernels started (less those in `skip`); return the process groups signalled."""
        sent = set()
        for manager in list(self.kernels):
            group = getattr(getattr(manager, "provisioner", None), "pgid", None)  # the kernel and its children
            if group and group not in (skip or set()):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signum)
                sent.add(group)
        return sent

    def wait(self, futures) -> None:
        """Wait for the executions; after Ctrl-C, stop them."""
        deadline, interrupted = None, set()
        while wait(futures, timeout=0.2).not_done:
            if not self.requested.is_set():
                continue
            now = time.monotonic()
            if deadline is None:
                deadline = now + STOP_GRACE_S
                for future in futures:
                    future.cancel()  # those not started yet
                # What the stopping kernels still print ("Kernel died ...") would bury the line saying what was kept.
                logging.getLogger("papermill").setLevel(logging.CRITICAL)
            if self.hurry or now > deadline:
                self.signal_kernels(signal.SIGKILL)
            else:  # once per kernel: a second SIGINT could break the training code's unwinding
                interrupted |= self.signal_kernels(signal.SIGINT, skip=interrupted)

    def kept(self) -> str:
        """One line: each interrupted run, the epoch of the checkpoint it keeps, and how to resume."""
        parts = []
        for specs, unit in self.running.values():
            specs = [s for s in specs if store.check_complete(s.path) is not None]  # not those it had finished
            if not specs:
                continue
            names = ", ".join(f"{s.experiment}/{s.name}" for s in specs)
            epoch = store.checkpointed_epoch(specs)
            kept = f"the checkpoint of {unit} {epoch}" if epoch else "no checkpoint (none had been saved)"
            parts.append(f"{names} keep{'s' if len(specs) == 1 else ''} {kept}")
        if not parts:
            return NOTHING_IN_PROGRESS
        return f"[hw2] stopped by Ctrl-C: {'; '.join(parts)}; run the same command again to resume"


NOTHING_IN_PROGRESS = ("[hw2] stopped by Ctrl-C with no run in progress (finished runs are kept); run the same "
                       "command again for the rest")


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
    stopper = _Stopper()

    def one(item):
        params, specs = item
        if stopper.requested.is_set():
            return  # Ctrl-C came before this one started
        names = ", ".join(s.name for s in specs)
        start = time.time()
        print(f"[hw2] {question}: running {names} with {params}", flush=True)
        stopper.running[threading.get_ident()] = specs, module.CHECKPOINT_UNIT
        try:
            execute_notebook(project_root() / registry.by_module(module.__name__).notebook, {**params, "profile": profile}, specs,
                             kernel_manager_class=stopper.kernel_manager_class())
        except Exception as exc:  # one failed execution must not stop the others
            if stopper.requested.is_set():
                return  # stopped by Ctrl-C: the main thread says what was kept
            failures.append((names, exc))
            print(f"[hw2] {question}: {names} FAILED: {exc}", file=sys.stderr, flush=True)
        else:
            print(f"[hw2] {question}: {names} done in {time.time() - start:.0f} s", flush=True)
        del stopper.running[threading.get_ident()]

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, stopper.on_sigint) if in_main else None
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            stopper.wait([pool.submit(one, item) for item in todo])
    finally:
        if in_main and not stopper.requested.is_set():  # after a Ctrl-C, a further one stays caught until exit
            signal.signal(signal.SIGINT, previous)
    if stopper.requested.is_set():
        raise Interrupted(stopper.kept())
    if failures:
        print(f"[hw2] {question}: {len(failures)} run(s) failed: {', '.join(n for n, _ in failures)}",
              file=sys.stderr)
        return 1
    return 0
