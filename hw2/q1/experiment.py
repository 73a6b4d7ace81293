"""Question 1's experiment as the engine sees it (`hw2.engine.registry.ExperimentModule`): one benchmark run
per profile and device, on random inputs (no data set). The measurement itself is `hw2.q1.benchmark`."""
from __future__ import annotations

from hw2.engine import registry, store
from hw2.engine.errors import ConfigError
from hw2.engine.machine import resolve_device, torch_threads
from hw2.engine.profiles import banner, resolve_profile
from hw2.q1 import benchmark, config
from hw2.q1.config import AttentionBenchConfig

ENTRY = registry.by_module(__name__)
PARAMETERS = {"profile": None, "device": "auto"}  # profile None: $PROFILE, else auto; device auto, cpu or cuda
CHECKPOINT_UNIT = "step"  # the benchmark checkpoints after each of its timing rounds
DATA_SOURCE = "synthetic"
plan = config.plan


def data_source(profile: str) -> str:
    """The benchmark draws random tensors: there is no data set."""
    return DATA_SOURCE


prepare_data = data_source


def verify_data(profile: str) -> list[str]:
    return []  # random inputs drawn from the seed: no file to verify


def data_status(profile: str) -> registry.DataStatus:
    return registry.DataStatus(DATA_SOURCE)


def fetch_data() -> None:
    return None  # nothing to download


def _checked(profile, device) -> tuple[str, str]:
    """The parameters resolved: (profile, device), or a ConfigError saying what to pass."""
    if profile is not None and not isinstance(profile, str):
        raise ConfigError(f"profile must be a string (full, quick or smoke) or None, got {profile!r}")
    if not isinstance(device, str):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return resolve_profile(profile), resolve_device(device)


def configs(params: dict, profile: str) -> list[AttentionBenchConfig]:
    profile, device = _checked(profile, params.get("device", "auto"))
    return [config.for_profile(profile, device=device)]


def specs(params: dict, profile: str, data_source: str) -> list[store.RunSpec]:
    """The runs a notebook execution with `params` writes: one."""
    (cfg,) = configs(params, profile)
    return [store.RunSpec.of(ENTRY, cfg, resolve_profile(profile), data_source, slug=f"attention-{cfg.device}")]


def run(profile: str | None = None, device: str = "auto") -> store.LoadedRun:
    """What the notebook calls: produce (or reuse) the run of this profile and device."""
    profile, device = _checked(profile, device)
    (cfg,) = configs({"device": device}, profile)
    (spec,) = specs({"device": device}, profile, DATA_SOURCE)
    print(banner(ENTRY.name, profile, DATA_SOURCE, cfg.device), flush=True)
    with torch_threads(cfg.threads):
        return store.execute(spec, lambda r: benchmark.measure(r, cfg), cfg.device)


def find_run(profile: str | None = None, device: str = "auto") -> store.LoadedRun:
    """The finished run of a profile and device for the report, or a RunError naming its make target."""
    profile, device = _checked(profile, device)
    (spec,) = specs({"device": device}, profile, DATA_SOURCE)
    return store.find(spec, ENTRY.make_target)
