"""A Question 2 sweep (several learning rates trained together, each member checkpointed in its own folder)
recovers by itself when its checkpoint writes were cut apart: by a full disk or by a kill between members."""
from __future__ import annotations

import errno
import os
import re
import subprocess

import pytest
import torch

from hw2.engine import store
from hw2.q2 import experiment as q2_experiment

SWEEP = dict(lr=[0.1, 0.01], epochs=2, profile="smoke", progress=False)


def _train_again(results_dir):
    """Train the sweep once, uninterrupted, as the reference; then move its runs aside to train them again."""
    reference = {r.name: r for r in q2_experiment.run(**SWEEP)}
    for run in reference.values():
        store._move_aside(run.path, "test: train again")
    return reference


def reference_path(runs, lr):
    (run,) = [r for r in runs if r.config["config"]["lr"] == lr]
    return run.path


def _same_results(runs, reference):
    for run in runs:
        ref = reference[run.name]
        timings = ["seconds", "train_seconds"]
        assert run.history.drop(columns=timings).equals(ref.history.drop(columns=timings))
        for key in ("status", "diverged_epoch", "final_train_loss", "final_valid_acc", "test_acc", "test_acc_full"):
            assert run.summary[key] == ref.summary[key], key


def _partial(results_dir, lr):
    (folder,) = (results_dir / "q2_cnn").glob(f"lr{lr:g}-*.partial")
    return folder


def _epochs_logged(results_dir, lr):
    """The epochs in the newest checkpoint of the member's .partial folder."""
    return len(torch.load(_partial(results_dir, lr) / "checkpoint.pt", weights_only=False)["history"])


def _temporaries(results_dir):
    return sorted(p.name for p in (results_dir / "q2_cnn").rglob("*") if re.search(r"\.tmp\d+", p.name))


def test_a_full_disk_at_the_second_members_checkpoint_is_recovered_by_the_next_attempt(
        octmnist_dir, results_dir, monkeypatch, capsys):
    reference = _train_again(results_dir)
    real_fsync, writes = os.fsync, []

    def disk_full_at_lr001_epoch_2(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if "lr0.01-" in path and ".checkpoint.pt.tmp" in path:
            writes.append(path)
            if len(writes) == 2:  # its epoch-2 checkpoint, after the lr0.1 member's was written
                raise OSError(errno.ENOSPC, "No space left on device", path)
        real_fsync(fd)

    monkeypatch.setattr(store.os, "fsync", disk_full_at_lr001_epoch_2)
    with pytest.raises(OSError, match="No space left on device"):
        q2_experiment.run(**SWEEP)
    monkeypatch.setattr(store.os, "fsync", real_fsync)
    left_behind = _temporaries(results_dir)
    assert (_epochs_logged(results_dir, 0.1), _epochs_logged(results_dir, 0.01)) == (2, 1)
    capsys.readouterr()

    _same_results(q2_experiment.run(**SWEEP), reference)  # the next attempt, as the runner makes it
    assert left_behind == []  # the failed write removed its temporary file
    out = capsys.readouterr().out
    assert "all resume from epoch 1, the last they share, and train again what lr0.1-" in out
    assert "(epoch 2) had done after it" in out
    assert not list((results_dir / "q2_cnn").glob("*.partial")) and _temporaries(results_dir) == []


def test_a_kill_between_the_members_checkpoints_leaves_a_stale_temporary_that_the_next_attempt_removes(
        octmnist_dir, results_dir, monkeypatch, capsys):
    """A diverged member logs no more epochs, so its history is shorter than its sweep's: the checkpoint's epoch,
    not the history's length, says where the sweep resumes."""
    sweep = {**SWEEP, "lr": [1e6, 0.01]}
    reference = {r.name: r for r in q2_experiment.run(**sweep)}
    for run in reference.values():
        store._move_aside(run.path, "test: train again")
    real_save, saves = store.Run.save_checkpoint, []

    def killed_before_the_second_members_epoch_2_checkpoint(*args, **kwargs):
        saves.append(args)
        if len(saves) == 4:  # epoch 2, second member
            raise KeyboardInterrupt("killed between the members' checkpoint writes")
        real_save(*args, **kwargs)

    monkeypatch.setattr(store.Run, "save_checkpoint", killed_before_the_second_members_epoch_2_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        q2_experiment.run(**sweep)
    monkeypatch.setattr(store.Run, "save_checkpoint", real_save)
    # A writer killed outright (SIGKILL, power cut) cannot remove its temporary file: leave one as it would.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = _partial(results_dir, 0.01) / f".checkpoint.pt.tmp{dead.pid}-1"
    stale.write_bytes(b"half a checkpoint")
    live = _partial(results_dir, 0.01) / f".notes.tmp{os.getpid()}-1"  # a live writer's: never touched
    live.write_bytes(b"in progress")

    runs = q2_experiment.run(**sweep)
    _same_results(runs, reference)
    assert {r.summary["diverged_epoch"] for r in runs} == {1, None}
    assert not stale.exists() and (reference_path(runs, 0.01) / live.name).exists()  # moved with its sealed folder
    assert f"removed 1 temporary file(s) left by writers that are no longer running: {stale}" in capsys.readouterr().err
