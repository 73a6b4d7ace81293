"""Question 3 training: the skeleton's schedule, parameter validation, a smoke run of both decoders through
the notebook, resume after an interrupted epoch, and divergence handling."""
import csv
import importlib
import json
import os
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hw2.engine import registry, store
from hw2.engine.errors import ConfigError
from hw2.q3 import experiment as q3_experiment
from hw2.q3 import train as q3_asr
from hw2.q3.config import for_profile as q3_config
from hw2.q3.config import plan as q3_plan
from hw2.q3.metrics import SIMILARITY_NAMES
from hw2.q3.train import ASRConfig, lr_schedule

ROOT = Path(__file__).resolve().parent.parent
SKELETON_LRS = [1e-5, 5.05e-4, 1e-3, 9.175e-4, 8.35e-4, 7.525e-4, 6.7e-4, 5.875e-4, 5.05e-4, 4.225e-4, 3.4e-4,
                2.575e-4, 1.75e-4, 9.25e-5, 1e-5]
HISTORY_COLUMNS = ["epoch", "steps", "lr", "train_loss", "val_loss", *(f"val_{n}" for n in SIMILARITY_NAMES), "val_output",
                   "val_looping_share", "val_most_common_share", "seconds",
                   "train_seconds"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A smoke-sized stand-in corpus and an empty results folder, shared by this module's runs."""
    root = tmp_path_factory.mktemp("q3")
    values = {"HW2_DATA_DIR": str(root / "data"), "HW2_RESULTS_DIR": str(root / "results")}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_learning_rates_are_the_skeletons_fifteen():
    assert lr_schedule(ASRConfig()) == pytest.approx(SKELETON_LRS, rel=1e-9)


@pytest.mark.parametrize("epochs", [2, 6, 7, 8, 15, 20])
def test_learning_rates_equal_torchs_sequential_schedule(epochs):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-3)
    warm, decay = int(0.15 * epochs), int(0.85 * epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "epoch parameter" warning at the milestone, as in the skeleton
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [
            torch.optim.lr_scheduler.LinearLR(opt, 0.01, 1.0, warm),
            torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.01, decay)], milestones=[warm])
        rates = []
        for _ in range(epochs):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    assert lr_schedule(ASRConfig(epochs=epochs)) == pytest.approx(rates, rel=1e-9)


def test_full_profile_is_the_skeleton_protocol():
    cfg = q3_config("full")
    assert (cfg.epochs, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.eval_batch_size) == (15, 1e-3, 0.01, 64, 16)
    assert (cfg.label_smoothing, cfg.seed, cfg.n_encoder_layers, cfg.n_clips) == (0.1, 42, 2, 13_100)
    assert cfg.audio_frames == 2754 and not cfg.bf16
    assert q3_config("quick").audio_frames < 2754  # the explicit, result-changing crop is for quick only
    assert [p["decoder"] for p in q3_plan("full")] == ["rnn", "transformer"]


@pytest.mark.parametrize("params, message", [
    ({"decoder": "lstm"}, "decoder must be one of 'rnn', 'transformer'"),
    ({"epochs": 0}, "epochs must be a whole number of at least 1"),
    ({"epochs": 2.5}, "epochs must be a whole number"),
    ({"n_encoder_layers": "4"}, "n_encoder_layers must be a whole number"),
    ({"seed": -1}, "seed must be a non-negative whole number"),
    ({"batch": 8}, "unknown parameter"),
])
def test_bad_parameters_are_clear_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        q3_experiment.configs(params, "smoke")


def test_bad_device_and_profile_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        q3_experiment.run(device="gpu", profile="smoke")
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        q3_experiment.run(profile="fast")


