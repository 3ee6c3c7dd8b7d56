"""The D3 / NSD-DIL chapters' experiments: profiles, variants, test sets, tables.

The science (the L-CNN, its collapse into a DRK, Deep Identity Learning, deblurring) is
:mod:`repro.dil`; this module trains the chapter's variants per profile and caches them in
``<store>/<profile>/d3/``, selects the Wiener baselines' noise-to-signal ratio on BSDS500 *train*
crops, builds the mild-blur and out-of-gallery test sets, and times the DRK against the L-CNN.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import data, interactive, ops
from .._checks import check_choice, check_positive, check_tensor, count_parameters, resolve_device
from .._io import cached, fingerprint, load_cached, load_checkpoint, move_aside
from .._threads import check_workers, parallel_map
from ..dil import (DILConfig, DILRun, DILWeights, LinearCNN, collapse, collapse_steps, deblur_drk, lcnn_apply,
                   least_squares_drk, multiply_adds_per_pixel, train_dil)
from ..kernels import (MILD_BLUR_VARIANCE_BINS, anisotropic_gaussian, gaussian, mild_blur_kernel,
                       motion_kernel_borodenko)
from ..metrics import psnr
from ..nonblind import wiener
from ..profiles import Profile, check
from ..store import Store
from ..timing import time_call
from .evaluation import build_cases, counted, evaluate, summarize

# --------------------------------------------------------------------------------------------
# 1. Profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DILProfile:
    """What one profile trains and evaluates (``Profile.d3``).

    Training: ``gallery_size`` kernels, ``steps`` Adam steps of ``batch_size`` kernels per
    variant, ``gallery_sizes`` for the RKG-size ablation. Evaluation: the first ``n_bsd100``
    images of BSDS500 ``val`` (BSD100) and ``n_kodak`` Kodak images, centre-cropped to
    ``crop`` pixels (None: whole images), each blurred by ``kernels_per_image`` held-out
    kernels; ``n_outside`` of the BSD100 images for the out-of-gallery and noise sweeps;
    ``timing_size`` the side of the RGB image of the compute table; ``nsr_images`` BSDS500
    ``train`` images cropped to ``nsr_crop`` for the Wiener NSR selection (:func:`select_wiener_nsr`).
    """

    name: str
    gallery_size: int
    steps: int
    batch_size: int
    gallery_sizes: tuple[int, ...]
    n_bsd100: int
    n_kodak: int
    crop: int | None
    kernels_per_image: int
    n_outside: int
    noise_levels: tuple[float, ...]
    timing_size: int
    nsr_images: int = 36
    nsr_crop: int = 96

    def config(self, weights: DILWeights = DILWeights(), gallery_size: int | None = None) -> DILConfig:
        """The training config of this profile for ``weights`` (and a gallery size)."""
        return DILConfig(
            weights=weights,
            gallery_size=self.gallery_size if gallery_size is None else gallery_size,
            steps=self.steps,
            batch_size=self.batch_size,
            log_every=max(5, self.steps // 60),
            checkpoint_every=max(1, self.steps // 5),
        )

    def describe(self) -> str:
        """The evaluation set and the training of this profile, in words (for the book)."""

        crop = "whole images" if self.crop is None else f"{self.crop}² centre crops"
        return (f"{self.n_bsd100} BSD100 + {self.n_kodak} Kodak24 images, {crop}, "
                f"{counted(self.kernels_per_image, 'kernel')} per image; DRKs trained on {self.gallery_size} "
                f"RKG kernels for {self.steps} steps")


PROFILES = {
    # CI: a small gallery, 150 steps, three 48-pixel crops; seconds.
    "smoke": DILProfile("smoke", gallery_size=256, steps=150, batch_size=32, gallery_sizes=(128, 256), n_bsd100=2,
                        n_kodak=1, crop=48, kernels_per_image=1, n_outside=2, noise_levels=(0.0, 0.01),
                        timing_size=128, nsr_images=6, nsr_crop=64),
    # this 2-core CPU: the paper's gallery and a short schedule, 256-pixel crops; minutes. Timing
    # on the 1024×1024 RGB image of the speed targets.
    "quick": DILProfile("quick", gallery_size=2400, steps=1000, batch_size=64, gallery_sizes=(800, 1600, 2400, 3200, 4000),
                        n_bsd100=20, n_kodak=8, crop=256, kernels_per_image=1, n_outside=6,
                        noise_levels=(0.0, 0.0025, 0.005, 0.01, 0.02), timing_size=1024),
    # a GPU: the full schedule, whole BSD100 and Kodak24 images, one kernel per variance bin.
    "paper": DILProfile("paper", gallery_size=2400, steps=6000, batch_size=64, gallery_sizes=(800, 1600, 2400, 3200, 4000),
                        n_bsd100=100, n_kodak=24, crop=None, kernels_per_image=3, n_outside=24,
                        noise_levels=(0.0, 0.0025, 0.005, 0.01, 0.02), timing_size=1024),
}



# --------------------------------------------------------------------------------------------
# 2. The chapter: train the variants, build the benchmark, evaluate, time
# --------------------------------------------------------------------------------------------

CHAPTER = "d3"
"""Folder of the D3 chapters' results, ``<store>/<profile>/d3/``."""
SEED = 0
"""Seed of every training run of the chapter (the gallery has its own, ``DILConfig.gallery_seed``)."""

