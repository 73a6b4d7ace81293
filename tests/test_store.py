"""The run store: keys, atomic sealing, corrupt folders, locking."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import time
from pathlib import Path

import pytest

from hw2.engine import registry, store


def spec(config=None, **kw):
    return store.RunSpec.create("demo", config or {"a": 1}, kw.get("profile", "smoke"), kw.get("source", "synthetic"),
                                slug="demo")


def trivial_train(run):
    run.log_epoch({"epoch": 1, "loss": 0.5})
    run.write_text("weights.bin", "w")
    return {"final_loss": 0.5}


def test_key_depends_on_config_profile_data_and_code(results_dir):
    base = spec()
    assert spec().key == base.key
    assert spec({"a": 2}).key != base.key
    assert spec(profile="quick").key != base.key
    assert spec(source="real-1234").key != base.key
    other_code = store.RunSpec("demo", {"a": 1}, "smoke", "synthetic", "demo", code="0" * 64)
    assert other_code.key != base.key
    assert base.path == results_dir / "demo" / f"demo-smoke-{base.key}"


def test_execute_seals_a_complete_folder_and_reuses_it(results_dir, capsys):
    s = spec()
    run = store.execute(s, trivial_train)
    assert run.path == s.path and not s.partial_path.exists()
    assert sorted(p.name for p in s.path.iterdir()) == ["config.json", "env.json", "history.csv", "summary.json",
                                                          "weights.bin"]
    summary = json.loads((s.path / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["final_loss"] == 0.5
    assert set(summary["files"]) == {"config.json", "env.json", "history.csv", "weights.bin"}
    assert summary["files"]["weights.bin"] == {"bytes": 1, "sha256": hashlib.sha256(b"w").hexdigest()}
    env = json.loads((s.path / "env.json").read_text())
    assert {"python", "torch", "git_commit", "wall_time_s", "cpu_count"} <= set(env)

    def must_not_train(run):
        raise AssertionError("a complete run was trained again")

    store.execute(s, must_not_train)
    assert "complete; reusing it" in capsys.readouterr().out


def _edit_summary(path, change, reseal):
    """Change summary.json: as the store writes it (`reseal`, with a fresh digest) or by hand."""
    summary = json.loads((path / "summary.json").read_text())
    change(summary)
    if reseal:
        summary.pop(store.SUMMARY_DIGEST, None)
        store.write_summary(path / "summary.json", summary)
    else:
        (path / "summary.json").write_text(json.dumps(summary, indent=2))


def _same_size_edit(path):
    """history.csv edited in place, keeping its size: its last row's loss 0.5 becomes 0.9."""
    text = (path / "history.csv").read_text()
    (path / "history.csv").write_text(text.replace("0.5", "0.9"))
    assert len((path / "history.csv").read_text()) == len(text)


@pytest.mark.parametrize("damage, reason", [
    (lambda p: (p / "summary.json").unlink(), "incomplete: summary.json is missing"),
    (lambda p: (p / "summary.json").write_text("{not json"), "damaged: summary.json is unreadable"),
    (lambda p: (p / "weights.bin").write_text("truncated!"), "damaged: weights.bin has 10 bytes, the manifest says 1"),
    (lambda p: (p / "history.csv").unlink(), "damaged: history.csv is in the manifest but missing"),
    (_same_size_edit, "damaged: history.csv differs from the manifest's sha256 (edited in place"),
    (lambda p: _edit_summary(p, lambda s: s.pop("files"), reseal=True), "incomplete: summary.json holds no manifest"),
    (lambda p: _edit_summary(p, lambda s: s.update(final_loss=0.1), reseal=False),
     "damaged: summary.json was edited after the run finished"),
    (lambda p: _edit_summary(p, lambda s: s.update(files={k: v["bytes"] for k, v in s["files"].items()}),
                             reseal=False), "unverifiable: its manifest records no content hashes"),
])
def test_a_damaged_folder_is_moved_aside_and_redone(results_dir, capsys, damage, reason):
    s = spec()
    store.execute(s, trivial_train)
    damage(s.path)
    assert reason in store.check_complete(s.path)
    with pytest.raises(store.RunError, match="cannot be used: " + re.escape(reason)):
        store.list_runs("demo")  # never shown, never silently left out
    store.execute(s, trivial_train)
    assert store.check_complete(s.path) is None
    trash = list((results_dir / "demo" / ".trash").iterdir())
    assert len(trash) == 1 and trash[0].name.startswith(s.name)  # the damaged copy is kept, not deleted
    err = capsys.readouterr().err
    assert f"was moved to {trash[0]}: {reason}" in err and "; training it again" in err


