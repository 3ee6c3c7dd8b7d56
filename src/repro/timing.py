"""Wall-clock timing of a call on the CPU or a CUDA device, for benchmarks and compute tables."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def time_call(fn: Callable[[], object], device: torch.device | str = "cpu", repeats: int = 3,
              warmup: int = 1, reduce: Callable = statistics.median) -> float:
    """Seconds taken by ``fn()``: ``warmup`` untimed calls, then ``reduce`` (median by default, or
    ``min``) over ``repeats`` timed calls; CUDA work is synchronised before and after each call."""
    if int(repeats) < 1 or int(warmup) < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats!r} and {warmup!r}")
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _ in range(int(warmup)):
        fn()
    times = []
    for _ in range(int(repeats)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(reduce(times))
