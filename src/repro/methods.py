"""The deblurring methods a user can run on their own image (``repro deblur``), in one registry.

Every method is a function

    fn(y, *, kernel_size, device, seed, profile, progress, store, **options) -> (x_hat, k_hat or None)

taking one blurred image ``y`` (1, C, H, W), C = 1 (grey) or 3 (RGB), float32 in [0, 1] (and
the ``repro.store.Store`` in which the trained methods find the models of ``profile``), and
returning the restored image with the shape of ``y`` in [0, 1] and, for blind methods that
estimate one, the blur kernel (kh, kw) (non-negative, summing to 1), both on the CPU. Adding a
method is one :func:`register` call (or one entry in :data:`METHODS`); :func:`deblur` checks
the common arguments and the options a method accepts before it runs.

Methods
    ``drk``         D3's Deep Restoration Kernel (:mod:`repro.dil`), the full-DIL one trained by
                    the D3 chapters for ``profile``; one fixed inverse for mild blur, no kernel.
    ``wiener``      Wiener deconvolution (:func:`repro.nonblind.wiener`, symmetric borders) with a
                    known ``kernel``, or, without one, with D3's fixed Gaussian guess (the blind
                    classical baseline of the D3 chapter); noise-to-signal ratio from
                    ``noise_sigma`` as there (:func:`repro.experiments.d3.wiener_nsr`).
    ``selfdeblur``  SelfDeblur with Kotera et al.'s three modifications
                    (:meth:`repro.selfdeblur.SelfDeblurConfig.kotera`), blind: needs
                    ``kernel_size``, estimates the kernel. ``iterations`` of the last scale
                    (default: the profile's, every other count scaled alike); ``variant``
                    "original" runs SelfDeblur without the modifications (eq. (6)).
    ``kerneldiff``  Kernel-Diff (:mod:`repro.kerneldiff`): the kernel sampled by guided reverse
                    diffusion (Algorithm 1, with the Stage II refinement) with the ε-network and
                    the learned non-blind solver F trained by the Kernel-Diff chapters for
                    ``profile``, then x̂ = F(y, k̂). The model has one image size and one kernel
                    size (:func:`kerneldiff_sizes`; smoke 32/9, quick 64/16, paper 256/64): the
                    kernel is estimated on the centre crop of the model's image size (a smaller
                    image, of more than half that size, is extended by reflection to it) and the
                    whole image restored with it; ``kernel_size``, if given, must be the model's.
                    Grey images are sampled as three equal channels and averaged back.
                    ``steps``: reverse steps (default: the profile's; fewer use the strided
                    sampler with the chapter's η). ``samples``: draw that many kernels and keep
                    the one with the lowest reblurring residual
                    (:func:`repro.kerneldiff.choose_by_residual`; default 1, the paper's sampler).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import kerneldiff as kd
from . import profiles
from ._checks import check_choice, check_positive, check_tensor, is_int
from ._io import load_checkpoint
from .data import read_image
from .dil import deblur_drk
from .experiments import d3
from .experiments import kerneldiff as kd_experiments
from .experiments.evaluation import centre_crop
from .experiments.solver import load_learned_wiener, solver_path
from .kernels import gaussian
from .nonblind import wiener
from .selfdeblur import SelfDeblurConfig, crop_to_observation, run_selfdeblur
from .profiles import Profile
from .store import Store

MIN_SIDE = 16
"""Smallest image side any method accepts (pixels)."""
MAX_PIXELS = 64_000_000
"""Largest image (H · W) accepted: beyond it the FFT buffers of one channel alone pass 1 GB."""


@dataclass(frozen=True)
class Method:
    """One deblurring method: its function, a one-line description, whether it estimates the
    kernel, whether ``kernel_size`` is required, the extra keyword options it accepts, and
    whether ``kernel_size`` must be odd (False: the method checks the sizes it supports)."""

    name: str
    fn: Callable
    summary: str
    estimates_kernel: bool = False
    needs_kernel_size: bool = False
    options: tuple[str, ...] = field(default_factory=tuple)
    odd_kernel: bool = True


METHODS: dict[str, Method] = {}
"""name → :class:`Method`, in registration order."""


def register(name: str, summary: str, estimates_kernel: bool = False, needs_kernel_size: bool = False,
             options: tuple[str, ...] = (), odd_kernel: bool = True):
    """Decorator adding ``fn`` to :data:`METHODS` under ``name``."""

    def add(fn: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = Method(name, fn, summary, estimates_kernel, needs_kernel_size, tuple(options), odd_kernel)
        return fn

    return add


def check_device(device) -> torch.device:
    """``device`` as a torch.device: "cpu", or "cuda" only where a CUDA device is available."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}") from None
    check_choice(device.type, "device", ("cpu", "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA device is available (use --device cpu)")
    return device


def check_image(y: torch.Tensor, name: str = "image") -> torch.Tensor:
    """One grey or RGB image (1, 1 or 3, H, W) in [0, 1] of a supported size."""
    check_tensor(y, name, (4,))
    if y.shape[0] != 1 or y.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be one grey or RGB image (1, 1 or 3, H, W), got shape {tuple(y.shape)}")
    H, W = y.shape[-2:]
    if min(H, W) < MIN_SIDE or H * W > MAX_PIXELS:
        raise ValueError(f"unsupported image size {W}x{H}: each side must be at least {MIN_SIDE} pixels and the "
                         f"image at most {MAX_PIXELS // 1_000_000} megapixels")
    if y.min() < 0 or y.max() > 1:
        raise ValueError(f"{name} values must lie in [0, 1], got [{y.min().item():g}, {y.max().item():g}]")
    return y


def _check_kernel_fits(kh: int, kw: int, y: torch.Tensor) -> None:
    H, W = y.shape[-2:]
    if kh >= H or kw >= W:
        raise ValueError(f"the kernel ({kw}x{kh}) must be smaller than the image ({W}x{H})")


def deblur(name: str, y: torch.Tensor, *, kernel_size: int | None = None, device="cpu", seed: int = 0,
           profile: str = "quick", progress: bool = True, store: Store | None = None,
           **options) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the method ``name`` of :data:`METHODS` on ``y`` (1, C, H, W) after checking every
    argument; returns ``(x_hat, k_hat or None)`` on the CPU, x̂ float32 in [0, 1] with y's shape.
    The trained methods read the models of ``profile`` from ``store`` (default
    :meth:`repro.store.Store.default`)."""
    check_choice(name, "method", METHODS)
    method = METHODS[name]
    check_image(y, "image")
    settings = profiles.get(profile)
    device = check_device(device)
    if not is_int(seed, 0):
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if kernel_size is not None:
        if not (is_int(kernel_size, 3) and (kernel_size % 2 == 1 or not method.odd_kernel)):
            odd = " odd" if method.odd_kernel else ""
            raise ValueError(f"kernel size must be an{odd} int >= 3, got {kernel_size!r}")
        _check_kernel_fits(kernel_size, kernel_size, y)
    elif method.needs_kernel_size:
        raise ValueError(f"method {name!r} needs a kernel size (--kernel-size N, odd)")
    unknown = sorted(k for k, v in options.items() if v is not None and k not in method.options)
    if unknown:
        raise ValueError(f"method {name!r} does not take the option(s) {unknown}; it takes {list(method.options)}")
    options = {k: v for k, v in options.items() if v is not None}
    x_hat, k_hat = method.fn(y.float(), kernel_size=kernel_size, device=device, seed=seed, profile=settings,
                             progress=progress, store=Store.resolve(store), **options)
    x_hat = x_hat.detach().cpu().float().clamp(0, 1).reshape(y.shape)
    return x_hat, None if k_hat is None else k_hat.detach().cpu().float()


# --------------------------------------------------------------------------------------------
# the methods
# --------------------------------------------------------------------------------------------


@register("drk", "D3: the full-DIL Deep Restoration Kernel trained by the D3 chapters (mild blur, no kernel)")
def _drk(y, *, kernel_size, device, seed, profile, progress, store):
    drk = d3.load_trained_drk(profile, "full", store)
    return deblur_drk(y.to(device), drk.to(device)), None


def load_kernel(path) -> torch.Tensor:
    """A blur kernel from a file: ``.npy`` (a 2-D array, the exact values) or an image (its grey
    values); normalised to sum 1. ValueError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such kernel file")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} is not a readable .npy array ({err})") from None
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{path}: a kernel must be a 2-D numeric array, got {array.dtype} {array.shape}")
        kernel = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    else:
        kernel = read_image(path, gray=True)[0].double()
    if not torch.isfinite(kernel).all() or kernel.sum() <= 0 or (kernel < 0).any():
        raise ValueError(f"{path}: a kernel must be finite and non-negative with a positive sum")
    return (kernel / kernel.sum()).float()