def test_the_report_refuses_a_damaged_run_naming_the_file_and_the_command(results_dir):
    from hw2.reporting.runs import require_runs
    from runfolders import q2_runs

    runs = q2_runs("smoke")
    assert len(require_runs("q2_cnn", "smoke")) == 6
    _same_size_edit(runs[2].path)
    with pytest.raises(store.RunError) as error:
        require_runs("q2_cnn", "smoke")
    assert str(error.value) == (
        f"{runs[2].path} cannot be used: damaged: history.csv differs from the manifest's sha256 (edited in place "
        f"after the run finished); `PROFILE=smoke make runs-q2` moves it to {runs[2].path.parent / '.trash'} and "
        f"trains it again")
    with pytest.raises(store.RunError, match="no test_predictions.csv in its manifest"):
        runs[0].file("test_predictions.csv")


def test_a_damaged_run_of_earlier_code_is_never_shown_and_the_message_says_no_command_retrains_it(
        results_dir, monkeypatch):
    s = spec()
    store.execute(s, trivial_train)
    _same_size_edit(s.path)
    monkeypatch.setattr(store, "code_hash", lambda module="": "the current code")
    assert store.list_runs("demo") == []  # of earlier code: not shown by default
    with pytest.raises(store.RunError, match=re.escape(
            f"it was made by earlier code, which no command trains again: move it to {s.path.parent / '.trash'} "
            f"yourself (`python -m hw2 runs` trains the current code's run)")):
        store.list_runs("demo", current_code=False)  # as HW2_STALE=use asks


def test_a_failing_training_leaves_only_a_partial_folder(results_dir):
    s = spec()

    def crash(run):
        run.log_epoch({"epoch": 1})
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        store.execute(s, crash)
    assert not s.path.exists() and (s.partial_path / "history.csv").exists()
    with pytest.raises(store.RunError, match="make runs-q9"):
        store.find(s, "runs-q9")


def test_checkpoint_round_trip_and_corrupt_checkpoint(results_dir, capsys):
    s = spec()
    s.partial_path.mkdir(parents=True)
    run = store.Run(s)
    run.log_epoch({"epoch": 1, "loss": 1.0})
    run.save_checkpoint({"weights": [1, 2, 3]})
    again = store.Run(s)
    assert again.load_checkpoint() == {"weights": [1, 2, 3]} and again.history == [{"epoch": 1, "loss": 1.0}]
    (s.partial_path / "checkpoint.pt").write_bytes(b"garbage")
    assert store.Run(s).load_checkpoint() is None
    assert "unreadable checkpoint" in capsys.readouterr().err


def _slow_train_in_process(results, queue):
    import os

    os.environ["HW2_RESULTS_DIR"] = results

    def slow(run):
        time.sleep(1.0)
        return trivial_train(run)

    store.execute(spec(), slow)
    queue.put(os.getpid())


