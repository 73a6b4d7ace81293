"""Question 3's experiment as the engine sees it (`hw2.engine.registry.ExperimentModule`): one notebook
execution per decoder, run cells (a) and (b) of the course notebook, each one run (`hw2.q3.train`)."""
from __future__ import annotations

from pathlib import Path

from hw2.engine import fetch, registry, store
from hw2.engine.errors import ConfigError
from hw2.engine.machine import cpu_threads, native_bf16, native_bf16_flags, resolve_device, torch_threads
from hw2.engine.paths import data_dir
from hw2.engine.profiles import banner, resolve_profile
from hw2.q3 import config, ljspeech
from hw2.q3.config import ASRConfig, deviations_text, protocol_deviations
from hw2.q3.train import train

ENTRY = registry.by_module(__name__)
# decoder 'rnn' (cell (a)) or 'transformer' (cell (b)); epochs None: the profile's (15 in full); profile None:
# $PROFILE or auto; device auto, cpu or cuda; 2 encoder blocks as the skeleton's code.
PARAMETERS = {"decoder": "rnn", "epochs": None, "profile": None, "seed": 42, "device": "auto", "n_encoder_layers": 2}
CHECKPOINT_UNIT = "epoch"
CONFIG_PARAMETERS = ("decoder", "epochs", "seed", "n_encoder_layers")  # the rest choose the profile and device
plan = config.plan


def corpus_dir(profile: str) -> Path:
    """The corpus of a profile (LJ Speech 1.1 if present, downloaded for `full` where the network allows, else
    the generated stand-in, made if missing; the short-sentence stand-in for a profile whose corpus is "short")."""
    profile = resolve_profile(profile)
    cfg = config.for_profile(profile)
    return ljspeech.prepare(data_dir(), cfg.n_clips, corpus=cfg.corpus, download=profile == "full")


def _present_corpus(profile: str) -> tuple[Path, bool]:
    """Where the profile's corpus is, or would be made, without making it; and whether it is LJ Speech itself."""
    cfg = config.for_profile(resolve_profile(profile))
    real = ljspeech.real_folder(data_dir()) if cfg.corpus == "ljspeech" else None
    return real or ljspeech.standin_folder(data_dir(), cfg.n_clips, 0, cfg.corpus), real is not None


def data_source(profile: str) -> str | None:
    folder, _ = _present_corpus(profile)
    return ljspeech.data_source(folder) if (folder / "metadata.csv").is_file() else None


def verify_data(profile: str) -> list[str]:
    """The clips whose audio differs from the digests recorded when the corpus was made or extracted (LJ Speech
    1.1 placed by hand is named by its metadata, with no per-clip record)."""
    folder, _ = _present_corpus(profile)
    return ljspeech.verify_audio(folder)


def prepare_data(profile: str) -> str:
    return ljspeech.data_source(corpus_dir(profile))


def fetch_data() -> str:
    return ljspeech.data_source(ljspeech.download_corpus(data_dir()))


def data_status(profile: str) -> registry.DataStatus:
    profile = resolve_profile(profile)
    cfg = config.for_profile(profile)
    folder, real_present = _present_corpus(profile)
    source = data_source(profile)
    get_real = f"`python -m hw2 data fetch q3` ({fetch.human_bytes(ljspeech.ARCHIVE_BYTES)})"
    if cfg.corpus != "ljspeech":
        return registry.DataStatus(source, str(folder), "its short-sentence stand-in, spoken on the first run",
                                   f"profile {profile} uses its stand-in by design; PROFILE=full uses LJ Speech 1.1: "
                                   f"{get_real}")
    if not real_present and not fetch.offline():  # the next run downloads it first, whatever stand-in is there
        return registry.DataStatus(None, str(data_dir() / ljspeech.REAL_FOLDER),
                                   "LJ Speech 1.1, downloaded on the first run (the stand-in where that fails)",
                                   get_real)
    real = source is not None and source.startswith("real-")
    return registry.DataStatus(source, str(folder), f"the stand-in, spoken on the first run ({fetch.OFFLINE} is set)",
                               "" if real else get_real)


def configs(params: dict, profile: str) -> list[ASRConfig]:
    """The validated configuration of the notebook's parameters: one run."""
    unknown = set(params) - set(PARAMETERS)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {sorted(unknown)}: the Q3 notebook takes {sorted(PARAMETERS)}")
    overrides = {k: v for k, v in params.items() if k in CONFIG_PARAMETERS and v is not None}
    return [config.for_profile(resolve_profile(profile), params.get("device"), **overrides).validate()]


def precision_text(cfg: ASRConfig, device: str) -> str:
    """'fp32', or 'bf16 autocast (native: avx512_bf16)'; says so where the device would emulate bf16."""
    if not cfg.bf16:
        return "fp32"
    if device == "cuda":
        return "bf16 autocast" + ("" if native_bf16(device) else " (emulated on this GPU: slower than fp32)")
    flags = native_bf16_flags()
    return "bf16 autocast " + (f"(native: {', '.join(flags)})" if flags else
                               "(this CPU has no bf16 instructions: emulated, slower than fp32; HW2_PRECISION=fp32 avoids it)")


def slug(cfg: ASRConfig) -> str:
    parts = [cfg.decoder]
    if cfg.n_encoder_layers != ASRConfig.n_encoder_layers:
        parts.append(f"enc{cfg.n_encoder_layers}")
    if cfg.seed != ASRConfig.seed:
        parts.append(f"seed{cfg.seed}")
    return "-".join(parts)


def specs(params: dict, profile: str, data_source: str) -> list[store.RunSpec]:
    """The runs a notebook execution with `params` writes: one."""
    return [store.RunSpec.of(ENTRY, cfg, resolve_profile(profile), data_source, slug(cfg))
            for cfg in configs(params, profile)]


def run(decoder: str = "rnn", epochs: int | None = None, profile: str | None = None, seed: int = 42,
        device: str = "auto", n_encoder_layers: int = 2, progress: bool = True) -> store.LoadedRun:
    """What the notebook does: validate, print the banner, produce (or reuse) the run and return it."""
    profile = resolve_profile(profile)
    params = {"decoder": decoder, "epochs": epochs, "seed": seed, "n_encoder_layers": n_encoder_layers}
    (cfg,) = configs(params, profile)
    device = resolve_device(device)
    corpus = corpus_dir(profile)
    source = ljspeech.data_source(corpus)
    print(banner(ENTRY.name, profile, source, device)
          + f" decoder={cfg.decoder} precision={precision_text(cfg, device)}; deviations from the protocol: "
          + deviations_text(protocol_deviations(cfg)), flush=True)
    (spec,) = specs(params, profile, source)
    with torch_threads(cpu_threads() if device == "cpu" else None):
        return store.execute(spec, lambda run: train(run, cfg, corpus, device, progress), device)
