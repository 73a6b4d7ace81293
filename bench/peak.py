"""The reference for "how close to the limit": this core's measured speed on one large matrix product, in fp32
and (where the CPU computes bf16 natively) in bf16, with the thread count the runs use. A benchmark divides its
achieved GFLOP/s by these."""
from __future__ import annotations

import time

import torch

from hw2.engine.machine import cpu_model, native_bf16, native_bf16_flags


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, device: str = "cpu", seconds: float = 1.0) -> float:
    """GFLOP/s of an n x n x n product (2 n^3 flops), the best of repeated runs over about `seconds`."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up: kernel selection, page faults
    best, spent = float("inf"), 0.0
    while spent < seconds:
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
    return 2 * n ** 3 / best / 1e9


def peaks(device: str = "cpu") -> dict[str, float]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s (only where the device computes bf16 natively)}."""
    out = {"fp32": matmul_gflops(torch.float32, device=device)}
    if native_bf16(device):
        out["bf16"] = matmul_gflops(torch.bfloat16, device=device)
    return out


def describe(peak: dict[str, float]) -> str:
    """One line: the CPU, its native bf16 flags and the measured matrix-product speeds."""
    flags = native_bf16_flags()
    return (f"{cpu_model()} ({'native bf16: ' + ', '.join(flags) if flags else 'no native bf16'}), "
            f"{torch.get_num_threads()} thread(s): a 1024^3 matrix product runs at "
            + ", ".join(f"{v:.0f} GFLOP/s in {k}" for k, v in peak.items()))


def efficiency(gflops: float, peak: dict[str, float], dtype: str = "fp32") -> str:
    """'41.2 GFLOP/s = 23% of the fp32 matrix-product speed'."""
    return f"{gflops:.1f} GFLOP/s = {gflops / peak[dtype]:.0%} of the {dtype} matrix-product speed"


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(describe(peaks()))
