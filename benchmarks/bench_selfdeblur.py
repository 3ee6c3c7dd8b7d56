"""Time SelfDeblur iterations: the plain formulation against the fast CPU path, and batched
restarts against sequential ones on CUDA.

CPU: one 255×255 grey image (Levin im1 ⊛ kernel 1 from the data mirror, or a seeded random image
if the data are not available) with ``kernel_size`` 17, the original SelfDeblur iteration
(perturbed input, Gx and Gk forward, valid blur, loss, backward, Adam step), in three modes:
``plain`` (the reference formulation, ``SelfDeblurConfig(fast=False)``), ``plain+allocator``
(the same with :func:`repro.selfdeblur.tune_cpu_allocator`, to show that part alone) and
``fast`` (re-associated non-local block, upsampling at the cropped size, tuned allocator). Each mode runs in
its own subprocess (so that its peak resident memory, ``ru_maxrss``, is its own), one mode after
the other, ``--rounds`` times; within a run, the time per iteration is the median of the
intervals between consecutive iterations after ``--warmup`` iterations (set-up and first calls
excluded). The reported figure is the minimum over rounds (the least disturbed by other jobs:
with 2 threads on 2 busy cores a round can be 10x slower); every round is kept in the JSON.
The floor (:func:`gemm_floor`): Gx's counted FLOPs at the float32 GEMM rate measured in the same
run, the fewest seconds an iteration could take; its ratio to the plain time is the best fast /
plain that any formulation of the same mathematics could reach on this machine.

CUDA (when available, else reported as skipped): R = ``--restarts`` (8) restarts of one
``--cuda-size`` (256) square image as one batched run (``run_selfdeblur(restarts=R)``) against R
runs one after another, seconds per iteration of all restarts, the throughput ratio
(sequential / batched; the target is at least 3 for R = 8) and peak allocated
memory. The CPU part also checks its peak resident memory against ``--memory-limit-gib`` (4).

``--compile`` also times ``torch.compile`` of Gx (forward + backward only, fast path), with its
warm-up, beside the eager fast path; the package runs eagerly, and the JSON holds both figures so
that the choice can be checked on any machine.

Other jobs on the same cores slow a round down: read every figure as approximate.

    python benchmarks/bench_selfdeblur.py --out results/bench_selfdeblur.json
    python benchmarks/bench_selfdeblur.py --iterations 3 --rounds 1        # quicker
    python benchmarks/bench_selfdeblur.py --skip-cpu                       # GPU part only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from repro.selfdeblur import ImageGenerator, SelfDeblurConfig, run_selfdeblur, tune_cpu_allocator
from repro.timing import time_call

MODES = ("plain", "plain+allocator", "fast")


def _image(size: int) -> tuple[torch.Tensor, str]:
    """Levin im1 blurred by kernel 1 (255×255) cropped to ``size``, or a seeded random image."""
    try:
        from repro import data

        y = data.levin_blurred(1, 1)[None, :, :size, :size]
        if y.shape[-1] == size and y.shape[-2] == size:
            return y.contiguous(), "levin im1_kernel1"
    except (ValueError, OSError):
        pass
    return torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)), "random (no data)"


def seconds_per_iteration(y, kernel, warmup, n, fast, device="cpu", restarts=1, batched=True) -> float:
    """Median wall time between consecutive iterations of one run of ``warmup + n`` iterations,
    the first ``warmup`` excluded (timestamps from ``run_selfdeblur``'s callback)."""
    stamps = []

    def record(info):
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(info.time if device != "cuda" else time.perf_counter())

    config = SelfDeblurConfig(iterations=warmup + n, fast=fast)
    run_selfdeblur(y, kernel, config, seed=0, device=device, progress=False, restarts=restarts,
                   batched=batched, callback=record)
    if not batched:  # R sequential runs: one iteration of all restarts = R single iterations
        per_run = [stamps[i * (warmup + n):(i + 1) * (warmup + n)] for i in range(restarts)]
        return sum(statistics.median(b - a for a, b in zip(s[warmup:], s[warmup + 1:])) for s in per_run)
    return statistics.median(b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:]))


def worker(args) -> None:
    """One CPU measurement in this process; prints a JSON line."""
    torch.set_num_threads(args.threads)
    if args.worker == "plain+allocator":
        tune_cpu_allocator()
    y, source = _image(args.size)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = seconds_per_iteration(y, args.kernel, args.warmup, args.iterations, fast=args.worker == "fast")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": args.worker, "seconds_per_iteration": s, "peak_rss_mb": peak_mb,
                      "rss_before_run_mb": baseline_mb, "image": source}))


