"""The evaluation protocol of Kotera et al. (ICIP 2021, §4) for SelfDeblur and its improvement,
and the experiments of the failure-modes chapter.

What is compared
----------------
Two methods of :mod:`repro.selfdeblur`: ``"original"`` (SelfDeblur, eq. (6), the defaults of
:class:`~repro.selfdeblur.SelfDeblurConfig`) and ``"improved"`` (Kotera et al.'s multiscale,
initialisation and regularisation, eqs. (8)–(9), :meth:`SelfDeblurConfig.kotera`), both with
every iteration count multiplied by the profile's ``iteration_scale`` (1 for the paper).
Because both are strongly seed dependent, every input is processed ``runs`` times, run r with
seed r (the same seeds for both methods).

Inputs (:func:`kodak_cases`, :func:`levin_cases`)
    *Kodak* (synthetic blur): Kodak images (the paper does not say which eight: we take
    kodim01–kodim08) blurred by Levin et al.'s eight ground-truth kernels (the float kernels,
    ``repro.data.levin_kernel(j)``, used as *convolution* kernels), every image with every
    kernel, by the physical *valid* model of :func:`repro.experiments.evaluation.build_cases`, no noise.
    The method estimates a kernel of the true kernel's size. *Levin* (real blur): the 32
    camera-shake images ``levin_blurred(i, j)`` against ``levin_sharp(i)``; the method
    estimates kernels of SelfDeblur's sizes for Levin's kernels
    (:data:`repro.selfdeblur.SELFDEBLUR_LEVIN_KERNEL_SIZES`). The ground-truth kernels are used
    only to synthesise the Kodak blur and for the non-blind oracle of the error ratio, never by
    the blind methods. A profile may downscale the Kodak images and crop both sets (stated by
    :meth:`SelfDeblurProfile.describe`).
Scores (:func:`score_run`)
    Blind estimates are determined only up to a translation (a shifted x̂ and an opposite shift
    of k̂ explain y equally), so every image is compared *up to shift* by Levin et al.'s protocol
    (:func:`repro.metrics.compare_up_to_shift`: integer then 0.25 px sub-pixel search, a
    ``border`` of 15 px cropped, less for crops too small for it): PSNR, SSIM, Levin et al.'s
    error ratio ‖x̂ − x‖² / ‖x_k − x‖² with their reference x_k, the non-blind sparse-prior
    deconvolution of Levin et al. 2007 with the true kernel (:func:`repro.nonblind.sparse_deconv`
    at the settings of Levin's code, :data:`ORACLE`), and ISNR = PSNR(x̂) − PSNR(y), the blurred
    input scored by the same protocol. Also: the MNC of k̂ with the true kernel, the kernel's
    *effective support* 1/‖k̂‖₂² (pixels), and whether the run fell into the **no-blur solution** (support
    ≤ :data:`NO_BLUR_SUPPORT` pixels: k̂ is nearly a δ, so x̂ ≈ y).
Table 1 (:func:`table1`)
    Per data set and method: mean ISNR over all runs, and the mean over inputs of the standard
    deviation of ISNR across the runs of one input (sample standard deviation, ddof = 1; the
    paper does not say which); the paper's values (:data:`PAPER_TABLE1`) go in their own columns.

Storage and resumption (:func:`evaluate_runs`)
----------------------------------------------
Every run is one file ``<folder>/runs/<data set>/<input>/<method>_seed<seed>.pt`` (x̂, k̂, the loss
curve, metrics, seed, configuration), written atomically (:func:`repro.store.save_checkpoint`),
and its record (everything but the tensors) is added to ``<folder>/runs.json``, also rewritten
atomically, after every run. A run is reused when its record's ``key`` (a hash of the input's
data, the configuration and the seed) matches, so an interrupted evaluation resumes after the
last finished run and a changed profile recomputes only what changed. The key leaves out the
reference x_k of the error ratio: a record whose ``oracle`` differs from :data:`ORACLE` is
rescored from its stored estimate, without rerunning the method. On CUDA the missing runs
of one input and method run as one batched computation (``run_selfdeblur(restarts=R)``). On the
CPU every run uses :data:`RUN_THREADS` intra-op thread and the runs go to worker processes, one
per core (:func:`repro._threads.parallel_map`): a run's result then depends neither on the
machine's core count nor on how many runs share it, and the cores are used better than by one
multi-threaded run at a time (small convolutions do not split well across threads).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import data, interactive, kernels, metrics, nonblind
from .. import selfdeblur as sd
from .._checks import check_choice, check_positive, check_positive_int, check_tensor, is_int, resolve_device
from .._io import Entries, cached, fingerprint, load_checkpoint, save_checkpoint
from .._threads import check_workers, fixed_cpu_threads, parallel_map
from ..selfdeblur import SelfDeblurConfig
from ..profiles import Profile, check
from ..store import Store, check_profile
from .evaluation import Case, centre_crop, build_cases, counted

METHODS = {"original": SelfDeblurConfig(), "improved": SelfDeblurConfig.kotera()}
"""The two methods of Table 1 at the paper's iteration counts."""

PAPER_TABLE1 = {
    ("kodak", "original"): (2.48, 2.52),
    ("kodak", "improved"): (5.49, 2.12),
    ("levin", "original"): (7.62, 1.36),
    ("levin", "improved"): (8.23, 1.21),
}
"""Kotera et al., Table 1: (mean ISNR in dB, mean per-input standard deviation), measured by the
authors on their own 64 Kodak inputs and Levin's 32 images with 10 runs each (5,000 iterations)."""

ERROR_RATIO_SUCCESS = 3.0
"""Levin et al.'s success criterion: a run whose error ratio ‖x̂ − x‖² / ‖x_k − x‖² is below this."""

NO_BLUR_SUPPORT = 4.0
"""A run counts as the no-blur solution when the effective support 1/‖k̂‖₂² of its kernel is at
most this many pixels (Levin's kernels have 20–60)."""

ORACLE = {"lam": nonblind.SPARSE_LAMBDA, "alpha": nonblind.SPARSE_ALPHA, "iterations": nonblind.SPARSE_ITERATIONS,
          "cg_iterations": nonblind.SPARSE_CG_ITERATIONS, "mode": "symmetric"}
"""The arguments of :func:`repro.nonblind.sparse_deconv` that compute the error ratio's reference
x_k from y and the true kernel: the x_k of the error-ratio scripts for Levin's data,
``deconvSps(y, k, 0.0068, 70)`` (the source of each value: the ``SPARSE_*`` constants of
:mod:`repro.nonblind`), with our mirror boundary. Stored in every run record, so that a change
rescores the records."""

