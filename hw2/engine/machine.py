"""What a run uses of the machine: the device and the CPU threads."""
from __future__ import annotations

import contextlib
import functools
import os

from hw2.engine.errors import ConfigError


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(name: str | None = "auto") -> str:
    if name in (None, "", "auto"):
        return "cuda" if cuda_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}: use 'auto', 'cpu' or 'cuda'")
    if name == "cuda" and not cuda_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; use device='auto' or 'cpu'")
    return name


# bf16 in hardware: Intel's AMX and AVX512-BF16 (AMD's Zen 4 too), Arm's BF16 extension. Elsewhere torch
# emulates bf16 arithmetic, which is slower than fp32.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> dict[str, str]:
    """The first value of each field of Linux's /proc/cpuinfo (empty elsewhere), read once."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, colon, value = line.partition(":")
                if colon:
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (x86 `flags`, Arm `Features`); empty elsewhere."""
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    import platform

    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def native_bf16_flags() -> list[str]:
    """The flags of this CPU that compute bf16 in hardware (empty: none, bf16 would be emulated)."""
    flags = cpu_flags()
    return [flag for flag in NATIVE_BF16_FLAGS if flag in flags]


def native_bf16(device: str) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA GPU that supports it without emulation, or a CPU
    with one of NATIVE_BF16_FLAGS."""
    if device == "cuda":
        import torch

        return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(native_bf16_flags())


def cpu_threads() -> int:
    """Torch threads for a CPU training run: $HW2_THREADS, default 1.

    The models' ops are small (batches of 8 images, or of 64 x 200 features; one token per decoding step),
    so a second thread buys little on an idle machine and, on a shared one, makes every op wait for a
    descheduled thread (measured here under load: an ASR training step 11x, greedy decoding 4x slower);
    sweeps run side by side instead.
    """
    raw = os.environ.get("HW2_THREADS", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"HW2_THREADS (the torch threads of a CPU training run) must be a whole number of at least "
                          f"1, got {raw!r}: set it to 1, 2, ... or unset it (default 1)")
    return int(raw)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run with `threads` torch threads (None: unchanged), restoring the previous number afterwards.
    Wrap a whole `store.execute`, so the run's env.json records the number it ran with."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
