"""Time D3's deblurring: the L-CNN against its collapsed DRK, and against one FFT convolution.

On one (1, 3, size, size) float32 RGB image (default 1024×1024), with symmetric borders:

- the L-CNN (``repro.dil.lcnn_apply``: five 3×3 layers, 32 channels, no padding inside), in
  PyTorch's default planar layout and in channels-last layout (oneDNN's other layout; the
  faster of the two is the honest reference for "L-CNN inference");
- the DRK applied by ``repro.dil.deblur_drk``, directly and by FFT (the DRK's spectrum is
  prepared on the first call and cached, like the reference's precomputed spectrum);
- the reference "single float32 FFT convolution of the same size"
  (``repro.experiments.d3.fft_convolution_reference``): ``rfft2`` of the whole 3-channel image, the product
  with a precomputed (size, size//2 + 1) spectrum, ``irfft2``; no padding, no validation, no
  clamping.

The two targets of the D3 issue: the faster L-CNN / DRK ≥ 100 ("at least 100 times lesser
computational resources"), and DRK (FFT) / reference ≤ 1.5. The weights do not change the
timings, so a randomly initialised L-CNN is used unless ``--checkpoint`` names a trained one.

On a CPU shared with other jobs the absolute times move with the load, so every round times
all methods back to back (each the best of ``--repeats`` calls after a warm-up,
``repro.timing.time_call``) and the ratios are taken within a round; the report gives every
round's ratios and their median, for each thread count of ``--threads``.

    python benchmarks/bench_dil.py                              # CPU 1 and 2 threads, CUDA if any
    python benchmarks/bench_dil.py --threads 1 --rounds 5 --out results/bench_dil.json
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics

import torch

from repro import dil
from repro._io import load_checkpoint, save_json
from repro.timing import record_targets, time_call
from repro.experiments import d3


def bench_round(model, image: torch.Tensor, drk: torch.Tensor, device: torch.device, repeats: int,
                lcnn_warmup: int) -> dict:
    """Milliseconds of every method, measured back to back."""
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)  # .to() would change model itself
    fns = {
        "FFT convolution (reference)": (d3.fft_convolution_reference(image), repeats, 1),
        "DRK, FFT": (lambda: dil.deblur_drk(image, drk, method="fft"), repeats, 1),
        "DRK, direct": (lambda: dil.deblur_drk(image, drk, method="direct"), repeats, 1),
        "L-CNN": (lambda: dil.lcnn_apply(model, image), 1, lcnn_warmup),
    }
    fns["L-CNN, channels-last"] = (lambda: dil.lcnn_apply(model_cl, image, channels_last=True), 1, lcnn_warmup)
    with torch.no_grad():
        return {name: 1e3 * time_call(fn, device, r, warmup=w, reduce=min) for name, (fn, r, w) in fns.items()}


def ratios(ms: dict) -> dict:
    lcnn = min(v for k, v in ms.items() if k.startswith("L-CNN"))
    return {
        "best_lcnn_over_drk_fft": lcnn / ms["DRK, FFT"],
        "best_lcnn_over_drk_direct": lcnn / ms["DRK, direct"],
        "planar_lcnn_over_drk_fft": ms["L-CNN"] / ms["DRK, FFT"],
        "drk_fft_over_reference": ms["DRK, FFT"] / ms["FFT convolution (reference)"],
        "drk_direct_over_reference": ms["DRK, direct"] / ms["FFT convolution (reference)"],
    }


def bench(model: dil.LinearCNN, size: int, device: torch.device, repeats: int, rounds: int) -> dict:
    model = model.to(device=device, dtype=torch.float32)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        drk = dil.collapse(model)
    per_round = []
    for r in range(rounds):
        ms = bench_round(model, image, drk, device, repeats, lcnn_warmup=1 if r == 0 else 0)
        per_round.append({"ms": ms, "ratios": ratios(ms)})
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()), flush=True)
    names = per_round[0]["ratios"]
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "image": f"1x3x{size}x{size} float32",
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "load_average_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "rounds": per_round,
        "min_ms": {k: min(r["ms"][k] for r in per_round) for k in per_round[0]["ms"]},
        "median_ratios": {k: statistics.median(r["ratios"][k] for r in per_round) for k in names},
    }


def _each(result: dict, ratio: str, spec: str) -> str:
    return ", ".join(format(r["ratios"][ratio], spec) for r in result["rounds"])


def report(result: dict) -> None:
    threads = f", {result['threads']} thread(s)" if result["threads"] else ""
    print(f"\n{result['device']}{threads}, {result['image']}, {len(result['rounds'])} rounds "
          f"(load average before: {result['load_average_before']})")
    for name, value in result["min_ms"].items():
        print(f"  {name:30s} {value:10.1f} ms (best round)")
    med = result["median_ratios"]
    print(f"  faster L-CNN / DRK FFT      = {med['best_lcnn_over_drk_fft']:7.1f}x  "
          f"(target >= {d3.SPEEDUP_TARGET:g}: {'met' if med['best_lcnn_over_drk_fft'] >= d3.SPEEDUP_TARGET else 'NOT met'}; "
          f"rounds: {_each(result, 'best_lcnn_over_drk_fft', '.0f')})")
    print(f"  faster L-CNN / DRK direct   = {med['best_lcnn_over_drk_direct']:7.1f}x")
    print(f"  planar L-CNN / DRK FFT      = {med['planar_lcnn_over_drk_fft']:7.1f}x")
    print(f"  DRK FFT / FFT convolution   = {med['drk_fft_over_reference']:7.2f}   "
          f"(target <= {d3.FFT_RATIO_TARGET:g}: {'met' if med['drk_fft_over_reference'] <= d3.FFT_RATIO_TARGET else 'NOT met'}; "
          f"rounds: {_each(result, 'drk_fft_over_reference', '.2f')})")
    print(f"  DRK direct / FFT convolution= {med['drk_direct_over_reference']:7.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=d3.SPEED_TARGET_SIZE,
                        help=f"side of the RGB test image (default {d3.SPEED_TARGET_SIZE}, the targets' size)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per method and round (best kept)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of back-to-back timings")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--checkpoint", default=None, help="a train_dil checkpoint (default: random weights)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    model = dil.LinearCNN(seed=0)
    if args.checkpoint:
        model.load_state_dict(load_checkpoint(args.checkpoint)["model"])
    results = []
    if args.device in ("cpu", "all"):
        for threads in args.threads:
            torch.set_num_threads(threads)
            print(f"\ncpu, {threads} thread(s):", flush=True)
            results.append(bench(model, args.size, torch.device("cpu"), args.repeats, args.rounds))
            report(results[-1])
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            print("\ncuda:", flush=True)
            results.append(bench(model, args.size, torch.device("cuda"), args.repeats, args.rounds))
            report(results[-1])
        else:
            print("\nCUDA: not available, skipped")
    if args.out:
        save_json(results, args.out)
        print(f"\nwritten to {args.out}")
    if results:
        print(f"targets recorded in {record(results, args)}")
    return 0


def record(results: list[dict], args) -> str:
    """The ratios against the issue's targets, for the book's Performance page."""
    speedup, fft_ratio = f"≥ {d3.SPEEDUP_TARGET:g}×", f"≤ {d3.FFT_RATIO_TARGET:g}×"
    rows = []
    for result in results:
        where = f"{result['device']}" + (f", {result['threads']} thread(s)" if result["threads"] else "")
        med = result["median_ratios"]
        rows += [
            {"part": "D3", "measure": f"faster L-CNN / DRK by FFT ({where})", "value": round(med["best_lcnn_over_drk_fft"], 1),
             "target": speedup, "met": med["best_lcnn_over_drk_fft"] >= d3.SPEEDUP_TARGET},
            {"part": "D3", "measure": f"faster L-CNN / DRK direct ({where})",
             "value": round(med["best_lcnn_over_drk_direct"], 1), "target": speedup,
             "met": med["best_lcnn_over_drk_direct"] >= d3.SPEEDUP_TARGET},
            {"part": "D3", "measure": f"DRK by FFT / one FFT convolution ({where})",
             "value": round(med["drk_fft_over_reference"], 2), "target": fft_ratio,
             "met": med["drk_fft_over_reference"] <= d3.FFT_RATIO_TARGET},
            {"part": "D3", "measure": f"DRK direct / one FFT convolution ({where})",
             "value": round(med["drk_direct_over_reference"], 2), "target": fft_ratio,
             "met": med["drk_direct_over_reference"] <= d3.FFT_RATIO_TARGET},
        ]
    loads = ", ".join(f"{r['load_average_before']:.1f}" for r in results if r["load_average_before"] is not None)
    conditions = (f"{args.size}x{args.size} RGB float32; median over {args.rounds} rounds of back-to-back timings, "
                  f"each the best of {args.repeats} calls; 1-minute load average before each device/thread run: "
                  f"{loads or 'n/a'}; the L-CNN reference is the faster of its planar and channels-last layouts")
    return str(record_targets("d3_drk", rows, conditions))


if __name__ == "__main__":
    raise SystemExit(main())
