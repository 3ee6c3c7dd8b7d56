"""Synthetic blur data for Kernel-Diff: motion kernels, sharp crops, blurred pairs.

The training data of Kernel-Diff (FACTS.md, "Kernel-Diff"): motion kernels from Borodenko's
``motionblur`` generator with intensity ``0.2 + 0.8·U`` clipped to 0.99, recentred by their
centre of mass and normalised; sharp images as random crops with flips; the blurred image
``y = k ⊛ x`` (eq. 1 of the paper, noise-free by default) computed, as in the official code, with
reflection padding and the FFT, so that y has the size of x. Our sharp images are BSDS500
``train`` + ``test`` (the paper uses LSDIR, not available here); BSDS500 ``val`` (= BSD100) is the
test set of the evaluation chapter and is never used for training.

Everything the Kernel-Diff modules (``repro.kerneldiff``, ``repro.nonblind``,
``repro.alternating``) need to agree on lives here; the sizes of each profile are
:class:`repro.experiments.kerneldiff_data.KernelDiffData`:

- :func:`motion_kernels` with the two seed streams :data:`TRAIN_KERNEL_SEED` and
  :data:`TEST_KERNEL_SEED`: kernel ``i`` of a stream is a pure function of ``(seed, i)``, so a
  longer list extends a shorter one, and the test kernels are drawn from a stream the training
  never sees.
- :func:`training_images` (BSDS500 train + test via :mod:`repro.data`).
- :class:`BlurPairs`: mini-batches (y, x, k) that are a pure function of ``(seed, step)``, so a
  resumed training run sees exactly the batches an uninterrupted one would.
- :func:`blur_reflect`: the blur of the data model, differentiable, with one kernel per image.

Conventions: kernels are convolution kernels with the project's origin ``(ks//2, ks//2)`` (also
for even sizes, see :mod:`repro.ops`); ``blur_reflect`` is ``ops.blur(mode="reflect", op="conv",
method="fft")``.
"""

from __future__ import annotations

import numpy as np
import torch

from . import data, ops
from ._checks import check_positive, check_tensor
from .kernels import motion_kernel_borodenko, recenter

#: Seed of the training-kernel stream of :func:`motion_kernels`.
TRAIN_KERNEL_SEED = 20_230_001
#: Seed of the held-out test-kernel stream (a different stream: no test kernel is a training one).
TEST_KERNEL_SEED = 20_230_002

#: BSDS500 splits the sharp training images come from; ``val`` (BSD100) is the test set.
TRAINING_SPLITS = ("train", "test")


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------


def _check_int(value, name: str, minimum: int) -> int:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def motion_kernel(index: int, size: int, seed: int) -> torch.Tensor:
    """Kernel ``index`` of the stream ``seed``: (size, size) float32, centred, sums to 1.

    Intensity ``min(0.2 + 0.8·U, 0.99)`` (FACTS.md), then
    :func:`repro.kernels.motion_kernel_borodenko` with the same generator, seeded by
    ``SeedSequence([seed, index])``; recentred by its centre of mass (integer shift) and
    renormalised in float64.
    """
    index = _check_int(index, "index", 0)
    size = _check_int(size, "size", 1)
    seed = _check_int(seed, "seed", 0)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    intensity = min(0.2 + 0.8 * rng.uniform(), 0.99)
    k = recenter(motion_kernel_borodenko(size, intensity, rng, dtype=torch.float64))
    return (k / k.sum()).to(torch.float32)


def motion_kernels(n: int, size: int, seed: int) -> torch.Tensor:
    """``n`` motion kernels ``(n, size, size)`` float32 of the stream ``seed``.

    Kernel ``i`` is :func:`motion_kernel` ``(i, size, seed)``: non-negative, summing to 1, its
    centre of mass within 0.5 px of the origin ``(size//2, size//2)``. The first ``m`` kernels of
    ``motion_kernels(n, ...)`` are ``motion_kernels(m, ...)``. Use :data:`TRAIN_KERNEL_SEED` for
    training and :data:`TEST_KERNEL_SEED` for evaluation.
    """
    n = _check_int(n, "n", 1)
    size = _check_int(size, "size", 1)
    seed = _check_int(seed, "seed", 0)
    return torch.stack([motion_kernel(i, size, seed) for i in range(n)])


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def training_image_paths() -> list[str]:
    """Relative paths (in :mod:`repro.data`) of the sharp training images: BSDS500 train then test,
    each sorted by name; never ``val``."""
    return [path for split in TRAINING_SPLITS for path in data.bsds500(split)]


def training_images(max_images: int | None = None) -> list[torch.Tensor]:
    """The sharp training images, a list of (3, H, W) float32 tensors in [0, 1].

    The first ``max_images`` (default all 400) of :func:`training_image_paths` (BSDS500 train,
    then test; never val), read through :func:`repro.data.load_image` (needs the data mirror or
    the download cache).
    """
    paths = training_image_paths()
    if max_images is not None:
        max_images = _check_int(max_images, "max_images", 1)
        if max_images > len(paths):
            raise ValueError(f"max_images={max_images} but there are only {len(paths)} training images "
                             f"(BSDS500 train + test)")
        paths = paths[:max_images]
    return [data.load_image(path) for path in paths]


