"""How long the `paper` profile's long runs take on this machine's GPU.

For each long run of the paper profile this times a short piece of the real code at the paper
configuration and scales it to the profile's length:

- D3: one DIL training run (``dil.get_profile("paper")``: 6,000 steps of 64 kernels; the chapter
  trains one run per variant of ``dil.variant_configs("paper")``);
- the learned Wiener solver of Kernel-Diff (``nonblind.solver_profile("paper")``: 100,000 steps
  of 16 crops of 256²);
- Kernel-Diff's ε_θ (the ≈36 M-parameter U-Net, ``kerneldiff.get_profile("paper").train``:
  1,000,000 steps of 8);
- one SelfDeblur run of 5,000 iterations (original method) on a Levin-sized input (255² grey,
  kernel 27) and on a Kodak-sized one (512×768 RGB, kernel 27).

Seconds per step are the difference between a run of ``long`` and one of ``short`` steps (each
fresh, timed to the end with the device synchronised, after an untimed one-step run) over
``long - short``: set-up, data generation and the final save cancel out. Training images are seeded random ones (the cost of a
step does not depend on them), so no data is needed. Results and checkpoints go to a temporary
folder. ``--out`` writes the rows as JSON.

    python scripts/paper_step_times.py --out build/paper_step_times.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import torch

from repro import dil, kerneldiff, nonblind, selfdeblur, synth
from repro.store import save_json


def seconds_per_step(run, short: int, long: int, device: str) -> float:
    """(time of ``run(long)`` − time of ``run(short)``) / (long − short), each run fresh, after
    an untimed run of one step (CUDA's start-up, cuDNN's choice of algorithms)."""
    times = []
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
    return (times[2] - times[1]) / (long - short)


def random_images(n: int, side: int) -> list[torch.Tensor]:
    return [torch.rand(3, side, side, generator=torch.Generator().manual_seed(i)) for i in range(n)]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--short", type=int, default=5, help="steps of the shorter run")
    parser.add_argument("--long", type=int, default=25, help="steps of the longer run")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    device, short, long = args.device, args.short, args.long
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"paper profile on {name} (torch {torch.__version__}), seconds per step from {short} and {long} steps:")
    rows = []

    def report(part: str, per_step: float, steps: int, runs: str):
        rows.append({"part": part, "seconds_per_step": per_step, "steps": steps, "hours_per_run": per_step * steps / 3600,
                     "runs": runs})
        print(f"  {part:46s} {per_step * 1e3:9.2f} ms/step × {steps:>9,} = {per_step * steps / 3600:8.2f} h per run ({runs})",
              flush=True)

    d3 = dil.get_profile("paper")
    variants = len(dil.variant_configs("paper"))

    def train_dil(steps):
        config = dataclasses.replace(d3.config(), steps=steps, log_every=steps, checkpoint_every=steps)
        dil.train_dil(config, seed=0, device=device, progress=False)

    report("D3: DIL training", seconds_per_step(train_dil, short, long, device), d3.steps,
           f"{variants} variants")

    solver = nonblind.solver_profile("paper")
    solver_images = random_images(4, synth.data_profile("paper").crop + 64)

    def train_solver(steps):
        config = dataclasses.replace(solver, steps=steps, log_every=steps, checkpoint_every=steps)
        nonblind.train_learned_wiener("paper", device=device, progress=False, images=solver_images, config=config)

    report("Kernel-Diff: learned Wiener solver training", seconds_per_step(train_solver, short, long, device),
           solver.steps, "one")

    settings, spec = kerneldiff.get_profile("paper"), synth.data_profile("paper")
    pairs = synth.BlurPairs(synth.motion_kernels(64, spec.kernel_size, synth.TRAIN_KERNEL_SEED),
                            random_images(4, spec.crop + 64), crop=spec.crop, seed=0)

    def train_unet(steps):
        config = dataclasses.replace(settings.train, steps=steps, log_every=steps, checkpoint_every=steps)
        kerneldiff.train(kerneldiff.PAPER_UNET, config, pairs, seed=0, device=device, progress=False)

    report("Kernel-Diff: ε_θ training (paper U-Net)", seconds_per_step(train_unet, short, long, device),
           settings.train.steps, "one")

    kernel_size = max(selfdeblur.SELFDEBLUR_LEVIN_KERNEL_SIZES)
    for label, shape in (("Levin-sized, 255² grey", (1, 1, 255, 255)), ("Kodak-sized, 512×768 RGB", (1, 3, 512, 768))):
        y = torch.rand(*shape, generator=torch.Generator().manual_seed(0))

        def run(iterations):
            config = selfdeblur.SelfDeblurConfig(iterations=iterations, ssim_switch=iterations)
            selfdeblur.run_selfdeblur(y, kernel_size, config, seed=0, device=device, progress=False)

        report(f"SelfDeblur, {label}, kernel {kernel_size}", seconds_per_step(run, short, long, device),
               selfdeblur.SelfDeblurConfig().iterations, "one per input and seed")
    if args.out:
        save_json({"device": name, "torch": torch.__version__, "short": short, "long": long, "rows": rows}, args.out)
    return rows


if __name__ == "__main__":
    main()