@pytest.mark.slow
def test_smoke_runs_of_both_decoders_through_the_notebook(with_smoke_runs):
    cmd = [sys.executable, "-m", "hw2", "runs", "q3", "--profile", "smoke"]
    env = with_smoke_runs.env
    assert "[hw2] q3_asr: profile=smoke data=" in with_smoke_runs.output  # the banner
    source = q3_experiment.prepare_data("smoke")
    cfg = q3_config("smoke")
    for params in q3_plan("smoke"):
        path = q3_experiment.specs(params, "smoke", source)[0].path
        assert store.check_complete(path) is None
        run = store.load(path)
        assert {"run.ipynb", "model.pt", "test_predictions.csv", "attention.npz", "metrics_raw.json"} <= set(
            run.summary["files"])
        assert list(run.history.columns) == HISTORY_COLUMNS
        assert run.history["epoch"].tolist() == [1, 2]
        assert run.history["lr"].tolist() == pytest.approx(lr_schedule(cfg))
        assert run.summary["status"] == "complete" and run.summary["decoder"] == params["decoder"]
        assert run.summary["n_params"] == {"rnn": 1_471_235, "transformer": 1_329_835}[params["decoder"]]
        for key in ("test_loss", *(f"test_{n}" for n in SIMILARITY_NAMES)):
            assert np.isfinite(run.summary[key]), key
        with open(run.file("test_predictions.csv")) as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == run.summary["n_test"]
        assert all(r["target"].startswith("<") and r["target"].endswith(">") for r in rows)
        assert all(r["prediction"].startswith("<") and r["prediction"].endswith(">") for r in rows)
        mean_dl = np.mean([float(r["damerau-levenshtein_similarity"]) for r in rows])
        assert mean_dl == pytest.approx(run.summary["test_damerau-levenshtein_similarity"], abs=1e-5)
        att = np.load(run.file("attention.npz"))
        n = cfg.n_attention_clips
        assert att["weights"].shape == (n, 2, 98, cfg.audio_frames // 2)
        assert np.allclose(att["weights"].astype(np.float32).sum(-1), 1, atol=1e-2)
        assert att["tokens"].shape == (n, 98) and att["generated"].shape == (n, 99)
        raw = json.loads(run.file("metrics_raw.json").read_text())
        assert len(raw["validation"]) == 2 and sum(raw["test"]["n"]) == run.summary["n_test"]
        # what the run changed and cut is on record: the short stand-in fits its frames and the tokenizer
        nothing = {"train": 0, "validation": 0, "test": 0}
        assert run.summary["cropped_clips"] == nothing and run.summary["truncated_transcripts"] == nothing
        assert run.summary["protocol_deviations"]["corpus"] == {"value": "short", "protocol": "ljspeech"}
        assert run.summary["test_seen_in_train"] + run.summary["test_unseen"] == run.summary["n_test"]
        assert run.summary["test_degenerate"]["kind"] in (None, "constant", "looping")
        assert set(run.summary["chance"]) == set(SIMILARITY_NAMES)
        examples = json.loads(run.file("val_examples.json").read_text())
        assert [e["epoch"] for e in examples["epochs"]] == [1, 2]
        assert len(examples["targets"]) == min(q3_asr.N_EXAMPLES, run.summary["n_validation"])
        assert set(run.history["val_output"]) <= {"varied", "constant", "looping"}
    again = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert "2 complete, 0 to run" in again.stdout


def test_a_bad_notebook_parameter_fails_with_the_message(env, tmp_path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="decoder must be one of"):
        papermill.execute_notebook(str(ROOT / q3_experiment.ENTRY.notebook), str(tmp_path / "out.ipynb"),
                                   parameters={"decoder": "cnn", "profile": "smoke"}, cwd=str(ROOT),
                                   kernel_name="python3", progress_bar=False)


@pytest.mark.parametrize("notebook, parameters, unknown", [
    ("analysis/q3_asr.ipynb", {"lr": -1, "profile": "smoke"}, "lr"),
    ("analysis/q2_cnn.ipynb", {"decoder": "rnn", "lrr": 0.1, "profile": "smoke"}, "decoder, lrr"),
    ("analysis/q1_attention.ipynb", {"profle": "smoke"}, "profle"),
])
def test_every_notebook_refuses_parameters_it_does_not_know(notebook, parameters, unknown, tmp_path):
    import papermill

    entry = next(e for e in registry.EXPERIMENTS if e.notebook == notebook)
    known = ", ".join(importlib.import_module(entry.module).PARAMETERS)  # the one list the notebook checks against
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(str(ROOT / notebook), str(tmp_path / "out.ipynb"), parameters=parameters,
                                   cwd=str(ROOT), kernel_name="python3", progress_bar=False)
    assert f"{notebook}: unknown parameter(s) {unknown}; it takes {known}" in str(error.value)


def _tiny(**overrides) -> ASRConfig:
    return replace(q3_config("smoke"), audio_frames=64, **overrides)


def _execute(cfg: ASRConfig, slug: str) -> store.LoadedRun:
    corpus = q3_experiment.corpus_dir("smoke")
    from hw2.q3 import ljspeech

    spec = store.RunSpec.create(q3_experiment.ENTRY.name, cfg, "smoke", ljspeech.data_source(corpus), slug)
    return store.execute(spec, lambda run: q3_asr.train(run, cfg, corpus, "cpu", progress=False))


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_after_its_last_epoch(env, monkeypatch, capsys):
    straight = _execute(_tiny(), "straight")
    real = q3_asr.train_epoch
    calls = []

    def interrupt_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(q3_asr, "train_epoch", interrupt_second_epoch)
    with pytest.raises(Interrupted):
        _execute(_tiny(), "resumed")
    monkeypatch.setattr(q3_asr, "train_epoch", real)
    resumed = _execute(_tiny(), "resumed")
    assert "resuming resumed-smoke" in capsys.readouterr().out
    cols = ["epoch", "lr", "train_loss", "val_loss", *(f"val_{n}" for n in SIMILARITY_NAMES)]
    assert resumed.history[cols].equals(straight.history[cols])
    assert resumed.summary["test_loss"] == straight.summary["test_loss"]


def test_a_diverging_run_is_marked_with_its_epoch_and_keeps_its_history(env):
    run = _execute(_tiny(lr=1e30), "diverge")
    assert run.summary["status"] == "diverged" and run.summary["diverged_epoch"] == 1
    assert run.summary["test_loss"] is None
    assert len(run.history) == 1 and not np.isfinite(run.history["train_loss"][0])
    assert "model.pt" not in run.summary["files"]


def _clips(split: str, n: int):
    from hw2.q3 import ljspeech

    return ljspeech.load_split(q3_experiment.corpus_dir("smoke"), split)[:n]


def test_features_cached_or_per_batch_equal_each_clip_alone(env):
    from hw2.q3.audio import log_mel

    clips = _clips("train", 5)
    cached = q3_asr.SplitData(clips, 300, "cpu", cache_bytes=1 << 30)
    per_batch = q3_asr.SplitData(clips, 300, "cpu", cache_bytes=0)
    assert cached.features is not None and per_batch.features is None
    index = torch.tensor([4, 0, 2])
    alone = torch.stack([log_mel(torch.from_numpy(clips[i][0]), n_frames=300) for i in (4, 0, 2)])
    assert torch.allclose(cached.audio(index), alone, atol=1e-5)
    assert torch.allclose(per_batch.audio(index), alone, atol=1e-5)


def test_evaluation_equals_the_skeletons_batch_by_batch_loop(env):
    """Several batches at once, one shared encoding, cached decoding: the same record as the skeleton's
    _eval_step run batch by batch (loss on model(audio, text), then generate recomputing the prefix)."""
    import torch.nn.functional as F

    from hw2.q3.asr import build_asr_model
    from hw2.q3.metrics import EpochAccumulator, cut_generated

    cfg = _tiny(eval_batch_size=3, decoder="transformer")
    data = q3_asr.SplitData(_clips("test", 8), cfg.audio_frames, "cpu", cache_bytes=1 << 30)
    torch.manual_seed(0)
    model = build_asr_model("transformer", fused=True).eval()
    with torch.no_grad():
        model._dec._classifier.weight.mul_(20)  # varied tokens rather than one repeated
    acc, per_sample, generated = q3_asr.evaluate(model, data, cfg)
    reference = EpochAccumulator()
    with torch.no_grad():
        for start in range(0, data.n, 3):
            audio, tokens = data.audio(slice(start, start + 3)), data.tokens[start:start + 3]
            loss = F.cross_entropy(model(audio, tokens[:, :-1]), tokens[:, 1:], label_smoothing=0.1)
            gen = model.generate_recomputing(audio)
            # Evaluation's decoding ends once every row has stopped; what is read, cut at the stop, is equal.
            assert [cut_generated(row) for row in gen] == [cut_generated(row) for row in generated[start:start + 3]]
            reference.add_batch(loss, tokens, gen)
    ours, ref = acc.as_dict(), reference.as_dict()
    assert ours["n"] == ref["n"] == [3, 3, 2]
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-6), key  # float32 loss rounding
    assert len(per_sample) == 8