# --------------------------------------------------------------------------------------------
# the blur and the training pairs
# --------------------------------------------------------------------------------------------


def _as_batch_kernel(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, 1, kh, kw) → (B, kh, kw) so that one kernel acts on every channel of its image."""
    check_tensor(k, "k", (2, 3, 4))
    if k.ndim == 4 and k.shape[1] == 1 and x.ndim == 4 and x.shape[1] != 1:
        return k[:, 0]
    return k


def blur_reflect(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``k ⊛ x`` with reflection padding, the size of ``x``: Kernel-Diff's data model.

    ``x`` (B, C, H, W); ``k`` (B, 1, kh, kw) or (B, kh, kw) (one kernel per image, applied to all
    its channels), (B, C, kh, kw) or (kh, kw). This is :func:`repro.ops.blur` with
    ``mode="reflect", op="conv", method="fft"`` (the official code pads by reflection and
    multiplies in Fourier; here the padding is exactly what the kernel reads, so nothing wraps).
    Needs ``kh // 2 < H`` and ``kw // 2 < W``. Differentiable in x and k.
    """
    check_tensor(x, "x", (4,))
    return ops.blur(x, _as_batch_kernel(x, k), mode="reflect", op="conv", method="fft")


class BlurPairs:
    """Mini-batches of blurred/sharp pairs for training, a pure function of ``(seed, step)``.

    ``kernels`` (n, ks, ks), ``images`` a list of (3, H, W) tensors in [0, 1] (each at least
    ``crop`` on both sides), ``crop`` the side of the square crops, ``noise_sigma`` the standard
    deviation of white Gaussian noise added to y (then clipped to [0, 1]), ``seed`` the stream.

    :meth:`batch` draws, for each of its ``batch_size`` items, an image and a kernel uniformly
    (with replacement), a crop position uniformly, a horizontal and a vertical flip with
    probability 1/2 each, and blurs the crop with :func:`blur_reflect` (the paper takes
    random-resized crops of LSDIR; ours are plain crops of BSDS500, a stated reduction).
    """

    def __init__(self, kernels: torch.Tensor, images, crop: int, noise_sigma: float = 0.0, seed: int = 0):
        check_tensor(kernels, "kernels", (3,))
        if kernels.shape[-1] != kernels.shape[-2]:
            raise ValueError(f"kernels must be square (n, ks, ks), got shape {tuple(kernels.shape)}")
        self.crop = _check_int(crop, "crop", 1)
        if 2 * (kernels.shape[-1] // 2) >= self.crop:
            raise ValueError(f"kernels of size {kernels.shape[-1]} are too large for crops of {self.crop} "
                             f"pixels (reflection padding needs ks // 2 < crop / 2)")
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise ValueError("images must be a non-empty list of (3, H, W) tensors")
        for i, image in enumerate(images):
            check_tensor(image, f"images[{i}]", (3,))
            if image.shape[0] != 3:
                raise ValueError(f"images[{i}] must be RGB (3, H, W), got shape {tuple(image.shape)}")
            if min(image.shape[-2:]) < self.crop:
                raise ValueError(f"images[{i}] of shape {tuple(image.shape)} is smaller than the crop {self.crop}")
        self.kernels = kernels.detach().to(torch.float32).cpu()
        self.images = [image.detach().to(torch.float32).cpu() for image in images]
        self.noise_sigma = check_positive(noise_sigma, "noise_sigma", allow_zero=True)
        self.seed = _check_int(seed, "seed", 0)

    def __repr__(self) -> str:
        return (f"BlurPairs({len(self.kernels)} kernels {tuple(self.kernels.shape[1:])}, {len(self.images)} images, "
                f"crop={self.crop}, noise_sigma={self.noise_sigma}, seed={self.seed})")

    def batch(self, step: int, batch_size: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch of ``step``: ``(y, x, k)``, y and x (B, 3, crop, crop) in [0, 1], k (B, 1, ks, ks).

        Float32, on ``device`` (default CPU). Depends only on ``(seed, step, batch_size)`` and the
        data, never on earlier calls, so training can resume at any step.
        """
        step = _check_int(step, "step", 0)
        batch_size = _check_int(batch_size, "batch_size", 1)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, step]))
        crops, kernel_ids = [], rng.integers(len(self.kernels), size=batch_size)
        for image_id in rng.integers(len(self.images), size=batch_size):
            image = self.images[image_id]
            top = int(rng.integers(image.shape[-2] - self.crop + 1))
            left = int(rng.integers(image.shape[-1] - self.crop + 1))
            patch = image[:, top : top + self.crop, left : left + self.crop]
            flip_v, flip_h = rng.uniform(size=2) < 0.5
            if flip_v:
                patch = patch.flip(-2)
            if flip_h:
                patch = patch.flip(-1)
            crops.append(patch)
        x = torch.stack(crops)
        k = self.kernels[torch.from_numpy(kernel_ids)][:, None]
        y = blur_reflect(x, k)
        if self.noise_sigma > 0:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            y = (y + self.noise_sigma * torch.randn(y.shape, generator=generator)).clamp(0, 1)
        else:
            y = y.clamp(0, 1)  # FFT rounding only: the blur of [0, 1] data with a sum-1 kernel ≥ 0
        device = torch.device("cpu") if device is None else torch.device(device)
        return y.to(device), x.to(device), k.to(device)