def test_two_processes_asking_for_one_run_train_it_once(results_dir, capfd):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_slow_train_in_process, args=(str(results_dir), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    out = capfd.readouterr().out
    assert out.count("complete; reusing it") == 1
    assert not list((results_dir / "demo").glob(".trash"))


def test_list_runs_filters_profile_and_code(results_dir, monkeypatch):
    store.execute(spec(), trivial_train)
    store.execute(spec(profile="quick"), trivial_train)
    assert [r.summary["profile"] for r in store.list_runs("demo", "quick")] == ["quick"]
    assert len(store.list_runs("demo")) == 2
    monkeypatch.setattr(store, "code_hash", lambda module="": "changed")
    assert store.list_runs("demo", "quick") == []
    assert len(store.list_runs("demo", "quick", current_code=False)) == 1


def test_a_runs_code_is_its_module_and_what_it_imports():
    files = {p.relative_to(store.PACKAGE_DIR).as_posix() for p in store.code_files("hw2.q2.experiment")}
    assert {"q2/experiment.py", "q2/train.py", "q2/cnn.py", "q2/octmnist.py", "q2/cnn_cpu.py", "q2/cnn_cpu.c",
            "common/loader_rng.py", "common/params.py"} <= files
    # Editing the engine, the report, the configuration and profile table or another question does not retrain Q2.
    assert not {f for f in files if f.startswith(("engine/", "reporting/", "q1/", "q3/"))}
    assert not files & {"q2/report.py", "q2/config.py", "__main__.py"}


# --- run identity follows what can change a result ------------------------------------------------------------

def _reworded(text: str) -> str:
    """The module with every docstring reworded, a comment added and the formatting of ast.unparse."""
    import ast

    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body[0].value.value = "Reworded: " + node.body[0].value.value[::-1]
    return "# a comment added while editing\n" + ast.unparse(tree) + "\n"


def test_rewording_docstrings_and_comments_anywhere_keeps_every_runs_identity(tmp_path):
    files = {p for e in registry.EXPERIMENTS for p in store.code_files(e.module)}
    assert len(files) > 10
    for path in sorted(files):
        copy = tmp_path / path.relative_to(store.PACKAGE_DIR)
        copy.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            copy.write_text(_reworded(path.read_text()))
        else:  # C: comments reworded and re-indented
            copy.write_text("/* reworded */\n" + path.read_text().replace("    ", "\t").replace("// ", "//  x "))
        assert store.normalized_code(copy) == store.normalized_code(path), path.name


def code_hashes_after_edit(tmp_path, monkeypatch, relative: str, edit) -> dict[str, str]:
    """Every experiment's code identity with the package's file `relative` edited by `edit(text) -> text`, computed
    on a copy of the package (the checkout is never touched)."""
    import shutil

    copy = tmp_path / "hw2"
    shutil.copytree(store.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / relative).write_text(edit((copy / relative).read_text()))
    with monkeypatch.context() as patch:
        patch.setattr(store, "PACKAGE_DIR", copy)
        store.code_fingerprints.cache_clear()
        try:
            return {e.name: store.code_hash(e.module) for e in registry.EXPERIMENTS}
        finally:
            store.code_fingerprints.cache_clear()


def current_code_hashes() -> dict[str, str]:
    return {e.name: store.code_hash(e.module) for e in registry.EXPERIMENTS}


def test_editing_q2s_model_retrains_q2_only(tmp_path, monkeypatch):
    before = current_code_hashes()
    after = code_hashes_after_edit(tmp_path, monkeypatch, "q2/cnn.py", lambda text: text + "\nEXTRA_CONSTANT = 1\n")
    assert after["q2_cnn"] != before["q2_cnn"]
    assert after["q3_asr"] == before["q3_asr"] and after["q1_attention"] == before["q1_attention"]


def test_a_real_change_to_q3s_model_makes_q3_stale(tmp_path, monkeypatch):
    before = current_code_hashes()
    after = code_hashes_after_edit(tmp_path, monkeypatch, "q3/asr.py",
                                   lambda text: text.replace("batch_first=True", "batch_first=False", 1))
    assert after["q3_asr"] != before["q3_asr"]
    assert after["q2_cnn"] == before["q2_cnn"] and after["q1_attention"] == before["q1_attention"]


def test_editing_a_configuration_module_or_a_report_helper_keeps_every_run(tmp_path, monkeypatch):
    before = current_code_hashes()
    for relative in ("q3/config.py", "q2/report.py", "engine/store.py"):
        assert code_hashes_after_edit(tmp_path / relative, monkeypatch, relative,
                                      lambda text: text + "\nEXTRA_CONSTANT = 1\n") == before, relative


def test_status_names_stale_runs_and_the_changed_files_and_the_report_uses_them_only_when_told(
        results_dir, monkeypatch, capsys):
    from hw2.__main__ import main
    from hw2.q1 import experiment as q1_experiment
    from hw2.reporting.wording import caption_note

    run = q1_experiment.run("smoke")
    assert main(["status", "--profile", "smoke"]) == 0
    assert "q1 (profile smoke, data synthetic): 1 planned: 1 current, 0 stale, 0 missing" in capsys.readouterr().out
    # the attention code changes (a statement, not a docstring): the run is stale and status says why
    before = store.code_fingerprints("hw2.q1.experiment")
    changed = {**before, "q1/taylor.py": "0" * 16}
    monkeypatch.setattr(store, "code_fingerprints", lambda module="": changed if module == "hw2.q1.experiment"
                        else before)
    assert main(["status", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "0 current, 1 stale, 0 missing; `PROFILE=smoke make runs-q1` makes them" in out
    assert f"made from {run.path.name}, whose code differs in q1/taylor.py" in out
    assert store.runs_for_report("q1_attention", "smoke") == []  # never used silently
    monkeypatch.setenv("HW2_STALE", "use")
    (shown,) = store.runs_for_report("q1_attention", "smoke")
    assert shown.stale and shown.changed_files() == ["q1/taylor.py"]
    assert "Made with earlier code" in caption_note([shown]) and "q1/taylor.py" in caption_note([shown])
    monkeypatch.setenv("HW2_STALE", "maybe")
    with pytest.raises(store.RunError, match="HW2_STALE must be 'use'"):
        store.runs_for_report("q1_attention", "smoke")
    # a run whose files no longer match its manifest: status names it, the file and what to do
    monkeypatch.setattr(store, "code_fingerprints", lambda module="": before)
    text = (run.path / "history.csv").read_text()
    (run.path / "history.csv").write_text(text[:-2] + ("0" if text[-2] != "0" else "1") + text[-1])
    assert main(["status", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "0 current, 0 stale, 0 missing, 1 damaged; `PROFILE=smoke make runs-q1` makes them" in out
    assert (f"  damaged {run.path.name}: history.csv differs from the manifest's sha256 (edited in place "
            f"after the run finished); `PROFILE=smoke make runs-q1` moves it to .trash and trains it again") in out


def test_the_command_line_refuses_what_it_does_not_understand(capsys):
    from hw2.__main__ import main

    for argv, message in ((["runs", "q1", "--profle", "smoke"], "unrecognized arguments: --profle smoke"),
                          (["runs", "q1", "--jobs", "0"], "at least 1"), (["runs", "q4"], "invalid choice: 'q4'"),
                          (["status", "extra"], "unrecognized arguments: extra")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_second_notebook_execution_never_rewrites_a_finished_runs_record(results_dir, monkeypatch, tmp_path):
    """Two processes asking for one run: the one that waited and reused it must not overwrite run.ipynb."""
    import papermill

    from hw2.engine import runner as runs

    s = spec()
    store.execute(s, trivial_train)
    (s.path / "run.ipynb").write_text("the notebook that trained it")
    store.add_to_manifest(s.path, "run.ipynb")
    temporaries = []

    def fake_execute(notebook, output, **kwargs):  # the waiting process's notebook: "reusing it"
        temporaries.append(output)
        Path(output).write_text("a notebook that only reused the run")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    runs.execute_notebook(tmp_path / "nb.ipynb", {}, [s])
    assert (s.path / "run.ipynb").read_text() == "the notebook that trained it"
    assert store.check_complete(s.path) is None
    assert str(os.getpid()) in Path(temporaries[0]).name and not Path(temporaries[0]).exists()


def test_two_first_runs_generating_the_octmnist_stand_in_at_once_both_succeed(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from hw2.q2 import octmnist

    path = tmp_path / octmnist.FILE
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: octmnist.write_standin(path, fractions={"train": 0.001, "val": 0.005}), range(2)))
    octmnist.validate(path)
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []


def test_editing_a_latex_string_of_q1s_answers_keeps_q1s_benchmark_current(tmp_path, monkeypatch):
    assert "q1/answers.py" not in store.code_fingerprints("hw2.q1.experiment")
    before = current_code_hashes()
    old, new = r"\text{ score matrix: }", r"\text{ matrix of scores: }"
    assert old in (store.PACKAGE_DIR / "q1/answers.py").read_text()
    assert code_hashes_after_edit(tmp_path, monkeypatch, "q1/answers.py", lambda text: text.replace(old, new)) == before


def test_a_real_change_to_q1s_crossover_computation_makes_q1_stale(tmp_path, monkeypatch):
    before = current_code_hashes()
    old, new = "positive[-1]", "positive[0]"
    assert old in (store.PACKAGE_DIR / "q1/derivations.py").read_text()
    after = code_hashes_after_edit(tmp_path, monkeypatch, "q1/derivations.py", lambda text: text.replace(old, new))
    assert after["q1_attention"] != before["q1_attention"]
    assert after["q2_cnn"] == before["q2_cnn"] and after["q3_asr"] == before["q3_asr"]