class _RecordingSplit:
    """Just what train_epoch reads of a SplitData, recording the clip indices of every batch."""

    def __init__(self, n: int):
        self.n, self.device, self.seen = n, "cpu", []
        self.tokens = torch.zeros(n, 99, dtype=torch.long)

    def audio(self, index):
        self.seen.append(index.clone())
        return torch.zeros(len(index), 1)


class _ConstantModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(35, 1))

    def forward(self, audio, tokens):
        return self.bias.expand(len(audio), 35, tokens.shape[1])


def test_training_order_is_the_dataloaders_shuffle_from_the_global_rng():
    """The skeleton: seed, build the model, then per epoch iterate a shuffled train loader and an unshuffled
    validation loader. train_epoch and evaluate's draw reproduce the orders and leave the RNG where it was."""
    n_train, n_val, batch, epochs = 23, 5, 4, 3
    torch.manual_seed(42)
    torch.nn.Linear(3, 3)  # a model's initialisation comes first in both
    train_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(n_train)),
                                               batch_size=batch, shuffle=True)
    val_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(n_val)), batch_size=batch)
    expected = []
    for _ in range(epochs):
        expected.append([b[0] for b in train_loader])
        list(val_loader)
    after = torch.rand(3)

    torch.manual_seed(42)
    torch.nn.Linear(3, 3)
    model, cfg = _ConstantModel(), ASRConfig(batch_size=batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        split = _RecordingSplit(n_train)
        q3_asr.train_epoch(model, optimizer, split, cfg, epoch)
        assert [b.tolist() for b in split.seen] == [b.tolist() for b in expected[epoch]]
        q3_asr.loader_iteration_seed()  # what evaluate draws first
    assert torch.equal(torch.rand(3), after)
    assert any(b[0].tolist() != list(range(batch)) for b in expected)  # the orders really are shuffled


def test_clips_cropped_and_transcripts_truncated_are_counted():
    """The skeleton crops clips to its frames and keeps 97 characters of a transcript; both are counted."""
    long_text = "a" * 98
    clips = [(np.zeros(160 * 99, dtype=np.float32), "short"), (np.zeros(160 * 100, dtype=np.float32), long_text),
             (np.zeros(160 * 150, dtype=np.float32), "x" * 97)]
    split = q3_asr.SplitData(clips, n_frames=100, device="cpu", cache_bytes=1 << 30)
    assert split.n_cropped == 2  # 101 and 151 frames; 100 frames fit exactly
    assert split.n_truncated == 1  # 98 characters; 97 fit
    assert split.valid_frames == [100, 100, 100]


def test_evaluate_consumes_one_draw_like_an_unshuffled_dataloader():
    from hw2.q3.asr import build_asr_model

    torch.manual_seed(0)
    model = build_asr_model("rnn", 1).eval()
    clips = [(np.random.default_rng(i).standard_normal(160 * 40).astype(np.float32), "ab") for i in range(3)]
    split = q3_asr.SplitData(clips, n_frames=48, device="cpu", cache_bytes=1 << 30)
    state = torch.get_rng_state()
    q3_asr.evaluate(model, split, ASRConfig())
    after = torch.rand(2)
    torch.set_rng_state(state)
    list(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(3)), batch_size=16))
    assert torch.equal(torch.rand(2), after)


