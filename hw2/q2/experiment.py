"""Question 2's experiment as the engine sees it (`hw2.engine.registry.ExperimentModule`): one notebook
execution per variant trains the profile's learning rates together (`hw2.q2.train`), one run folder each."""
from __future__ import annotations

import math

from hw2.engine import fetch, registry, store
from hw2.engine.errors import ConfigError
from hw2.engine.machine import cpu_threads, resolve_device, torch_threads
from hw2.engine.paths import data_dir
from hw2.engine.profiles import banner, resolve_profile
from hw2.q2 import config, octmnist
from hw2.q2.config import CNNConfig
from hw2.q2.train import train_together

ENTRY = registry.by_module(__name__)
# lr may be a list: those runs train together. epochs None: the profile's (15 in full); profile None: $PROFILE,
# else full with a GPU and quick without; device auto, cpu or cuda.
PARAMETERS = {"lr": 0.01, "no_maxpool": False, "epochs": None, "batch_size": 8, "seed": 42, "profile": None,
              "device": "auto"}
CHECKPOINT_UNIT = "epoch"


def plan(profile: str) -> list[dict]:
    """One notebook execution per variant, each training the profile's learning rates together."""
    by_variant: dict[bool, list[float]] = {}
    for params in config.plan(profile):
        by_variant.setdefault(params["no_maxpool"], []).append(params["lr"])
    return [{"lr": lrs, "no_maxpool": no_maxpool} for no_maxpool, lrs in by_variant.items()]


def data_source(profile: str) -> str | None:
    path = data_dir() / octmnist.FILE
    return octmnist.data_source(path) if path.is_file() else None


def verify_data(profile: str) -> list[str]:
    """OCTMNIST's name is already its full content (`data_source` hashes the whole file and its arrays): a
    changed stand-in is named custom data, so there is no record to differ from."""
    return []


def prepare_data(profile: str) -> str:
    return octmnist.data_source(octmnist.prepare(data_dir()))


def fetch_data() -> str:
    return octmnist.data_source(octmnist.fetch_real(data_dir()))


def data_status(profile: str) -> registry.DataStatus:
    """Every profile uses the whole file (the smaller ones train on a subset of it)."""
    source = data_source(profile)
    absent = ("the stand-in, generated on the first run (HW2_OFFLINE is set)" if fetch.offline() else
              "OCTMNIST, downloaded on the first run (the stand-in where that fails)")
    real = "" if source and source.startswith("real-") else (
        "`python -m hw2 data fetch q2`" + (f" (moves this {octmnist.FILE} aside)" if source else ""))
    return registry.DataStatus(source, str(data_dir() / octmnist.FILE), absent, real)


def configs(params: dict, profile: str) -> list[CNNConfig]:
    """The run configurations of the notebook's parameters (one per learning rate), or a ConfigError."""
    params = {**PARAMETERS, **params}
    lrs = list(params["lr"]) if isinstance(params["lr"], (list, tuple)) else [params["lr"]]
    if not lrs:
        raise ConfigError("lr is an empty list: give a learning rate such as 0.01, or a list of them")
    for value in lrs:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"lr must be a positive number (the homework uses 0.1, 0.01, 0.001); got {value!r}")
    if len(set(lrs)) != len(lrs):
        raise ConfigError(f"lr lists a learning rate twice: {lrs}")
    if not isinstance(params["no_maxpool"], bool):
        raise ConfigError(f"no_maxpool must be True or False; got {params['no_maxpool']!r}")
    for name in ("epochs", "batch_size"):
        value = params[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    seed = params["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    resolve_device(params["device"])  # a bad device stops here, before any run starts
    overrides = {"no_maxpool": params["no_maxpool"], "batch_size": params["batch_size"], "seed": seed}
    if params["epochs"] is not None:
        overrides["epochs"] = params["epochs"]
    return [config.for_profile(resolve_profile(profile), lr=float(v), **overrides) for v in lrs]


def _spec(cfg: CNNConfig, profile: str, data_source: str) -> store.RunSpec:
    return store.RunSpec.of(ENTRY, cfg, profile, data_source, slug=cfg.slug)


def specs(params: dict, profile: str, data_source: str) -> list[store.RunSpec]:
    """The runs a notebook execution with `params` writes (one per learning rate)."""
    return [_spec(c, resolve_profile(profile), data_source) for c in configs(params, profile)]


def run(lr=0.01, no_maxpool=False, epochs=None, batch_size=8, seed=42, profile=None, device="auto",
        progress=True) -> list[store.LoadedRun]:
    """Produce (or reuse) the runs for these parameters: what the notebook calls."""
    profile = resolve_profile(profile)
    run_configs = configs({"lr": lr, "no_maxpool": no_maxpool, "epochs": epochs, "batch_size": batch_size,
                           "seed": seed}, profile)
    device = resolve_device(device)
    path = octmnist.prepare(data_dir())
    source = octmnist.data_source(path)
    print(banner(ENTRY.name, profile, source, device), flush=True)
    run_specs = [_spec(c, profile, source) for c in run_configs]

    def train(runs: list[store.Run]) -> list[dict]:
        todo = [run_configs[run_specs.index(r.spec)] for r in runs]
        data = octmnist.load(path, n_train=todo[0].n_train, n_val=todo[0].n_val).to(device)
        return train_together(runs, todo, data, device, progress=progress)

    with torch_threads(cpu_threads() if device == "cpu" else None):
        return store.execute_many(run_specs, train, device)
