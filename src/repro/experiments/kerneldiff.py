"""The Kernel-Diff chapters' experiments: profiles, trained models, test cases, tables.

The science (the reblurring loss, the DDPM schedule, the conditional ε-network, training and
Algorithm 1's sampler) is :mod:`repro.kerneldiff`; this module trains ε_θ per profile (cached and
resumable in ``<store>/<profile>/kerneldiff/``), builds the BSD100 test cases, scores every row
of the evaluation table and the steps sweep, and compares them with the paper's Table 2.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import data, interactive, metrics, synth, timing
from .._checks import check_positive, check_positive_int, check_tensor, count_parameters, is_int, resolve_device
from .._distributed import Shard
from .._io import Entries, TrainingCheckpoint, cached, fingerprint, jsonable, load_cached, load_checkpoint, save_checkpoint
from ..alternating import alternating_map
from ..dil import deblur_drk
from ..kerneldiff import (CPU_MAX_BATCH, PAPER_UNET, KernelUNet, SampleResult, Schedule, Solver, TrainConfig, TrainRun,
                          UNetConfig, choose_by_residual, in_chunks, parameter_count, reblur_loss, run_identity, sample,
                          train, wiener_solver)
from ..metrics import mnc, psnr
from ..profiles import Profile, check
from ..store import Store
from . import solver as learned_solver
from .d3 import train_variant, wiener_nsr
from .evaluation import build_cases, evaluate
from .kerneldiff_data import KernelDiffData

# --------------------------------------------------------------------------------------------
# 1. Profiles and the evaluation chapter
# --------------------------------------------------------------------------------------------

CHAPTER = "kerneldiff"
"""Folder of the chapter's results, ``<store>/<profile>/kerneldiff/`` (shared with the solver of
``repro.nonblind``)."""
MODEL_FILE = "diffusion.pt"
KERNELS_FORMAT = "repro.kerneldiff.kernels/2"  # kernels_<run>.pt: estimated kernels per case
STEPS_FORMAT = "repro.kerneldiff.steps/2"  # steps.json: a row per step count of the sweep
SEED = 0


@dataclass(frozen=True)
class KernelDiffProfile:
    """What one profile trains and evaluates (``Profile.kerneldiff``). Data sizes (kernel size, crop,
    kernels, training images) come from ``Profile.kerneldiff_data``, the learned solver from
    ``Profile.solver``.

    * ``channels``, ``time_dim``, ``attention_heads``: the U-Net (:class:`UNetConfig`);
      ``train``: its :class:`TrainConfig`.
    * ``n_test``: BSD100 (BSDS500 ``val``) images, one random ``crop``² crop each, each blurred
      (:func:`reblur`'s reflection boundary, see :func:`test_cases`) by its own held-out motion kernel.
    * ``sample_steps``: reverse steps of the samplers in the main table (η = 1 with all T steps,
      otherwise ``strided_eta``); ``batch``: test images per sampler call.
    * ``step_counts``, ``n_sweep``: the steps-vs-quality sweep on the first ``n_sweep`` cases.
    * ``n_trials``, ``n_trial_images``: Fig. 5, trials (seeds) per image, on the first images.
    * ``n_select``, ``select_steps``: beyond the paper, :data:`SELECT_ROW`: ``n_select`` guided
      samples per test image with ``select_steps`` steps (one of ``step_counts``, not
      ``sample_steps``), the one with the lowest reblurring residual kept
      (:func:`choose_by_residual`); the steps sweep's row at ``select_steps`` is scored on all of
      these samples.
    * ``alternating_iterations``: iterations of the alternating MAP_{x,k} baseline.
    * ``strided_eta``: η of the strided samplers (fewer than T steps): 1, the stochastic strided
      sampler, rather than the deterministic DDIM (η = 0); a setting of the sampler, never chosen
      on the test images.
    """

    name: str
    channels: tuple[int, ...]
    time_dim: int
    attention_heads: int
    train: TrainConfig
    n_test: int
    sample_steps: int
    batch: int
    step_counts: tuple[int, ...]
    n_sweep: int
    n_trials: int
    n_trial_images: int
    n_select: int
    select_steps: int
    alternating_iterations: int
    strided_eta: float = 1.0

    def eta(self, steps: int, T: int = 1000) -> float:
        """η of the sampler with ``steps`` reverse steps out of the schedule's ``T``: 1 (DDPM,
        Algorithm 1) with all of them, ``strided_eta`` with fewer."""
        return 1.0 if steps == T else self.strided_eta

    def __post_init__(self):
        for name in ("n_sweep", "n_trial_images", "batch"):
            if not 1 <= getattr(self, name) <= self.n_test:
                raise ValueError(f"KernelDiffProfile {self.name!r}: {name} must be in 1..n_test = {self.n_test}, "
                                 f"got {getattr(self, name)}")
        if not is_int(self.n_select, 1):
            raise ValueError(f"KernelDiffProfile {self.name!r}: n_select must be an int >= 1, got {self.n_select!r}")
        if self.select_steps not in self.step_counts or self.select_steps == self.sample_steps:
            raise ValueError(f"KernelDiffProfile {self.name!r}: select_steps must be one of step_counts "
                             f"{self.step_counts} other than sample_steps = {self.sample_steps}, got {self.select_steps!r}")

    def unet(self, data: KernelDiffData) -> UNetConfig:
        """The U-Net of this profile for its data sizes (``Profile.kerneldiff_data``)."""
        return UNetConfig(image_size=data.crop, kernel_size=data.kernel_size, channels=self.channels,
                          time_dim=self.time_dim, attention_heads=self.attention_heads)


PROFILES = {
    # CI: a tiny U-Net (9x9 kernels, 32x32 crops) trained for seconds; a handful of cases.
    "smoke": KernelDiffProfile(
        "smoke", channels=(8, 16), time_dim=16, attention_heads=1,
        train=TrainConfig(steps=60, batch_size=8, lr=1e-3, log_every=10, checkpoint_every=30),
        n_test=3, sample_steps=20, batch=3, step_counts=(40, 20, 10), n_sweep=2, n_trials=4, n_trial_images=1,
        n_select=2, select_steps=10, alternating_iterations=20),
    # a 2-core CPU: 16x16 kernels, 64x64 crops, a 0.87 M-parameter U-Net trained 2,500 steps, so that
    # the Kernel-Diff part fits its 43 minutes. lr 2e-4: DDPM's value for its small models (the
    # paper's 1e-5 suits 1 M steps, not a few thousand). 250 strided steps (eta = 1), the 12 test
    # images in one batch, 4 trials in Fig. 5; the steps sweep on the first 6 test images. How the
    # training budget, the step count and the guidance step move the result is measured on
    # validation pairs, never the test images, by scripts/kerneldiff_validation.py (--train-steps,
    # --steps, --guidance).
    "quick": KernelDiffProfile(
        "quick", channels=(16, 32, 32), time_dim=32, attention_heads=2,
        train=TrainConfig(steps=2500, batch_size=8, lr=2e-4, log_every=50, checkpoint_every=250),
        n_test=12, sample_steps=250, batch=12, step_counts=(1000, 250, 100, 50), n_sweep=6, n_trials=4,
        n_trial_images=1, n_select=4, select_steps=50, alternating_iterations=100),
    # a GPU: the paper's U-Net (≈36 M parameters, 64x64 kernels, 256x256 crops) and schedule (FACTS.md).
    "paper": KernelDiffProfile(
        "paper", channels=PAPER_UNET.channels, time_dim=PAPER_UNET.time_dim,
        attention_heads=PAPER_UNET.attention_heads, train=TrainConfig(),
        n_test=100, sample_steps=1000, batch=10, step_counts=(1000, 250, 100, 50), n_sweep=20, n_trials=50,
        n_trial_images=1, n_select=4, select_steps=50, alternating_iterations=1000),
}



def unet_config(profile: Profile) -> UNetConfig:
    """The U-Net of ``profile``: its ``kerneldiff`` widths on its ``kerneldiff_data`` sizes."""
    return check(profile).kerneldiff.unet(profile.kerneldiff_data)


def _train_config(profile: Profile, steps: int | None) -> TrainConfig:
    settings = check(profile).kerneldiff
    if steps is None or steps == settings.train.steps:
        return settings.train
    check_positive_int(steps, "steps")
    return dataclasses.replace(settings.train, steps=steps)


def model_path(profile: Profile, steps: int | None = None, store: Store | None = None) -> Path:
    """Where :func:`trained_model` keeps ε_θ of ``profile``: ``<store>/<profile>/kerneldiff/diffusion.pt``,
    or ``diffusion_<steps>steps.pt`` for a run of another length than the profile's."""
    folder = Store.resolve(store).folder(profile, CHAPTER)
    if _train_config(profile, steps) == profile.kerneldiff.train:
        return folder / MODEL_FILE
    return folder / f"diffusion_{steps}steps.pt"