@pytest.fixture
def one_thread():
    """One torch thread, as a CPU run trains by default (HW2_THREADS): on a busy 2-core machine two threads
    make these small steps several times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_equals_the_skeletons_loop(env, monkeypatch, one_thread):
    """A run trained by our code (start_training, run_epoch, train_epoch: features cached on the device, the
    shuffle drawn without a DataLoader, the learning rate set per epoch from lr_schedule) takes the steps of
    the skeleton's Trainer, written out here from the skeleton's text: seed 42, the model, a
    DataLoader(shuffle=True), AdamW(lr 1e-3, weight_decay 0.01), a SequentialLR of two LinearLR stepped once
    per epoch after an unshuffled validation pass, CrossEntropyLoss(label_smoothing=0.1) with no
    ignore_index, over all 98 positions. The same batch losses, step by step, and the same weights at the end.

    Seven epochs, so that both LinearLRs act (warm-up int(0.15 * 7) = 1 epoch, decay int(0.85 * 7) = 5), of
    four steps each (30 training clips in batches of 8, the last one short). One decoder: the step code is the
    same for both (the decoders themselves are test_q3_model.py's business)."""
    import random

    from torch.utils.data import DataLoader, TensorDataset

    from hw2.q3 import ljspeech, text
    from hw2.q3.asr import build_asr_model
    from hw2.q3.audio import log_mel

    cfg = _tiny(decoder="transformer", epochs=7)
    real, ours = q3_asr.train_epoch, []

    def recording(*args, **kwargs):  # only records what train_epoch returns: the batch losses of an epoch
        losses = real(*args, **kwargs)
        ours.append(losses)
        return losses

    monkeypatch.setattr(q3_asr, "train_epoch", recording)
    run = _execute(cfg, "skeleton-loop")
    trained = torch.load(run.file("model.pt"), map_location="cpu")

    # The skeleton's side, on the same clips: features computed clip by clip, its own DataLoaders and loop.
    corpus = q3_experiment.corpus_dir("smoke")
    clips = ljspeech.load_split(corpus, "train")
    n_validation = len(ljspeech.load_split(corpus, "validation"))
    features = torch.stack([log_mel(torch.from_numpy(w), n_frames=cfg.audio_frames) for w, _ in clips])
    tokens = text.encode_batch([t for _, t in clips])
    torch.manual_seed(42)
    np.random.seed(42)
    random.seed(42)
    model = build_asr_model("transformer", 2, fused=cfg.fused_attention)
    train_loader = DataLoader(TensorDataset(features, tokens), batch_size=cfg.batch_size, shuffle=True)
    validation_loader = DataLoader(TensorDataset(torch.arange(n_validation)), batch_size=16, shuffle=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    warm, decay = int(0.15 * cfg.epochs), int(0.85 * cfg.epochs)
    assert (warm, decay) == (1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "epoch parameter" warning at the milestone, as in the skeleton
        scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-2, end_factor=1.0, total_iters=warm),
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=1e-2, total_iters=decay)],
            milestones=[warm])
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        reference, rates = [], []
        for _ in range(cfg.epochs):
            rates.append(optimizer.param_groups[0]["lr"])
            losses = []
            for audio, txt in train_loader:
                loss = criterion(model(audio, txt[:, :-1]), txt[:, 1:])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            reference.append(losses)
            for _ in validation_loader:  # the validation pass: its iterator's draw from the global RNG
                pass
            scheduler.step()

    assert run.history["lr"].tolist() == pytest.approx(rates, rel=1e-12)  # the rates recorded ...
    assert [len(e) for e in ours] == [len(e) for e in reference] == [4] * cfg.epochs
    # ... and those applied. Both sides run the same float32 operations on the same inputs; only the rates
    # differ, in the last bits of a float64 (lr_schedule computes each from lr, LinearLR multiplies the
    # previous one), which float32 steps absorb: measured, the losses and weights are bit for bit the same.
    # The tolerances leave room for a rounding flip, and are far below what each protocol value moves:
    # without label smoothing the first loss differs by 1.6e-2, without weight decay every weight shrinks
    # by 1.2e-4 of itself less (lr * 0.01 per step, the rates summed over 28 steps), another schedule
    # changes the steps by up to 1e-3.
    expected = model.state_dict()
    assert set(trained) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6, msg=name)
    np.testing.assert_allclose(np.array(ours), np.array(reference), rtol=0, atol=1e-6)
