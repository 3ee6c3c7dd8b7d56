"""Guided Kernel-Diff against the alternating baseline on *validation* pairs: blurred crops of the
training distribution (``repro.synth.BlurPairs`` of a profile's training kernels and images, seed
777), never the test images. The study behind the Kernel-Diff profiles' sampler choices
(``repro.experiments.kerneldiff.KernelDiffProfile``).

    python scripts/kerneldiff_validation.py --profile quick --pairs 24
    python scripts/kerneldiff_validation.py --profile quick --pairs 24 --scale-with-stride
    python scripts/kerneldiff_validation.py --profile quick --pairs 24 --train-steps 5000
    python scripts/kerneldiff_validation.py --profile quick --pairs 24 --steps 250 100 --guidance 0.25 0.5 1 2

For each step count of the profile's steps sweep (``--steps``: those instead), the guided sampler
(Algorithm 1, the profile's η rule) on all pairs as one batch, once per guidance multiplier
(``--guidance``: the official step δ = 0.04 times each; default 1); with ``--scale-with-stride``
also each strided sampler with the guidance step multiplied by T / steps (the total guidance of
the T-step sampler); the alternating
MAP_{x,k} baseline with the same solver; and the blurred input. Every row scores the same pairs:
mean MNC and PSNR (x̂ = F(y, k̂), clamped) ± standard error over the pairs, then each guided
row's paired differences to the alternating baseline and to the longest unscaled sampler
(``repro.metrics.paired_gap``). Uses the profile's trained ε_θ and learned solver (trained
first if missing, as the chapters do; ``--train-steps N``: ε_θ trained N steps instead,
:func:`repro.experiments.kerneldiff.trained_model`). Prints one line per row; ``--out FILE`` also writes the
rows and differences as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from repro import profiles
from repro import kerneldiff as kd
from repro import synth
from repro._checks import check_positive
from repro.metrics import describe_gap, mnc, paired_gap, psnr
from repro import studies
from repro.experiments import kerneldiff as kdx

VALIDATION_SEED = 777
"""The stream of :class:`repro.synth.BlurPairs` the validation pairs come from (training uses
``repro.experiments.kerneldiff.SEED``)."""


def validation_pairs(profile: profiles.Profile, n: int, seed: int = VALIDATION_SEED):
    """``n`` validation pairs of ``profile``: (y, x, k) as :meth:`repro.synth.BlurPairs.batch` returns them."""
    spec = profile.kerneldiff_data
    pairs = synth.BlurPairs(spec.train_kernels(), synth.training_images(spec.max_train_images), spec.crop,
                            spec.noise_sigma, seed=seed)
    return pairs.batch(0, n)


def _row(method: str, steps, multiplier, kernels, images, x, k, seconds: float) -> dict:
    n = x.shape[0]
    scores = mnc(kernels.detach().cpu().double(), k[:, 0].cpu().double()) if kernels is not None else None
    quality = psnr(images.detach().cpu().double(), x.cpu().double())
    row = {"method": method, "steps": steps, "guidance_multiplier": multiplier, "pairs": n,
           "psnr_mean": quality.mean().item(), "psnr_se": quality.std().item() / math.sqrt(n),
           "psnr_per_pair": quality.tolist(), "seconds_per_kernel": seconds / n}
    if scores is not None:
        row |= {"mnc_mean": scores.mean().item(), "mnc_se": scores.std().item() / math.sqrt(n),
                "mnc_per_pair": scores.tolist()}
    return row


def check_multipliers(multipliers) -> list[float]:
    """The guidance multipliers as floats; ValueError unless there is at least one and each is
    finite and > 0."""
    if not multipliers:
        raise ValueError("guidance_multipliers must hold at least one multiplier")
    return [check_positive(m, f"guidance_multipliers[{i}]") for i, m in enumerate(multipliers)]


def run(model: kd.KernelUNet, solver, y: torch.Tensor, x: torch.Tensor, k: torch.Tensor,
        settings: kdx.KernelDiffProfile, scale_with_stride: bool = False, schedule: kd.Schedule | None = None,
        max_batch: int | None = kd.CPU_MAX_BATCH, step_counts: tuple[int, ...] | None = None,
        guidance_multipliers: tuple[float, ...] = (1.0,), progress: bool = False) -> list[dict]:
    """The rows of the study on the pairs (y, x, k): blurred input, alternating baseline, then the
    guided sampler at each of ``step_counts`` (default ``settings.step_counts``) with the guidance
    step δ × each of ``guidance_multipliers`` (and, with ``scale_with_stride``, each strided count
    again with δ × T / steps). ``progress``: a progress bar over each sampler's steps."""
    guidance_multipliers = check_multipliers(guidance_multipliers)
    schedule = schedule or kd.Schedule()
    rows = [_row("blurred input", None, None, None, y.clamp(0, 1), x, k, 0.0)]
    start = time.perf_counter()
    kernels, _ = kdx._alternating(y, model.config.kernel_size, solver, settings.alternating_iterations, kdx.SEED)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        restored = solver(y, kernels[:, None]).clamp(0, 1)
    rows.append(_row("alternating MAP_{x,k}", settings.alternating_iterations, None, kernels, restored, x, k, seconds))
    for steps in settings.step_counts if step_counts is None else step_counts:
        multipliers = list(guidance_multipliers)
        if scale_with_stride and steps < schedule.T and schedule.T / steps not in multipliers:
            multipliers.append(schedule.T / steps)
        for multiplier in multipliers:
            result = kd.sample(model, y, solver, True, steps, settings.eta(steps, schedule.T), seed=kdx.SEED,
                               schedule=schedule, guidance_scale=kd.GUIDANCE_SCALE * multiplier, max_batch=max_batch,
                               progress=progress)
            rows.append(_row("Kernel-Diff, guided", steps, multiplier, result.kernels, result.images, x, k,
                             result.seconds))
    return rows