def _shorter_runs(profile: Profile, steps: int, store: Store) -> list[int]:
    """The step counts below ``steps`` of ``profile``'s ε_θ checkpoints, longest first: the
    profile's own and each ``diffusion_<n>steps.pt`` found; the caller checks that each exists
    and is finished."""
    names = (f.name.removeprefix("diffusion_").removesuffix("steps.pt")
             for f in store.folder(profile, CHAPTER).glob("diffusion_*steps.pt"))
    counts = {profile.kerneldiff.train.steps} | {int(n) for n in names if n.isdigit()}
    return sorted((n for n in counts if 0 < n < steps), reverse=True)


def profile_run_identity(profile: Profile, steps: int | None = None) -> dict:
    """What a finished checkpoint of ``profile`` (trained ``steps`` steps; None: the profile's)
    must record as its ``run`` (U-Net, training configuration, seed, data settings, T) for
    :func:`trained_model` to use it."""
    data_key = jsonable(dataclasses.asdict(check(profile).kerneldiff_data))
    return run_identity(unet_config(profile), _train_config(profile, steps), SEED, data_key, Schedule().T)


def trained_model(profile: Profile, device=None, progress: bool = True, steps: int | None = None,
                  store: Store | None = None) -> TrainRun:
    """ε_θ of ``profile``: read from :func:`model_path` when it holds the finished run, otherwise
    trained (resuming an interrupted run; a checkpoint trained with other settings of the profile
    is moved aside as ``<file>.stale`` and retrained) on the profile's data:
    :class:`repro.synth.BlurPairs` of the training kernels and BSDS500 train + test images.

    ``steps``: train that many steps instead of the profile's (a study of the training budget,
    ``scripts/kerneldiff_validation.py --train-steps``), in a checkpoint of its own. A run starts
    from the longest finished shorter run of the profile when there is one (the profile's, or an
    earlier study's): the learning rate is constant and each step's data and noise depend only on
    the step, so that is bit-identical (on the CPU) to training from scratch."""
    spec = check(profile).kerneldiff_data
    config = _train_config(profile, steps)
    device = resolve_device(device)
    unet, schedule = unet_config(profile), Schedule()
    data_key = jsonable(dataclasses.asdict(spec))
    store = Store.resolve(store)
    path, identity = model_path(profile, steps, store), profile_run_identity(profile, steps)

    # another run's checkpoint (the profile's settings changed) is retrained, not refused; under
    # torchrun rank 0 moves it aside before the others look
    shard = Shard.current()
    state = shard.rank_zero_first(
        lambda: TrainingCheckpoint(path, identity).load(device, needs=("model", "ema", "step"), other_run="aside"))
    if state is not None and state.get("step") == config.steps:
        model, ema = KernelUNet(unet).to(device), KernelUNet(unet).to(device)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        return TrainRun(model=model.eval(), ema=ema.eval().requires_grad_(False), config=config,
                        seed=SEED, step=state["step"], history=state["history"])
    if state is None and shard.writes:  # continue the longest finished shorter run of this profile, if any
        for shorter_steps in _shorter_runs(profile, config.steps, store):
            shorter = load_cached(model_path(profile, shorter_steps, store),
                                  lambda f: load_checkpoint(f, map_location=device))
            if isinstance(shorter, dict) and shorter.get("run") == profile_run_identity(profile, shorter_steps) \
                    and shorter.get("step") == shorter_steps:
                save_checkpoint(shorter | {"run": identity}, path)
                break
    shard.rank_zero_first(lambda: None)  # the others start from what rank 0 copied
    data = synth.BlurPairs(spec.train_kernels(), synth.training_images(spec.max_train_images), spec.crop,
                           spec.noise_sigma, seed=SEED)
    return train(unet, config, data, SEED, path, device=device, schedule=schedule, data_key=data_key,
                 progress=progress)


