"""Nothing lost, one line per error: what `python -m hw2 runs` and `status` print when something goes wrong.

A user's error (a data folder that is a file, a full disk, bad data, a bad HW2_THREADS) is one line that says
what was wrong and what to do, whichever module or process meets it; a bug still shows its traceback; a failure
counts runs, not notebook executions; a run that succeeded prints no kernel noise; `status` says where an
interrupted run resumes; a run whose code was edited while it started says so."""
from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import uuid

import nbformat
import pytest
from conftest import ROOT, subprocess_env

from hw2.engine import registry, runner, store

# A toy experiment whose executions fail as asked ("disk": a full disk after its two runs checkpointed step 1;
# "data": a user error in its data; "bug": a bug) or succeed ("none"). Its data is a file in HW2_DATA_DIR.
TOY = '''
from hw2.engine import registry, store
from hw2.engine.errors import UserError
from hw2.engine.paths import data_dir
from hw2.engine.profiles import resolve_profile

ENTRY = registry.Experiment("{name}", "{question}", "Question 9 (toy)", __name__, notebook={notebook!r})
PARAMETERS = {{"fail": "none", "profile": None}}
CHECKPOINT_UNIT = "step"


class ToyDataError(UserError):
    """As a question's data error (a missing wav, a 16 kHz clip)."""


def plan(profile):
    return [{{"fail": fail}} for fail in {fails!r}]


def data_source(profile):
    folder = data_dir()
    return (folder / "toy.txt").read_text().strip() if folder.exists() else None


def prepare_data(profile):
    data_dir().mkdir(parents=True, exist_ok=True)
    (data_dir() / "toy.txt").write_text("synthetic")
    return "synthetic"


def configs(params, profile):
    fail = {{**PARAMETERS, **params}}["fail"]
    return [{{"fail": fail, "member": member}} for member in ((1, 2) if fail == "disk" else (1,))]


def specs(params, profile, data_source):
    return [store.RunSpec.of(ENTRY, c, resolve_profile(profile), data_source, slug=f"{{c['fail']}}{{c['member']}}")
            for c in configs(params, profile)]


def train(runs, fail):
    if fail == "disk":
        for run in runs:
            run.save_checkpoint({{"step": 1}})
        raise OSError(28, "No space left on device")
    if fail == "data":
        raise ToyDataError("wavs/SI001-0001.wav is sampled at 16000 Hz; LJ Speech clips are 22050 Hz")
    if fail == "bug":
        return [1 / 0]
    for run in runs:
        run.log_epoch({{"step": 1}})
    return [{{"fine": True}} for run in runs]


def run(fail="none", profile=None):
    profile = resolve_profile(profile)
    return store.execute_many(specs({{"fail": fail}}, profile, "synthetic"), lambda runs: train(runs, fail), "cpu")
'''

# Registers the toy (importable from PYTHONPATH) and runs the command line: the runner as a process of its own,
# so that what the notebooks' kernels write to their stderr is seen too.
MAIN = '''
import sys

from hw2.engine import registry
from {package} import experiment

registry.EXPERIMENTS.append(experiment.ENTRY)
from hw2.__main__ import main

sys.exit(main(sys.argv[1:]))
'''


def write_toy(folder, package: str, question: str, fails: list[str]):
    """The toy's package `package` under `folder`, and its notebook; returns the package's folder."""
    code = folder / "code" / package
    code.mkdir(parents=True)
    (code / "__init__.py").write_text("")
    notebook = folder / f"{package}.ipynb"
    (code / "experiment.py").write_text(textwrap.dedent(TOY.format(name=f"{question}_toy", question=question,
                                                                   notebook=str(notebook), fails=fails)))
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"},
                                            "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(f"from {package} import experiment\n\n"
                                          "globals().update(experiment.PARAMETERS)", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from hw2.engine.runner import notebook_parameters\n\n"
                                          "params = notebook_parameters(globals(), experiment)"),
                nbformat.v4.new_code_cell("run = experiment.run(**params)")]
    nbformat.write(nb, notebook)
    return code


