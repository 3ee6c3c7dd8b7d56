"""The deblurring methods a user can run on their own image (``repro deblur``), in one registry.

Every method is a function

    fn(y, *, kernel_size, device, seed, profile, progress, **options) -> (x_hat, k_hat or None)

taking one blurred image ``y`` (1, C, H, W), C = 1 (grey) or 3 (RGB), float32 in [0, 1], and
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
                    ``noise_sigma`` as there (:func:`repro.dil.wiener_nsr`).
    ``selfdeblur``  SelfDeblur with Kotera et al.'s three modifications
                    (:meth:`repro.selfdeblur.SelfDeblurConfig.kotera`), blind: needs
                    ``kernel_size``, estimates the kernel. ``iterations`` of the last scale
                    (default: the profile's, every other count scaled alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ._checks import check_choice, check_positive, check_tensor
from .store import check_profile

MIN_SIDE = 16
"""Smallest image side any method accepts (pixels)."""
MAX_PIXELS = 64_000_000
"""Largest image (H · W) accepted: beyond it the FFT buffers of one channel alone pass 1 GB."""


@dataclass(frozen=True)
class Method:
    """One deblurring method: its function, a one-line description, whether it estimates the
    kernel, whether ``kernel_size`` is required, and the extra keyword options it accepts."""

    name: str
    fn: Callable
    summary: str
    estimates_kernel: bool = False
    needs_kernel_size: bool = False
    options: tuple[str, ...] = field(default_factory=tuple)


METHODS: dict[str, Method] = {}
"""name → :class:`Method`, in registration order."""


def register(name: str, summary: str, estimates_kernel: bool = False, needs_kernel_size: bool = False,
             options: tuple[str, ...] = ()):
    """Decorator adding ``fn`` to :data:`METHODS` under ``name``."""

    def add(fn: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = Method(name, fn, summary, estimates_kernel, needs_kernel_size, tuple(options))
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
           profile: str = "quick", progress: bool = True, **options) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the method ``name`` of :data:`METHODS` on ``y`` (1, C, H, W) after checking every
    argument; returns ``(x_hat, k_hat or None)`` on the CPU, x̂ float32 in [0, 1] with y's shape."""
    check_choice(name, "method", METHODS)
    method = METHODS[name]
    check_image(y, "image")
    check_profile(profile)
    device = check_device(device)
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if kernel_size is not None:
        if not (isinstance(kernel_size, int) and not isinstance(kernel_size, bool) and kernel_size >= 3
                and kernel_size % 2 == 1):
            raise ValueError(f"kernel size must be an odd int >= 3, got {kernel_size!r}")
        _check_kernel_fits(kernel_size, kernel_size, y)
    elif method.needs_kernel_size:
        raise ValueError(f"method {name!r} needs a kernel size (--kernel-size N, odd)")
    unknown = sorted(k for k, v in options.items() if v is not None and k not in method.options)
    if unknown:
        raise ValueError(f"method {name!r} does not take the option(s) {unknown}; it takes {list(method.options)}")
    options = {k: v for k, v in options.items() if v is not None}
    x_hat, k_hat = method.fn(y.float(), kernel_size=kernel_size, device=device, seed=seed, profile=profile,
                             progress=progress, **options)
    x_hat = x_hat.detach().cpu().float().clamp(0, 1).reshape(y.shape)
    return x_hat, None if k_hat is None else k_hat.detach().cpu().float()


# --------------------------------------------------------------------------------------------
# the methods
# --------------------------------------------------------------------------------------------


@register("drk", "D3: the full-DIL Deep Restoration Kernel trained by the D3 chapters (mild blur, no kernel)")
def _drk(y, *, kernel_size, device, seed, profile, progress):
    from . import dil

    drk = dil.load_trained_drk(profile, "full")
    return dil.deblur_drk(y.to(device), drk.to(device)), None


def load_kernel(path) -> torch.Tensor:
    """A blur kernel from a file: ``.npy`` (a 2-D array, the exact values) or an image (its grey
    values); normalised to sum 1. ValueError for anything else."""
    from pathlib import Path

    import numpy as np

    from .data import read_image

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
def _wiener(y, *, kernel_size, device, seed, profile, progress, kernel=None, noise_sigma=0.01):
    from . import dil
    from .kernels import gaussian
    from .nonblind import wiener

    if kernel is None:
        kernel = gaussian(kernel_size or 11, dil.GUESS_SIGMA)
    elif not isinstance(kernel, torch.Tensor):
        kernel = load_kernel(kernel)
    check_tensor(kernel, "kernel", (2,))
    _check_kernel_fits(*kernel.shape, y)
    nsr = dil.wiener_nsr(check_positive(noise_sigma, "noise_sigma", allow_zero=True))
    return wiener(y.to(device), kernel.to(device=device, dtype=y.dtype), nsr), None


@register("selfdeblur", "SelfDeblur improved by Kotera et al. (blind; needs --kernel-size; estimates the kernel)",
          estimates_kernel=True, needs_kernel_size=True, options=("iterations",))
def _selfdeblur(y, *, kernel_size, device, seed, profile, progress, iterations=None):
    from .selfdeblur import SelfDeblurConfig, crop_to_observation, run_selfdeblur

    config = SelfDeblurConfig.kotera()
    if iterations is None:
        from .selfdeblur_eval import get_profile

        scale = get_profile(profile).iteration_scale
    else:
        if not (isinstance(iterations, int) and not isinstance(iterations, bool) and iterations >= 1):
            raise ValueError(f"iterations must be a positive int, got {iterations!r}")
        scale = iterations / config.iterations
    result = run_selfdeblur(y, kernel_size, config.scaled(scale), seed=seed, device=device, progress=progress)
    return crop_to_observation(result.x_hat, kernel_size)[:1], result.k_hat[0]