LEVIN_BORDER = 15
"""Border cropped before comparing (SelfDeblur's Levin scripts; FACTS.md)."""

KODAK_COUNT, LEVIN_IMAGES, LEVIN_KERNELS = 24, 4, 8
FORMAT = "repro.selfdeblur_eval/2"
NEGATIVE_RESULTS = ("over-regularised", "small kernels")
"""Kotera et al.'s §4.1 modifications that did not help, simulated in the failure-modes chapter."""
KERNEL_L2_ABLATIONS = ("without kernel ℓ²", "kernel ℓ² as a sum")
"""The improved method without its kernel ℓ² term, and with the term as printed in eq. (9), the
sum ‖k‖₂² instead of our per-entry mean (``SelfDeblurConfig.kernel_l2_per_entry`` off): how much
the result depends on a scale the paper leaves open."""
VARIANTS = NEGATIVE_RESULTS + KERNEL_L2_ABLATIONS
CPU_VARIANTS = ("over-regularised", "kernel ℓ² as a sum")
"""The variants the smoke and quick profiles run: one §4.1 negative result and the ℓ² ablation
that shows why the term is normalised per entry (each quick run takes 3.5-5 min on a slow 2-core
CPU, beside another run; "small kernels" needs inputs too large for these profiles)."""


# --------------------------------------------------------------------------------------------
# 1. Profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfDeblurProfile:
    """What one profile runs (``Profile.selfdeblur``), every reduction explicit.

    Evaluation: the Kodak images ``kodak_images`` (1-based) × Levin kernels ``kodak_kernels``,
    the images first downscaled by ``kodak_downscale`` (bilinear, antialiased; 1 = none), then
    centre-cropped so that y is ``kodak_size`` pixels square (None: as large as the image
    allows), grey (Rec. 601 luma) if ``gray`` else RGB (deblurred on the Y channel, as
    SelfDeblur does); the Levin images ``levin_inputs`` ((image, kernel) pairs), centre-cropped
    to ``levin_size`` (None: whole 255×255). ``runs`` seeds per input and method;
    ``iteration_scale`` multiplies every iteration count of both methods
    (:meth:`SelfDeblurConfig.scaled`).

    Failure modes: ``fit_iterations`` iterations of Gx fitted to the sharp and the blurred
    version of the first ``fit_inputs`` Kodak inputs (Fig. 1); ``spread_runs`` seeds on the
    first Kodak input (Fig. 2; its first ``runs`` are the evaluation's runs); the ``variants``
    of the improved method (:data:`VARIANTS`: §4.1's and the kernel-ℓ² ablations) with
    ``variant_runs`` seeds each on the same input, the over-regularised one with an
    initial TV weight ``tv_initial_weight``; the Explore section runs ``explore_scale`` × the
    paper's iterations on a ``explore_size`` crop.
    """

    name: str
    iteration_scale: float
    kodak_images: tuple[int, ...]
    kodak_kernels: tuple[int, ...]
    kodak_downscale: float
    kodak_size: int | None
    gray: bool
    levin_inputs: tuple[tuple[int, int], ...]
    levin_size: int | None
    runs: int
    fit_iterations: int
    fit_inputs: int
    spread_runs: int
    variants: tuple[str, ...]
    variant_runs: int
    tv_initial_weight: float
    explore_size: int
    explore_scale: float

    def __post_init__(self):
        check_profile(self.name)
        _check_indices(self.kodak_images, "kodak_images", KODAK_COUNT)
        _check_indices(self.kodak_kernels, "kodak_kernels", LEVIN_KERNELS)
        if not (isinstance(self.levin_inputs, tuple) and self.levin_inputs and all(
                isinstance(p, tuple) and len(p) == 2 for p in self.levin_inputs)):
            raise ValueError(f"levin_inputs must be a non-empty tuple of (image, kernel) pairs, got {self.levin_inputs!r}")
        _check_indices(tuple(i for i, _ in self.levin_inputs), "levin_inputs images", LEVIN_IMAGES, unique=False)
        _check_indices(tuple(j for _, j in self.levin_inputs), "levin_inputs kernels", LEVIN_KERNELS, unique=False)
        if len(set(self.levin_inputs)) != len(self.levin_inputs):
            raise ValueError(f"levin_inputs must not repeat a pair, got {self.levin_inputs!r}")
        if not 0 < check_positive(self.kodak_downscale, "kodak_downscale") <= 1:
            raise ValueError(f"kodak_downscale must be in (0, 1], got {self.kodak_downscale!r}")
        check_positive(self.iteration_scale, "iteration_scale")
        check_positive(self.tv_initial_weight, "tv_initial_weight", allow_zero=True)
        check_positive(self.explore_scale, "explore_scale")
        for name in ("kodak_size", "levin_size"):
            value = getattr(self, name)
            if value is not None and not (is_int(value) and value >= 2 * metrics.SSIM_RADIUS + 1):
                raise ValueError(f"{name} must be None or an int >= 11, got {value!r}")
        if not (is_int(self.runs) and self.runs >= 2):
            raise ValueError(f"runs must be an int >= 2 (Table 1 needs a standard deviation per input), got {self.runs!r}")
        for name in ("fit_iterations", "fit_inputs", "spread_runs", "variant_runs", "explore_size"):
            check_positive_int(getattr(self, name), name)
        if self.fit_inputs > len(self.kodak_images) * len(self.kodak_kernels):
            raise ValueError(f"fit_inputs ({self.fit_inputs}) exceeds the number of Kodak inputs")
        for name in self.variants:
            check_choice(name, "variants", VARIANTS)
        if not isinstance(self.gray, bool):
            raise ValueError(f"gray must be True or False, got {self.gray!r}")

    def config(self, method: str) -> SelfDeblurConfig:
        """The configuration of ``method`` ("original", "improved" or one of :data:`VARIANTS`) here."""
        check_choice(method, "method", tuple(METHODS) + VARIANTS)
        if method == "small kernels":
            # §4.1: more multiscale levels, so the coarsest kernel is 3×3 or 5×5
            return SelfDeblurConfig.kotera(scales=5).scaled(self.iteration_scale)
        changes = {
            # §4.1: strong TV early, decreasing to 0 at the switch; the rest as the improved method
            "over-regularised": {"tv_initial_weight": self.tv_initial_weight},
            "without kernel ℓ²": {"kernel_l2_weight": 0.0},
            "kernel ℓ² as a sum": {"kernel_l2_per_entry": False},
        }
        if method in changes:
            return dataclasses.replace(METHODS["improved"].scaled(self.iteration_scale), **changes[method])
        return METHODS[method].scaled(self.iteration_scale)

    def describe(self) -> str:
        """The reductions against the paper's protocol, in words (for the book)."""
        it = self.config("original")
        imp = self.config("improved")
        kodak_size = "whole images" if self.kodak_size is None else f"centre crops with y {self.kodak_size}×{self.kodak_size}"
        down = "" if self.kodak_downscale == 1 else f" downscaled ×{self.kodak_downscale:g},"
        levin_size = "whole 255×255 images" if self.levin_size is None else f"centre crops {self.levin_size}×{self.levin_size}"
        return (
            f"Kodak: {counted(len(self.kodak_images), 'image')} (kodim{', kodim'.join(f'{i:02d}' for i in self.kodak_images)})"
            f" × {counted(len(self.kodak_kernels), 'Levin kernel')} ({', '.join(str(j) for j in self.kodak_kernels)}),{down} "
            f"{kodak_size}, {'grey (luma)' if self.gray else 'RGB'}; Levin: {len(self.levin_inputs)} of the 32 "
            f"real-blurred images ({', '.join(f'im{i}_kernel{j}' for i, j in self.levin_inputs)}), {levin_size}; "
            f"{self.runs} runs (seeds 0–{self.runs - 1}) per input and method; iterations ×{self.iteration_scale:g}: "
            f"original {it.iterations} (MSE→SSIM at {it.ssim_switch}), improved {imp.coarse_iterations} + "
            f"{imp.coarse_iterations} + {imp.iterations} (switch at {imp.regularisation_switch}, fits ≤ "
            f"{imp.init_max_iterations} iterations)"
            + ("" if it.lr_kernel == METHODS["original"].lr_kernel else
               f"; Gk's learning rate {it.lr_kernel:g} instead of {METHODS['original'].lr_kernel:g}, raised in "
               "proportion to the lost iterations")
            + ("; the improved method's kernel ℓ² term divided by the kernel's kh·kw entries (our reading of eq. (9), "
               "whose normalisation the paper leaves open)" if imp.kernel_l2_per_entry else "")
        )