def register(monkeypatch, code):
    """Import the toy in this process and add it to the registry (for `main` and `status` here)."""
    import importlib

    monkeypatch.syspath_prepend(str(code.parent))
    experiment = importlib.import_module(f"{code.name}.experiment")
    monkeypatch.setattr(registry, "EXPERIMENTS", [*registry.EXPERIMENTS, experiment.ENTRY])
    return experiment


@pytest.fixture(scope="module")
def failing_runs(tmp_path_factory):
    """`python -m hw2 runs q9 --jobs 2` once over the toy's four executions: a full disk (two runs), a user
    error, a bug and a success."""
    folder = tmp_path_factory.mktemp("failing")
    code = write_toy(folder, "hw2_failing_toy", "q9", ["disk", "data", "bug", "none"])
    env = {"HW2_RESULTS_DIR": folder / "results", "HW2_DATA_DIR": folder / "data", "PYTHONPATH": code.parent}
    done = subprocess.run([sys.executable, "-c", MAIN.format(package=code.name), "runs", "q9", "--profile", "smoke",
                           "--jobs", "2"], cwd=ROOT, env=subprocess_env(**env), capture_output=True, text=True,
                          timeout=300)
    return done, env, code


def failed_line(output: str, slug: str) -> str:
    """The FAILED line of the execution of `slug`, checked to be all that was said of it."""
    lines = output.splitlines()
    (at,) = [i for i, line in enumerate(lines) if f": {slug}1-smoke-" in line and " FAILED: " in line]
    assert lines[at + 1].startswith("[hw2] "), "\n".join(lines[at:at + 5])  # no traceback follows
    return lines[at]


@pytest.mark.slow
def test_a_full_disk_in_a_run_is_one_line_naming_the_free_space_and_what_to_do(failing_runs):
    done = failing_runs[0]
    line = failed_line(done.stderr, "disk")
    assert line.startswith("[hw2] q9: disk1-smoke-") and ", disk2-smoke-" in line, line
    assert "could not be written: No space left on device (" in line and " free on the disk of " in line, line
    assert "set HW2_RESULTS_DIR to a folder on another disk, then run the same command again" in line, line


@pytest.mark.slow
def test_a_user_error_in_a_notebook_is_one_line_and_a_bug_keeps_its_traceback(failing_runs):
    done = failing_runs[0]
    line = failed_line(done.stderr, "data")
    assert line.endswith(" FAILED: wavs/SI001-0001.wav is sampled at 16000 Hz; LJ Speech clips are 22050 Hz"), line
    bug = done.stderr.split("bug1-smoke-", 1)[1]  # its FAILED line, then the notebook's traceback
    assert "Traceback" in bug and "return [1 / 0]" in bug and "ZeroDivisionError: division by zero" in bug, bug


@pytest.mark.slow
def test_the_failures_are_counted_in_runs(failing_runs):
    done = failing_runs[0]
    assert done.returncode == 1
    (count,) = [line for line in done.stderr.splitlines() if "failed: " in line]
    assert count.startswith("[hw2] q9: 4 runs failed: "), count  # in 3 executions
    assert "none1-smoke-" in done.stdout and " done in " in done.stdout
    # nor papermill's warning of each parameter (the notebook checks them itself), nor kernel noise
    assert "Passed unknown parameter" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    assert "without encryption" not in done.stderr, done.stderr


def test_a_finished_notebooks_kernel_is_neither_interrupted_nor_warned_about_tcp(results_dir, tmp_path, monkeypatch,
                                                                                capfd):
    """jupyter_client interrupts a kernel before shutting it down, which, landing while the kernel handles a
    message, logged "KeyboardInterrupt caught in kernel" after runs that succeeded; and ipykernel warns on every
    start that TCP is unencrypted (its stderr is ours: capfd sees it)."""
    from jupyter_client.provisioning import LocalProvisioner

    signals = []
    send_signal = LocalProvisioner.send_signal

    async def recorded(self, signum):
        signals.append(signum)
        await send_signal(self, signum)

    monkeypatch.setattr(LocalProvisioner, "send_signal", recorded)
    notebook = tmp_path / "prints.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('ran')")]), notebook)
    spec = store.RunSpec.create("demo", {}, "smoke", "synthetic", slug="demo")
    stopper = runner._Stopper()
    with pytest.raises(store.RunError):  # it wrote no run
        runner.execute_notebook(notebook, {}, [spec], kernel_manager_class=stopper.kernel_manager_class())
    out, err = capfd.readouterr()
    assert "ran" in out and signals == [] and "without encryption" not in err, (signals, err)


