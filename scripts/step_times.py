"""How long a profile's long runs take on this machine: seconds per step, times the steps.

Before committing a GPU to the `paper` profile (or a laptop to `quick`), this times a short piece
of each long run of the profile with the real code at the profile's configuration, and scales it
to the profile's length:

- D3: one DIL training run (``Profile.d3``; the chapter trains one run per variant of
  ``repro.experiments.d3.variant_configs``);
- Kernel-Diff's learned Wiener solver (``Profile.solver``);
- Kernel-Diff's ε_θ (``Profile.kerneldiff``: its U-Net and training schedule; for
  `paper` the ≈36 M-parameter U-Net and 1,000,000 steps of 8);
- one SelfDeblur run of the original method (``Profile.selfdeblur``: its
  iterations) on a Levin-sized input (grey) and a Kodak-sized one (grey or RGB as the profile
  says), with the largest Levin kernel the profile uses.

Seconds per step are the difference between a run of ``long`` and one of ``short`` steps (each
fresh, timed to the end with the device synchronised, after an untimed one-step run that pays for
start-up) over ``long - short``: set-up, data generation and the final save cancel out. A small
model's step can drown in that noise: a difference of zero or less is reported as not resolved
(raise ``--long``). Training images are seeded random ones (a step's cost does not depend on
them), so no data is needed; results and checkpoints go to a temporary folder. ``--out`` writes
the rows as JSON.

    python scripts/step_times.py --profile paper --out build/step_times_paper.json   # on the GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import torch

from repro import profiles
from repro import dil, kerneldiff, selfdeblur, synth
from repro._io import save_json
from repro.store import PROFILES
from repro.experiments import d3
from repro.experiments import kerneldiff as kdx
from repro.experiments import solver as learned_solver

KODAK_SIZE = (512, 768)  # Kodak's landscape images, height × width
LEVIN_SIZE = 255


def seconds_per_step(run, short: int, long: int, device: str) -> float:
    """(time of ``run(long)`` − time of ``run(short)``) / (long − short), each run fresh, after
    an untimed run of one step (CUDA's start-up, cuDNN's choice of algorithms)."""
    times, results = [], os.environ.get("REPRO_RESULTS")
    try:
        for steps in (1, short, long):
            with tempfile.TemporaryDirectory() as folder:
                os.environ["REPRO_RESULTS"] = folder
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                run(steps)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
    finally:
        if results is None:
            os.environ.pop("REPRO_RESULTS", None)
        else:
            os.environ["REPRO_RESULTS"] = results
    return (times[2] - times[1]) / (long - short)


def duration(seconds: float) -> str:
    """12 s, 3.4 min, 5.2 h or 2.1 days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def random_images(n: int, side: int) -> list[torch.Tensor]:
    return [torch.rand(3, side, side, generator=torch.Generator().manual_seed(i)) for i in range(n)]


def selfdeblur_inputs(profile: profiles.Profile) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    """The shapes (1, C, H, W) of the profile's Levin and Kodak inputs and its largest kernel."""
    settings = profile.selfdeblur
    levin = settings.levin_size or LEVIN_SIZE
    height, width = (round(side * settings.kodak_downscale) for side in KODAK_SIZE)
    if settings.kodak_size is not None:
        height = width = settings.kodak_size
    channels = 1 if settings.gray else 3
    used = {j for _, j in settings.levin_inputs} | set(settings.kodak_kernels)
    kernel_size = max(selfdeblur.SELFDEBLUR_LEVIN_KERNEL_SIZES[j - 1] for j in used)
    return [(f"Levin-sized, {levin}² grey", (1, 1, levin, levin)),
            (f"Kodak-sized, {height}×{width} {'grey' if channels == 1 else 'RGB'}", (1, channels, height, width))], kernel_size


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", choices=PROFILES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--short", type=int, default=5, help="steps of the shorter run")
    parser.add_argument("--long", type=int, default=25, help="steps of the longer run")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    profile, device, short, long = args.profile, args.device, args.short, args.long
    if not 1 <= short < long:
        parser.error(f"need 1 <= --short < --long, got {short} and {long}")
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"profile {profile} on {name} (torch {torch.__version__}), seconds per step from {short} and {long} steps:")
    rows = []

    def report(part: str, per_step: float, steps: int, runs: str):
        resolved = per_step > 0
        rows.append({"part": part, "seconds_per_step": per_step if resolved else None, "steps": steps,
                     "hours_per_run": per_step * steps / 3600 if resolved else None, "runs": runs})
        estimate = (f"{per_step * 1e3:9.2f} ms/step × {steps:>9,} = {duration(per_step * steps):>9s} per run" if resolved
                    else f"not resolved ({per_step * 1e3:.2f} ms/step): raise --long")
        print(f"  {part:60s} {estimate} ({runs})", flush=True)

    chosen = profiles.get(profile)
    settings = chosen.d3

    def train_dil(steps):
        config = dataclasses.replace(settings.config(), steps=steps, log_every=steps, checkpoint_every=steps)
        dil.train_dil(config, seed=0, device=device, progress=False)

    report("D3: DIL training", seconds_per_step(train_dil, short, long, device), settings.steps,
           f"{len(d3.variant_configs(chosen))} variants")

    spec, solver = chosen.kerneldiff_data, chosen.solver
    images = random_images(4, spec.crop + 64)

    def train_solver(steps):
        config = dataclasses.replace(solver, steps=steps, log_every=steps, checkpoint_every=steps)
        learned_solver.train_learned_wiener(chosen, device=device, progress=False, images=images, config=config)

    report("Kernel-Diff: learned Wiener solver training", seconds_per_step(train_solver, short, long, device),
           solver.steps, "one")

    settings, unet = chosen.kerneldiff, kdx.unet_config(chosen)
    pairs = synth.BlurPairs(synth.motion_kernels(64, spec.kernel_size, synth.TRAIN_KERNEL_SEED), images,
                            crop=spec.crop, seed=0)

    def train_unet(steps):
        config = dataclasses.replace(settings.train, steps=steps, log_every=steps, checkpoint_every=steps)
        kerneldiff.train(unet, config, pairs, seed=0, device=device, progress=False)

    report(f"Kernel-Diff: ε_θ training ({kerneldiff.count_parameters(kerneldiff.new_model(unet)):,} "
           "parameters)", seconds_per_step(train_unet, short, long, device), settings.train.steps, "one")

    iterations = selfdeblur.SelfDeblurConfig().scaled(chosen.selfdeblur.iteration_scale).iterations
    inputs, kernel_size = selfdeblur_inputs(chosen)
    for label, shape in inputs:
        y = torch.rand(*shape, generator=torch.Generator().manual_seed(0))

        def run(steps):
            config = selfdeblur.SelfDeblurConfig(iterations=steps, ssim_switch=steps)
            selfdeblur.run_selfdeblur(y, kernel_size, config, seed=0, device=device, progress=False)

        report(f"SelfDeblur (original): {label}, kernel {kernel_size}", seconds_per_step(run, short, long, device),
               iterations, "one per input, seed and method")
    if args.out:
        save_json({"profile": profile, "device": name, "torch": torch.__version__, "short": short, "long": long,
                   "rows": rows}, args.out)
    return rows


if __name__ == "__main__":
    main()
