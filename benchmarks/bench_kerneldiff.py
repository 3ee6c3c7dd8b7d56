"""Time Kernel-Diff's guided sampler against the number of reverse steps.

For each step count (default 1000, 250, 100, 50; η = 1 for all 1000 steps, the paper's ancestral
DDPM, otherwise the profile's strided η) this times one call of ``repro.kerneldiff.sample``
(guided, Stage II included) on one blurred image and reports seconds per image:

- on the CPU with the profile's small ε_θ and learned solver (the trained ones when cached in
  ``results/<profile>/kerneldiff/``, else freshly initialised ones: the weights do not change
  the cost of a step, only how many Stage II tries are rejected);
- on CUDA, when there is a GPU, with the paper configuration (≈36 M-parameter U-Net, 64² kernels,
  256² images) and the paper profile's solver, randomly initialised.

It also times one training step of the profile's ε_θ (forward and backward, batch 8) with the
decoder's "nearest ×2 upsampling, then 3×3 convolution" computed at the low resolution
(``repro.kerneldiff.upsample_conv``, the model's path) against the plain formulation, as a ratio
in the same run (best of several alternating rounds).

It then reads the steps-vs-quality sweep of the evaluation chapter of every profile that has
one (``results/<profile>/kerneldiff/steps.json``, written by ``repro.experiments.kerneldiff.run_chapter``;
the quick one, and the paper one after a GPU run) and says, for each, whether a sampler with at
most 100 steps has a mean MNC within 0.02 of the 1000-step one, compared image by image
(``repro.experiments.kerneldiff.steps_comparison``: met, not met, or not resolved).
Timings on a CPU shared with other jobs move with the load; ``--threads 1`` gives steadier ones.

    python benchmarks/bench_kerneldiff.py --profile quick --out results/bench_kerneldiff.json
"""

from __future__ import annotations

import argparse

import torch

from repro import profiles
from repro import kerneldiff as kd
from repro import nonblind
from repro._io import Entries, save_json
from repro.store import PROFILES, Store
from repro.experiments import kerneldiff as kdx
from repro.experiments import solver as learned_solver


def cpu_models(profile: profiles.Profile):
    """The profile's ε_θ (EMA) and solver: trained if cached, else newly initialised (and say which)."""
    try:
        solver_model = learned_solver.load_learned_wiener(profile, device="cpu")
        solver_state = "trained"
    except FileNotFoundError:
        solver_model = nonblind.LearnedWiener(**profile.solver.model).eval()
        solver_state = "untrained"
    if kdx.model_path(profile).exists():
        model, model_state = kdx.trained_model(profile, device="cpu", progress=False).ema, "trained"
    else:
        model, model_state = kd.new_model(kdx.unet_config(profile)).eval(), "untrained"
    return model, solver_model.requires_grad_(False), f"ε_θ {model_state}, solver {solver_state}"