@pytest.mark.slow
def test_status_says_from_where_an_interrupted_run_resumes(failing_runs, monkeypatch, capsys):
    from hw2.__main__ import main

    _, env, code = failing_runs
    for key in ("HW2_RESULTS_DIR", "HW2_DATA_DIR"):
        monkeypatch.setenv(key, str(env[key]))
    register(monkeypatch, code)
    assert main(["status", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "q9 (profile smoke, data synthetic): 5 planned: 1 current, 0 stale, 2 missing, 2 partial" in out, out
    for member in (1, 2):
        assert f"  partial disk{member}-smoke-" in out and ": resumable from step 1" in out, out


@pytest.fixture
def toy(tmp_path, monkeypatch, results_dir):
    """The toy, importable and registered in this process (a package of its own per test, as a test may edit its
    code), with a data folder of its own."""
    monkeypatch.setenv("HW2_DATA_DIR", str(tmp_path / "data"))
    experiment = register(monkeypatch, write_toy(tmp_path, f"hw2_toy_{uuid.uuid4().hex[:8]}", "q8", ["none"]))
    yield experiment
    store.code_fingerprints.cache_clear()


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("command", ["runs", "status"])
def test_a_data_folder_that_is_a_file_is_one_line_from_any_module(toy, tmp_path, monkeypatch, capsys, command):
    from hw2.__main__ import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HW2_DATA_DIR", str(blocker))
    assert main([command, *(["q8"] if command == "runs" else []), "--profile", "smoke"]) == 2
    assert one_line(capsys.readouterr().err) == (f"hw2: HW2_DATA_DIR={blocker} is a file, not a folder: set "
                                                 f"HW2_DATA_DIR to a folder, then run the same command again")
    if command == "runs":  # a folder whose parent is a file (as root, the stand-in for an unwritable folder)
        monkeypatch.setenv("HW2_DATA_DIR", str(blocker / "data"))
        assert main(["runs", "q8", "--profile", "smoke"]) == 2
        assert one_line(capsys.readouterr().err) == (
            f"hw2: HW2_DATA_DIR={blocker / 'data'} lies under {blocker}, which is a file, not a folder: set "
            f"HW2_DATA_DIR to a folder, then run the same command again")


def test_an_unwritable_data_folder_is_one_line(toy, tmp_path, monkeypatch, capsys):
    """As root the permissions of a folder are not enforced: the toy's data preparation meets the error itself."""
    from hw2.__main__ import main

    def read_only(profile):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "data" / "toy.txt"))

    monkeypatch.setattr(toy, "prepare_data", read_only)
    assert main(["runs", "q8", "--profile", "smoke"]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"hw2: cannot write to the data folder {tmp_path / 'data'} ({tmp_path / 'data' / 'toy.txt'}: Read-only file "
        f"system); choose another with HW2_DATA_DIR, then run the same command again")


