"""Run the missing runs of a question's plan, each as a papermill execution of its notebook.

The experiments are those of `hw2.engine.registry`; each module follows its `ExperimentModule` contract
(prepare_data, plan, specs, run). The executed notebook is kept in each run folder it wrote, as run.ipynb.

Ctrl-C stops the notebooks being executed (their runs keep the checkpoint of their last finished epoch) and
the runner, which says what was kept and exits with status 130 (`Interrupted`); the same command resumes.

A failed execution is one line when the user can fix it (a UserError, here or in the notebook's kernel; an OSError
such as a full disk) and the notebook's traceback otherwise (a bug).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from hw2.engine import registry, store
from hw2.engine.errors import OS_ERROR_NAMES, USER_ERROR_MARK, ConfigError, UserError, os_error_line, os_error_text_line
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

    logging.getLogger("papermill").addFilter(_not_unknown_parameter)
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
            changed = _code_changed(spec.module) if problem else []
            if changed:  # the kernel imported code edited after this process keyed the run: its key differs
                raise store.RunError(f"the code changed while {spec.name} was starting ({', '.join(changed)}), so "
                                     f"{notebook} wrote the run of the new code instead; run the same command "
                                     f"again (it keeps what the notebook made)")
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


def _not_unknown_parameter(record: logging.LogRecord) -> bool:
    """papermill warns of every parameter that the notebook's parameters cell does not assign by name; ours set
    them all from the experiment's PARAMETERS (`globals().update`), and `notebook_parameters` refuses any other."""
    return not record.getMessage().startswith("Passed unknown parameter")


def _code_changed(module: str) -> list[str]:
    """The files of `module`'s code identity that differ now from when this process keyed its runs (the code as
    read then stays cached for the whole command)."""
    keyed, now = store.code_fingerprints(module), store.code_fingerprints.__wrapped__(module)
    return sorted(name for name in keyed.keys() | now.keys() if keyed.get(name) != now.get(name))


def failure_text(exc: Exception) -> str:
    """What follows "FAILED: " for a failed execution: one line for what the user can fix, the traceback of a bug.

    A notebook's error arrives as papermill's PapermillExecutionError: its class's bare name (`ename`), its
    message (`evalue`) and the lines the kernel showed (`traceback`). A UserError shows there as one marked line
    (`UserError._render_traceback_`), so any subclass is known whatever module defines it; an OSError is known by
    the name of Python's own class (`ename`), its file and errno read from its message."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        if any(line.startswith(USER_ERROR_MARK) for line in exc.traceback or []):
            return exc.evalue
        if exc.ename in OS_ERROR_NAMES:
            return os_error_text_line(exc.evalue)
        return str(exc)  # the notebook's traceback
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError):
        return os_error_line(exc)
    return "".join(traceback.format_exception(exc))


@functools.cache
def quiet_kernel_manager() -> type:
    """jupyter_client's kernel manager without the noise it made on every run (a class made on first use, as
    importing jupyter_client is slow and `status` never starts a kernel)."""
    from jupyter_client import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            # On Linux, IPC sockets in the abstract namespace under a name of their own (no port, no file to clean
            # up), which spares ipykernel's warning that TCP sends code and outputs unencrypted; elsewhere TCP.
            if sys.platform == "linux":
                kwargs = {"transport": "ipc", "ip": f"@hw2-kernel-{uuid.uuid4().hex}", **kwargs}
            super().__init__(**kwargs)

        async def _async_interrupt_kernel(self):
            # jupyter_client interrupts a kernel before asking it to shut down. A notebook's kernel is idle by then
            # (after Ctrl-C, the runner signals it itself), and an interrupt that lands while it handles a message
            # logs "KeyboardInterrupt caught in kernel" after a run that succeeded.
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return QuietKernelManager


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
        kernels = self.kernels

        class RecordedKernelManager(quiet_kernel_manager()):
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
            failures.append(specs)
            print(f"[hw2] {question}: {names} FAILED: {failure_text(exc)}", file=sys.stderr, flush=True)
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
        failed = [spec.name for specs in failures for spec in specs]
        print(f"[hw2] {question}: {len(failed)} run{'s' if len(failed) > 1 else ''} failed: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0