def time_steps(model, solver_model, image_size: int, step_counts, settings: kdx.KernelDiffProfile,
               device: torch.device) -> list[dict]:
    """Seconds per image of guided sampling (one 3×image_size² image) for each step count, with
    the η of ``settings`` (:meth:`repro.experiments.kerneldiff.KernelDiffProfile.eta`)."""
    generator = torch.Generator().manual_seed(0)
    y = torch.rand(1, 3, image_size, image_size, generator=generator).to(device)
    rows = []
    for steps in step_counts:
        eta = settings.eta(steps, kd.Schedule().T)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        result = kd.sample(model, y, lambda y_, k_: solver_model(y_, k_), guided=True, steps=steps, eta=eta, seed=0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rows.append({"steps": steps, "eta": eta, "seconds_per_image": result.seconds,
                     "ms_per_step": 1e3 * result.seconds / steps, "device": str(device)})
        print(f"  {steps:5d} steps (η = {eta:g}): {result.seconds:8.2f} s / image  ({rows[-1]['ms_per_step']:.1f} ms / step, Stage II included)")
    return rows


def upsample_conv_ratio(unet: kd.UNetConfig, batch: int = 8, rounds: int = 5, repeats: int = 3) -> dict:
    """Seconds per ε_θ training step (forward + backward, random weights and data) with
    ``kd.upsample_conv`` against ``conv(F.interpolate(h, scale_factor=2, mode="nearest"))``:
    the same model, the two formulations alternated ``rounds`` times, the best of each kept."""
    import contextlib
    import time
    from unittest import mock

    import torch.nn.functional as F

    model = kd.new_model(unet, seed=0)
    generator = torch.Generator().manual_seed(0)
    y = torch.rand(batch, 3, unet.image_size, unet.image_size, generator=generator) * 2 - 1
    k = torch.randn(batch, 1, unet.kernel_size, unet.kernel_size, generator=generator)
    t = torch.randint(kd.Schedule().T, (batch,), generator=generator)

    def plain(h, conv):
        return conv(F.interpolate(h, scale_factor=2, mode="nearest"))

    def step():
        model.zero_grad(set_to_none=True)
        model(k, y, t).square().mean().backward()

    best = {"low-resolution": float("inf"), "plain": float("inf")}
    for _ in range(rounds):
        for name in best:
            with mock.patch.object(kd, "upsample_conv", plain) if name == "plain" else contextlib.nullcontext():
                step()
                start = time.perf_counter()
                for _ in range(repeats):
                    step()
                best[name] = min(best[name], (time.perf_counter() - start) / repeats)
    ratio = best["low-resolution"] / best["plain"]
    print(f"ε_θ training step (batch {batch}): upsample-conv at low resolution {best['low-resolution']:.3f} s, "
          f"plain {best['plain']:.3f} s: {ratio:.2f}×")
    return {"seconds": best, "ratio": ratio, "batch": batch}


def mnc_checks() -> list[dict]:
    """For every profile whose evaluation chapter has run its steps sweep, whether a ≤ 100-step
    sampler's mean MNC is within ``kd.STEPS_TOLERANCE`` of the 1000-step one, per image
    (:func:`repro.experiments.kerneldiff.steps_comparison`, with the profile added). The smoke sweep has
    no row above 100 steps, so it gives none."""
    checks = []
    for profile in PROFILES:
        path = Store.default().folder(profiles.get(profile), kdx.CHAPTER) / "steps.json"
        rows = list(Entries(path, kdx.STEPS_FORMAT).entries.values())
        comparison = kdx.steps_comparison(rows) if rows else None
        if comparison is None:
            continue
        checks.append({"profile": profile, **comparison})
        print(f"MNC, profile {profile}: {comparison['steps']} steps − {comparison['full_steps']} steps = "
              f"{comparison['gap']:+.3f} ± {comparison['se']:.3f} (standard error, {comparison['images']} images): "
              f"{comparison['verdict']} (tolerance {comparison['tolerance']})")
    if not checks:
        print("no steps sweep with more than 100 steps in results/<profile>/kerneldiff/steps.json: run the "
              "evaluation chapter (repro.experiments.kerneldiff.run_chapter) with the quick or paper profile first")
    return checks


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=["smoke", "quick"])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 250, 100, 50])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-cuda", action="store_true", help="skip the paper configuration on CUDA")
    parser.add_argument("--skip-cpu", action="store_true",
                        help="only the paper configuration on CUDA (no CPU timings, no upsample-conv ratio)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    chosen = profiles.get(args.profile)
    settings = chosen.kerneldiff
    out = {"profile": args.profile, "threads": args.threads, "models": "—", "cpu": []}
    if not args.skip_cpu:
        model, solver_model, out["models"] = cpu_models(chosen)
        size = chosen.kerneldiff_data.crop
        print(f"CPU, profile {args.profile} ({kd.count_parameters(model):,}-parameter ε_θ, {size}² image, "
              f"{args.threads} thread(s); {out['models']}):")
        out["cpu"] = time_steps(model, solver_model, size, args.steps, settings, torch.device("cpu"))
    if torch.cuda.is_available() and not args.no_cuda:
        device = torch.device("cuda")
        paper = kd.new_model(kd.PAPER_UNET).to(device).eval()
        paper_solver = nonblind.LearnedWiener(**profiles.get("paper").solver.model).to(device).eval()
        print(f"CUDA ({torch.cuda.get_device_name(device)}), paper configuration "
              f"({kd.count_parameters(paper):,} parameters, {kd.PAPER_UNET.image_size}² image), untrained weights:")
        out["cuda"] = time_steps(paper, paper_solver.requires_grad_(False), kd.PAPER_UNET.image_size, args.steps,
                                 profiles.get("paper").kerneldiff, device)
        out["cuda_device"] = torch.cuda.get_device_name(device)
    if not args.skip_cpu:
        out["upsample_conv"] = upsample_conv_ratio(kdx.unet_config(chosen))
    out["mnc_checks"] = mnc_checks()
    if args.out:
        save_json(out, args.out)
    record(out)
    return out


def record(out: dict) -> None:
    """Put the figures on the book's Performance page (``repro.timing.record_targets``)."""
    from repro.timing import record_targets

    rows = [{"part": "Kernel-Diff", "measure": f"guided sampling, {r['steps']} steps, s / image ({r['device']})",
             "value": r["seconds_per_image"], "target": "—", "met": None} for r in out["cpu"] + out.get("cuda", [])]
    if "upsample_conv" in out:
        rows.append({"part": "Kernel-Diff", "measure": f"ε_θ training step, upsample-conv at low resolution / plain "
                     f"(batch {out['upsample_conv']['batch']})", "value": out["upsample_conv"]["ratio"],
                     "target": "< 1", "met": out["upsample_conv"]["ratio"] < 1})
    for check in out["mnc_checks"]:
        rows.append({"part": "Kernel-Diff", "measure": f"mean MNC, {check['steps']} steps − {check['full_steps']} steps, "
                     f"per image (profile {check['profile']}, {check['images']} images, standard error "
                     f"{check['se']:.3f}; — : not resolved)",
                     "value": check["gap"], "target": f"≥ −{check['tolerance']}",
                     "met": {"met": True, "not met": False, "not resolved": None}[check["verdict"]]})
    record_targets("kerneldiff", rows, f"profile {out['profile']}, {out['threads']} CPU thread(s), models: {out['models']}"
                   + (f"; CUDA: {out['cuda_device']}, paper configuration, untrained weights" if "cuda" in out else ""))


if __name__ == "__main__":
    main()
