"""The CNN's SGD steps on the CPU as one C function (`cnn_cpu.c`), compiled with the system's C compiler on
first use and cached per source, flags and CPU. Where no compiler works, `library()` says why once and
returns None, and training uses the PyTorch path (same semantics). Where both work, a sweep measures which
is faster on this machine (`hw2.q2.train.calibrate`); HW2_CNN_KERNEL=c or torch forces one."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from hw2.engine.errors import ConfigError

SOURCE = Path(__file__).with_suffix(".c")
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared"]
PARAM_ORDER = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
               "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hw2"


def _cpu_id() -> str:
    """What -march=native depends on: the CPU's feature flags (Linux), else the processor's name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def forced() -> str | None:
    """The engine HW2_CNN_KERNEL forces: "c" or "torch"; None (unset) lets a sweep measure which is faster."""
    value = os.environ.get("HW2_CNN_KERNEL") or None
    if value not in (None, "c", "torch"):
        raise ConfigError(f"HW2_CNN_KERNEL must be 'c' or 'torch' (or unset: measure both); got {value!r}")
    return value


@functools.lru_cache(maxsize=None)
def library() -> ctypes.CDLL | None:
    if forced() == "torch":
        return None
    compiler = os.environ.get("CC", "cc")
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
        key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(FLAGS), version, _cpu_id()]).encode())
        target = cache_dir() / f"cnn_cpu-{key.hexdigest()[:16]}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # then renamed: concurrent builds are safe
                built = Path(tmp) / target.name
                subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE), "-lm"], capture_output=True,
                               text=True, check=True)
                os.replace(built, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        print(f"[hw2] the C training step for Question 2 could not be built with {compiler!r} ({detail.strip()}); "
              "training uses the slower PyTorch path. Install a C compiler (apt-get install gcc) or set CC.",
              file=sys.stderr, flush=True)
        return None
    fn = lib.cnn_train_steps
    fn.restype = ctypes.c_int
    fn.argtypes = ([ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_float] + [ctypes.c_void_p] * 12
                   + [ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p])
    return lib


def available() -> bool:
    return library() is not None


def _ptr(t: torch.Tensor, dtype: torch.dtype) -> int:
    if t.device.type != "cpu" or t.dtype != dtype or not t.is_contiguous():
        raise ValueError(f"the C training step needs contiguous {dtype} CPU tensors; got {t.dtype} on {t.device}")
    return t.data_ptr()


def train_steps(params: dict[str, torch.Tensor], no_maxpool: bool, lrs: torch.Tensor, l2_decay: float,
                X: torch.Tensor, y: torch.Tensor, batch_size: int, noise: torch.Tensor | None) -> torch.Tensor:
    """SGD over X (already in the epoch's order) in batches, updating the stacked `params` in place.

    params: StackedCNN's tensors (G members); noise: (steps, batch_size, 320) dropout noise or None.
    Returns the batch losses (steps, G).
    """
    lib = library()
    if lib is None:
        raise RuntimeError("the C training step is not available (see the message above)")
    G = len(lrs)
    steps = -(-len(X) // batch_size)
    if noise is not None and tuple(noise.shape) != (steps, batch_size, 320):
        raise ValueError(f"noise must be ({steps}, {batch_size}, 320); got {tuple(noise.shape)}")
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < 4:
        raise ValueError(f"labels must be classes 0..3; got values from {int(y.min())} to {int(y.max())}")
    losses = torch.empty(steps, G)
    lrs = lrs.float().contiguous()
    ptrs = [_ptr(params[name].detach(), torch.float32) for name in PARAM_ORDER]
    status = lib.cnn_train_steps(int(not no_maxpool), G, _ptr(lrs, torch.float32), float(l2_decay), *ptrs,
                                 _ptr(X, torch.float32), _ptr(y, torch.int64), len(X), batch_size,
                                 None if noise is None else _ptr(noise, torch.float32), losses.data_ptr())
    if status != 0:
        raise MemoryError("the C training step could not allocate its work buffers")
    return losses