def paired_differences(rows: list[dict]) -> list[dict]:
    """For every guided row of :func:`run`: its paired differences (mean over the pairs ± standard
    error, :func:`repro.metrics.paired_gap`) to the alternating baseline in MNC and PSNR, and
    to the guided sampler with the most steps and the official guidance step (when that was run;
    otherwise the first multiplier) in MNC."""
    alternating = next(row for row in rows if row["method"].startswith("alternating"))
    guided = [row for row in rows if row["method"] == "Kernel-Diff, guided"]
    reference = 1.0 if any(row["guidance_multiplier"] == 1.0 for row in guided) else guided[0]["guidance_multiplier"]
    longest = max((row for row in guided if row["guidance_multiplier"] == reference), key=lambda row: row["steps"])
    return [{"steps": row["steps"], "guidance_multiplier": row["guidance_multiplier"],
             "mnc_vs_alternating": paired_gap(row["mnc_per_pair"], alternating["mnc_per_pair"]),
             "psnr_vs_alternating": paired_gap(row["psnr_per_pair"], alternating["psnr_per_pair"]),
             "longest_steps": longest["steps"],
             "mnc_vs_longest": paired_gap(row["mnc_per_pair"], longest["mnc_per_pair"])} for row in guided]


def format_difference(entry: dict) -> str:
    """One printed line of :func:`paired_differences` (:func:`repro.metrics.describe_gap`)."""
    multiplier = "" if entry["guidance_multiplier"] == 1.0 else f", guidance ×{entry['guidance_multiplier']:g}"
    return (f"{str(entry['steps']) + ' steps' + multiplier:28s} against alternating: MNC "
            f"{describe_gap(*entry['mnc_vs_alternating'], 3)}, PSNR {describe_gap(*entry['psnr_vs_alternating'], 2, 'dB')}; "
            f"against {entry['longest_steps']} steps: MNC {describe_gap(*entry['mnc_vs_longest'], 3)}")


def format_row(row: dict) -> str:
    """One printed line: method, steps, guidance multiplier, MNC and PSNR ± standard error, seconds."""
    steps = "" if row["steps"] is None else f"{row['steps']} {'iterations' if 'alternating' in row['method'] else 'steps'}"
    multiplier = "" if row["guidance_multiplier"] in (None, 1.0) else f", guidance ×{row['guidance_multiplier']:g}"
    mnc_text = f"MNC {row['mnc_mean']:.3f} ± {row['mnc_se']:.3f}" if "mnc_mean" in row else "MNC —"
    return (f"{row['method'] + ' ' + steps + multiplier:50s} {mnc_text:20s} PSNR {row['psnr_mean']:.2f} ± "
            f"{row['psnr_se']:.2f} dB  {row['seconds_per_kernel']:.2f} s / kernel")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=list(kdx.PROFILES))
    parser.add_argument("--pairs", type=int, default=24, help="validation pairs (>= 2)")
    parser.add_argument("--scale-with-stride", action="store_true",
                        help="also run each strided sampler with the guidance step x T / steps")
    parser.add_argument("--steps", type=int, nargs="+", default=None, metavar="N",
                        help="sampler step counts (default: the profile's steps sweep)")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0], metavar="M",
                        help="multipliers of the official guidance step 0.04 (default: 1)")
    parser.add_argument("--train-steps", type=int, default=None, metavar="N",
                        help="use ε_θ trained N steps instead of the profile's (its own checkpoint, continued "
                             "from the longest finished shorter run of the profile)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--out", default=None, help="also write the rows to this JSON file, with the command, "
                        "date, machine and commit (repro.studies)")
    args = parser.parse_args(argv)
    if args.pairs < 2:
        parser.error(f"--pairs must be >= 2 (a standard error needs two), got {args.pairs}")
    if args.steps is not None and min(args.steps) < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    try:
        check_multipliers(args.guidance)
    except ValueError as err:
        parser.error(f"--guidance multipliers must be positive and finite ({err})")
    torch.set_num_threads(kd.CPU_THREADS)
    chosen = profiles.get(args.profile)
    settings = chosen.kerneldiff
    solver = kdx.chapter_solver(chosen, args.device, progress=True)
    if args.train_steps is not None and args.train_steps < 1:
        parser.error(f"--train-steps must be >= 1, got {args.train_steps}")
    trained = kdx.trained_model(chosen, args.device, progress=True, steps=args.train_steps)
    model = trained.ema
    device = next(model.parameters()).device
    y, x, k = (t.to(device) for t in validation_pairs(chosen, args.pairs))
    rows = run(model, solver, y, x, k, settings, args.scale_with_stride,
               max_batch=kd.CPU_MAX_BATCH if device.type == "cpu" else None,
               step_counts=None if args.steps is None else tuple(args.steps), guidance_multipliers=tuple(args.guidance), progress=True)
    print(f"profile {args.profile}, ε_θ trained {trained.step} steps, {args.pairs} validation pairs "
          f"(BlurPairs seed {VALIDATION_SEED}), device {device}:")
    for row in rows:
        print(format_row(row))
    differences = paired_differences(rows)
    print("paired differences (mean over the pairs ± standard error):")
    for entry in differences:
        print(format_difference(entry))
    if args.out:
        studies.write(args.out, {"profile": args.profile, "train_steps": trained.step, "pairs": args.pairs,
                                 "seed": VALIDATION_SEED, "rows": rows, "differences": differences},
                      "kerneldiff_validation.py", argv)
        print(json.dumps({"wrote": args.out}))


if __name__ == "__main__":
    main()