def _check_indices(values, name: str, count: int, unique: bool = True) -> None:
    if not (isinstance(values, tuple) and values and all(is_int(v) and 1 <= v <= count for v in values)):
        raise ValueError(f"{name} must be a non-empty tuple of ints in 1..{count}, got {values!r}")
    if unique and len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat an index, got {values!r}")


PROFILES = {
    # CI: one small Kodak and one small Levin input, 20 iterations; seconds.
    "smoke": SelfDeblurProfile(
        "smoke", iteration_scale=0.004, kodak_images=(1,), kodak_kernels=(5,), kodak_downscale=0.25,
        kodak_size=60, gray=True, levin_inputs=((1, 5),), levin_size=60, runs=2, fit_iterations=15,
        fit_inputs=1, spread_runs=2, variants=CPU_VARIANTS, variant_runs=1,
        tv_initial_weight=0.1, explore_size=60, explore_scale=0.004),
    # this 2-core CPU: 92-pixel inputs, 10 % of the iterations, two inputs, two runs (see describe()).
    # Not much smaller: on 64-pixel crops the coarsest scale of the multiscale method is a 32-pixel y
    # (x 40 px through five stride-2 levels), too small for Gx (scripts/selfdeblur_probe.py runs
    # one input at any crop to see it). Not larger: a run's time goes with x's pixels, (92 + 12)²,
    # and this part must fit its 25 minutes on a 2-core CPU. At the coarsest scale y is 46 px and
    # x 52 px.
    "quick": SelfDeblurProfile(
        "quick", iteration_scale=0.1, kodak_images=(1,), kodak_kernels=(5,), kodak_downscale=0.5,
        kodak_size=92, gray=True, levin_inputs=((1, 3),), levin_size=92, runs=2, fit_iterations=150,
        fit_inputs=1, spread_runs=2, variants=CPU_VARIANTS, variant_runs=1,
        tv_initial_weight=0.1, explore_size=64, explore_scale=0.02),
    # a GPU: the paper's protocol (8 Kodak images × 8 kernels, all 32 Levin images, 10 runs, 5,000 iterations).
    "paper": SelfDeblurProfile(
        "paper", iteration_scale=1.0, kodak_images=tuple(range(1, 9)), kodak_kernels=tuple(range(1, 9)),
        kodak_downscale=1.0, kodak_size=None, gray=False,
        levin_inputs=tuple((i, j) for i in range(1, 5) for j in range(1, 9)), levin_size=None, runs=10,
        fit_iterations=2000, fit_inputs=8, spread_runs=10, variants=VARIANTS, variant_runs=10,
        tv_initial_weight=0.1, explore_size=128, explore_scale=0.1),
}



# --------------------------------------------------------------------------------------------
# 2. Inputs
# --------------------------------------------------------------------------------------------