@register("wiener", "Wiener deconvolution with a known kernel (--kernel), or blind with D3's fixed Gaussian guess",
          options=("kernel", "noise_sigma"))
def _wiener(y, *, kernel_size, device, seed, profile, progress, store, kernel=None, noise_sigma=0.01):
    if kernel is None:
        kernel = gaussian(kernel_size or 11, d3.GUESS_SIGMA)
    elif not isinstance(kernel, torch.Tensor):
        kernel = load_kernel(kernel)
    check_tensor(kernel, "kernel", (2,))
    _check_kernel_fits(*kernel.shape, y)
    nsr = d3.wiener_nsr(check_positive(noise_sigma, "noise_sigma", allow_zero=True))
    return wiener(y.to(device), kernel.to(device=device, dtype=y.dtype), nsr), None


@register("selfdeblur", "SelfDeblur improved by Kotera et al. (blind; needs --kernel-size; estimates the kernel)",
          estimates_kernel=True, needs_kernel_size=True, options=("iterations", "variant"))
def _selfdeblur(y, *, kernel_size, device, seed, profile, progress, store, iterations=None, variant="improved"):
    check_choice(variant, "variant", ("improved", "original"))
    config = SelfDeblurConfig.kotera() if variant == "improved" else SelfDeblurConfig()
    if iterations is None:
        scale = profile.selfdeblur.iteration_scale
    else:
        if not is_int(iterations, 1):
            raise ValueError(f"iterations must be a positive int, got {iterations!r}")
        scale = iterations / config.iterations
    result = run_selfdeblur(y, kernel_size, config.scaled(scale), seed=seed, device=device, progress=progress)
    return crop_to_observation(result.x_hat, kernel_size)[:1], result.k_hat[0]


