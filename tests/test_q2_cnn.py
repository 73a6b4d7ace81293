"""Question 2: the CNN, the OCTMNIST data, and a trainer faithful to the skeleton."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from hw2.common.params import get_number_trainable_params
from hw2.engine import fetch, store
from hw2.engine.errors import ConfigError
from hw2.q2 import cnn_cpu, octmnist
from hw2.q2 import experiment as q2_experiment
from hw2.q2 import train as q2_cnn
from hw2.q2.cnn import CNN
from hw2.q2.train import StackedCNN, configure_seed, loader_permutation
from tests.conftest import SMALL_OCTMNIST

# --- the model ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("no_maxpool", [False, True])
def test_both_variants_have_224892_trainable_parameters(no_maxpool):
    assert get_number_trainable_params(CNN(0.7, no_maxpool=no_maxpool)) == 224_892


def test_parameter_count_ignores_frozen_parameters():
    model = CNN()
    model.fc1.weight.requires_grad_(False)
    assert get_number_trainable_params(model) == 224_892 - 576 * 320


@pytest.mark.parametrize("no_maxpool, conv1_out", [(False, 28), (True, 14)])
def test_shapes_of_each_variant(no_maxpool, conv1_out):
    model = CNN(0.7, no_maxpool=no_maxpool).eval()
    x = torch.rand(5, 784)  # the skeleton feeds flattened images
    assert model.conv1(x.reshape(5, 1, 28, 28)).shape == (5, 8, conv1_out, conv1_out)
    assert model.features(x).shape == (5, 16, 6, 6)
    logp = model(x)
    assert logp.shape == (5, 4)
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(5))
    assert (model.pool is None) == no_maxpool
    assert model.conv1.stride == ((2, 2) if no_maxpool else (1, 1))
    assert model.conv2.padding == (0, 0) and model.conv1.padding == (1, 1)
    assert model.drop.p == 0.7 and model.fc3.out_features == 4


# --- the stand-in data and the loader -----------------------------------------------------------------------

def test_standin_has_octmnist_format(octmnist_standin):
    # The full-size file has OCTMNIST's splits and class counts ...
    full = octmnist.standin_counts()
    assert {s: sum(c) for s, c in full.items()} == {"train": 97_477, "val": 10_832, "test": 1_000}
    assert full == {s: tuple(c) for s, c in octmnist.CLASS_COUNTS.items()}
    # ... and the small file of the tests has the same format, with fewer train and validation images.
    counts = octmnist.standin_counts(SMALL_OCTMNIST)
    with np.load(octmnist_standin) as npz:
        assert sorted(npz.files) == sorted([f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")]
                                           + [octmnist.STANDIN_KEY])
        for split in ("train", "val", "test"):
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            n = sum(counts[split])
            assert images.shape == (n, 28, 28) and images.dtype == np.uint8
            assert labels.shape == (n, 1)
            assert np.bincount(labels[:, 0], minlength=4).tolist() == list(counts[split])
        assert 20 < npz["train_images"].mean() < 200  # neither blank nor saturated
    assert counts["test"] == full["test"] and sum(counts["train"]) >= 400 and sum(counts["val"]) >= 200
    assert octmnist.data_source(octmnist_standin).startswith("standin-")


def test_data_is_identified_by_its_content_not_by_a_side_file(octmnist_standin, tmp_path, monkeypatch):
    # The stand-in copied alone (no side file exists any more) is still the stand-in, under the same name.
    copy = tmp_path / "copy" / octmnist.FILE
    copy.parent.mkdir()
    shutil.copy(octmnist_standin, copy)
    assert octmnist.data_source(copy) == octmnist.data_source(octmnist_standin)
    # Another file copied over it is not, even if it were left beside hw2's old side file.
    write_real_format(copy)
    (copy.parent / "octmnist.standin.json").write_text("{}")
    assert octmnist.data_source(copy).startswith("custom-")
    # A stand-in whose arrays were edited keeps its identity entry but not its digest: custom.
    with np.load(octmnist_standin) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["train_labels"] = arrays["train_labels"][::-1].copy()
    np.savez(copy, **arrays)
    assert octmnist.data_source(copy).startswith("custom-")
    # "real" is the published file, recognised by its MD5 (here: pretend this file is the published one).
    monkeypatch.setattr(octmnist, "PUBLISHED_MD5", fetch.file_digest(copy, "md5"))
    assert octmnist.data_source(copy) == f"real-{octmnist.PUBLISHED_MD5[:8]}"


def test_standin_is_deterministic_and_classes_differ():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    labels = np.repeat(np.arange(4, dtype=np.uint8), 300)
    a, b = octmnist.render_scans(labels, rng_a), octmnist.render_scans(labels, rng_b)
    assert np.array_equal(a, b)
    # Class structure exists (class means differ clearly) but is not trivial (a linear probe stays far from 100%).
    X = a.reshape(len(a), -1) / 256.0
    means = np.stack([X[labels == c].mean(0) for c in range(4)])
    assert min(np.abs(means[i] - means[j]).max() for i in range(4) for j in range(i + 1, 4)) > 0.02
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:900], order[900:]
    W = np.linalg.lstsq(np.c_[X[train], np.ones(900)], np.eye(4)[labels[train]], rcond=None)[0]
    linear_acc = (np.argmax(np.c_[X[test], np.ones(len(test))] @ W, 1) == labels[test]).mean()
    assert 0.3 < linear_acc < 0.9


def write_real_format(path, n_train=40, n_val=12, per_class_test=250):
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", 4 * per_class_test)):
        labels = np.arange(n) % 4 if split != "test" else np.repeat(np.arange(4), per_class_test)
        labels = labels[rng.permutation(n)].astype(np.uint8)
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = labels[:, None]
    np.savez(path, **arrays)
    return arrays


def test_loader_on_a_real_format_file_matches_the_skeleton(tmp_path):
    arrays = write_real_format(tmp_path / "octmnist.npz")
    # The right format is not the published file: it is custom data (see the identity test below).
    assert octmnist.data_source(tmp_path / "octmnist.npz").startswith("custom-")
    data = octmnist.load(tmp_path / "octmnist.npz")
    assert data.train_X.dtype == torch.float32 and data.train_X.shape == (40, 784)
    np.testing.assert_array_equal(data.train_X.numpy(), arrays["train_images"].reshape(40, 784) / 256)
    assert data.train_X.max() < 1.0  # /256, not /255
    assert data.train_y.dtype == torch.int64 and data.train_y.shape == (40,)
    # The skeleton's test subsample: the first 182/55/42/250 of classes 0..3, stacked in class order.
    assert len(data.test_y) == 529
    assert data.test_y.tolist() == [0] * 182 + [1] * 55 + [2] * 42 + [3] * 250
    first_cnv = np.flatnonzero(arrays["test_labels"][:, 0] == 0)[0]
    np.testing.assert_array_equal(data.test_X[0].numpy(), arrays["test_images"][first_cnv].reshape(784) / 256)
    assert len(octmnist.load(tmp_path / "octmnist.npz", eq_test_dist=True).test_y) == 1000
    assert len(data.test_full_y) == 1000


@pytest.mark.parametrize("breakage, message", [
    (lambda a: a.pop("val_labels"), "lacks"),
    (lambda a: a.update(train_images=a["train_images"].astype(np.float32)), "uint8"),
    (lambda a: a.update(test_labels=a["test_labels"][:, 0]), "shape"),
])
def test_malformed_files_get_a_clear_error(tmp_path, breakage, message):
    arrays = write_real_format(tmp_path / "ok.npz")
    breakage(arrays)
    np.savez(tmp_path / "octmnist.npz", **arrays)
    with pytest.raises(octmnist.DataError, match=message):
        octmnist.prepare(tmp_path)
    assert (tmp_path / "octmnist.npz").exists()  # nothing is deleted


# --- training semantics ---------------------------------------------------------------------------------------

def test_loader_permutation_draws_exactly_as_the_dataloader():
    n = 37
    torch.manual_seed(3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(n)), batch_size=8, shuffle=True)
    orders = [torch.cat([b[0] for b in loader]) for _ in range(3)]
    after = torch.rand(2)
    torch.manual_seed(3)
    assert all(torch.equal(o, loader_permutation(n)) for o in orders)
    assert torch.equal(after, torch.rand(2))  # the global RNG stream stays aligned for dropout


def skeleton_training(X, y, lr, no_maxpool, epochs):
    """hw2-q2.py's main loop, written the straightforward way."""
    configure_seed(42)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8, shuffle=True)
    model = CNN(0.7, no_maxpool=no_maxpool)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    criterion = nn.NLLLoss()
    losses = []
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return np.array(losses), model.state_dict()