VARIANTS = {
    "full": DILWeights(1, 1, 1, 1),
    "identity": DILWeights(1, 0, 0, 0),
    "id+area": DILWeights(1, 1, 0, 0),
    "id+phase": DILWeights(1, 0, 1, 0),
    "id+magnitude": DILWeights(1, 0, 0, 1),
    "no-area": DILWeights(1, 0, 1, 1),
    "no-phase": DILWeights(1, 1, 0, 1),
    "no-magnitude": DILWeights(1, 1, 1, 0),
    "magnitude0.3": DILWeights(1, 1, 1, 0.3),
    "magnitude3": DILWeights(1, 1, 1, 3),
}
"""The DIL weightings the chapter trains: the default (``full``), the identity term alone,
each regulariser added to it, each removed from ``full``, and two other R3 weights."""

PAPER_RESULT = {"psnr": 27.01, "ssim": 0.8333}

CEILING_ROW = "best single filter (oracle: least squares on these test images)"
"""The mild-blur tables' ceiling for any DRK: the one kernel of the DRK's size that minimises the
squared error on the test images themselves (:func:`repro.dil.least_squares_drk`)."""
"""PSNR/SSIM the paper reports on "mild blur" images. Measured on the authors' own test set,
which FACTS.md could not verify (probably 100 DIV2K validation images): not comparable with
our numbers, quoted in a column of its own, and never a target."""

TEST_KERNEL_SIZES = (11, 13, 15, 17, 19, 21)
TEST_KERNEL_SEED = 10_000
"""Test kernels use the seeds 10,000 + i, streams distinct from the gallery's (seed 0)."""

WIENER_NSR, WIENER_NOISE_FACTOR = 6e-4, 100.0
"""The Wiener baselines' flat noise-to-signal ratio: WIENER_NSR + WIENER_NOISE_FACTOR · σ² for
noise of standard deviation σ (:func:`wiener_nsr`). The output of :func:`select_wiener_nsr`
with its defaults, on 36 blurred BSDS500 *train* crops, never the test images (the
``d3_evaluation`` chapter reruns the selection and shows it; ``tests/test_dil.py`` checks that it
still gives these values). The textbook flat value σ² / var(x) is too small for natural images,
whose power sits at low frequencies."""
NSR_CANDIDATES = tuple(float(f"{10 ** (e / 4):.3g}") for e in range(-24, -3))
"""The NSRs :func:`select_wiener_nsr` tries: 1e-6 … 0.1, four per decade."""
NSR_SELECTION_SEED = 20_000
"""Kernels of the NSR selection use the seeds 20,000 + i: distinct from the gallery's (seed 0)
and from the test kernels' (10,000 + i)."""
GUESS_SIGMA = math.sqrt((0.35 + 6.0) / 2)
"""The blind baselines' single Gaussian guess: isotropic, variance = the RKG's mean eigenvalue
(FACTS.md: λ ~ U[0.35, 6]), i.e. σ ≈ 1.78 px, 11×11."""
UNSHARP_SIGMA, UNSHARP_AMOUNT = 1.0, 1.0
"""Unsharp masking y + amount · (y − G_σ ⊛ y), with scikit-image's defaults (radius 1, amount 1)."""


def wiener_nsr(noise_sigma: float) -> float:
    """The flat NSR of the Wiener baselines for noise σ: WIENER_NSR + WIENER_NOISE_FACTOR · σ²."""
    return WIENER_NSR + WIENER_NOISE_FACTOR * noise_sigma**2