def kerneldiff_train_command(profile: Profile) -> str:
    """The shell commands that train Kernel-Diff's solver F and ε-network for ``profile``."""
    return (f"repro train solver --profile {profile.name} && "
            f"repro train kerneldiff --profile {profile.name}")


_KERNELDIFF_CACHE: dict = {}


def load_kerneldiff(profile: Profile, device="cpu", store: Store | None = None):
    """(ε-network (EMA weights), solver F, profile settings) trained by the Kernel-Diff chapters
    for ``profile``, read from ``<store>/<profile>/kerneldiff/`` without training anything.

    ``FileNotFoundError`` naming :func:`kerneldiff_train_command` when a model is missing or only
    partly trained; ``ValueError`` when a file is corrupt or of another configuration. Kept in
    memory while the files are unchanged (one load for many images)."""
    settings = profile.kerneldiff
    device = torch.device(device)
    store = Store.resolve(store)
    folder = store.folder(profile, kd_experiments.CHAPTER)
    path, solver_file = folder / kd_experiments.MODEL_FILE, solver_path(profile, store)
    train = f"train it with: {kerneldiff_train_command(profile)}"
    for file, what in ((path, "Kernel-Diff ε-network"), (solver_file, "Kernel-Diff solver F")):
        if not file.exists():
            raise FileNotFoundError(f"no trained {what} for profile {profile.name!r} ({file} is missing); {train}")
    stamp = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in (path, solver_file))
    key = (str(folder.resolve()), profile.name, str(device))
    if key in _KERNELDIFF_CACHE and _KERNELDIFF_CACHE[key][0] == stamp:
        return _KERNELDIFF_CACHE[key][1]
    state = load_checkpoint(path)
    if not isinstance(state, dict) or "ema" not in state:
        raise ValueError(f"{path} is not a Kernel-Diff checkpoint; delete it and {train}")
    if state.get("step") != settings.train.steps:
        raise FileNotFoundError(f"the Kernel-Diff ε-network of profile {profile.name!r} is only partly trained ({path}: "
                                f"step {state.get('step')} of {settings.train.steps}); {train}")
    model = kd_experiments.trained_model(profile, device, progress=False, store=store).ema  # finished: loaded
    solver_model = load_learned_wiener(profile, device, store).requires_grad_(False)

    def solver(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return solver_model(y, k)

    _KERNELDIFF_CACHE[key] = (stamp, (model, solver, settings))
    return model, solver, settings


def kerneldiff_sizes(profile: Profile) -> tuple[int, int]:
    """(image side, kernel side) of the Kernel-Diff model of ``profile`` (no file is read)."""
    unet = kd_experiments.unet_config(profile)
    return unet.image_size, unet.kernel_size


@register("kerneldiff", "Kernel-Diff: guided diffusion sampling of the kernel with the chapters' trained model and "
          "solver (blind; estimates the kernel; the model's kernel size)", estimates_kernel=True,
          options=("steps", "samples"), odd_kernel=False)
def _kerneldiff(y, *, kernel_size, device, seed, profile, progress, store, steps=None, samples=1):
    image_size, size = kerneldiff_sizes(profile)
    if kernel_size is not None and kernel_size != size:
        raise ValueError(f"the Kernel-Diff model of profile {profile.name!r} estimates {size}x{size} kernels only; "
                         f"omit the kernel size or pass {size}")
    H, W = y.shape[-2:]
    if 2 * min(H, W) <= image_size:
        raise ValueError(f"unsupported image size {W}x{H}: the Kernel-Diff model of profile {profile.name!r} needs "
                         f"images of more than {image_size // 2} pixels per side (it sees {image_size}x{image_size})")
    for name, value in (("steps", steps), ("samples", samples)):
        if value is not None and not is_int(value, 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    model, solver, settings = load_kerneldiff(profile, device, store)
    schedule = kd.Schedule()
    steps = settings.sample_steps if steps is None else min(steps, schedule.T)
    eta = settings.eta(steps, schedule.T)
    rgb = y.expand(-1, 3, -1, -1) if y.shape[1] == 1 else y
    rgb = rgb.to(device=device, dtype=torch.float32)
    crop = centre_crop(rgb, min(H, image_size), min(W, image_size))
    top, left = (image_size - crop.shape[-2]) // 2, (image_size - crop.shape[-1]) // 2
    crop = torch.nn.functional.pad(crop, (left, image_size - crop.shape[-1] - left, top,
                                          image_size - crop.shape[-2] - top), mode="reflect")
    result = kd.sample(model, crop, solver, guided=True, steps=steps, eta=eta, n_samples=samples, seed=seed,
                       schedule=schedule, max_batch=kd.CPU_MAX_BATCH if torch.device(device).type == "cpu" else None,
                       progress=progress)
    k_hat = kd.choose_by_residual(result, samples)[0][0]  # one sample: that one
    with torch.no_grad():
        x_hat = solver(rgb, k_hat[None, None]).clamp(0, 1)
    if y.shape[1] == 1:
        x_hat = x_hat.mean(dim=1, keepdim=True)
    return x_hat, k_hat
