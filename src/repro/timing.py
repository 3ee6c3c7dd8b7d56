"""Wall-clock timing of a call on the CPU or a CUDA device, for benchmarks and compute tables."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from ._io import save_json
from .store import results_root


def vector_extension(flags) -> str | None:
    """The widest x86 vector extension among the CPU ``flags``: "AVX-512", "AVX2" or None. It
    decides which CPU kernels PyTorch runs, so float results of two machines agree bit for bit
    only within one extension, and their speed differs between extensions."""
    flags = set(flags)
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None


def machine_description() -> str:
    """A one-line description of this machine: CPU model and vector extension, cores, accelerator."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu == (platform.processor() or platform.machine()):
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    extension = vector_extension(flags)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}{f' ({extension})' if extension else ''}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def seconds(value: float, spec: str = ".3g") -> str:
    """A measured duration as the book prints it, with its unit ("0.0017 s"). The unit marks it
    as a wall time, which ``notebooks/nbval_sanitize.cfg`` masks when nbval compares stored
    outputs: wall times vary from run to run, the results beside them must not."""
    return f"{value:{spec}} s"


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


def record_targets(benchmark: str, rows: list[dict], conditions: str) -> Path:
    """Store a benchmark's results against its targets as ``results/bench/<benchmark>.json``.

    Each row: ``part`` (the book part), ``measure`` (what was timed, against which reference),
    ``value`` (the measured figure, e.g. a ratio), ``target`` (the issue's target as text, e.g.
    "≥ 100×") and ``met`` (bool, or None where there is no target). ``conditions`` says on what
    and how it was measured (device, threads, image size, load). The book's Performance page
    (:func:`repro.chapters.stage_performance`) gathers these files; written atomically.
    """
    keys = {"part", "measure", "value", "target", "met"}
    for row in rows:
        if not isinstance(row, dict) or set(row) != keys:
            raise ValueError(f"each row must be a dict with exactly the keys {sorted(keys)}, got {row!r}")
    path = Path(results_root()) / "bench" / f"{benchmark}.json"
    save_json({"benchmark": benchmark, "rows": rows, "conditions": conditions, "machine": machine_description(),
               "date": _dt.datetime.now().isoformat(timespec="seconds")}, path)
    return path
