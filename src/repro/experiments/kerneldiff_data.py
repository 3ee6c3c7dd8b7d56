"""The Kernel-Diff data sizes of each profile, shared by its experiments.

:class:`KernelDiffData` says, per profile, the kernel size, the crop size, the numbers of training
and test kernels, how many training images to load and the noise of the training pairs; the
solver (:mod:`repro.experiments.solver`), ε_θ and the test sets
(:mod:`repro.experiments.kerneldiff`) and the benchmark read the sizes from here, never elsewhere.
The data themselves (kernels, images, pairs) are made by :mod:`repro.synth`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_positive, check_positive_int
from ..synth import TEST_KERNEL_SEED, TRAIN_KERNEL_SEED, motion_kernels

# --------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelDiffData:
    """The data sizes of one profile, shared by every Kernel-Diff module.

    - ``kernel_size``: side of the (square) motion kernels, the diffusion model's sample size.
    - ``crop``: side of the square image crops for training *and* evaluation (the paper: 256).
    - ``n_train_kernels``: kernels of the :data:`TRAIN_KERNEL_SEED` stream used for training
      (the paper: 6,000).
    - ``n_test_kernels``: held-out kernels of the :data:`TEST_KERNEL_SEED` stream for the
      evaluation tables.
    - ``max_train_images``: how many BSDS500 train+test images to load (None: all 400).
    - ``noise_sigma``: standard deviation of the Gaussian noise added to the training pairs
      (the paper trains without noise).
    """

    name: str
    kernel_size: int
    crop: int
    n_train_kernels: int
    n_test_kernels: int
    max_train_images: int | None
    noise_sigma: float = 0.0

    def __post_init__(self):
        for name in ("kernel_size", "crop", "n_train_kernels", "n_test_kernels"):
            check_positive_int(getattr(self, name), f"KernelDiffData.{name}")
        check_positive_int(self.max_train_images, "KernelDiffData.max_train_images", allow_none=True)
        if 2 * (self.kernel_size // 2) >= self.crop:
            raise ValueError(f"KernelDiffData: kernel_size {self.kernel_size} is too large for crops of "
                             f"{self.crop} pixels (reflection padding needs kernel_size // 2 < crop / 2)")
        check_positive(self.noise_sigma, "KernelDiffData.noise_sigma", allow_zero=True)

    def train_kernels(self) -> torch.Tensor:
        """The training kernels of this profile, (n_train_kernels, ks, ks)."""
        return motion_kernels(self.n_train_kernels, self.kernel_size, TRAIN_KERNEL_SEED)

    def test_kernels(self) -> torch.Tensor:
        """The held-out test kernels of this profile, (n_test_kernels, ks, ks)."""
        return motion_kernels(self.n_test_kernels, self.kernel_size, TEST_KERNEL_SEED)


DATA_PROFILES = {
    # CI: tiny kernels and crops, a handful of images; seconds.
    "smoke": KernelDiffData("smoke", kernel_size=9, crop=32, n_train_kernels=256, n_test_kernels=8,
                            max_train_images=8),
    # this 2-core CPU: 16x16 kernels on 64x64 crops (a quarter of the paper's sizes per side).
    "quick": KernelDiffData("quick", kernel_size=16, crop=64, n_train_kernels=2000, n_test_kernels=32,
                            max_train_images=100),
    # a GPU: the paper's sizes (64x64 kernels, 256x256 crops, 6,000 kernels), all 400 images.
    "paper": KernelDiffData("paper", kernel_size=64, crop=256, n_train_kernels=6000, n_test_kernels=100,
                            max_train_images=None),
}


