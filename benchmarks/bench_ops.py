"""Time ``repro.ops.blur`` by direct convolution and by FFT, for square kernels of 3..65 pixels.

Prints a table (kernel size, taps, direct ms, fft ms, direct/fft) per device and the crossover
from which the FFT stays faster; this is how ``repro.ops.FFT_CROSSOVER_TAPS`` was chosen.
Each timing is the median of several calls after warm-up calls (``repro.timing.time_call``). Timings on a shared machine
move with its load: read the crossover as approximate.

    python benchmarks/bench_ops.py                     # CPU, and CUDA when available
    python benchmarks/bench_ops.py --threads 1 --out results/bench_ops.json

A full run takes 10-30 s on the 2-core reference machine. On a CPU shared with other jobs,
`--threads 1` gives steadier numbers (2 threads then lose most of their time waiting for each
other), and the crossover comes out the same.
"""

from __future__ import annotations

import argparse
import json

import torch

from repro.ops import FFT_CROSSOVER_TAPS, blur
from repro.timing import record_targets, time_call

SIZES = (3, 5, 7, 9, 11, 13, 15, 17, 21, 25, 31, 41, 51, 65)
WARMUP_CALLS = 3  # untimed calls per cell (oneDNN primitive and FFT plan for the new shape)


def median_ms(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` in ms: :data:`WARMUP_CALLS` untimed calls, then ``repeats``
    timed ones (``repro.timing.time_call``, which synchronises CUDA around each call)."""
    return 1e3 * time_call(fn, device, repeats=repeats, warmup=WARMUP_CALLS)


def bench_device(device: torch.device, image_shape, mode: str, sizes, repeats: int):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(image_shape, generator=gen).to(device)
    rows = []
    # Largest kernels first: a fresh process runs its first calls slowly (oneDNN primitives, FFT
    # plans, and glibc handing out fresh pages until its mmap threshold has grown past the
    # buffer sizes), which would inflate the small-kernel rows, the ones that set the crossover.
    for size in sorted(sizes, reverse=True):
        k = torch.rand(size, size, generator=gen).to(device)
        k = k / k.sum()
        direct = median_ms(lambda: blur(x, k, mode, "conv", "direct"), device, repeats)
        fft = median_ms(lambda: blur(x, k, mode, "conv", "fft"), device, repeats)
        rows.append({"size": size, "taps": size * size, "direct_ms": direct, "fft_ms": fft,
                     "ratio": direct / fft})
    return sorted(rows, key=lambda row: row["size"])


def crossover(rows) -> int | None:
    """Smallest kernel size from which the FFT is faster for every larger size measured."""
    found = None
    for row in reversed(rows):
        if row["fft_ms"] >= row["direct_ms"]:
            break
        found = row["size"]
    return found


AUTO_TOLERANCE = 1.25
"""Target: at every kernel size, ``method="auto"`` (the path :data:`FFT_CROSSOVER_TAPS` picks)
takes at most this many times the faster of the two paths."""


def auto_penalty(rows) -> float:
    """Worst ratio, over the kernel sizes measured, of the path ``method="auto"`` takes to the
    faster path (1.0: the dispatch always picks the faster one)."""
    return max((row["fft_ms"] if row["taps"] >= FFT_CROSSOVER_TAPS else row["direct_ms"])
               / min(row["fft_ms"], row["direct_ms"]) for row in rows)


def target_rows(report: dict) -> list[dict]:
    """The Performance page's rows (``repro.timing.record_targets``): per device, the measured
    crossover and how far the auto dispatch is from the faster path."""
    rows = []
    for device, found in report["devices"].items():
        cross = found["crossover_size"]
        penalty = auto_penalty(found["rows"])
        rows.append({"part": "Foundations", "measure": f"ops.blur direct/FFT crossover, {device} (kernel size)",
                     "value": "none measured" if cross is None else f"{cross}×{cross}",
                     "target": f"near FFT_CROSSOVER_TAPS = {FFT_CROSSOVER_TAPS}", "met": None})
        rows.append({"part": "Foundations",
                     "measure": f"ops.blur method='auto' / faster path, worst kernel size, {device}",
                     "value": f"{penalty:.2f}×", "target": f"≤ {AUTO_TOLERANCE}×", "met": penalty <= AUTO_TOLERANCE})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=(1, 3, 512, 512), metavar=("B", "C", "H", "W"))
    parser.add_argument("--mode", default="circular")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per cell (median)")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--out", help="write the tables as JSON to this path")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if not devices:
        parser.error("--device cuda requested but CUDA is not available")

    report = {"shape": list(args.shape), "mode": args.mode, "dtype": "float32",
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "FFT_CROSSOVER_TAPS": FFT_CROSSOVER_TAPS, "devices": {}}
    for device in devices:
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        else:
            name = f"cpu ({torch.get_num_threads()} threads)"
        rows = bench_device(device, tuple(args.shape), args.mode, args.sizes, args.repeats)
        cross = crossover(rows)
        report["devices"][device.type] = {"name": name, "rows": rows, "crossover_size": cross}
        print(f"\n{name}, image {tuple(args.shape)} float32, mode {args.mode!r}")
        print(f"{'kernel':>8} {'taps':>6} {'direct ms':>11} {'fft ms':>9} {'direct/fft':>11}")
        for r in rows:
            kernel = f"{r['size']}x{r['size']}"
            print(f"{kernel:>8} {r['taps']:>6} {r['direct_ms']:>11.2f} {r['fft_ms']:>9.2f} {r['ratio']:>11.2f}")
        if cross is None:
            print("crossover: the FFT is not faster at the largest size measured")
        else:
            print(f"crossover: FFT faster from {cross}x{cross} ({cross * cross} taps) on; "
                  f"FFT_CROSSOVER_TAPS is {FFT_CROSSOVER_TAPS}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"\nwrote {args.out}")
    conditions = (f"image {tuple(args.shape)} float32, mode {args.mode!r}, median of {args.repeats} calls per cell "
                  f"after {WARMUP_CALLS} warm-up calls, {report['threads']} CPU thread(s)")
    print(f"wrote {record_targets('ops', target_rows(report), conditions)}")


if __name__ == "__main__":
    main()