def chapter_solver(profile: Profile, device=None, progress: bool = True, store: Store | None = None) -> Solver:
    """The learned non-blind solver F of ``profile`` (:func:`repro.experiments.solver.train_learned_wiener`:
    read from its cache or trained), frozen, as a :data:`Solver` with a ``key``."""
    model = learned_solver.train_learned_wiener(profile, device=resolve_device(device), progress=progress,
                                                store=store).eval()
    model.requires_grad_(False)

    def solve(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return model(y, k)

    solve.key = "learned:" + learned_solver.SOLVER_FILE + f":{count_parameters(model)}"
    solve.model = model
    return solve


def test_cases(profile: Profile) -> list:
    """The profile's test set: the first ``n_test`` BSD100 (BSDS500 ``val``) images, a random
    crop each (position seeded by the image index), blurred by the held-out kernel of the same index
    (``repro.synth.TEST_KERNEL_SEED`` stream), no noise. :class:`repro.experiments.evaluation.Case` list.

    The blur is the model's own, :func:`reblur` (reflection padding, as the training pairs, the
    guidance loss and the alternating baseline), so that the true kernel explains y exactly under
    the reblurring loss. §4.2 speaks of "symmetric boundary conditions"; the official code pads by
    reflection (FACTS.md), and one boundary for data, guidance and baseline keeps any method from
    being favoured by a mismatch at the border."""
    settings, spec = check(profile).kerneldiff, profile.kerneldiff_data
    if settings.n_test > spec.n_test_kernels:
        raise ValueError(f"profile {profile.name!r} asks for {settings.n_test} test cases but synth has "
                         f"{spec.n_test_kernels} test kernels")
    kernels = spec.test_kernels()
    images, named_kernels = {}, {}
    for i, relpath in enumerate(data.bsds500("val")[: settings.n_test]):
        image = data.load_image(relpath)
        generator = torch.Generator().manual_seed(SEED * 1_000_003 + i)
        top = int(torch.randint(image.shape[-2] - spec.crop + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[-1] - spec.crop + 1, (1,), generator=generator))
        images[Path(relpath).stem] = image[:, top : top + spec.crop, left : left + spec.crop]
        named_kernels[f"test{i}"] = kernels[i]
    return build_cases(images, named_kernels, pairing="zip", blur_mode="reflect", seed=SEED,
                       meta={"dataset": "BSD100"})


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _estimate(run: str, key: str, fn, cases: list, folder: Path, batch: int, progress: bool) -> dict:
    """Kernels of the estimator ``fn`` on ``cases``, resumably cached in ``folder/kernels_<run>.pt``.

    ``fn(cases) -> {output name: (n, s, s) kernels}`` (one run may give several outputs, e.g. the
    guided sampler before and after Stage II). Returns {case name: {output: kernel, "seconds":
    time per case}}; a case is recomputed when its data or ``key`` changed.
    """
    stored = Entries(folder / f"kernels_{run}.pt", KERNELS_FORMAT, load_checkpoint, save_checkpoint)
    keys = {c.name: [key, c.fingerprint()] for c in cases}  # the run's key and the case's data
    todo = [c for c in cases if stored.get(c.name, keys[c.name]) is None]
    for chunk in tqdm(_chunks(todo, batch), desc=run, disable=not progress, leave=False):
        start = time.perf_counter()
        outputs = fn(chunk)
        seconds = (time.perf_counter() - start) / len(chunk)
        for i, case in enumerate(chunk):
            stored.put(case.name, keys[case.name],
                       {"seconds": seconds, **{name: kernels[i].detach().cpu() for name, kernels in outputs.items()}})
    return {c.name: stored.entries[c.name] for c in cases}


def _stack_y(cases: list, device) -> torch.Tensor:
    return torch.stack([c.y for c in cases]).to(device=device, dtype=torch.float32)


PAPER_TABLE = {
    "learned F, true k (oracle)": {"psnr": 22.95, "ssim": 0.810, "method": "DWDN, true kernel"},
    "alternating MAP_{x,k}": {"psnr": 17.56, "ssim": 0.387, "mnc": 0.283, "method": "Blind-DPS (alternating diffusion)"},
    "Kernel-Diff, unguided": {"psnr": 17.83, "ssim": 0.414, "method": "Kernel-Diff w/o DWDN (Table 4)"},
    "Kernel-Diff, guided": {"psnr": 18.95, "ssim": 0.492, "mnc": 0.698, "method": "Kernel-Diff"},
}
"""The paper's Tables 1, 2 and 4 (BSD100, 256² crops, 64² kernels, DWDN as F) beside the row of
ours that plays the same part. Blind-DPS is the paper's alternating method, not our baseline:
the same role (alternating MAP_{x,k}), another algorithm."""


DRK_ROW = "DRK (D3), no kernel, out of its domain"


def _score_rows(cases: list, estimates: dict[str, dict], solver: Solver, drk: torch.Tensor, folder: Path,
                progress: bool) -> list[dict]:
    """PSNR/SSIM (``repro.experiments.evaluation.evaluate``, resumable; PSNR also per case) and MNC (mean, std
    and per case) of every method on ``cases``, per-case lists in the order of ``cases``;
    every estimated kernel is restored by the learned ``solver``; ``drk`` is D3's restoration
    kernel, applied as it is (it estimates no kernel)."""
    wiener = classical_solver()
    device = next(solver.model.parameters()).device

    def restore(kernels: dict, output: str):
        def method(y, case):
            k = kernels[case.name][output].to(device=device, dtype=torch.float32)
            return solver(y[None].to(device=device, dtype=torch.float32), k[None, None])[0].clamp(0, 1).cpu()
        return method

    def oracle(f):
        return lambda y, case: f(y[None].float().to(device), case.k[None, None].float().to(device))[0].clamp(0, 1).cpu()

    drk = drk.to(device=device, dtype=torch.float32)
    drk_key = fingerprint(drk)
    methods = {"blurred input": lambda y, case: y.clamp(0, 1), "Wiener, true k (oracle)": oracle(wiener),
               "learned F, true k (oracle)": oracle(solver),
               DRK_ROW: lambda y, case: deblur_drk(y[None].float().to(device), drk)[0].clamp(0, 1).cpu()}
    keys = {"blurred input": "", "Wiener, true k (oracle)": wiener.key, "learned F, true k (oracle)": solver.key,
            DRK_ROW: drk_key}
    for (run, output), kernels in estimates.items():
        methods[output] = restore(kernels, output)
        keys[output] = f"{solver.key}|{fingerprint(*(kernels[name][output] for name in sorted(kernels)))}"
    rows = evaluate(methods, cases, folder / "eval_bsd100.json", keys=keys, progress=progress)
    for row in rows:
        found = [(run, output) for (run, output) in estimates if output == row["method"]]
        if found:
            kernels = estimates[found[0]]
            values = torch.stack([mnc(kernels[c.name][row["method"]].double(), c.k.double()) for c in cases])
            row |= {"mnc_mean": values.mean().item(), "mnc_std": values.std(unbiased=False).item(),
                    "mnc_per_case": values.tolist(),
                    "seconds": sum(kernels[c.name]["seconds"] for c in cases) / len(cases)}
    return rows


def format_rows(rows: list[dict]) -> str:
    """Markdown table of :func:`run_chapter`'s ``table`` rows with the paper's numbers beside ours."""
    lines = ["| method | n | PSNR (dB) | SSIM | MNC | time / image | paper: method | paper PSNR | paper SSIM | paper MNC |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        paper = PAPER_TABLE.get(row["method"], {})
        mnc_text = f"{row['mnc_mean']:.3f} ± {row['mnc_std']:.3f}" if "mnc_mean" in row else "—"
        seconds = timing.seconds(row["seconds"], ".1f") if "seconds" in row else "—"
        cells = [row["method"], str(row["n"]), f"{row['psnr_mean']:.2f} ± {row['psnr_std']:.2f}",
                 f"{row['ssim_mean']:.3f} ± {row['ssim_std']:.3f}", mnc_text, seconds, paper.get("method", ""),
                 *(f"{paper[m]:.3f}".rstrip("0").rstrip(".") if m in paper else "" for m in ("psnr", "ssim", "mnc"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _alternating(y: torch.Tensor, kernel_size: int, solver: Solver, iterations: int, seed: int):
    """The alternating MAP_{x,k} baseline (``repro.alternating.alternating_map``, the same F) on a
    batch: kernels (B, s, s) and the reblurring MSE (the square of its RMS trace), (iterations + 1, B)."""
    _, k, trace = alternating_map(y, kernel_size, solver, iterations, seed=seed)
    return k[:, 0], trace.T.square()


def _figure5(cases, model, solver, settings, schedule, folder, key, progress) -> dict:
    """Fig. 5: the reblurring MSE along the iterations, ``n_trials`` trials per image, Kernel-Diff
    (guided, one batch of initial noises) against alternating MAP_{x,k} (one batch of initial
    kernels); cached in ``fig5.json`` for ``key``."""
    device = next(model.parameters()).device
    s, steps = model.config.kernel_size, settings.sample_steps

    def compute() -> dict:
        images = []
        for case in tqdm(cases[: settings.n_trial_images], desc="Fig. 5", disable=not progress, leave=False):
            y = case.y[None].to(device=device, dtype=torch.float32)
            result = sample(model, y, solver, True, steps, settings.eta(steps, schedule.T),
                            n_samples=settings.n_trials, seed=SEED, schedule=schedule)
            # one batch of identical images: alternating_map draws a different initial kernel for each
            _, alternating = _alternating(y.expand(settings.n_trials, -1, -1, -1).contiguous(), s, solver,
                                          settings.alternating_iterations, SEED)
            with torch.no_grad():
                true_residual, _ = reblur_loss(y, case.k[None, None].to(device=device, dtype=torch.float32), solver)
            images.append({
                "case": case.name,
                "kernel_diff": result.residual.T.tolist(),
                "kernel_diff_refined": result.refine_residual[-1].tolist(),
                "alternating": alternating.T.tolist(),
                "true_kernel": true_residual.item(),
            })
        return {"images": images}

    return cached(folder / "fig5.json", key, compute)


def _drawn(found: dict, output: str, per_case: int, source: str) -> dict:
    """Kernels an evaluation run already drew, for a row of :func:`_steps_sweep`: ``found`` as
    :func:`_estimate` returns it, ``output`` the entry with the kernels ((s, s) or, with several
    samples per case, (per_case, s, s)); seconds are per kernel."""
    return {"kernels": {name: entry[output].reshape(per_case, *entry[output].shape[-2:]) for name, entry in found.items()},
            "seconds": {name: entry["seconds"] / per_case for name, entry in found.items()}, "source": source}


def _steps_sweep(cases, model, solver, settings, schedule, folder, key, drawn, progress,
                 max_batch: int | None = None) -> list[dict]:
    """MNC, PSNR and seconds per kernel of guided sampling against the number of steps, on the
    first ``n_sweep`` cases.

    A step count in ``drawn`` ({steps: :func:`_drawn`}) is not sampled again: its row scores the
    kernels an evaluation run already drew with that sampler (the main table's guided run at
    ``settings.sample_steps``; the selection run's ``n_select`` samples per image at
    ``settings.select_steps``), so that the chapter reports one draw of each sampler, not two
    (with one sample per image two draws differed by 0.07 in mean MNC). Every other row samples
    the ``n_sweep`` images as one batch. ``n`` is the number of kernels scored.
    """
    stored = Entries(folder / "steps.json", STEPS_FORMAT)
    device = next(model.parameters()).device
    chosen = cases[: settings.n_sweep]
    for steps in tqdm(settings.step_counts, desc="steps sweep", disable=not progress, leave=False):
        if stored.get(str(steps), key) is not None:
            continue
        eta = settings.eta(steps, schedule.T)
        if steps in drawn:
            per_case = [drawn[steps]["kernels"][c.name] for c in chosen]
            repeats = per_case[0].shape[0]
            kernels = torch.cat(per_case).to(device, torch.float32)
            y = _stack_y(chosen, device).repeat_interleave(repeats, dim=0)
            with torch.no_grad():
                images = in_chunks(lambda y_part, k_part: solver(y_part, k_part[:, None]), max_batch, y, kernels)
            images = images.clamp(0, 1)
            seconds = sum(drawn[steps]["seconds"][c.name] for c in chosen) / len(chosen)
            source = drawn[steps]["source"]
        else:
            repeats = 1
            result = sample(model, _stack_y(chosen, device), solver, True, steps, eta, seed=SEED, schedule=schedule,
                            max_batch=max_batch)
            kernels, images, seconds = result.kernels, result.images, result.seconds / len(chosen)
            source = f"one batch of {len(chosen)}"
        x = torch.stack([c.x for c in chosen]).repeat_interleave(repeats, dim=0)
        k_true = torch.stack([c.k for c in chosen]).double().repeat_interleave(repeats, dim=0)
        scores = mnc(kernels.detach().cpu().double(), k_true)
        quality = psnr(images.detach().cpu().to(x.dtype), x)
        stored.put(str(steps), key, {"steps": steps, "eta": eta, "n": len(kernels), "mnc_mean": scores.mean().item(),
                     "mnc_std": scores.std(unbiased=False).item(),
                     "mnc_per_case": scores.view(len(chosen), repeats).mean(dim=1).tolist(),
                     "psnr_mean": quality.mean().item(),
                     "psnr_per_case": quality.view(len(chosen), repeats).mean(dim=1).tolist(),
                     "psnr_std": quality.std(unbiased=False).item(), "seconds_per_kernel": seconds,
                     "source": source, "device": str(device)})
    return sorted((stored.entries[str(steps)] for steps in settings.step_counts), key=lambda row: -row["steps"])


def sweep_against(sweep: list[dict], table: list[dict], method: str) -> list[dict]:
    """Every row of the steps sweep (:func:`run_chapter`'s ``steps``) beside the table row
    ``method`` (e.g. the alternating baseline or the blurred input) on the same images.

    The sweep scores the first n of the table's test images, so the comparison is paired: per
    image i, d_i = (the sweep row on image i) − (``method`` on image i); ``mnc_gap`` and
    ``psnr_gap`` are their means, ``mnc_se`` and ``psnr_se`` the standard errors, ``method_mnc``
    and ``method_psnr`` the method's own means on those images (the MNC entries are None for a
    method that estimates no kernel). It shows what the main table's sampler (a CPU profile's
    strided ``sample_steps``) gives up against all T steps, where the table's other rows stand on
    the sweep's images, and how far either is from ``method``."""
    baseline = next((row for row in table if row["method"] == method), None)
    if baseline is None:
        raise ValueError(f"the table has no row {method!r}; it has {[row['method'] for row in table]}")
    if "psnr_per_case" not in baseline or any("psnr_per_case" not in row or "mnc_per_case" not in row for row in sweep):
        raise ValueError("the rows have no per-image scores (psnr_per_case, mnc_per_case): recompute them with "
                         "run_chapter")
    sizes = sorted({len(row[key]) for row in sweep for key in ("psnr_per_case", "mnc_per_case")})
    n = sizes[0] if sizes else 0
    if len(sizes) != 1 or not 2 <= n <= len(baseline["psnr_per_case"]):
        raise ValueError(f"the sweep's rows must all score the same n >= 2 images, at most the table's "
                         f"{len(baseline['psnr_per_case'])}, got {sizes}")
    out = []
    for row in sweep:
        entry = {"steps": row["steps"], "images": n, "mnc": row["mnc_mean"], "psnr": row["psnr_mean"],
                 "method_psnr": statistics.fmean(baseline["psnr_per_case"][:n]), "method_mnc": None,
                 "mnc_gap": None, "mnc_se": None}
        entry["psnr_gap"], entry["psnr_se"] = metrics.paired_gap(row["psnr_per_case"], baseline["psnr_per_case"][:n])
        if "mnc_per_case" in baseline:
            entry["method_mnc"] = statistics.fmean(baseline["mnc_per_case"][:n])
            entry["mnc_gap"], entry["mnc_se"] = metrics.paired_gap(row["mnc_per_case"], baseline["mnc_per_case"][:n])
        out.append(entry)
    return out


def verdict_changes(paired: list[dict], sample_steps: int) -> list[tuple[str, str, str]]:
    """Where the step count changes the comparison with a baseline: for the rows of
    :func:`sweep_against`, the metrics ("MNC", "PSNR") whose :func:`repro.metrics.gap_verdict` differs between
    the main table's sampler (the row with ``sample_steps``) and the sweep's longest, as (metric,
    verdict with ``sample_steps``, verdict with the most steps); empty when they agree or are the
    same row."""
    rows = {row["steps"]: row for row in paired}
    if sample_steps not in rows:
        raise ValueError(f"the sweep has no row with sample_steps = {sample_steps!r}; it has {sorted(rows)}")
    table, longest = rows[sample_steps], rows[max(rows)]
    changes = []
    for metric in ("MNC", "PSNR"):
        gap, se = f"{metric.lower()}_gap", f"{metric.lower()}_se"
        if table[gap] is None:
            continue
        before, after = metrics.gap_verdict(table[gap], table[se]), metrics.gap_verdict(longest[gap], longest[se])
        if before != after:
            changes.append((metric, before, after))
    return changes


def format_sweep_against(sweep: list[dict], table: list[dict], methods: tuple[str, ...]) -> str:
    """Markdown table of :func:`sweep_against` for each of ``methods``: per sweep row, its MNC and
    PSNR on the sweep's images and its paired difference to each method (:func:`repro.metrics.describe_gap`)."""
    against = {method: sweep_against(sweep, table, method) for method in methods}
    header = ["steps", "MNC", "PSNR (dB)"]
    for method in methods:
        header += ([f"MNC − {method}"] if against[method][0]["mnc_gap"] is not None else []) + [f"PSNR − {method}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(sweep):
        cells = [str(row["steps"]), f"{row['mnc_mean']:.3f}", f"{row['psnr_mean']:.2f}"]
        for method in methods:
            entry = against[method][i]
            if entry["mnc_gap"] is not None:
                cells.append(metrics.describe_gap(entry["mnc_gap"], entry["mnc_se"], 3))
            cells.append(metrics.describe_gap(entry["psnr_gap"], entry["psnr_se"], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


STEPS_TOLERANCE = 0.02
"""How far a sampler of at most 100 steps may fall below the full sampler in mean MNC."""


def steps_comparison(rows: list[dict], tolerance: float = STEPS_TOLERANCE) -> dict | None:
    """The best sampler of at most 100 steps against the full one (the most steps), from the
    steps sweep's rows (:func:`run_chapter`'s ``steps``), paired over the test images: every row
    scores the same images, so the comparison is made per image.

    Per image i, d_i = (its mean MNC with few steps) − (with all steps), an image's several
    kernels averaged first; ``gap`` is their mean and ``se`` its standard error s_d / √n. The
    verdict is "met" when gap ≥ −``tolerance``, "not met" when even gap + 2·se < −``tolerance``
    (below the tolerance at about 95 % confidence), otherwise "not resolved": the test set is
    too small to tell. (The best of several few-step rows is picked by its mean, which favours it
    a little.) None when the sweep has no row of at most 100 steps or no longer one."""
    tolerance = check_positive(tolerance, "tolerance", allow_zero=True)
    few = [r for r in rows if r["steps"] <= 100]
    full = max(rows, key=lambda r: r["steps"], default=None)
    if not few or full is None or full["steps"] <= 100:
        return None
    best = max(few, key=lambda r: r["mnc_mean"])
    if "mnc_per_case" not in best or "mnc_per_case" not in full:
        raise ValueError("the sweep's rows have no per-image MNC (mnc_per_case): recompute them with run_chapter")
    if len(best["mnc_per_case"]) != len(full["mnc_per_case"]) or len(full["mnc_per_case"]) < 2:
        raise ValueError(f"the rows must score the same >= 2 images, got {len(best['mnc_per_case'])} and "
                         f"{len(full['mnc_per_case'])}")
    gap, se = metrics.paired_gap(best["mnc_per_case"], full["mnc_per_case"])
    verdict = "met" if gap >= -tolerance else "not met" if gap + 2 * se < -tolerance else "not resolved"
    return {"steps": best["steps"], "full_steps": full["steps"], "images": len(full["mnc_per_case"]), "gap": gap, "se": se,
            "tolerance": tolerance, "verdict": verdict,
            "speedup": full["seconds_per_kernel"] / best["seconds_per_kernel"]}


SELECT_ROW = "Kernel-Diff, guided, lowest residual of several"
"""Beyond the paper: ``n_select`` guided samples per image with ``select_steps`` steps (the
profile's), the one with the smallest reblurring residual kept (:func:`choose_by_residual`)."""


def selection_summary(cases: list, found: dict) -> dict:
    """How well the reblurring residual picks among the samples of the selection run (``found``
    as :func:`_estimate` returns it, entries "samples" (n, s, s) and "residuals" (n,)): per case,
    the MNC and residual of every sample, the index the residual chooses and the index of the
    sample with the best MNC (which needs the true kernel: an upper bound, not a method); the
    means of the chosen, best and all samples' MNC; and ``draw_spread``, the largest difference in
    MNC between two samples of the same image (how much one draw's luck can move an image's score)."""
    per_case = []
    for case in cases:
        entry = found[case.name]
        scores = mnc(entry["samples"].double(), case.k.double())
        residuals = entry["residuals"].double()
        per_case.append({"case": case.name, "mnc": scores.tolist(), "residual": residuals.tolist(),
                         "chosen": int(residuals.argmin()), "best": int(scores.argmax())})
    return {"cases": per_case,
            "chosen_mnc": statistics.fmean(c["mnc"][c["chosen"]] for c in per_case),
            "best_mnc": statistics.fmean(max(c["mnc"]) for c in per_case),
            "sample_mnc": statistics.fmean(statistics.fmean(c["mnc"]) for c in per_case),
            "chosen_is_best": sum(c["chosen"] == c["best"] for c in per_case),
            "draw_spread": max(max(c["mnc"]) - min(c["mnc"]) for c in per_case)}


def classical_solver() -> Solver:
    """The Wiener F of the chapter's classical rows (the oracle and the guidance ablation), on
    noise-free data: the NSR of ``repro.experiments.d3.wiener_nsr(0)``, the one value the book selects for
    its Wiener baselines (``repro.experiments.d3.select_wiener_nsr`` on BSDS500 *train* crops, never test
    images). It was selected for mild blur, not for these motion kernels, and is not re-tuned
    here: its optimum is flat (``repro.experiments.d3.WIENER_NSR``)."""
    return wiener_solver(wiener_nsr(0.0))


WIENER_GUIDED_ROW = "Kernel-Diff, guided by Wiener F"
"""The ablation of F: guidance (Stage I and II) through the classical Wiener solver
(:func:`classical_solver`) instead of the learned one; its kernels are then
restored by the learned F like every other row, so that only the kernel differs."""


@dataclass(frozen=True)
class KernelDiffResults:
    """What ``kerneldiff_evaluation`` shows (:func:`run_chapter`). ``settings`` and ``data``: the
    profile's Kernel-Diff settings and data sizes as dicts; parameter counts of ε_θ, of the
    paper's U-Net and of the solver F; ε_θ's training ``history``; the test ``cases``; the
    estimated ``kernels`` per output and case; the evaluation ``table`` (rows, :func:`format_rows`);
    ``figure5`` (:func:`_figure5`); the residual ``selection`` (:func:`selection_summary`); the
    ``steps`` sweep (:func:`_steps_sweep`); the ``device`` it ran on."""

    profile: str
    settings: dict
    data: dict
    unet_parameters: int
    paper_unet_parameters: int
    solver_parameters: int
    history: list[dict]
    cases: list
    kernels: dict
    table: list[dict]
    figure5: dict
    selection: dict
    steps: list[dict]
    device: str


def _kernel_estimators(model, solver, wiener, settings, schedule, device, key: str, select_key: str,
                       max_batch) -> list[tuple]:
    """The kernel estimators of the chapter's table, each as (run name, fn(chunk of cases) ->
    {output: kernels}, outputs, cache key): alternating MAP_{x,k}, Kernel-Diff unguided, guided
    (eq. 20 and Algorithm 1, with and without Stage II), guided through the classical Wiener F,
    and the lowest reblurring residual of several guided samples."""
    s, steps = model.config.kernel_size, settings.sample_steps
    eta = settings.eta(steps, schedule.T)
    n_select, select_eta = settings.n_select, settings.eta(settings.select_steps, schedule.T)

    def guided(chunk):
        result = sample(model, _stack_y(chunk, device), solver, True, steps, eta, seed=SEED, schedule=schedule)
        return {"Kernel-Diff, guided": result.kernels, "Kernel-Diff, guided, Stage I only": result.stage1}

    def guided_by_wiener(chunk):
        result = sample(model, _stack_y(chunk, device), wiener, True, steps, eta, seed=SEED, schedule=schedule)
        return {WIENER_GUIDED_ROW: result.kernels}

    def unguided(chunk):
        result = sample(model, _stack_y(chunk, device), None, False, steps, eta, seed=SEED, schedule=schedule)
        return {"Kernel-Diff, unguided": result.kernels}

    def alternating(chunk):
        return {"alternating MAP_{x,k}": _alternating(_stack_y(chunk, device), s, solver,
                                                      settings.alternating_iterations, SEED)[0]}

    def lowest_residual(chunk):
        result = sample(model, _stack_y(chunk, device), solver, True, settings.select_steps, select_eta,
                        n_samples=n_select, seed=SEED, schedule=schedule, max_batch=max_batch)
        kernels, _ = choose_by_residual(result, n_select)
        return {SELECT_ROW: kernels, "samples": result.kernels.view(len(chunk), n_select, s, s),
                "residuals": result.final_residual.view(len(chunk), n_select)}

    return [("alternating", alternating, ["alternating MAP_{x,k}"],
             f"{solver.key}|iterations={settings.alternating_iterations}"),
            ("unguided", unguided, ["Kernel-Diff, unguided"], key),
            ("guided", guided, ["Kernel-Diff, guided, Stage I only", "Kernel-Diff, guided"], key),
            ("guided_wiener", guided_by_wiener, [WIENER_GUIDED_ROW], key.replace(solver.key, wiener.key, 1)),
            ("lowest_residual", lowest_residual, [SELECT_ROW], select_key)]


def run_chapter(profile: Profile, device=None, progress: bool = True, store: Store | None = None) -> KernelDiffResults:
    """Everything ``kerneldiff_evaluation`` shows, computed or read back from ``<store>/<profile>/kerneldiff/``
    (``store``: default :meth:`repro.store.Store.default`).

    Trains (or loads) the learned solver F (``repro.nonblind``) and ε_θ (:func:`trained_model`);
    on :func:`test_cases` estimates kernels with Kernel-Diff guided (with and without Stage II),
    guided through the classical Wiener F (:data:`WIENER_GUIDED_ROW`), unguided, the lowest
    residual of several guided samples (:data:`SELECT_ROW`, :func:`selection_summary`) and
    alternating MAP_{x,k} with the same F; scores PSNR, SSIM (x̂ = F(y, k̂)) and MNC against the blurred
    input, the oracles (Wiener and F with the true kernel) and D3's DRK (the D3 chapters' cached
    ``full`` variant, trained if missing); runs Fig. 5 and the steps sweep. Every stage is cached
    and resumable.
    """
    settings = check(profile).kerneldiff
    device = resolve_device(device)
    store = Store.resolve(store)
    folder = store.folder(profile, CHAPTER)
    schedule = Schedule()

    solver = chapter_solver(profile, device, progress, store)
    wiener = classical_solver()
    run = trained_model(profile, device, progress, store=store)
    drk = train_variant(profile, "full", str(device), progress=progress, store=store).drk  # the D3 chapters' cache
    model = run.ema
    cases = test_cases(profile)
    max_batch = CPU_MAX_BATCH if device.type == "cpu" else None
    steps = settings.sample_steps
    eta = settings.eta(steps, schedule.T)
    model_key = f"{MODEL_FILE}:{run.step}:{dataclasses.astuple(unet_config(profile))}:{dataclasses.astuple(settings.train)}"
    key = f"{solver.key}|{model_key}|steps={steps}|eta={eta}|seed={SEED}"

    n_select, select_eta = settings.n_select, settings.eta(settings.select_steps, schedule.T)
    select_key = (f"{solver.key}|{model_key}|steps={settings.select_steps}|eta={select_eta}|seed={SEED}"
                  f"|samples={n_select}")
    estimates = {}
    for run_name, fn, outputs, run_key in _kernel_estimators(model, solver, wiener, settings, schedule, device,
                                                             key, select_key, max_batch):
        found = _estimate(run_name, run_key, fn, cases, folder, settings.batch, progress)
        estimates |= {(run_name, output): found for output in outputs}
    table = _score_rows(cases, estimates, solver, drk, folder, progress)
    figure5 = _figure5(cases, model, solver, settings, schedule, folder,
                       f"{key}|trials={settings.n_trials}|alt={settings.alternating_iterations}", progress)
    selected = estimates[("lowest_residual", SELECT_ROW)]
    drawn = {steps: _drawn(estimates[("guided", "Kernel-Diff, guided")], "Kernel-Diff, guided", 1,
                           f"main table (batches of {settings.batch})"),
             settings.select_steps: _drawn(selected, "samples", n_select,
                                           f"{n_select} per image, the selection run (batches of "
                                           f"{settings.batch} × {n_select})")}
    sweep = _steps_sweep(cases, model, solver, settings, schedule, folder,
                         f"{key}|strided_eta={settings.strided_eta}|batch={settings.batch}|select={select_key}|per_case=mnc,psnr",
                         drawn, progress, max_batch)

    return KernelDiffResults(
        profile=profile.name, settings=dataclasses.asdict(settings), data=dataclasses.asdict(profile.kerneldiff_data),
        unet_parameters=count_parameters(model), paper_unet_parameters=parameter_count(PAPER_UNET),
        solver_parameters=count_parameters(solver.model), history=run.history, cases=cases,
        kernels={output: {name: entry[output] for name, entry in found.items()}
                 for (_, output), found in estimates.items()},
        table=table, figure5=figure5, selection=selection_summary(cases, selected), steps=sweep, device=str(device))


def sampling_figure(y: torch.Tensor, guided: SampleResult, unguided: SampleResult, solver: Solver):
    """The Explore figure of the sampling chapter: one slider over the traced reverse steps of
    two samples of the first image in ``y`` (1, 3, H, W), ``guided`` and ``unguided``
    (:func:`repro.kerneldiff.sample`, same seed), showing each k̃₀ at that step, the restoration
    F(y, k̃₀) of the guided one, and both reblurring losses with the step marked."""
    check_tensor(y, "y", (4,))
    if guided.trace_steps != unguided.trace_steps:
        raise ValueError("the two samples were traced at different steps: sample both with the same steps")
    if guided.residual is None or unguided.residual is None:
        raise ValueError("the samples carry no reblurring loss: sample them with a solver")
    with torch.no_grad():
        restored = [solver(y[:1], k[:1, None]).clamp(0, 1)[0].permute(1, 2, 0) for k in guided.trace_kernels]
    t = [int(v) for v in guided.timesteps]
    curves = {"guided": (t, guided.residual[:, 0]), "unguided": (t, unguided.residual[:, 0])}
    panels = [
        interactive.Panel("k̃₀, guided", "image", [k[0] for k in guided.trace_kernels], normalise=True),
        interactive.Panel("k̃₀, unguided", "image", [k[0] for k in unguided.trace_kernels], normalise=True),
        interactive.Panel("F(y, k̃₀), guided", "image", restored),
        interactive.Panel("reblurring MSE", "lines", [{**curves, "marker": s} for s in guided.trace_steps],
                          log_y=True, reverse_x=True, x_title="t"),
    ]
    return interactive.slider_figure("reverse step", [f"t = {s}" for s in guided.trace_steps], panels,
                                     active=len(panels[0].frames) - 1, height=300)
