"""Tests of repro.synth: kernel streams, training images, deterministic blurred pairs, the blur."""

import os
from pathlib import Path

import pytest
import torch

from repro import profiles
from repro import data, ops, synth
from repro.kernels import center_of_mass
from repro.experiments import kerneldiff_data as kd_data

MIRROR = os.environ.get(data.MIRROR_ENV)
needs_mirror = pytest.mark.skipif(
    not MIRROR or not Path(MIRROR).is_dir(),
    reason=f"{data.MIRROR_ENV} is not set to the data mirror: tests reading BSDS500 are skipped",
)


def _images(n=3, seed=0, shape=(3, 40, 50)):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=g) for _ in range(n)]


def test_motion_kernels_are_normalised_centred_and_non_negative():
    for size in (9, 16):
        k = synth.motion_kernels(12, size, synth.TRAIN_KERNEL_SEED)
        assert k.shape == (12, size, size) and k.dtype == torch.float32
        assert (k >= 0).all()
        torch.testing.assert_close(k.sum(dim=(-2, -1)), torch.ones(12), rtol=0, atol=1e-6)
        assert (center_of_mass(k.double()) - size // 2).abs().max() <= 0.5 + 1e-6
        assert (k.flatten(1).max(dim=1).values < 1).all()  # not all deltas


def test_motion_kernels_streams_are_prefix_consistent_and_disjoint():
    train = synth.motion_kernels(20, 9, synth.TRAIN_KERNEL_SEED)
    assert torch.equal(synth.motion_kernels(5, 9, synth.TRAIN_KERNEL_SEED), train[:5])
    assert torch.equal(synth.motion_kernel(7, 9, synth.TRAIN_KERNEL_SEED), train[7])
    test = synth.motion_kernels(20, 9, synth.TEST_KERNEL_SEED)
    distances = torch.cdist(test.flatten(1), train.flatten(1))
    assert distances.min() > 1e-3
    assert synth.TRAIN_KERNEL_SEED != synth.TEST_KERNEL_SEED


def test_motion_kernels_errors():
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        synth.motion_kernels(0, 9, 0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        synth.motion_kernels(2, 9, -1)
    with pytest.raises(ValueError, match="size"):
        synth.motion_kernels(2, 2.5, 0)


def test_profiles_are_consistent():
    sizes = [(profiles.get(p).kerneldiff_data.kernel_size, profiles.get(p).kerneldiff_data.crop) for p in ("smoke", "quick", "paper")]
    assert sizes == [(9, 32), (16, 64), (64, 256)]
    assert profiles.get("paper").kerneldiff_data.n_train_kernels == 6000
    with pytest.raises(ValueError, match="profile must be one of"):
        profiles.get("huge").kerneldiff_data
    with pytest.raises(ValueError, match="too large for crops"):
        kd_data.KernelDiffData("x", kernel_size=33, crop=32, n_train_kernels=1, n_test_kernels=1, max_train_images=1)
    for bad in (0, True, 2.0):  # a bool is not a count
        with pytest.raises(ValueError, match="max_train_images must be None or a positive int"):
            kd_data.KernelDiffData("x", kernel_size=9, crop=32, n_train_kernels=1, n_test_kernels=1, max_train_images=bad)
    with pytest.raises(ValueError, match="KernelDiffData.crop must be a positive int, got 32.0"):
        kd_data.KernelDiffData("x", kernel_size=9, crop=32.0, n_train_kernels=1, n_test_kernels=1, max_train_images=None)
    assert kd_data.KernelDiffData("x", kernel_size=9, crop=32, n_train_kernels=1, n_test_kernels=1,
                                max_train_images=None).max_train_images is None
    k = profiles.get("smoke").kerneldiff_data.train_kernels()
    assert k.shape == (256, 9, 9)


def test_training_images_never_come_from_val(monkeypatch):
    paths = synth.training_image_paths()
    assert len(paths) == 400
    assert all(p.startswith(("bsds500/train/", "bsds500/test/")) for p in paths)
    assert not set(paths) & set(data.bsds500("val"))
    read = []
    monkeypatch.setattr(data, "load_image", lambda path, gray=False: read.append(path) or torch.zeros(3, 4, 4))
    images = synth.training_images(5)
    assert read == paths[:5] and len(images) == 5
    with pytest.raises(ValueError, match="only 400 training images"):
        synth.training_images(401)


@needs_mirror
def test_training_images_are_rgb_in_unit_range():
    (image,) = synth.training_images(1)
    assert image.dtype == torch.float32 and image.shape[0] == 3 and min(image.shape[1:]) == 321
    assert 0 <= image.min() and image.max() <= 1


def test_blur_pairs_depend_only_on_seed_and_step():
    kernels = synth.motion_kernels(6, 9, synth.TRAIN_KERNEL_SEED)
    pairs = synth.BlurPairs(kernels, _images(), crop=24, noise_sigma=0.01, seed=3)
    y5, x5, k5 = pairs.batch(5, 4)
    assert y5.shape == x5.shape == (4, 3, 24, 24) and k5.shape == (4, 1, 9, 9)
    assert 0 <= y5.min() and y5.max() <= 1
    # resume-equivalence: a fresh object, or one that has served other steps, gives the same batch
    pairs.batch(0, 4), pairs.batch(9, 2)
    fresh = synth.BlurPairs(kernels, _images(), crop=24, noise_sigma=0.01, seed=3)
    for a, b in zip(fresh.batch(5, 4), (y5, x5, k5)):
        assert torch.equal(a, b)
    assert not torch.equal(pairs.batch(6, 4)[1], x5)
    assert not torch.equal(synth.BlurPairs(kernels, _images(), 24, 0.01, seed=4).batch(5, 4)[1], x5)


def test_blur_pairs_are_crops_of_the_images_blurred_by_their_kernels():
    kernels = synth.motion_kernels(4, 9, synth.TRAIN_KERNEL_SEED)
    images = _images()
    y, x, k = synth.BlurPairs(kernels, images, crop=16, seed=1).batch(2, 8)
    torch.testing.assert_close(y, synth.blur_reflect(x, k).clamp(0, 1), rtol=0, atol=0)
    assert all(any(torch.equal(kb[0], kk) for kk in kernels) for kb in k)
    for patch in x:  # each crop (up to flips) is found in one of the images
        found = False
        for image in images:
            for variant in (patch, patch.flip(-1), patch.flip(-2), patch.flip(-1, -2)):
                windows = image.unfold(1, 16, 1).unfold(2, 16, 1)  # (3, nh, nw, 16, 16)
                match = (windows == variant[:, None, None]).all(dim=(0, 3, 4))
                found = found or bool(match.any())
        assert found


def test_blur_pairs_errors():
    kernels = synth.motion_kernels(2, 9, 0)
    with pytest.raises(ValueError, match="smaller than the crop"):
        synth.BlurPairs(kernels, _images(), crop=45)
    with pytest.raises(ValueError, match="too large for crops"):
        synth.BlurPairs(kernels, _images(), crop=8)
    with pytest.raises(ValueError, match="non-empty list"):
        synth.BlurPairs(kernels, [], crop=16)
    with pytest.raises(ValueError, match="RGB"):
        synth.BlurPairs(kernels, [torch.rand(1, 40, 40)], crop=16)
    with pytest.raises(ValueError, match="noise_sigma must be >= 0"):
        synth.BlurPairs(kernels, _images(), crop=16, noise_sigma=-1)
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        synth.BlurPairs(kernels, _images(), crop=16).batch(-1, 2)


def test_blur_reflect_equals_ops_blur_reflect():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 20, 22, generator=g)
    k = synth.motion_kernels(3, 8, 5)
    expected = torch.stack([ops.blur(x[i : i + 1], k[i], mode="reflect", method="direct")[0] for i in range(3)])
    torch.testing.assert_close(synth.blur_reflect(x, k[:, None]), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(synth.blur_reflect(x, k), expected, rtol=0, atol=1e-6)


def test_blur_reflect_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 2, 7, 6, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.rand(2, 1, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(synth.blur_reflect, (x, k))


def test_blur_reflect_errors():
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        synth.blur_reflect(torch.rand(3, 8, 8), torch.rand(3, 3))
    with pytest.raises(ValueError, match="too large for mode 'reflect'"):
        synth.blur_reflect(torch.rand(1, 3, 4, 4), torch.rand(1, 1, 9, 9))
    with pytest.raises(ValueError, match="batch size"):
        synth.blur_reflect(torch.rand(2, 3, 8, 8), torch.rand(3, 1, 3, 3))
