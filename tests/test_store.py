"""The run store: keys, atomic sealing, corrupt folders, locking."""
from __future__ import annotations

import json
import multiprocessing
import time

import pytest

from hw2 import store


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
    env = json.loads((s.path / "env.json").read_text())
    assert {"python", "torch", "git_commit", "wall_time_s", "cpu_count"} <= set(env)

    def must_not_train(run):
        raise AssertionError("a complete run was trained again")

    store.execute(s, must_not_train)
    assert "complete; reusing it" in capsys.readouterr().out


@pytest.mark.parametrize("damage, reason", [
    (lambda p: (p / "summary.json").unlink(), "summary.json is missing"),
    (lambda p: (p / "summary.json").write_text("{not json"), "unreadable"),
    (lambda p: (p / "weights.bin").write_text("truncated!"), "the manifest says"),
    (lambda p: (p / "history.csv").unlink(), "history.csv is missing"),
])
def test_a_damaged_folder_is_moved_aside_and_redone(results_dir, capsys, damage, reason):
    s = spec()
    store.execute(s, trivial_train)
    damage(s.path)
    assert reason in store.check_complete(s.path)
    store.execute(s, trivial_train)
    assert store.check_complete(s.path) is None
    trash = list((results_dir / "demo" / ".trash").iterdir())
    assert len(trash) == 1 and trash[0].name.startswith(s.name)  # the damaged copy is kept, not deleted
    assert "moved to" in capsys.readouterr().err


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


def test_list_runs_filters_profile_and_code(results_dir):
    store.execute(spec(), trivial_train)
    store.execute(spec(profile="quick"), trivial_train)
    assert [r.summary["profile"] for r in store.list_runs("demo", "quick")] == ["quick"]
    assert len(store.list_runs("demo")) == 2
    summary_path = store.list_runs("demo", "quick")[0].path / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["code"] = "stale"
    summary_path.write_text(json.dumps(summary))
    assert store.list_runs("demo", "quick") == []
    assert len(store.list_runs("demo", "quick", current_code=False)) == 1


def test_a_runs_code_is_its_module_and_what_it_imports():
    files = {p.relative_to(store.PACKAGE_DIR).as_posix() for p in store.code_files("q2_cnn")}
    assert {"train_cnn.py", "models/cnn.py", "data/octmnist.py", "store.py", "cnn_cpu.py", "cnn_cpu.c"} <= files
    # Editing the report, the renderer, the profile table or another question does not retrain Q2.
    assert not files & {"render.py", "report.py", "profiles.py", "runs.py", "train_asr.py", "audio.py"}