def select_wiener_nsr(n_images: int = 36, crop: int = 96, noise_levels=(0.0, 0.01, 0.02),
                      candidates=NSR_CANDIDATES, images: dict | None = None, progress: bool = False) -> dict:
    """Choose the Wiener baselines' NSR rule on BSDS500 **train** crops (never val or test).

    The first ``n_images`` BSDS500 ``train`` images (or ``images``, name → (C, H, W)), each
    blurred ('valid' true convolution, centre crop ``crop``) by one kernel of the mild-blur
    family (``kernels.mild_blur_kernel``, seeds :data:`NSR_SELECTION_SEED` + i, sizes cycling
    through 11–21, variance bins through the three of the benchmark), as the test cases are
    built but from other images and other kernels; white noise of each σ of ``noise_levels``.
    For each σ, every NSR of ``candidates`` is scored by the mean PSNR of Wiener deconvolution
    with the true kernel (symmetric borders, clamped to [0, 1]); the best is kept. The rule
    NSR(σ) = floor + factor · σ² then takes ``floor`` = the best NSR without noise (σ = 0 must be
    among the levels) and ``factor`` = the median over the noisy levels of
    (best − floor) / σ², both rounded to one significant digit.

    Returns a JSON-able dict: ``noise_levels``, ``candidates``, ``psnr`` (one list per level,
    aligned with the candidates), ``best`` (per level), ``floor``, ``noise_factor``, ``images``
    (names) and ``crop``.
    """
    levels = [check_positive(s, "noise level", allow_zero=True) for s in noise_levels]
    if 0.0 not in levels or len(levels) < 2:
        raise ValueError(f"noise_levels must contain 0 and at least one noisy level, got {noise_levels!r}")
    candidates = [check_positive(c, "candidate NSR") for c in candidates]
    if images is None:
        if not (isinstance(n_images, int) and 1 <= n_images <= len(data.bsds500("train"))):
            raise ValueError(f"n_images must be an int in 1..{len(data.bsds500('train'))}, got {n_images!r}")
        images = {Path(r).stem: data.load_image(r) for r in data.bsds500("train")[:n_images]}
    if not isinstance(images, dict) or not images:
        raise ValueError("images must be a non-empty dict name -> (C, H, W) tensor")
    scores = []
    for sigma in tqdm(levels, desc="NSR selection", disable=not progress, leave=False):
        cases = []
        for i, (name, image) in enumerate(images.items()):
            k = mild_blur_kernel(TEST_KERNEL_SIZES[i % len(TEST_KERNEL_SIZES)], NSR_SELECTION_SEED + i,
                                 MILD_BLUR_VARIANCE_BINS[i % 3])
            cases += build_cases({name: image}, {f"select{i}": k}, crop=crop, noise_sigma=sigma, seed=SEED)
        per_case = torch.stack([
            torch.stack([psnr(wiener(c.y[None], c.k.to(c.y.dtype), nsr)[0].clamp(0, 1), c.x) for nsr in candidates])
            for c in cases])
        scores.append(per_case.mean(0).tolist())
    best = [candidates[max(range(len(candidates)), key=row.__getitem__)] for row in scores]
    floor = best[levels.index(0.0)]
    slopes = sorted(max(b - floor, 0.0) / s**2 for s, b in zip(levels, best) if s > 0)
    factor = slopes[len(slopes) // 2] if len(slopes) % 2 else 0.5 * (slopes[len(slopes) // 2 - 1] + slopes[len(slopes) // 2])

    def one_digit(v: float) -> float:
        return float(f"{v:.0e}") if v > 0 else 0.0

    return {"noise_levels": levels, "candidates": candidates, "psnr": scores, "best": best,
            "floor": one_digit(floor), "noise_factor": one_digit(factor), "images": list(images), "crop": crop}


def unsharp_mask(y: torch.Tensor) -> torch.Tensor:
    """Unsharp masking of y (…, C, H, W) in [0, 1]: y + amount · (y − G_σ ⊛ y) with
    :data:`UNSHARP_SIGMA` and :data:`UNSHARP_AMOUNT` (symmetric boundary), clamped to [0, 1]. A
    blind sharpening baseline: it needs no kernel."""
    check_tensor(y, "y", (3, 4))
    g = gaussian(9, UNSHARP_SIGMA, dtype=y.dtype).to(y.device)
    blurred = ops.blur(y if y.ndim == 4 else y[None], g, mode="symmetric").reshape(y.shape)
    return (y + UNSHARP_AMOUNT * (y - blurred)).clamp(0, 1)


def classical_methods() -> dict:
    """The baselines: the blurred input, Wiener with the true kernel (oracle), Wiener with one
    fixed Gaussian guess and unsharp masking (blind). Each (y, case) → x̂ clamped to [0, 1]."""
    def guess(dtype):
        return gaussian(11, GUESS_SIGMA, dtype=dtype)

    return {
        "blurred input": lambda y, case: y.clamp(0, 1),
        "Wiener, true k (oracle)": lambda y, case: wiener(
            y[None], case.k.to(y.dtype), wiener_nsr(case.meta["noise_sigma"]))[0].clamp(0, 1),
        "Wiener, Gaussian guess": lambda y, case: wiener(
            y[None], guess(y.dtype).to(y.device), wiener_nsr(case.meta["noise_sigma"]))[0].clamp(0, 1),
        "unsharp masking": lambda y, case: unsharp_mask(y),
    }


def _classical_keys() -> dict:
    key = f"nsr={WIENER_NSR}+{WIENER_NOISE_FACTOR}σ²,guess={GUESS_SIGMA:.4f},unsharp={UNSHARP_SIGMA},{UNSHARP_AMOUNT}"
    return {name: key for name in classical_methods()}


def drk_method(drk: torch.Tensor):
    """The method (y, case) → deblur_drk(y, drk) for :func:`repro.experiments.evaluation.evaluate`."""
    return lambda y, case: deblur_drk(y, drk)


def variant_configs(profile: Profile) -> dict[str, DILConfig]:
    """The training configs of the chapter: the weightings of :data:`VARIANTS` on the
    profile's gallery, and ``full`` on each other size of ``profile.d3.gallery_sizes`` (named
    ``rkg<n>``)."""
    settings = check(profile).d3
    configs = {name: settings.config(weights) for name, weights in VARIANTS.items()}
    configs |= {f"rkg{n}": settings.config(gallery_size=n) for n in settings.gallery_sizes if n != settings.gallery_size}
    return configs


def train_variant(profile: Profile, name: str, device: str | None = None, progress: bool = True,
                  store: Store | None = None) -> DILRun:
    """Train the variant ``name`` of :func:`variant_configs`, or load it from
    ``<store>/<profile>/d3/dil_<name>.pt`` (resuming an interrupted run; a checkpoint trained with
    other settings of the profile is moved aside as ``.stale`` and retrained)."""
    configs = variant_configs(profile)
    check_choice(name, "name", configs)
    device = str(resolve_device(device))
    path = Store.resolve(store).folder(profile, CHAPTER) / f"dil_{name}.pt"
    state = load_cached(path, load_checkpoint, is_valid=lambda s: isinstance(s, dict))
    run = state.get("run") if state is not None else None
    if state is not None and not (isinstance(run, dict) and run.get("config") == configs[name].to_dict()
                                  and run.get("seed") == SEED):
        move_aside(path, "stale", "was trained with other settings of this profile")
    return train_dil(configs[name], SEED, path, device=device, progress=progress)


def train_command(profile: Profile) -> str:
    """The shell command that trains (or finishes training) the ``full`` DRK of ``profile``:
    the ``d3_collapse`` chapter, which trains only that variant (``d3_evaluation`` trains all)."""
    return f"python -m repro.chapters execute --profile {check(profile).name} d3_collapse"


def load_trained_drk(profile: Profile, name: str = "full", store: Store | None = None) -> torch.Tensor:
    """The DRK of the variant ``name`` trained by the D3 chapters for ``profile``, read from
    ``<store>/<profile>/d3/dil_<name>.pt`` without training anything.

    Raises ``FileNotFoundError`` naming the file and :func:`train_command` when the checkpoint is
    missing or unfinished, and ``ValueError`` when it is corrupt or was written for another
    configuration (e.g. by an older version of the chapter).
    """
    configs = variant_configs(profile)
    check_choice(name, "name", configs)
    config = configs[name]
    path = Store.resolve(store).folder(profile, CHAPTER) / f"dil_{name}.pt"
    retrain = f"train it with: {train_command(profile)}" if name == "full" else (
        f"train it with: python -m repro.chapters execute --profile {profile.name} d3_evaluation")
    if not path.exists():
        raise FileNotFoundError(f"no trained DRK for profile {profile.name!r} ({path} is missing); {retrain}")
    state = load_checkpoint(path)
    run = state.get("run") if isinstance(state, dict) else None
    if not (isinstance(run, dict) and "model" in state and run.get("config") == config.to_dict()
            and run.get("seed") == SEED):
        raise ValueError(f"{path} is not a DRK checkpoint of the current {profile.name!r} configuration; "
                         f"delete it and {retrain}")
    if state.get("step") != config.steps:
        raise FileNotFoundError(f"the DRK of profile {profile.name!r} is only partly trained ({path}: step "
                                f"{state.get('step')} of {config.steps}); {retrain}")
    model = LinearCNN(seed=SEED)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{path} holds weights of another shape ({err}); delete it and {retrain}") from None
    with torch.no_grad():
        return collapse(model.float()).detach()


def train_variants(profile: Profile, device: str | None = None, progress: bool = True,
                   workers: int | None = None, store: Store | None = None) -> dict[str, DILRun]:
    """Every variant of :func:`variant_configs`, trained or loaded (:func:`train_variant`). On the
    CPU the variants train side by side in ``workers`` processes (default one per core), each
    on one thread as always, so the weights do not depend on ``workers``."""
    names = list(variant_configs(profile))
    device = str(resolve_device(device))
    workers = check_workers(workers, device)
    store = Store.resolve(store)
    jobs = [(profile, name, device, store) for name in names]
    for _ in tqdm(parallel_map(_train_variant_job, jobs, workers), total=len(jobs), desc="DIL variants",
                  disable=not progress, leave=False):
        pass
    return {name: train_variant(profile, name, device, progress=False, store=store) for name in names}  # read back


def _train_variant_job(job: tuple) -> None:
    """Train (or finish) one variant into its checkpoint: a job of :func:`train_variants`."""
    profile, name, device, store = job
    train_variant(profile, name, device, progress=False, store=store)


def _test_images(settings: DILProfile, which: str) -> dict[str, tuple[torch.Tensor, dict]]:

    images = {}
    if which in ("main", "bsd100"):
        for relpath in data.bsds500("val")[: settings.n_bsd100]:
            images[Path(relpath).stem] = (data.load_image(relpath), {"dataset": "BSD100"})
    if which == "main":
        for i in range(1, settings.n_kodak + 1):
            images[f"kodim{i:02d}"] = (data.kodak(i), {"dataset": "Kodak24"})
    return images


def mild_blur_cases(settings: DILProfile, noise_sigma: float, n_images: int | None = None) -> list:
    """The mild-blur benchmark of the profile: BSD100 and Kodak24 images (or the first
    ``n_images`` BSD100 ones), each blurred ('valid', true convolution) by
    ``kernels_per_image`` held-out RKG-family kernels (``kernels.mild_blur_kernel``), sizes
    cycling through 11–21 and variance bins through [0.175, 3), [3, 6), [6, 9)."""
    images = _test_images(settings, "main" if n_images is None else "bsd100")
    if n_images is not None:
        images = dict(list(images.items())[:n_images])
    cases, index = [], 0
    for i, (image_name, (image, meta)) in enumerate(images.items()):
        for j in range(settings.kernels_per_image):
            b = j if settings.kernels_per_image == 3 else i % 3
            size = TEST_KERNEL_SIZES[index % len(TEST_KERNEL_SIZES)]
            k = mild_blur_kernel(size, TEST_KERNEL_SEED + index, MILD_BLUR_VARIANCE_BINS[b])
            lo, hi = MILD_BLUR_VARIANCE_BINS[b]
            cases += build_cases(
                {image_name: image}, {f"mild{index}": k}, crop=settings.crop, noise_sigma=noise_sigma, seed=SEED,
                meta=meta | {"variance_bin": f"[{lo:g}, {hi:g})", "kernel_size": size},
            )
            index += 1
    return cases


def outside_cases(settings: DILProfile) -> list:
    """Kernels outside the RKG family: Borodenko motion kernels (sizes 11–17, intensity 0.3)
    and the 8 Levin et al. camera-shake kernels, on the first ``n_outside`` BSD100 images."""
    n_motion = 2 if settings.name == "smoke" else 4
    kernels = {f"motion{s}": motion_kernel_borodenko(11 + 2 * s, 0.3, seed=s + 1) for s in range(n_motion)}
    levin = {f"levin{j}": k.float() for j, k in enumerate(data.levin_kernels(), start=1)}
    if settings.name == "smoke":
        levin = dict(list(levin.items())[:2])
    images = {name: image for name, (image, _) in _test_images(settings, "bsd100").items()}
    images = dict(list(images.items())[: settings.n_outside])
    cases = build_cases(images, kernels, crop=settings.crop, seed=SEED, meta={"family": "motion (Borodenko)"})
    return cases + build_cases(images, levin, crop=settings.crop, seed=SEED, meta={"family": "Levin et al."})


def fft_multiply_adds(grid_pixels: int, output_pixels: int) -> float:
    """Estimated real multiply-adds per output pixel of one FFT convolution on a grid.

    A real FFT of N points takes about 2·log₂N real multiply-adds per point (N/2·log₂N complex
    butterflies of 4), the convolution a forward and an inverse one plus the product (2 per
    point; the kernel's transform is precomputed): ≈ 4·log₂N + 2 per grid point, scaled by
    grid / output pixels. An estimate for comparison, not a count.
    """
    return (4 * math.log2(grid_pixels) + 2) * grid_pixels / output_pixels


def fft_convolution_reference(image: torch.Tensor):
    """The floor any FFT filter pays, as a function to time: ``rfft2`` of the whole (B, C, H, W)
    image (all channels in one call, no padding, no validation), the product with a spectrum
    computed beforehand (one (H, W//2 + 1) spectrum shared by the channels), ``irfft2`` back
    to (H, W). The D3 speed target compares :func:`deblur_drk` with this (issue "Performance":
    within 1.5× of "a single float32 FFT convolution of the same size")."""
    H, W = image.shape[-2:]
    generator = torch.Generator().manual_seed(1)
    spectrum = torch.fft.rfft2(torch.rand(H, W, generator=generator, dtype=image.dtype).to(image.device))
    return lambda: torch.fft.irfft2(torch.fft.rfft2(image) * spectrum, s=(H, W))


SPEED_TARGET_SIZE, SPEEDUP_TARGET, FFT_RATIO_TARGET = 1024, 100.0, 1.5
"""The D3 issue's speed targets, for a 1024×1024 RGB float32 image: the DRK at least 100× faster
than L-CNN inference (the paper's "at least 100 times lesser computational resources"; we
compare with the faster of the L-CNN's two layouts), and by FFT within 1.5× the time of one FFT
convolution (:func:`fft_convolution_reference`)."""


def speed_verdict(size: int, speedup: float, fft_ratio: float) -> str:
    """One sentence on the two speed targets for a :func:`compute_table` measured on a
    ``size``² image: the faster DRK's ``speedup`` over the faster L-CNN, and ``fft_ratio`` =
    DRK by FFT / one FFT convolution. Only a 1024² image tests them."""
    if size != SPEED_TARGET_SIZE:
        return f"the targets are set for {SPEED_TARGET_SIZE}² images, so this {size}² timing does not test them"
    met = {True: "met", False: "not met"}
    return (f"in this run the speed-up target (≥ {SPEEDUP_TARGET:g}×) is {met[speedup >= SPEEDUP_TARGET]} and the "
            f"FFT target (≤ {FFT_RATIO_TARGET:g}×) is {met[fft_ratio <= FFT_RATIO_TARGET]}")


def compute_table(model: LinearCNN, size: int, device: str = "cpu", repeats: int = 3,
                  threads: int | None = 1) -> list[dict]:
    """Parameters, multiply-adds per pixel and time of L-CNN, DRK (direct, FFT), Wiener and a bare
    FFT convolution.

    On one random (1, 3, size, size) float32 image on ``device``, all with symmetric borders:
    the L-CNN (:func:`lcnn_apply`) in planar and channels-last layout (``speedup_vs_lcnn`` is
    relative to the faster of the two), its DRK applied directly and by FFT (:func:`deblur_drk`,
    the DRK's spectrum prepared once beforehand, as the reference's), Wiener deconvolution with
    a known 11×11 kernel (``nonblind.wiener``, symmetric: an FFT of 4× the image), and the
    reference :func:`fft_convolution_reference`. Time: best of ``repeats`` runs (one warm-up),
    in ms per RGB megapixel, with the number of CPU threads. Multiply-adds per pixel and
    channel: exact for the L-CNN and the direct DRK, an estimate (:func:`fft_multiply_adds`)
    for the FFT methods. Wiener and the reference learn no parameters (``None``). On the CPU the
    timing runs with ``threads`` intra-op threads (restored afterwards; None: as set): one by
    default, because on a shared 2-core machine two threads spend most of their time waiting for
    each other as soon as another job runs (``benchmarks/bench_dil.py`` measures 1 and 2).
    """
    if not (isinstance(size, int) and size >= 16):
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    device = torch.device(device)
    model = copy.deepcopy(model).to(device=device, dtype=torch.float32)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        drk = collapse(model)
    k = gaussian(11, GUESS_SIGMA).to(device)
    model_nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    rows = [
        ("L-CNN", count_parameters(model), multiply_adds_per_pixel(model), lambda: lcnn_apply(model, image)),
        ("L-CNN, channels-last", count_parameters(model), multiply_adds_per_pixel(model),
         lambda: lcnn_apply(model_nhwc, image, channels_last=True)),
        ("DRK, direct", drk.numel(), drk.numel(), lambda: deblur_drk(image, drk, method="direct")),
        ("DRK, FFT", drk.numel(), fft_multiply_adds(math.prod(ops._fft_grid(size, size)), size**2),
         lambda: deblur_drk(image, drk, method="fft")),
        ("Wiener, known k", None, fft_multiply_adds(4 * size**2, size**2), lambda: wiener(image, k, WIENER_NSR)),
        ("FFT convolution (reference)", None, fft_multiply_adds(size**2, size**2), fft_convolution_reference(image)),
    ]
    table = []
    previous_threads = torch.get_num_threads()
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(int(check_positive(threads, "threads")))
    with torch.no_grad(), contextlib.ExitStack() as restore:
        restore.callback(torch.set_num_threads, previous_threads)
        for name, parameters, mult_adds, fn in rows:
            seconds = time_call(fn, device, 1 if name.startswith("L-CNN") else repeats, reduce=min)
            table.append({"method": name, "parameters": parameters, "mult_adds_per_pixel": round(mult_adds, 1),
                          "ms_per_megapixel": 1e3 * seconds / (size**2 / 1e6), "device": str(device),
                          "threads": torch.get_num_threads() if device.type == "cpu" else None,
                          "image": f"1x3x{size}x{size} float32"})
    reference = table[-1]["ms_per_megapixel"]
    lcnn = min(row["ms_per_megapixel"] for row in table[:2])  # the faster layout: the honest reference
    for row in table:
        row["speedup_vs_lcnn"] = lcnn / row["ms_per_megapixel"]
        row["time_vs_fft_reference"] = row["ms_per_megapixel"] / reference
    return table


def attainable_share(rows: list[dict], method: str = "DRK full") -> dict:
    """Per group of ``rows`` (one summary table; ``None`` when ungrouped): the mean PSNR of the
    blurred input, of ``method`` and of :data:`CEILING_ROW`, and ``method``'s share of the gain
    the ceiling attains over the input, (method − input) / (ceiling − input); the share is None
    where the ceiling gains nothing."""
    out = {}
    for group in dict.fromkeys(row.get("group") for row in rows):
        means = {row["method"]: row["psnr_mean"] for row in rows if row.get("group") == group}
        blurred, ours, ceiling = means["blurred input"], means[method], means[CEILING_ROW]
        out[group] = {"blurred": blurred, "method": ours, "ceiling": ceiling,
                      "share": (ours - blurred) / (ceiling - blurred) if ceiling > blurred else None}
    return out


def format_attainable(results: D3Results, method: str = "DRK full") -> str:
    """Markdown: per noise level, over all cases and per variance bin, the mean PSNR of the
    blurred input, of ``method`` and of the ceiling, and ``method``'s share of the attainable gain
    (:func:`attainable_share`)."""
    lines = ["| noise σ | variance bin (px²) | blurred input (dB) | " + method + " (dB) | ceiling (dB) | share of the gain |",
             "|---|---|---|---|---|---|"]
    for sigma, overall, by_bin in ((0.0, results.mild, results.mild_by_bin),
                                   (0.01, results.mild_noisy, results.mild_noisy_by_bin)):
        for group, entry in (attainable_share(overall, method) | attainable_share(by_bin, method)).items():
            share = "—" if entry["share"] is None else f"{entry['share']:.0%}"
            lines.append(f"| {sigma:g} | {'all' if group is None else group} | {entry['blurred']:.2f} | "
                         f"{entry['method']:.2f} | {entry['ceiling']:.2f} | {share} |")
    return "\n".join(lines)


def format_compute_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`compute_table` rows."""
    lines = ["| method | device | parameters | multiply-adds / pixel | ms / RGB megapixel | × faster than L-CNN "
             "| time / FFT convolution |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        estimate = "≈ " if "FFT" in row["method"] or "Wiener" in row["method"] else ""
        if row["parameters"] is not None:
            parameters = f"{row['parameters']:,}"
        else:
            parameters = "— (k given)" if row["method"].startswith("Wiener") else "—"
        device = row["device"] + (f", {row['threads']} thr." if row.get("threads") else "")
        ratio = row.get("time_vs_fft_reference")
        lines.append(f"| {row['method']} | {device} | {parameters} | {estimate}{row['mult_adds_per_pixel']:,.0f} "
                     f"| {row['ms_per_megapixel']:,.1f} | {row['speedup_vs_lcnn']:,.1f} "
                     f"| {'' if ratio is None else f'{ratio:,.2f}'} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class D3Results:
    """What ``d3_evaluation`` shows (:func:`run_chapter`). ``settings``: the profile's D3 settings
    as a dict; ``runs``: the trained variants; ``mild`` and ``mild_noisy``: the mild-blur table
    without noise and with σ = 0.01 (rows of ``evaluation.summarize``, with :data:`CEILING_ROW`),
    ``mild_by_bin`` and ``mild_noisy_by_bin`` both per variance bin, ``mild_by_dataset`` the
    first per dataset; ``outside``: out-of-gallery
    kernels per family; ``noise``: the noise sweep; ``compute``: the compute table
    (:func:`compute_table`); ``wiener_nsr``: the NSR selection (:func:`select_wiener_nsr`);
    ``paper``: the paper's reported figures (:data:`PAPER_RESULT`)."""

    profile: str
    settings: dict
    runs: dict[str, DILRun]
    mild: list[dict]
    mild_noisy: list[dict]
    mild_by_bin: list[dict]
    mild_noisy_by_bin: list[dict]
    mild_by_dataset: list[dict]
    outside: list[dict]
    noise: list[dict]
    compute: list[dict]
    wiener_nsr: dict
    paper: dict


def run_chapter(profile: Profile, device: str | None = None, progress: bool = True,
                store: Store | None = None) -> D3Results:
    """Everything ``d3_evaluation`` shows, computed or read back from ``<store>/<profile>/d3/``
    (``store``: default :meth:`repro.store.Store.default`).

    Trains the variants (:func:`train_variants`), evaluates the mild-blur benchmark without
    noise and with σ = 0.01 (all baselines and all DRKs), the out-of-gallery kernels and the
    noise sweep (:mod:`repro.experiments.evaluation`, resumable), reruns the selection of the Wiener NSR
    on BSDS500 train crops (:func:`select_wiener_nsr`, cached), and times the methods (:func:`compute_table`
    on the CPU, and on CUDA when there is one; cached).
    """
    settings = check(profile).d3
    store = Store.resolve(store)
    folder = store.folder(profile, CHAPTER)
    runs = train_variants(profile, device, progress, store=store)
    drks = {name: run.drk.cpu() for name, run in runs.items()}
    drk_methods = {f"DRK {name}": drk_method(d) for name, d in drks.items()}
    drk_keys = {f"DRK {name}": fingerprint(d) for name, d in drks.items()}
    baselines, baseline_keys = classical_methods(), _classical_keys()

    main, by_bin = {}, {}
    for sigma in (0.0, 0.01):
        cases = mild_blur_cases(settings, sigma)
        # the oracle ceiling of D2: the one filter of the DRK's size that fits these very images best
        ceiling = least_squares_drk(((c.y, c.x) for c in cases), drks["full"].shape[-1])
        methods = baselines | drk_methods | {CEILING_ROW: drk_method(ceiling.float())}
        main[sigma] = evaluate(methods, cases, folder / f"eval_mild_sigma{sigma:g}.json",
                               keys=baseline_keys | drk_keys | {CEILING_ROW: fingerprint(ceiling)}, progress=progress)
        by_bin[sigma] = summarize(folder / f"eval_mild_sigma{sigma:g}.json", group_by="variance_bin",
                                  methods=list(baselines) + ["DRK identity", "DRK full", CEILING_ROW])
    by_dataset = summarize(folder / "eval_mild_sigma0.json", group_by="dataset",
                           methods=list(baselines) + ["DRK identity", "DRK full"])

    few = {name: baselines[name] for name in ("blurred input", "Wiener, true k (oracle)")}
    few_drks = {name: drk_methods[name] for name in ("DRK identity", "DRK id+area", "DRK full")}
    evaluate(few | few_drks, outside_cases(settings), folder / "eval_outside.json",
             keys=baseline_keys | drk_keys, progress=progress)
    outside_by_family = summarize(folder / "eval_outside.json", group_by="family", methods=list(few | few_drks))

    noise_methods = few | {name: drk_methods[name] for name in ("DRK full", "DRK magnitude0.3", "DRK magnitude3")}
    noise_cases = [c for sigma in settings.noise_levels
                   for c in mild_blur_cases(settings, sigma, n_images=settings.n_outside)]
    evaluate(noise_methods, noise_cases, folder / "eval_noise.json", keys=baseline_keys | drk_keys, progress=progress)
    noise = summarize(folder / "eval_noise.json", group_by="noise_sigma", methods=list(noise_methods))

    nsr_settings = {"n_images": settings.nsr_images, "crop": settings.nsr_crop}
    nsr = cached(folder / "wiener_nsr.json", {"settings": nsr_settings, "candidates": list(NSR_CANDIDATES)},
                 lambda: select_wiener_nsr(settings.nsr_images, settings.nsr_crop, progress=progress)
                 | {"settings": nsr_settings})

    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    compute = cached(folder / "compute.json", {"size": settings.timing_size, "devices": devices},
                     lambda: [row for device in devices
                              for row in compute_table(runs["full"].model, settings.timing_size, device)])
    return D3Results(profile=profile.name, settings=dataclasses.asdict(settings), runs=runs, mild=main[0.0],
                     mild_noisy=main[0.01], mild_by_bin=by_bin[0.0], mild_noisy_by_bin=by_bin[0.01],
                     mild_by_dataset=by_dataset, outside=outside_by_family,
                     noise=noise, compute=compute, wiener_nsr=nsr, paper=PAPER_RESULT)


# --------------------------------------------------------------------------------------------
# The book's Explore figures
# --------------------------------------------------------------------------------------------

EXPLORE_RANGES = {"sigma1": (0.3, 3.0), "sigma2": (0.3, 3.0), "theta": (0.0, 180.0), "noise": (0.0, 0.05)}
"""The slider ranges of the DRK Explore figures: the test kernel's standard deviations (px) and
angle (degrees), and the noise standard deviation added to the blurred crop."""

EXPLORE_DEFAULTS = {"sigma1": 1.8, "sigma2": 1.0, "theta": 30.0, "noise": 0.0}
"""The chapter's test kernel and noise, where each slider starts."""

EXPLORE_LABELS = {"sigma1": "σ₁ (px)", "sigma2": "σ₂ (px)", "theta": "θ (degrees)", "noise": "noise std"}

EXPLORE_CROP = 128
"""Side of the Kodak crop restored in each frame: small enough for a page of many frames."""

SPECTRUM_GRID = 64


def _spectrum(kernel: torch.Tensor) -> torch.Tensor:
    """|F(kernel)| on a 64 × 64 grid, ω = 0 at the centre."""
    return torch.fft.fftshift(ops.psf2otf(kernel.double(), (SPECTRUM_GRID, SPECTRUM_GRID)).abs())


def drk_explore_figure(drk: torch.Tensor, image: torch.Tensor, parameter: str, count: int):
    """One slider of the DRK Explore section: ``parameter`` over ``count`` values of
    :data:`EXPLORE_RANGES` and its default, the others at :data:`EXPLORE_DEFAULTS`. Each frame
    shows the test kernel, |F(k)| |F(DRK)| (R3 asks for 1; colours from 0 to 2), the crop of
    ``image`` blurred (valid convolution, the noise added) and restored by ``drk``; each step's
    label gives the two PSNRs against the sharp crop."""
    if parameter not in EXPLORE_RANGES:
        raise ValueError(f"parameter must be one of {list(EXPLORE_RANGES)}, got {parameter!r}")
    check_tensor(drk, "drk", (2,))
    low, high = EXPLORE_RANGES[parameter]
    values = interactive.slider_values(low, high, count, EXPLORE_DEFAULTS[parameter])
    kernel_frames, products, blurred, restored, labels = [], [], [], [], []
    for value in values:
        p = {**EXPLORE_DEFAULTS, parameter: value}
        k = anisotropic_gaussian(11, p["sigma1"], p["sigma2"], math.radians(p["theta"]), dtype=torch.float64)
        (case,) = build_cases({"kodim23": image}, {"k": k.float()}, crop=EXPLORE_CROP, noise_sigma=p["noise"])
        y, x_hat = case.y.clamp(0, 1), deblur_drk(case.y, drk).clamp(0, 1)
        kernel_frames.append(k)
        products.append(_spectrum(k) * _spectrum(drk))
        blurred.append(y.permute(1, 2, 0))
        restored.append(x_hat.permute(1, 2, 0))
        labels.append(f"{value:g} ({psnr(y, case.x):.1f} → {psnr(x_hat, case.x):.1f} dB)")
    axis = torch.arange(SPECTRUM_GRID) - SPECTRUM_GRID // 2
    panels = [interactive.Panel("kernel k", "image", kernel_frames, normalise=True),
              interactive.Panel("|F(k)| |F(DRK)|", "heatmap", [(axis, axis, p) for p in products], zrange=(0.0, 2.0)),
              interactive.Panel("blurred", "image", blurred),
              interactive.Panel("restored by the DRK", "image", restored)]
    return interactive.slider_figure(EXPLORE_LABELS[parameter], labels, panels,
                                     active=values.index(EXPLORE_DEFAULTS[parameter]))


def collapse_figure(model: LinearCNN):
    """The DRK collapse as a slider over the layers (:func:`repro.dil.collapse_steps`): the
    effective kernel from the input to channel 0 after each layer (3 × 3, 5 × 5, …, the DRK
    flipped at the last layer) and its |F| on a 64 × 64 grid."""
    steps = [e[0].detach().double() for e in collapse_steps(model)]
    size = steps[-1].shape[-1]
    padded = [torch.nn.functional.pad(e, [(size - e.shape[-1]) // 2] * 4) for e in steps]
    axis = torch.arange(SPECTRUM_GRID) - SPECTRUM_GRID // 2
    panels = [interactive.Panel("effective kernel, channel 0", "image", padded, normalise=True),
              interactive.Panel("its |F|", "heatmap", [(axis, axis, _spectrum(e)) for e in padded])]
    return interactive.slider_figure("layers collapsed", [f"{i + 1} ({e.shape[-1]}×{e.shape[-1]})"
                                                          for i, e in enumerate(steps)], panels,
                                     active=len(steps) - 1, height=300)