def bench_cpu(args) -> dict:
    rows = {mode: [] for mode in MODES}
    info = {}
    for _ in range(args.rounds):
        for mode in rows:
            cmd = [sys.executable, __file__, "--worker", mode, "--size", str(args.size), "--kernel", str(args.kernel),
                   "--warmup", str(args.warmup), "--iterations", str(args.iterations), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            result = json.loads(out)
            rows[mode].append(result["seconds_per_iteration"])
            info[mode] = result
            print(f"  {mode:15s} {result['seconds_per_iteration']:.3f} s/iteration, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    out = {"image": info["plain"]["image"], "size": args.size, "kernel": args.kernel, "threads": args.threads,
           "rss_before_run_mb": info["plain"]["rss_before_run_mb"]}
    for mode in MODES:
        out[f"{mode}_seconds_per_iteration"] = min(rows[mode])
        out[f"{mode}_all_rounds"] = rows[mode]
        out[f"{mode}_peak_rss_mb"] = info[mode]["peak_rss_mb"]
    out["fast_over_plain"] = out["fast_seconds_per_iteration"] / out["plain_seconds_per_iteration"]
    return out


def gemm_floor(args) -> dict:
    """The fewest seconds an iteration can take on this machine: Gx's floating-point operations
    for one forward and backward pass at the benchmark's size (fast path, counted exactly by
    ``torch.utils.flop_counter``; Gk's are negligible) at the float32 GEMM rate measured here
    (a 2048² ``torch.mm``, best of 5, ``args.threads`` threads). Convolutions cannot beat the
    GEMM rate, so ``floor / plain`` bounds what any formulation of the same mathematics can reach
    against the plain one."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(args.threads)
    side = args.size + args.kernel - 1
    gx = ImageGenerator()
    gx.fast = True
    with FlopCounterMode(display=False) as counter:
        gx(torch.rand(1, 8, side, side, generator=torch.Generator().manual_seed(0)) * 0.1).sum().backward()
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    seconds = time_call(lambda: a @ b, repeats=5, warmup=1, reduce=min)
    rate = 2 * 2048**3 / seconds
    flops = counter.get_total_flops()
    return {"gx_gflop": flops / 1e9, "gemm_gflops_per_s": rate / 1e9, "floor_seconds": flops / rate}


def bench_compile(args) -> dict:
    """Gx forward + backward, eager fast path against torch.compile of it (CPU)."""
    torch.set_num_threads(args.threads)
    side = args.size + args.kernel - 1
    z = torch.rand(1, 8, side, side, generator=torch.Generator().manual_seed(0)) * 0.1
    model = ImageGenerator()
    model.fast = True

    def step(f):
        f(z).square().mean().backward()

    compiled = torch.compile(model)
    start = time.perf_counter()
    step(compiled)
    warmup = time.perf_counter() - start
    step(model)
    times = {"eager": [], "compiled": []}
    for _ in range(args.iterations):
        for name, f in (("eager", model), ("compiled", compiled)):
            start = time.perf_counter()
            step(f)
            times[name].append(time.perf_counter() - start)
    return {"compile_warmup_seconds": warmup, "eager_seconds": min(times["eager"]),
            "compiled_seconds": min(times["compiled"])}


def bench_restarts(args, device: str = "cuda") -> dict:
    """R restarts of one ``--cuda-size`` image on ``device`` (CUDA in the benchmark; the tests
    run it on the CPU at a small size), batched against sequential."""
    y, source = _image(args.cuda_size)  # 256 > Levin's 255: a seeded random image (timing only)
    cuda = device == "cuda"
    out = {"image": source, "size": args.cuda_size, "kernel": args.kernel, "restarts": args.restarts,
           "device": torch.cuda.get_device_name() if cuda else "cpu"}
    for name, batched in (("batched", True), ("sequential", False)):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        s = seconds_per_iteration(y, args.kernel, args.warmup, args.iterations, True, device, args.restarts, batched)
        out[f"{name}_seconds_per_iteration"] = s
        out[f"{name}_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        print(f"  {device} {name:10s} R={args.restarts}: {s:.4f} s/iteration (all restarts)"
              + (f", peak {out[f'{name}_peak_allocated_mb']:.0f} MB" if cuda else ""), flush=True)
    out["batched_over_sequential"] = out["batched_seconds_per_iteration"] / out["sequential_seconds_per_iteration"]
    out["throughput_gain"] = 1 / out["batched_over_sequential"]
    out["meets_3x_target"] = out["throughput_gain"] >= 3
    print(f"  {device} throughput batched / sequential: {out['throughput_gain']:.2f}x "
          f"({'meets' if out['meets_3x_target'] else 'misses'} the 3x target)", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=255)
    parser.add_argument("--kernel", type=int, default=17)
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations at the start of a run")
    parser.add_argument("--iterations", type=int, default=6, help="timed iterations (intervals) per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--restarts", type=int, default=8, help="restarts of the CUDA comparison")
    parser.add_argument("--cuda-size", type=int, default=256, help="side of the image of the CUDA comparison")
    parser.add_argument("--memory-limit-gib", type=float, default=4.0, help="CPU peak memory target")
    parser.add_argument("--skip-cpu", action="store_true", help="only the CUDA comparison")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of Gx")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    results = {"torch": torch.__version__, "machine": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()}
    if not args.skip_cpu:
        print(f"CPU, {args.size}x{args.size}, kernel {args.kernel}, {args.threads} threads:")
        results["cpu"] = bench_cpu(args)
        cpu = results["cpu"]
        print("  best of rounds: " + ", ".join(f"{m} {cpu[m + '_seconds_per_iteration']:.3f} s" for m in MODES)
              + f"; fast/plain {cpu['fast_over_plain']:.2f}")
        peak_gib = max(cpu[f"{m}_peak_rss_mb"] for m in MODES) / 1024
        cpu["peak_rss_gib"], cpu["meets_memory_target"] = peak_gib, peak_gib < args.memory_limit_gib
        print(f"  peak resident memory {peak_gib:.2f} GiB ({'under' if cpu['meets_memory_target'] else 'OVER'} "
              f"the {args.memory_limit_gib:g} GiB target)")
        cpu["floor"] = gemm_floor(args)
        floor = cpu["floor"]
        print(f"  floor: {floor['gx_gflop']:.0f} GFLOP at {floor['gemm_gflops_per_s']:.0f} GFLOP/s (GEMM) = "
              f"{floor['floor_seconds']:.3f} s/iteration, {floor['floor_seconds'] / cpu['plain_seconds_per_iteration']:.2f}"
              "x the plain time")
    if args.compile:
        results["compile"] = bench_compile(args)
        comp = results["compile"]
        print(f"  torch.compile: warm-up {comp['compile_warmup_seconds']:.0f} s, Gx step "
              f"{comp['compiled_seconds']:.3f} s vs eager fast {comp['eager_seconds']:.3f} s")
    if torch.cuda.is_available():
        print(f"CUDA, {args.cuda_size}x{args.cuda_size}, kernel {args.kernel}, R = {args.restarts} restarts:")
        results["cuda"] = bench_restarts(args)
    else:
        results["cuda"] = {"skipped": "no CUDA device: the batched-restart comparison needs a GPU"}
        print("CUDA: SKIPPED, no CUDA device (the batched-restart comparison runs only on a GPU)")
    results["load_average_after"] = os.getloadavg()
    if args.out:
        from repro._io import save_json

        save_json(results, args.out)
    print(f"targets recorded in {record(results, args)}")
    return 0


def record(results: dict, args) -> str:
    """The issue's targets against what was measured, for the book's Performance page
    (``repro.timing.record_targets``); a part that was not measured says so."""
    from repro.timing import record_targets

    rows = []
    cpu = results.get("cpu")
    if cpu is not None:
        where = f"CPU, {cpu['size']}x{cpu['size']}, kernel {cpu['kernel']}, {cpu['threads']} thread(s)"
        rows += [
            {"part": "SelfDeblur", "measure": f"fast / plain seconds per iteration ({where})",
             "value": round(cpu["fast_over_plain"], 2), "target": "≤ 0.55×", "met": cpu["fast_over_plain"] <= 0.55},
            {"part": "SelfDeblur", "measure": f"peak resident memory, GiB ({where})", "value": round(cpu["peak_rss_gib"], 2),
             "target": f"< {args.memory_limit_gib:g} GiB", "met": cpu["meets_memory_target"]},
            {"part": "SelfDeblur",
             "measure": f"floor / plain: Gx's {cpu['floor']['gx_gflop']:.0f} GFLOP per iteration at this machine's "
                        f"float32 GEMM rate ({cpu['floor']['gemm_gflops_per_s']:.0f} GFLOP/s), over the plain time "
                        f"({where}): the best fast / plain any formulation can reach here",
             "value": round(cpu["floor"]["floor_seconds"] / cpu["plain_seconds_per_iteration"], 2),
             "target": "none (reference for the row above)", "met": None},
        ]
    cuda = results["cuda"]
    measure = f"R = {args.restarts} restarts, {args.cuda_size}x{args.cuda_size}: batched / sequential throughput"
    if "skipped" in cuda:
        rows.append({"part": "SelfDeblur", "measure": f"{measure} (CUDA)", "value": "not measured (no GPU)",
                     "target": "≥ 3×", "met": None})
    else:
        rows.append({"part": "SelfDeblur", "measure": f"{measure} ({cuda['device']})",
                     "value": round(cuda["throughput_gain"], 2), "target": "≥ 3×", "met": cuda["meets_3x_target"]})
    before, after = results["load_average_before"][0], results["load_average_after"][0]
    conditions = (f"seconds per iteration: median interval after {args.warmup} warm-up iterations, {args.iterations} "
                  f"timed, best of {args.rounds} round(s); 1-minute load average {before:.1f} before, {after:.1f} after")
    return str(record_targets("selfdeblur", rows, conditions))


if __name__ == "__main__":
    raise SystemExit(main())
