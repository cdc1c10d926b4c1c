"""Measurement helpers for the benchmarks: this machine's matmul peak and peak memory."""

from __future__ import annotations

import resource
import sys
import time

import torch


def matmul_peak_gflops(
    device: torch.device, n: int = 2048, reps: int = 10, dtype: torch.dtype = torch.float32
) -> float:
    """Achieved GFLOP/s of a large square matmul: the practical peak the benchmarks compare against."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def peak_memory_mib(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or this process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