@pytest.mark.parametrize("command", [["runs", "q2"], ["runs", "q3"], ["status"]])
def test_the_questions_data_errors_are_one_line(tmp_path, monkeypatch, capsys, results_dir, command):
    """A data folder that is a file (Q2) and a stand-in corpus whose metadata.csv is not UTF-8 (Q3)."""
    from hw2.__main__ import main
    from hw2.q3 import config, ljspeech

    data = tmp_path / "data"
    cfg = config.for_profile("smoke")
    corpus = ljspeech.standin_folder(data, cfg.n_clips, 0, cfg.corpus)
    (corpus / "wavs").mkdir(parents=True)
    (corpus / "metadata.csv").write_bytes(b"SI001-0001|caf\xe9|caf\xe9\n")
    (corpus / ljspeech.STANDIN_MARKER).write_text("{}")
    monkeypatch.setenv("HW2_DATA_DIR", str(data / "octmnist-is-a-file" if command[-1] == "q2" else data))
    if command[-1] == "q2":
        (data / "octmnist-is-a-file").write_text("")
    assert main([*command, "--profile", "smoke"]) == 2
    err = one_line(capsys.readouterr().err)
    assert ("is a file, not a folder" if command[-1] == "q2" else "byte 0xe9 at column 15 is not UTF-8") in err, err


@pytest.mark.parametrize("value", ["abc", "0"])
def test_hw2_threads_is_checked_once_before_any_notebook(toy, monkeypatch, capsys, value):
    from hw2.__main__ import main

    executed = []
    monkeypatch.setattr(runner, "execute_notebook", lambda *args, **kwargs: executed.append(args))
    monkeypatch.setenv("HW2_THREADS", value)
    for command in (["runs", "q8"], ["status"]):
        assert main([*command, "--profile", "smoke"]) == 2
        assert one_line(capsys.readouterr().err) == (
            f"hw2: HW2_THREADS (the torch threads of a CPU training run) must be a whole number of at least 1, got "
            f"{value!r}: set it to 1, 2, ... or unset it (default 1)")
    assert executed == []


def test_code_edited_while_a_run_starts_is_said_so(toy, monkeypatch):
    """The notebook's kernel imported the edited code, so it wrote the run under the new code's key."""
    import papermill

    (spec,) = toy.specs({"fail": "none"}, "smoke", "synthetic")
    source = toy.__file__

    def edit_then_run(*args, **kwargs):
        with open(source, "a") as fh:
            fh.write("\nEDITED = True\n")

    monkeypatch.setattr(papermill, "execute_notebook", edit_then_run)
    notebook = ROOT / registry.by_module(toy.__name__).notebook
    with pytest.raises(store.RunError) as error:
        runner.execute_notebook(notebook, {"fail": "none"}, [spec])
    package = toy.__name__.split(".")[0]
    assert str(error.value) == (f"the code changed while {spec.name} was starting ({package}/experiment.py), "
                                f"so {notebook} wrote the run of the new code instead; run the same command again (it "
                                f"keeps what the notebook made)")


def test_status_reports_a_questions_unreadable_data_and_goes_on_with_the_others(tmp_path, monkeypatch, capsys):
    from hw2.__main__ import main
    from hw2.q3 import ljspeech

    data = tmp_path / "data"
    corpus = ljspeech.standin_folder(data, 40, 0, "short")  # the smoke profile's corpus, with a bad byte
    corpus.mkdir(parents=True)
    (corpus / "metadata.csv").write_bytes(b"SI001-0001|caf\xff|cafe\n")
    monkeypatch.setenv("HW2_DATA_DIR", str(data))
    monkeypatch.setenv("HW2_RESULTS_DIR", str(tmp_path / "results"))
    assert main(["status", "--profile", "smoke"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("q1 (profile smoke, data synthetic)")  # the other questions are still reported
    assert "q2 (profile smoke): no data yet" in out and "q3" not in out
    assert err.startswith("hw2: q3: ") and "is not UTF-8" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", [["status"], ["data", "verify"], ["runs", "q3"]])
def test_a_data_folder_that_is_a_file_is_said_once_by_every_command(command, tmp_path, monkeypatch, capsys):
    from hw2.__main__ import main

    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setenv("HW2_DATA_DIR", str(tmp_path / "afile"))
    monkeypatch.setenv("HW2_RESULTS_DIR", str(tmp_path / "results"))
    assert main([*command, "--profile", "smoke"]) == 2
    assert capsys.readouterr().err == (f"hw2: HW2_DATA_DIR={tmp_path / 'afile'} is a file, not a folder: set "
                                       f"HW2_DATA_DIR to a folder, then run the same command again\n")