def _downscale(image: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1:
        return image
    return F.interpolate(image[None].double(), scale_factor=factor, mode="bilinear", antialias=True,
                         align_corners=False, recompute_scale_factor=False)[0].clamp(0, 1).float()


def kodak_images(settings: SelfDeblurProfile) -> dict[str, torch.Tensor]:
    """The profile's Kodak images, name → (C, H, W) float32, downscaled as the profile says."""
    return {f"kodim{i:02d}": _downscale(data.kodak(i, gray=settings.gray), settings.kodak_downscale)
            for i in settings.kodak_images}


def kodak_cases(settings: SelfDeblurProfile) -> list[Case]:
    """Kodak inputs: every image × every kernel (images first), valid blur, no noise; ``meta``
    holds the data set, image, kernel and the ``kernel_size`` the blind method estimates."""
    kernel_set = {f"levin{j}": data.levin_kernel(j).float() for j in settings.kodak_kernels}
    cases = build_cases(kodak_images(settings), kernel_set, crop=settings.kodak_size, meta={"dataset": "kodak"})
    for case in cases:
        case.meta["kernel_size"] = int(case.k.shape[-1])
        case.meta["input"] = f"{case.meta['image']}_{case.meta['kernel']}"
    return cases


def levin_cases(settings: SelfDeblurProfile) -> list[Case]:
    """Levin's real-blurred inputs: y = ``levin_blurred(i, j)``, x = ``levin_sharp(i)`` (centre
    crops of the same window if the profile crops), k = the float kernel j rotated by 180°, the
    *convolution* kernel that explains the images (``data.levin_kernel``): for the oracle only."""
    cases = []
    for i, j in settings.levin_inputs:
        x, y = data.levin_sharp(i), data.levin_blurred(i, j)
        if settings.levin_size is not None:
            x, y = (centre_crop(t, settings.levin_size, settings.levin_size) for t in (x, y))
        k = kernels.flip(data.levin_kernel(j)).float()
        meta = {"dataset": "levin", "image": f"im{i}", "kernel": f"kernel{j}", "input": f"im{i}_kernel{j}",
                "kernel_size": sd.SELFDEBLUR_LEVIN_KERNEL_SIZES[j - 1]}
        cases.append(Case(f"im{i}_kernel{j}", x.contiguous(), k, y.contiguous(), meta))
    return cases


def check_feasible(cases: Sequence[Case], configs: dict[str, SelfDeblurConfig]) -> None:
    """Raise a ValueError naming the input if some method cannot run on it (image too small for
    its kernel or for the coarsest scale)."""
    for case in cases:
        for method, config in configs.items():
            try:
                sd.scale_plan(tuple(case.y.shape[-2:]), case.meta["kernel_size"], config)
            except ValueError as err:
                raise ValueError(f"input {case.name!r} cannot be run by {method!r}: {err}") from None


# --------------------------------------------------------------------------------------------
# 3. Scores
# --------------------------------------------------------------------------------------------


def protocol_border(size: int) -> int:
    """The border cropped before comparing: 15 px (Levin's protocol), less if the image is too
    small to keep an 11×11 interior (SSIM) — then (size − 11) // 2."""
    return max(0, min(LEVIN_BORDER, (size - 2 * metrics.SSIM_RADIUS - 1) // 2))


def error_ratio_reference(case: Case) -> torch.Tensor:
    """The error ratio's x_k for ``case``: :func:`repro.nonblind.sparse_deconv` of y with the true
    kernel at :data:`ORACLE`, clamped to [0, 1]; (1, C, H, W) float64."""
    return nonblind.sparse_deconv(case.y[None].double(), case.k.double(), **ORACLE).clamp(0, 1)


def score_run(case: Case, x_hat: torch.Tensor, k_hat: torch.Tensor,
              reference: torch.Tensor | None = None) -> dict[str, float]:
    """Scores of one estimate (x̂ (C, H + kh − 1, W + kw − 1), k̂ (kh, kw)) on ``case``;
    ``reference``: the case's :func:`error_ratio_reference`, computed here if not given.

    Returns PSNR, SSIM, error ratio and ISNR up to shift (module docstring), the shift found, the
    blurred input's PSNR by the same protocol, the MNC of k̂ with the true kernel, the effective
    support 1/‖k̂‖₂² and the no-blur flag.
    """
    check_tensor(x_hat, "x_hat", (3,))
    check_tensor(k_hat, "k_hat", (2,))
    x = case.x[None].double()
    estimate = sd.crop_to_observation(x_hat[None].double(), tuple(k_hat.shape))
    if estimate.shape != x.shape:
        raise ValueError(f"x_hat {tuple(x_hat.shape)} with k_hat {tuple(k_hat.shape)} does not match "
                         f"case {case.name!r} (x {tuple(case.x.shape)})")
    y = case.y[None].double()
    border = protocol_border(min(x.shape[-2:]))
    oracle = error_ratio_reference(case) if reference is None else reference
    scores = metrics.compare_up_to_shift(estimate, x, oracle, border=border)
    blurred = metrics.compare_up_to_shift(y, x, border=border)
    support = 1 / float(k_hat.double().square().sum())
    return {
        "psnr": float(scores["psnr"]), "ssim": float(scores["ssim"]),
        "error_ratio": float(scores["error_ratio"]), "shift": [float(v) for v in scores["shift"][0]],
        "psnr_blurred": float(blurred["psnr"]), "isnr": float(scores["psnr"] - blurred["psnr"]),
        "mnc": float(metrics.mnc(k_hat.double(), case.k.double())),
        "kernel_support": support, "no_blur": support <= NO_BLUR_SUPPORT, "border": border,
    }


# --------------------------------------------------------------------------------------------
# 4. Resumable runs
# --------------------------------------------------------------------------------------------


def run_id(case: Case, method: str, seed: int) -> str:
    """``<data set>/<input>/<method>_seed<seed>``: the run's name and the stem of its file."""
    return f"{case.meta['dataset']}/{case.meta['input']}/{method.replace(' ', '-')}_seed{seed}"


def run_key(case: Case, config: SelfDeblurConfig, seed: int) -> str:
    """Hash (16 hex digits) of everything that determines a run: the input's data and kernel
    size, the configuration and the seed."""
    return fingerprint(case.fingerprint(), case.meta["kernel_size"], config.to_dict(), seed)


def load_records(folder: str | Path) -> dict[str, dict]:
    """The run records stored in ``<folder>/runs.json`` (empty if there is none)."""
    return Entries(Path(folder) / "runs.json", FORMAT).entries


def load_run(folder: str | Path, record: dict) -> dict:
    """The stored run of ``record``: its record plus ``x_hat``, ``k_hat`` and ``loss_curve``."""
    return load_checkpoint(Path(folder) / "runs" / f"{record['id']}.pt")


RUN_THREADS = 1
"""Intra-op CPU threads of one SelfDeblur run (and one Gx fit) of the chapters. Fixed, because a
run's result depends on it (PyTorch splits a convolution's sums by the thread count, and the
optimisation amplifies the rounding); one, because the runs of an evaluation then go to parallel
worker processes (:func:`repro._threads.parallel_map`): small convolutions do not split well
across threads, so one-thread runs side by side give more throughput than one run on all cores."""


def _rescore(folder: Path, case: Case, record: dict, reference: torch.Tensor) -> dict:
    """``record`` with the scores of its stored estimate against the current x_k (:data:`ORACLE`,
    ``reference``), its run file updated to match."""
    run = load_run(folder, record)
    rescored = {**record, "metrics": score_run(case, run["x_hat"], run["k_hat"], reference), "oracle": ORACLE}
    save_checkpoint({**run, **rescored}, folder / "runs" / f"{record['id']}.pt")
    return rescored


def _run_job(job: tuple) -> sd.SelfDeblurResult:
    """One call of :func:`repro.selfdeblur.run_selfdeblur` (a worker's job; on the CPU with
    :data:`RUN_THREADS` threads)."""
    y, kernel_size, config, seeds, device = job
    with fixed_cpu_threads(device, RUN_THREADS):
        return sd.run_selfdeblur(y, kernel_size, config, seed=seeds[0], device=device, progress=False,
                                 restarts=len(seeds), batched=True)


def _contiguous(seeds: list[int]) -> list[list[int]]:
    """Split sorted seeds into runs of consecutive values (one batched call each)."""
    groups: list[list[int]] = []
    for s in seeds:
        if groups and s == groups[-1][-1] + 1:
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def evaluate_runs(cases: Sequence[Case], configs: dict[str, SelfDeblurConfig], seeds: Sequence[int],
                  folder: str | Path, device=None, batched: bool | None = None, progress: bool = True,
                  stop_after: int | None = None, workers: int | None = None) -> list[dict]:
    """Run every method of ``configs`` on every case with every seed, resumably; return the
    records in the order case, method, seed (only the finished ones if stopped early).
    The same as ``evaluate_plan([(cases, configs, seeds)], ...)``."""
    return evaluate_plan([(cases, configs, seeds)], folder, device=device, batched=batched, progress=progress,
                         stop_after=stop_after, workers=workers)


def _check_plan(plan: Sequence[tuple], stop_after: int | None) -> None:
    if not isinstance(plan, Sequence) or not plan or not all(isinstance(part, tuple) and len(part) == 3 for part in plan):
        raise ValueError("plan must be a non-empty list of (cases, configs, seeds)")
    for cases, configs, seeds in plan:
        if not isinstance(cases, Sequence) or not cases or not all(isinstance(c, Case) for c in cases):
            raise ValueError("cases must be a non-empty list of Case (see kodak_cases, levin_cases)")
        if not isinstance(configs, dict) or not configs or not all(isinstance(c, SelfDeblurConfig) for c in configs.values()):
            raise ValueError("configs must be a non-empty dict method name -> SelfDeblurConfig")
        seeds = list(seeds)
        if not seeds or not all(is_int(s) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct ints >= 0, got {seeds!r}")
    if stop_after is not None and not (is_int(stop_after) and stop_after >= 0):
        raise ValueError(f"stop_after must be None or an int >= 0, got {stop_after!r}")


def _runs_to_do(plan: Sequence[tuple], index: Entries, folder: Path, reference, batched: bool):
    """The ids of the plan's runs in order (a run named twice once), and the missing ones as
    ``(case, method, config, seeds)`` groups; a stored run scored against another x_k is rescored."""
    order, named, todo = [], set(), []
    for cases, configs, seeds in plan:
        for case in cases:
            for method, config in configs.items():
                missing = []
                for seed in seeds:
                    rid = run_id(case, method, seed)
                    if rid in named:  # named by two parts of the plan: run once
                        continue
                    named.add(rid)
                    order.append(rid)
                    record = index.get(rid, run_key(case, config, seed))
                    if record is None:
                        missing.append(seed)
                    elif record.get("oracle") != ORACLE:  # scored against another x_k
                        index.put(rid, record["key"], _rescore(folder, case, record, reference(case)))
                groups = _contiguous(sorted(missing)) if batched else [[s] for s in missing]
                todo += [(case, method, config, group) for group in groups]
    return order, todo


def _first_runs(todo: list[tuple], stop_after: int | None) -> list[tuple]:
    """The first ``stop_after`` runs of ``todo`` (all if None), splitting a group if needed."""
    if stop_after is None:
        return todo
    kept, budget = [], stop_after
    for case, method, config, group in todo:
        if budget > 0:
            kept.append((case, method, config, group[:budget]))
            budget -= len(kept[-1][-1])
    return kept


def evaluate_plan(plan: Sequence[tuple], folder: str | Path, device=None, batched: bool | None = None,
                  progress: bool = True, stop_after: int | None = None, workers: int | None = None) -> list[dict]:
    """Run each part ``(cases, configs, seeds)`` of ``plan`` -- every method of ``configs`` on every
    case with every seed -- resumably, all parts sharing the workers; return the records in the
    order part, case, method, seed, a run named twice once (only the finished ones if stopped
    early).

    Runs whose record in ``<folder>/runs.json`` has the same key are read back (module
    docstring). ``device``: default CUDA when available, else the CPU. ``batched``: run the
    missing seeds of one case and method as one batched computation (default: on CUDA only).
    ``workers``: on the CPU, runs at a time in worker processes (default one per core);
    each run uses :data:`RUN_THREADS` threads, so the results do not depend on ``workers``. A
    finished run is stored at once, whatever the others do. ``stop_after``: stop after this many
    *new* runs (to bound one call's time; a later call goes on).
    """
    _check_plan(plan, stop_after)
    device = resolve_device(device)
    batched = device.type == "cuda" if batched is None else batched
    if not isinstance(batched, bool):
        raise ValueError(f"batched must be None, True or False, got {batched!r}")
    workers = check_workers(workers, device)
    for cases, configs, _ in plan:
        check_feasible(cases, configs)
    folder = Path(folder)
    index = Entries(folder / "runs.json", FORMAT)
    references: dict[str, torch.Tensor] = {}

    def reference(case: Case) -> torch.Tensor:
        # x_k once per input, not per run: on the paper's colour Kodak inputs it costs tens of seconds
        if case.name not in references:
            references[case.name] = error_ratio_reference(case)
        return references[case.name]

    order, todo = _runs_to_do(plan, index, folder, reference, batched)
    todo = _first_runs(todo, stop_after)
    jobs = [(case.y[None], case.meta["kernel_size"], config, group, device) for case, method, config, group in todo]
    conditions = {"threads": RUN_THREADS if device.type == "cpu" else None, "workers": min(workers, len(jobs)),
                  "device": str(device)}
    with tqdm(total=sum(len(g) for *_, g in todo), desc="SelfDeblur runs", disable=not progress) as bar:
        for i, result in parallel_map(_run_job, jobs, workers):
            case, method, config, group = todo[i]
            for r, seed in enumerate(group):
                x_hat, k_hat = result.x_hat[r].cpu(), result.k_hat[r].cpu()
                record = {
                    "id": run_id(case, method, seed), "case": case.name, "dataset": case.meta["dataset"],
                    "input": case.meta["input"], "image": case.meta["image"], **conditions,
                    "kernel": case.meta["kernel"], "kernel_size": case.meta["kernel_size"], "method": method,
                    "seed": seed, "metrics": score_run(case, x_hat, k_hat, reference(case)), "oracle": ORACLE,
                    "final_loss": float(result.loss_curve[r, -1]), "seconds": result.seconds / len(group),
                    "restarts_in_call": len(group),
                    "fit_iterations": [s["fit_iterations"][r] if s["fit_iterations"] else None for s in result.stages],
                }
                key = run_key(case, config, seed)
                save_checkpoint({**record, "key": key, "x_hat": x_hat, "k_hat": k_hat,
                                 "loss_curve": result.loss_curve[r].clone(), "config": config.to_dict()},
                                folder / "runs" / f"{record['id']}.pt")
                index.put(record["id"], key, record)
                bar.update(1)
    return [index.entries[rid] for rid in order if rid in index.entries]


# --------------------------------------------------------------------------------------------
# 5. Table 1
# --------------------------------------------------------------------------------------------


def _mean(values):
    return sum(values) / len(values) if values else float("nan")


def table1(records: Sequence[dict], methods: Sequence[str] = tuple(METHODS)) -> list[dict]:
    """Table 1 rows from run records, one per data set (kodak, levin) and method.

    ``isnr_mean``: mean ISNR over all runs; ``isnr_std``: mean over inputs of the sample
    standard deviation (ddof = 1) of ISNR across that input's runs (inputs with one run are
    left out of it; NaN if none has two); also mean PSNR and SSIM, the median error ratio and the
    number of runs below :data:`ERROR_RATIO_SUCCESS` (``error_ratio_successes``), the fraction of
    runs with ISNR < 0 and of runs in the no-blur solution, the number of inputs and runs, and the
    paper's pair (``paper``, None where the paper has none).
    """
    rows = []
    for dataset in ("kodak", "levin"):
        for method in methods:
            chosen = [r for r in records if r["dataset"] == dataset and r["method"] == method]
            if not chosen:
                continue
            by_input: dict[str, list[float]] = {}
            for r in chosen:
                by_input.setdefault(r["input"], []).append(r["metrics"]["isnr"])
            stds = [statistics.stdev(v) for v in by_input.values() if len(v) >= 2]
            rows.append({
                "dataset": dataset, "method": method, "inputs": len(by_input), "runs": len(chosen),
                "isnr_mean": _mean([r["metrics"]["isnr"] for r in chosen]), "isnr_std": _mean(stds),
                "psnr_mean": _mean([r["metrics"]["psnr"] for r in chosen]),
                "ssim_mean": _mean([r["metrics"]["ssim"] for r in chosen]),
                "error_ratio_median": statistics.median(r["metrics"]["error_ratio"] for r in chosen),
                "error_ratio_successes": sum(r["metrics"]["error_ratio"] < ERROR_RATIO_SUCCESS for r in chosen),
                "failed": _mean([float(r["metrics"]["isnr"] < 0) for r in chosen]),
                "no_blur": _mean([float(r["metrics"]["no_blur"]) for r in chosen]),
                "paper": PAPER_TABLE1.get((dataset, method)),
            })
    return rows


def format_table1(rows: Sequence[dict]) -> str:
    """Table 1 as Markdown: ours, then the paper's numbers in columns of their own (starred)."""
    if not rows:
        return "(no results)"
    header = ["data set", "method", "inputs × runs", "ISNR (dB)", "std (dB)", "PSNR (dB)", "SSIM",
              "error ratio (median)", "ISNR < 0", "no-blur", "paper ISNR *", "paper std *"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        paper = row["paper"]
        std = "–" if math.isnan(row["isnr_std"]) else f"{row['isnr_std']:.2f}"
        lines.append("| " + " | ".join([
            "Kodak (synthetic)" if row["dataset"] == "kodak" else "Levin (real)", row["method"],
            f"{row['inputs']} × {row['runs'] // max(row['inputs'], 1)}", f"{row['isnr_mean']:.2f}", std,
            f"{row['psnr_mean']:.2f}", f"{row['ssim_mean']:.3f}", f"{row['error_ratio_median']:.2f}",
            f"{row['failed']:.0%}", f"{row['no_blur']:.0%}",
            "–" if paper is None else f"{paper[0]:.2f}", "–" if paper is None else f"{paper[1]:.2f}",
        ]) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# 6. Failure-mode experiments
# --------------------------------------------------------------------------------------------


def fit_curves(targets: torch.Tensor, iterations: int, seed: int = 0, config: SelfDeblurConfig | None = None,
               device=None, workers: int | None = None) -> torch.Tensor:
    """Approximation error of Gx fitted to each target alone (Fig. 1, problem (8)): for target r
    (of ``targets`` (R, C, H, W)), a fresh Gx seeded ``seed + r`` with SelfDeblur's input, input
    perturbation and Adam (``config.lr_image``, default config) minimises MSE(Gx(z + noise), target)
    for ``iterations`` steps; returns the RMSE of every iteration, (R, iterations) float64 on the CPU.
    On the CPU every target is one job of :func:`repro._threads.parallel_map` (``workers``
    processes, default one per core; :data:`RUN_THREADS` thread each, so the curves do not
    depend on ``workers``); on CUDA all targets are one batched computation.
    """
    check_tensor(targets, "targets", (4,))
    if not (is_int(iterations) and iterations >= 1):
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    config = SelfDeblurConfig() if config is None else config
    device = resolve_device(device)
    workers = check_workers(workers, device)
    groups = [list(range(targets.shape[0]))] if device.type == "cuda" else [[r] for r in range(targets.shape[0])]
    curves = torch.empty(targets.shape[0], iterations, dtype=torch.float64)
    jobs = [(targets[group], [seed + r for r in group], iterations, config, device) for group in groups]
    for i, group_curves in parallel_map(_fit_job, jobs, workers):
        curves[groups[i]] = group_curves
    return curves


def _fit_job(job: tuple) -> torch.Tensor:
    """The curves of :func:`fit_curves` for targets (R, C, H, W) fitted by R restarts of Gx at once."""
    targets, seeds, iterations, config, device = job
    with fixed_cpu_threads(device, RUN_THREADS):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        gx = sd.ImageGenerator(config.input_channels, targets.shape[1], restarts=len(seeds), generators=gens)
        gx = gx.to(device=device, dtype=targets.dtype)
        gx.fast = config.fast
        z = torch.cat([torch.rand((1, config.input_channels, *targets.shape[-2:]), generator=g, dtype=torch.float64)
                       for g in gens], dim=1).to(device=device, dtype=targets.dtype) * config.input_scale
        noise_gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        target = targets.to(device)
        optimizer = torch.optim.Adam(gx.parameters(), lr=config.lr_image)
        noise_shape = (1, config.input_channels, *targets.shape[-2:])
        curves = torch.empty(len(seeds), iterations, dtype=torch.float64)
        for t in range(iterations):
            noise = torch.cat([torch.randn(noise_shape, generator=g, device=device, dtype=z.dtype) for g in noise_gens],
                              dim=1) * config.input_noise_std
            mse = (gx(z + noise) - target).square().mean(dim=(1, 2, 3))
            optimizer.zero_grad(set_to_none=True)
            mse.sum().backward()
            optimizer.step()
            curves[:, t] = mse.detach().sqrt().double().cpu()
    return curves


def seen_region(image: torch.Tensor, case: Case) -> torch.Tensor:
    """The part of ``image`` (C, H, W) that the valid blur of a Kodak ``case`` saw: the sharp x of
    size (h + kh − 1, w + kw − 1) with ``ops.blur(seen, case.k, mode="valid") == case.y``."""
    kh, kw = case.k.shape
    return centre_crop(image, case.y.shape[-2] + kh - 1, case.y.shape[-1] + kw - 1)


OBJECTIVE_PHASES = {
    "original, MSE phase": ("original", 0),
    "original, SSIM phase": ("original", None),
    "improved, early (MSE + 0.1‖k‖²/(kh·kw))": ("improved", 0),
    "improved, late (SSIM + 0.01 TV)": ("improved", None),
}
"""The objectives compared in the no-blur table: method and iteration (None: the last one)."""


def no_blur_objectives(seen: torch.Tensor, k: torch.Tensor, y: torch.Tensor,
                       configs: dict[str, SelfDeblurConfig] | None = None) -> list[dict]:
    """The objective of eq. (6)/(9) at the true pair (seen, k) and at the no-blur pair
    (y reflection-padded, δ), under each phase of :data:`OBJECTIVE_PHASES`, with the terms:
    MSE, 1 − SSIM, ‖k‖₂², TV(x). ``seen`` (C, H + kh − 1, W + kw − 1), ``k`` (kh, kw), ``y`` (C, H, W)."""
    check_tensor(seen, "seen", (3,))
    check_tensor(k, "k", (2,))
    check_tensor(y, "y", (3,))
    configs = configs or METHODS
    y4 = y[None].double()
    delta = kernels.pad_to(torch.ones(1, 1, dtype=torch.float64), tuple(k.shape))
    pairs = {"true (x, k)": (seen[None].double(), k.double()), "no-blur (y, δ)": (sd.pad_observation(y4, k.shape), delta)}
    rows = []
    for pair, (x, kk) in pairs.items():
        row = {"pair": pair, "mse": float(sd.data_loss(y4, x, kk, "mse")),
               "1-ssim": float(sd.data_loss(y4, x, kk, "ssim")), "kernel_l2": float(sd.kernel_l2(kk)),
               "tv": float(sd.total_variation(x))}
        for phase, (method, iteration) in OBJECTIVE_PHASES.items():
            config = configs[method]
            it = config.iterations - 1 if iteration is None else iteration
            row[phase] = float(sd.objective(y4, x, kk, sd.loss_schedule(it, config)))
        rows.append(row)
    return rows


def format_objectives(rows: Sequence[dict]) -> str:
    """The rows of :func:`no_blur_objectives` as a Markdown table."""
    columns = ["mse", "1-ssim", "kernel_l2", "tv", *OBJECTIVE_PHASES]
    titles = ["MSE", "1 − SSIM", "‖k‖₂²", "TV(x)", *OBJECTIVE_PHASES]
    lines = ["| pair | " + " | ".join(titles) + " |", "|" + "---|" * (len(titles) + 1)]
    for row in rows:
        lines.append(f"| {row['pair']} | " + " | ".join(f"{row[c]:.4g}" for c in columns) + " |")
    return "\n".join(lines)


def _explore_case(settings: SelfDeblurProfile, image: int, kernel: int) -> Case:
    """Kodak ``image`` blurred by Levin ``kernel`` (the profile's downscale and colour), a crop of
    side ``explore_size``: the Explore section's input."""
    mini = dataclasses.replace(settings, kodak_images=(image,), kodak_kernels=(kernel,), kodak_size=settings.explore_size)
    return kodak_cases(mini)[0]


def explore_run(settings: SelfDeblurProfile, image: int, kernel: int, seed: int, multiscale: bool,
                initialisation: bool, regularisation: bool, device=None, callback=None) -> dict:
    """One tiny run for the Explore section on :func:`_explore_case`, the modifications chosen,
    ``explore_scale`` × the paper's iterations. Returns the case, the result and its scores;
    ``callback`` is :func:`repro.selfdeblur.run_selfdeblur`'s."""
    case = _explore_case(settings, image, kernel)
    config = SelfDeblurConfig(multiscale=multiscale, initialisation=initialisation,
                              regularisation=regularisation).scaled(settings.explore_scale)
    check_feasible([case], {"explore": config})
    result = sd.run_selfdeblur(case.y[None], case.meta["kernel_size"], config, seed=seed,
                               device=resolve_device(device), progress=False, callback=callback)
    return {"case": case, "result": result, "scores": score_run(case, result.x_hat[0], result.k_hat[0])}


EXPLORE_SNAPSHOTS = 25
"""Snapshots of each traced run (:func:`trace_methods`), evenly spread over its iterations."""


@dataclass(frozen=True)
class Trace:
    """Snapshots of one run: at each global ``iterations`` index (all scales counted), the grey
    estimate ``x`` (H, W; its first channel, cropped to the observation and resized to the
    input's size, so that coarse scales show at the same size) and kernel ``k`` (resized to the
    final kernel's size); the objective ``loss`` at every iteration, and the final ``scores``."""

    method: str
    iterations: list[int]
    x: list[torch.Tensor]
    k: list[torch.Tensor]
    loss: torch.Tensor
    scores: dict


def trace_methods(settings: SelfDeblurProfile, image: int = 1, kernel: int = 5, seed: int = 0,
                  snapshots: int = EXPLORE_SNAPSHOTS, device=None) -> tuple[Case, dict[str, Trace]]:
    """The original and the improved method (:data:`METHODS`) run once each on the Explore
    section's input (:func:`explore_run`), with ``snapshots`` snapshots of each run recorded
    through the iteration callback: what the book's scrubbing figure shows."""
    check_positive_int(snapshots, "snapshots")
    case = _explore_case(settings, image, kernel)
    traces = {}
    for method, paper in METHODS.items():
        flags = {name: getattr(paper, name) for name in ("multiscale", "initialisation", "regularisation")}
        config = SelfDeblurConfig(**flags).scaled(settings.explore_scale)
        total = sum(stage.iterations for stage in sd.scale_plan(tuple(case.y.shape[-2:]), case.meta["kernel_size"], config))
        wanted = {round(i * (total - 1) / max(snapshots - 1, 1)) for i in range(snapshots)}
        size, final_k = tuple(case.y.shape[-2:]), case.meta["kernel_size"]
        final_k = (final_k, final_k) if is_int(final_k) else tuple(final_k)
        counter, kept = [0], {"iterations": [], "x": [], "k": []}

        def record(info: sd.IterationInfo, counter=counter, kept=kept, wanted=wanted):  # bound per method
            if counter[0] in wanted:
                x = sd.crop_to_observation(info.x[:1, :1], info.k.shape[-2:]).double()
                kept["iterations"].append(counter[0])
                kept["x"].append(F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0, 0].cpu())
                kept["k"].append(F.interpolate(info.k[:1, None].double(), size=final_k, mode="nearest")[0, 0].cpu())
            counter[0] += 1

        run = explore_run(settings, image, kernel, seed, device=device, callback=record, **flags)
        traces[method] = Trace(method, kept["iterations"], kept["x"], kept["k"], run["result"].loss_curve[0],
                               run["scores"])
    return case, traces


def trace_figure(traces: dict[str, Trace], snapshots: int = EXPLORE_SNAPSHOTS):
    """The Explore figure of :func:`trace_methods`: one slider over the progress of both runs
    (0–100 % of each run's iterations, all scales), showing x̂ and k̂ of the original and the
    improved method at that point and both objectives with the point marked."""
    check_positive_int(snapshots, "snapshots")
    fractions = [i / max(snapshots - 1, 1) for i in range(snapshots)]
    panels = []
    for method, trace in traces.items():
        last = max(len(trace.loss) - 1, 1)
        nearest = [min(range(len(trace.iterations)), key=lambda j: abs(trace.iterations[j] / last - f)) for f in fractions]
        panels += [interactive.Panel(f"x̂, {method}", "image", [trace.x[j].clamp(0, 1) for j in nearest]),
                   interactive.Panel(f"k̂, {method}", "image", [trace.k[j] for j in nearest], normalise=True)]
    curves = {method: ([i / max(len(t.loss) - 1, 1) for i in range(len(t.loss))], t.loss) for method, t in traces.items()}
    panels.append(interactive.Panel("objective", "lines", [{**curves, "marker": f} for f in fractions], log_y=True,
                                    x_title="fraction of the run"))
    return interactive.slider_figure("progress", [f"{100 * f:.0f} %" for f in fractions], panels,
                                     active=len(fractions) - 1, height=300)


# --------------------------------------------------------------------------------------------
# 7. The chapters
# --------------------------------------------------------------------------------------------


def chapter_folder(profile: Profile, store: Store | None = None) -> Path:
    """``<store>/<profile>/selfdeblur/``: the runs of both chapters (shared, so Fig. 2's runs on
    the first Kodak input are reused by the evaluation)."""
    return Store.resolve(store).folder(check(profile), "selfdeblur")


@dataclass(frozen=True)
class EvaluationResults:
    """What ``selfdeblur_evaluation`` shows (:func:`run_evaluation`): the profile's ``settings``,
    the Kodak and Levin ``cases``, every run's ``records``, Table 1's rows (``table``,
    :func:`table1`) and the ``folder`` of the runs."""

    settings: SelfDeblurProfile
    cases: list[Case]
    records: list[dict]
    table: list[dict]
    folder: Path


@dataclass(frozen=True)
class FailureModeResults:
    """What ``selfdeblur_failure_modes`` shows (:func:`run_failure_modes`): the profile's
    ``settings``; the first Kodak input (``case``) and the inputs of Fig. 1 (``fit_cases``) with
    their Gx fitting ``curves`` ("sharp", "blurred"); the runs of Fig. 2 (``spread``); per
    variant its runs, or why it was not run (``variants``); the no-blur ``objectives``; the
    ``folder`` of the runs."""

    settings: SelfDeblurProfile
    case: Case
    fit_cases: list[Case]
    curves: dict[str, torch.Tensor]
    spread: list[dict]
    variants: dict[str, list[dict] | str]
    objectives: list[dict]
    folder: Path


def run_evaluation(profile: Profile, device=None, progress: bool = True, store: Store | None = None
                   ) -> EvaluationResults:
    """Everything ``selfdeblur_evaluation`` shows: all runs of both methods on the profile's
    Kodak and Levin inputs (resumable, in :func:`chapter_folder`) and Table 1."""
    settings = check(profile).selfdeblur
    cases = kodak_cases(settings) + levin_cases(settings)
    configs = {m: settings.config(m) for m in METHODS}
    folder = chapter_folder(profile, store)
    records = evaluate_runs(cases, configs, range(settings.runs), folder, device=device, progress=progress)
    return EvaluationResults(settings=settings, cases=cases, records=records, table=table1(records), folder=folder)


def run_failure_modes(profile: Profile, device=None, progress: bool = True, store: Store | None = None
                      ) -> FailureModeResults:
    """Everything ``selfdeblur_failure_modes`` computes: the Gx fitting curves of Fig. 1 (cached
    in ``fit_curves.json``), the runs of Fig. 2 and of the §4.1 variants on the first Kodak input,
    and the no-blur objective table of that input."""
    settings = check(profile).selfdeblur
    folder = chapter_folder(profile, store)
    cases = kodak_cases(settings)
    fit_cases = cases[: settings.fit_inputs]
    sharp = torch.stack([c.x for c in fit_cases])
    blurred = torch.stack([c.y for c in fit_cases])
    key = fingerprint([c.fingerprint() for c in fit_cases], settings.fit_iterations)

    def compute() -> dict[str, list]:
        both = fit_curves(torch.cat([sharp, blurred]), settings.fit_iterations, device=device)
        return {"sharp": both[: len(fit_cases)].tolist(), "blurred": both[len(fit_cases):].tolist()}

    curves = {name: torch.tensor(v, dtype=torch.float64)
              for name, v in cached(folder / "fit_curves.json", key, compute).items()}

    first = cases[0]
    plan = [([first], {m: settings.config(m) for m in METHODS}, range(settings.spread_runs))]
    infeasible = {}
    for name in settings.variants:
        config = settings.config(name)
        try:
            check_feasible([first], {name: config})
        except ValueError as err:
            infeasible[name] = str(err)
            continue
        plan.append(([first], {name: config}, range(settings.variant_runs)))
    records = evaluate_plan(plan, folder, device=device, progress=progress)  # all runs share the workers
    spread = [r for r in records if r["method"] in METHODS]
    variants = {name: infeasible.get(name) or [r for r in records if r["method"] == name] for name in settings.variants}
    image = kodak_images(settings)[first.meta["image"]]
    objectives = no_blur_objectives(seen_region(image, first), first.k, first.y,
                                    {m: settings.config(m) for m in METHODS})
    return FailureModeResults(settings=settings, case=first, fit_cases=fit_cases, curves=curves, spread=spread,
                              variants=variants, objectives=objectives, folder=folder)