def random_images():
    """203 random images and labels: 25 batches of 8 and a short last one."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(203, 784, generator=gen), torch.randint(0, 4, (203,), generator=gen)


def stacked_epochs(engine, no_maxpool, lrs, batch_size=8, dropout=0.7, l2_decay=0.0, epochs=2):
    """train_epoch on 203 random images through the given engine; returns (losses, member state dicts)."""
    torch.set_num_threads(1)
    X, y = random_images()
    configure_seed(42)
    model = StackedCNN([CNN(dropout, no_maxpool).state_dict()] * len(lrs), no_maxpool, dropout, "cpu")
    losses = [q2_cnn.train_epoch(model, X, y, torch.tensor(lrs), batch_size, l2_decay, use=engine)
              for _ in range(epochs)]
    return torch.cat(losses).numpy(), model.state_dicts()


@pytest.mark.parametrize("no_maxpool", [False, True])
def test_stacked_sweep_equals_three_separate_skeleton_runs(no_maxpool):
    """Same seed => same init, batches and dropout masks in each run; the stacked model reproduces them."""
    lrs = [0.1, 0.01, 0.001]
    losses, states = stacked_epochs("torch", no_maxpool, lrs)
    X, y = random_images()
    for g, lr in enumerate(lrs):
        ref_losses, ref_state = skeleton_training(X, y, lr, no_maxpool, epochs=2)
        np.testing.assert_allclose(losses[:, g], ref_losses, atol=2e-6)
        for name, value in states[g].items():
            torch.testing.assert_close(value, ref_state[name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("no_maxpool, batch_size, dropout, l2_decay", [
    (False, 8, 0.7, 0.0), (True, 8, 0.7, 0.0),  # the homework's setting, both variants
    (False, 5, 0.7, 0.0), (True, 11, 0.0, 0.01),  # other batches (a short last one), no dropout, L2 decay
])
def test_c_steps_equal_the_pytorch_steps(no_maxpool, batch_size, dropout, l2_decay):
    """hw2/q2/cnn_cpu.c computes what the PyTorch path computes, up to float summation order."""
    assert cnn_cpu.available()
    args = (no_maxpool, [0.1, 0.01, 0.001], batch_size, dropout, l2_decay)
    ref_losses, ref_states = stacked_epochs("torch", *args)
    losses, states = stacked_epochs("c", *args)
    np.testing.assert_allclose(losses, ref_losses, atol=2e-6)
    for state, ref_state in zip(states, ref_states):
        for name in state:
            # Up to 82 steps at lr 0.1 grow summation-order differences to ~6e-6 in a few conv1 weights.
            torch.testing.assert_close(state[name], ref_state[name], atol=1e-5, rtol=1e-4)


def test_c_members_of_a_stack_train_exactly_as_they_would_alone():
    stacked_losses, stacked_states = stacked_epochs("c", False, [0.1, 0.01], epochs=1)
    for g, lr in enumerate([0.1, 0.01]):
        losses, (state,) = stacked_epochs("c", False, [lr], epochs=1)
        assert np.array_equal(losses[:, 0], stacked_losses[:, g])
        assert all(torch.equal(state[k], stacked_states[g][k]) for k in state)


def test_without_a_c_compiler_training_says_so_and_uses_pytorch(monkeypatch, capsys):
    monkeypatch.setenv("CC", "no-such-compiler")
    cnn_cpu.library.cache_clear()
    try:
        assert q2_cnn.engine("cpu") == "torch"
        assert "could not be built with 'no-such-compiler'" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        cnn_cpu.library.cache_clear()
    assert q2_cnn.engine("cpu") is None  # both engines work: a sweep measures which is faster


# --- the engine of a sweep: measured, forced, kept on resume ---------------------------------------------------

def test_a_sweep_measures_both_engines_records_the_choice_and_prints_it(octmnist_dir, results_dir, capsys):
    (run,) = q2_experiment.run(0.01, epochs=1, profile="smoke", progress=False)
    choice = run.summary["engine_choice"]
    assert choice["how"] == "measured" and set(choice["seconds_per_step"]) == {"c", "torch"}
    assert choice["trial_steps"] == q2_cnn.CALIBRATION_STEPS and choice["rounds"] == q2_cnn.CALIBRATION_ROUNDS
    assert run.summary["engine"] == choice["engine"] == min(choice["seconds_per_step"], key=choice["seconds_per_step"].get)
    assert f"[hw2] Question 2 engine: {choice['engine']} (measured): a step of the 1 member(s) took" in capsys.readouterr().out


@pytest.mark.parametrize("forced", ["c", "torch"])
def test_a_forced_engine_is_respected_without_measuring(forced, octmnist_dir, results_dir, monkeypatch, capsys):
    monkeypatch.setenv("HW2_CNN_KERNEL", forced)
    monkeypatch.setattr(q2_cnn, "calibrate", lambda *a: pytest.fail("a forced engine is not measured"))
    cnn_cpu.library.cache_clear()
    try:
        (run,) = q2_experiment.run(0.01, epochs=1, profile="smoke", progress=False)
    finally:
        monkeypatch.undo()
        cnn_cpu.library.cache_clear()
    assert run.summary["engine"] == forced
    assert run.summary["engine_choice"] == {"engine": forced, "how": f"forced by HW2_CNN_KERNEL={forced}"}
    assert f"[hw2] Question 2 engine: {forced} (forced by HW2_CNN_KERNEL={forced})" in capsys.readouterr().out


def test_an_unknown_forced_engine_is_refused(monkeypatch):
    monkeypatch.setenv("HW2_CNN_KERNEL", "fortran")
    with pytest.raises(ConfigError, match="HW2_CNN_KERNEL must be 'c' or 'torch'"):
        cnn_cpu.forced()


@pytest.mark.parametrize("slow", ["c", "torch"])
def test_calibration_picks_the_faster_of_two_stubbed_engines(slow, monkeypatch):
    import time

    clock, calls = [0.0], []

    def stub(name):
        def train(model, X, y, lrs, batch_size, l2_decay, bar):
            calls.append((name, len(X)))
            clock[0] += len(X) * (1e-3 if name == slow else 1e-4)  # what the trial costs on this fake clock
        return train

    monkeypatch.setattr(q2_cnn, "_train_epoch_c", stub("c"))
    monkeypatch.setattr(q2_cnn, "_train_epoch_torch", stub("torch"))
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    X, y = random_images()
    model = StackedCNN([CNN().state_dict()] * 2, False, 0.7, "cpu")
    choice = q2_cnn.calibrate(model, X, y, torch.tensor([0.1, 0.01]), 8, 0.0)
    assert choice["engine"] == ("torch" if slow == "c" else "c")
    assert choice["seconds_per_step"] == pytest.approx({slow: 8e-3, choice["engine"]: 8e-4})
    # one warm-up batch each, then the timed trials alternate: c, torch, c, torch, ...
    trials = [(name, q2_cnn.CALIBRATION_STEPS * 8) for _ in range(q2_cnn.CALIBRATION_ROUNDS) for name in ("c", "torch")]
    assert calls == [("c", 8), ("torch", 8)] + trials


def test_calibration_leaves_the_model_and_the_random_stream_as_they_were():
    X, y = random_images()
    model = StackedCNN([CNN().state_dict()] * 2, False, 0.7, "cpu")
    before = [{k: v.clone() for k, v in sd.items()} for sd in model.state_dicts()]
    rng = torch.get_rng_state()
    q2_cnn.calibrate(model, X, y, torch.tensor([0.1, 0.01]), 8, 0.0)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(sd[k], ref[k]) for sd, ref in zip(model.state_dicts(), before) for k in sd)


def dying_in_epoch(epoch: int, permutation):
    """`permutation` (the loader's shuffle, drawn once an epoch) that raises KeyboardInterrupt when drawn for
    `epoch`: a sweep killed during that epoch."""
    calls = {"n": 0}

    def dies(n):
        calls["n"] += 1
        if calls["n"] == epoch:
            raise KeyboardInterrupt(f"killed during epoch {epoch}")
        return permutation(n)
    return dies


def test_a_resumed_sweep_keeps_the_engine_its_interrupted_attempt_chose(octmnist_dir, results_dir, monkeypatch, capsys):
    measured = {"engine": "torch", "how": "measured", "seconds_per_step": {"c": 2e-3, "torch": 1e-3},
                "trial_steps": 24, "rounds": 3}
    monkeypatch.setattr(q2_cnn, "calibrate", lambda *a: dict(measured))
    real = q2_cnn.loader_permutation
    monkeypatch.setattr(q2_cnn, "loader_permutation", dying_in_epoch(2, real))
    with pytest.raises(KeyboardInterrupt):
        q2_experiment.run(0.01, epochs=2, profile="smoke", progress=False)
    monkeypatch.setattr(q2_cnn, "loader_permutation", real)
    monkeypatch.setattr(q2_cnn, "calibrate", lambda *a: pytest.fail("a resumed sweep does not measure again"))
    capsys.readouterr()
    (run,) = q2_experiment.run(0.01, epochs=2, profile="smoke", progress=False)
    assert run.summary["engine"] == "torch"
    assert run.summary["engine_choice"] == {**measured, "how": "as the interrupted sweep chose"}
    assert "[hw2] Question 2 engine: torch (as the interrupted sweep chose): a step of the 1 member(s) took 2.00 ms in C" \
        in capsys.readouterr().out


def test_c_steps_reject_labels_outside_the_four_classes():
    model = StackedCNN([CNN().state_dict()], False, 0.7, "cpu")
    with pytest.raises(ValueError, match="labels must be classes 0..3"):
        cnn_cpu.train_steps(model.params, False, torch.tensor([0.01]), 0.0, torch.rand(8, 784),
                            torch.full((8,), 4), 8, None)


def test_cumulative_training_loss_is_the_skeletons_running_mean(octmnist_dir, results_dir):
    (run,) = q2_experiment.run(0.01, epochs=2, profile="smoke", progress=False)
    h = run.history
    epoch1, epoch2 = h["train_loss_epoch"]
    # Both epochs have the same number of steps, so the running mean after 2 is the mean of the epoch means.
    assert h["train_loss_cumulative"][0] == pytest.approx(epoch1)
    assert h["train_loss_cumulative"][1] == pytest.approx((epoch1 + epoch2) / 2)
    assert run.summary["n_test"] == 529 and run.summary["n_test_full"] == 1000
    # Each run records its confusion matrices; their diagonals give exactly the accuracies it reports.
    for split, n, acc in (("test", 529, "test_acc"), ("test_full", 1000, "test_acc_full")):
        confusion = np.array(run.summary[f"confusion_{split}"])
        assert confusion.shape == (4, 4) and confusion.sum() == n
        assert np.trace(confusion) / n == pytest.approx(run.summary[acc])
    assert np.array(run.summary["confusion_test"]).sum(1).tolist() == [182, 55, 42, 250]  # the skeleton's subsample
    assert np.trace(run.summary["confusion_valid"]) / run.summary["n_val"] == pytest.approx(run.summary["final_valid_acc"])
    assert run.summary["n_train"] == 400 and run.summary["steps_per_epoch"] == 50
    assert run.summary["final_train_loss"] == pytest.approx(h["train_loss_cumulative"].iloc[-1])
    assert run.summary["n_params"] == 224_892
    # env.json records what the run ran with (one torch thread on CPU, sealed before it is restored).
    assert (run.env["device"], run.env["seed"], run.env["torch_threads"]) == ("cpu", 42, 1)
    state = torch.load(run.file("model.pt"))
    assert CNN().load_state_dict(state) is not None


# --- the run store with training ------------------------------------------------------------------------------

def test_killed_sweep_resumes_and_ends_as_an_uninterrupted_one(octmnist_dir, results_dir, monkeypatch):
    kwargs = dict(lr=[0.1, 0.01], epochs=3, profile="smoke", progress=False)
    reference = q2_experiment.run(**kwargs)
    reference = {r.name: (r.summary, r.history) for r in reference}
    for r in store.list_runs("q2_cnn"):
        store._move_aside(r.path, "test: train again")

    real = q2_cnn.loader_permutation
    monkeypatch.setattr(q2_cnn, "loader_permutation", dying_in_epoch(3, real))
    with pytest.raises(KeyboardInterrupt):
        q2_experiment.run(**kwargs)
    partial = sorted((results_dir / "q2_cnn").glob("*.partial"))
    assert len(partial) == 2 and all((p / "checkpoint.pt").exists() for p in partial)
    assert not [p for p in (results_dir / "q2_cnn").iterdir() if p.name in reference]  # nothing half-sealed

    monkeypatch.setattr(q2_cnn, "loader_permutation", real)
    resumed = q2_experiment.run(**kwargs)
    for r in resumed:
        summary, history = reference[r.name]
        timings = ["seconds", "train_seconds"]
        assert r.history.drop(columns=timings).equals(history.drop(columns=timings))
        for key in ("final_train_loss", "final_valid_acc", "test_acc", "test_acc_full"):
            assert r.summary[key] == summary[key]
        assert not (r.path / "checkpoint.pt").exists()


def test_diverging_member_is_recorded_and_the_sweep_goes_on(octmnist_dir, results_dir):
    runs = {r.config["config"]["lr"]: r for r in q2_experiment.run([1e6, 0.01], epochs=3, profile="smoke",
                                                                progress=False)}
    bad, good = runs[1e6], runs[0.01]
    assert bad.summary["status"] == "diverged" and bad.summary["diverged_epoch"] == 1
    assert bad.summary["test_acc"] is None
    assert len(bad.history) == 1 and not np.isfinite(bad.history["train_loss_epoch"][0])
    assert good.summary["status"] == "complete" and len(good.history) == 3
    assert np.isfinite(good.history["train_loss_cumulative"]).all()
    # A diverged run is still a finished run: asking again reuses it.
    assert store.check_complete(bad.path) is None


@pytest.mark.parametrize("params, message", [
    ({"lr": -0.1}, "lr must be a positive number"),
    ({"lr": float("nan")}, "lr must be a positive number"),
    ({"lr": "0.1"}, "lr must be a positive number"),
    ({"lr": []}, "empty"),
    ({"lr": 0.1, "profile": "huge"}, "unknown profile 'huge'"),
    ({"lr": 0.1, "epochs": 0}, "epochs must be a positive integer"),
    ({"lr": 0.1, "batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"lr": 0.1, "no_maxpool": "yes"}, "no_maxpool must be True or False"),
    ({"lr": 0.1, "seed": -1}, "seed must be a non-negative integer"),
    ({"lr": 0.1, "device": "tpu"}, "unknown device"),
])
def test_bad_parameters_are_rejected_with_a_clear_message(params, message):
    with pytest.raises(ConfigError, match=message):
        q2_experiment.configs(params, params.get("profile"))


def test_plan_is_the_statements_sweep():
    plan = q2_experiment.plan("full")
    assert plan == [{"lr": [0.1, 0.01, 0.001], "no_maxpool": False}, {"lr": [0.1, 0.01, 0.001], "no_maxpool": True}]
    configs = q2_experiment.configs(plan[0], "full")
    assert [(c.epochs, c.batch_size, c.dropout, c.seed, c.n_train) for c in configs] == [(15, 8, 0.7, 42, None)] * 3
    assert configs[1].label == "0.01-0.7-0-sgd-False"
