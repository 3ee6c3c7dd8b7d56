"""Time D3's deblurring: the L-CNN against its collapsed DRK, and against one FFT convolution.

On one (1, 3, size, size) float32 RGB image (default 1024×1024), with symmetric borders:

- the L-CNN (``repro.dil.lcnn_apply``: five 3×3 layers, 32 channels),
- the DRK applied directly and by FFT (``repro.dil.deblur_drk``, i.e. ``repro.ops.blur``),
- Wiener deconvolution with a known 11×11 kernel (for scale),
- one bare float32 FFT convolution of the same image (``rfft2``, product with a precomputed
  kernel spectrum, ``irfft2``; circular, no padding): the floor any FFT filter pays.

Prints the table of ``repro.dil.compute_table`` and the two ratios the D3 claim is about:
L-CNN / DRK (target ≥ 100: "at least 100 times lesser computational resources") and
DRK FFT / one FFT convolution (target ≤ 1.5). The weights do not change the timings, so a
randomly initialised L-CNN is used unless ``--checkpoint`` names a trained one. On a CPU shared
with other jobs the numbers move with the load; ``--threads 1`` gives steadier ones.

    python benchmarks/bench_dil.py                       # CPU, and CUDA when available
    python benchmarks/bench_dil.py --threads 2 --out results/bench_dil.json
"""

from __future__ import annotations

import argparse

import torch

from repro import dil
from repro.timing import time_call
from repro.store import load_checkpoint, save_json


def median_ms(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls, after one warm-up call."""
    return 1e3 * time_call(fn, device, repeats)


def one_fft_convolution_ms(size: int, device: torch.device, repeats: int) -> float:
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    spectrum = torch.fft.rfft2(torch.rand(size, size, generator=torch.Generator().manual_seed(2)).to(device))
    with torch.no_grad():
        return median_ms(lambda: torch.fft.irfft2(torch.fft.rfft2(image) * spectrum, s=(size, size)), device, repeats)


def bench(model: dil.LinearCNN, size: int, device: torch.device, repeats: int) -> dict:
    table = dil.compute_table(model, size, str(device), repeats=repeats)
    megapixels = size**2 / 1e6
    ms = {row["method"]: row["ms_per_megapixel"] * megapixels for row in table}
    fft_ms = one_fft_convolution_ms(size, device, repeats)
    best_drk = min(ms["DRK, direct"], ms["DRK, FFT"])
    return {
        "device": str(device),
        "image": f"1x3x{size}x{size} float32",
        "threads": torch.get_num_threads(),
        "table": table,
        "ms": ms | {"one FFT convolution": fft_ms},
        "lcnn_over_best_drk": ms["L-CNN"] / best_drk,
        "lcnn_over_drk_direct": ms["L-CNN"] / ms["DRK, direct"],
        "lcnn_over_drk_fft": ms["L-CNN"] / ms["DRK, FFT"],
        "drk_fft_over_one_fft": ms["DRK, FFT"] / fft_ms,
    }


def report(result: dict) -> None:
    print(f"\n{result['device']}, {result['image']}, {result['threads']} thread(s)")
    print(dil.format_compute_table(result["table"]))
    for name, value in result["ms"].items():
        print(f"  {name:22s} {value:10.1f} ms")
    ratio = result["lcnn_over_best_drk"]
    print(f"L-CNN / faster DRK        = {ratio:7.1f}×  (target ≥ 100: {'met' if ratio >= 100 else 'NOT met'})")
    print(f"L-CNN / DRK direct        = {result['lcnn_over_drk_direct']:7.1f}×")
    print(f"L-CNN / DRK FFT           = {result['lcnn_over_drk_fft']:7.1f}×")
    ratio = result["drk_fft_over_one_fft"]
    print(f"DRK FFT / one FFT conv.   = {ratio:7.2f}   (target ≤ 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="side of the RGB test image (default 1024)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per method (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--checkpoint", default=None, help="a train_dil checkpoint (default: random weights)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = dil.LinearCNN(seed=0)
    if args.checkpoint:
        model.load_state_dict(load_checkpoint(args.checkpoint)["model"])
    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else ["cpu", "cuda"]
    results = []
    for name in devices:
        if name == "cuda" and not torch.cuda.is_available():
            print("\nCUDA: not available, skipped")
            continue
        results.append(bench(model, args.size, torch.device(name), args.repeats))
        report(results[-1])
    if args.out:
        save_json(results, args.out)
        print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
