"""Tests of repro.kernels: generators (Gaussian, RKG, motion) and kernel utilities."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from repro import kernels as K


def covariance(k: torch.Tensor) -> np.ndarray:
    """Second central moments [[E xx, E xy], [E xy, E yy]] of a kernel (x = column, y = row)."""
    k = k.double().numpy()
    k = k / k.sum()
    rows, cols = np.indices(k.shape)
    y = rows - (rows * k).sum()
    x = cols - (cols * k).sum()
    return np.array([[(x * x * k).sum(), (x * y * k).sum()], [(x * y * k).sum(), (y * y * k).sum()]])


def assert_is_kernel(k: torch.Tensor, shape, dtype=torch.float32):
    assert k.shape == torch.Size(shape)
    assert k.dtype == dtype
    assert k.device.type == "cpu"
    assert bool((k >= 0).all())
    sums = k.double().sum(dim=(-2, -1))
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def distance_to_origin(k: torch.Tensor) -> torch.Tensor:
    """Per kernel, the largest per-axis distance between the centre of mass and the origin."""
    kh, kw = k.shape[-2:]
    origin = torch.tensor([kh // 2, kw // 2], dtype=torch.float64)
    return (K.center_of_mass(k.double()) - origin).abs().amax(dim=-1)


# --------------------------------------------------------------------------------------------
# Gaussians
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,sigma", [(7, 1.3), ((5, 8), 2.0), (4, 0.7)])
def test_gaussian_matches_closed_form(size, sigma):
    h, w = (size, size) if isinstance(size, int) else size
    y, x = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    expected = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    expected /= expected.sum()
    k = K.gaussian(size, sigma, dtype=torch.float64)
    assert k.dtype == torch.float64
    np.testing.assert_allclose(k.numpy(), expected, rtol=1e-12, atol=1e-15)
    assert tuple(np.unravel_index(k.argmax().item(), (h, w))) == (h // 2, w // 2)


def test_gaussian_defaults_and_symmetry():
    k = K.gaussian(9, 1.5)
    assert_is_kernel(k, (9, 9))
    assert torch.equal(k, k.flip(-1)) and torch.equal(k, k.flip(-2)) and torch.equal(k, k.T)


def test_anisotropic_with_equal_sigmas_is_isotropic():
    iso = K.gaussian(11, 1.7, dtype=torch.float64)
    for theta in (0.0, 0.7, 2.5):
        aniso = K.anisotropic_gaussian(11, 1.7, 1.7, theta, dtype=torch.float64)
        torch.testing.assert_close(aniso, iso, rtol=0, atol=1e-14)


def test_anisotropic_orientation_convention():
    def kernel(theta):
        return K.anisotropic_gaussian(15, 3.0, 1.0, theta, dtype=torch.float64)

    # theta and theta + pi describe the same axis
    torch.testing.assert_close(kernel(0.4), kernel(0.4 + math.pi), rtol=0, atol=1e-14)
    # theta = pi/2 turns the horizontal kernel of theta = 0 into a vertical one: the transpose
    torch.testing.assert_close(kernel(math.pi / 2), kernel(0.0).T, rtol=0, atol=1e-14)
    # theta = 0: spread along x (the columns) > along y (the rows)
    cov = covariance(kernel(0.0))
    assert cov[0, 0] > 5 * cov[1, 1]
    # theta = pi/4 goes from +x towards +y (down the rows): x and y positively correlated,
    # i.e. the kernel runs from top-left to bottom-right on a displayed image
    assert covariance(kernel(math.pi / 4))[0, 1] > 1.0
    assert covariance(kernel(-math.pi / 4))[0, 1] < -1.0


def test_anisotropic_second_moments_match_requested_covariance():
    sigma1, sigma2, theta = 4.0, 2.0, 0.5
    k = K.anisotropic_gaussian(61, sigma1, sigma2, theta, dtype=torch.float64)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    expected = rot @ np.diag([sigma1**2, sigma2**2]) @ rot.T
    np.testing.assert_allclose(covariance(k), expected, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Random Kernel Gallery and mild-blur test kernels
# --------------------------------------------------------------------------------------------


def test_rkg_default_gallery():
    gallery, params = K.random_kernel_gallery(return_params=True)
    assert_is_kernel(gallery, (2400, 11, 11))
    assert set(params) == {"lambda1", "lambda2", "theta"}
    for name in ("lambda1", "lambda2"):
        assert params[name].shape == (2400,)
        assert params[name].min() >= 0.35 and params[name].max() <= 6.0
        # uniform draws fill the range
        assert params[name].min() < 0.4 and params[name].max() > 5.9
    assert params["theta"].min() >= 0.0 and params["theta"].max() < math.pi
    assert float(distance_to_origin(gallery).max()) <= 0.5


def test_rkg_seeded_determinism():
    a = K.random_kernel_gallery(50, seed=7)
    b = K.random_kernel_gallery(50, seed=7)
    c = K.random_kernel_gallery(50, seed=np.random.default_rng(7))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, K.random_kernel_gallery(50, seed=8))
    # float64 output is the same draw
    torch.testing.assert_close(K.random_kernel_gallery(50, seed=7, dtype=torch.float64).float(), a)


def test_rkg_kernels_follow_their_parameters():
    clean, params = K.random_kernel_gallery(
        40, size=13, seed=3, noise=0.0, return_params=True, dtype=torch.float64
    )
    for i in (0, 17, 39):
        sigma1, sigma2 = math.sqrt(params["lambda1"][i]), math.sqrt(params["lambda2"][i])
        expected = K.anisotropic_gaussian(13, sigma1, sigma2, params["theta"][i], torch.float64)
        torch.testing.assert_close(clean[i], expected, rtol=0, atol=1e-14)
    # the noise is multiplicative, per pixel, within x(1 +- 0.25) before renormalisation: the same
    # seed draws the same parameters, so noisy / clean spans at most a factor 1.25 / 0.75
    noisy = K.random_kernel_gallery(40, size=13, seed=3, noise=0.25, dtype=torch.float64)
    ratio = (noisy / clean).flatten(1)
    spread = ratio.amax(dim=1) / ratio.amin(dim=1)
    assert bool((spread <= 1.25 / 0.75 + 1e-9).all()) and bool((spread > 1.3).all())


def test_mild_blur_kernel_uses_eigenvalue_bins():
    assert K.MILD_BLUR_VARIANCE_BINS == ((0.175, 3.0), (3.0, 6.0), (6.0, 9.0))
    k = K.mild_blur_kernel(15, seed=11)
    assert_is_kernel(k, (15, 15))
    assert torch.equal(k, K.mild_blur_kernel(15, seed=11))
    assert torch.equal(k, K.random_kernel_gallery(1, 15, seed=11, eigenvalue_range=(0.175, 3.0))[0])
    # "variance" = covariance eigenvalue: the clean kernel's covariance eigenvalues lie in the bin
    for seed in range(5):
        clean = K.mild_blur_kernel(31, seed, variance_range=(3.0, 6.0), noise=0.0, dtype=torch.float64)
        eigenvalues = np.linalg.eigvalsh(covariance(clean))
        assert eigenvalues.min() >= 3.0 - 1e-3 and eigenvalues.max() <= 6.0 + 1e-3


# --------------------------------------------------------------------------------------------
# motion kernels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, (16, 24), 11])
def test_borodenko_kernel_properties(size):
    shape = (size, size) if isinstance(size, int) else size
    for intensity in (0.3, 0.7, 1.0):
        for seed in range(4):
            k = K.motion_kernel_borodenko(size, intensity, seed)
            assert_is_kernel(k, shape)
            assert int((k > 0).sum()) > 1  # not a delta
            assert float(distance_to_origin(k)) <= 0.5 + 1e-9


def test_borodenko_determinism():
    a = K.motion_kernel_borodenko(48, 0.6, seed=5)
    assert torch.equal(a, K.motion_kernel_borodenko(48, 0.6, seed=5))
    assert torch.equal(a, K.motion_kernel_borodenko(48, 0.6, seed=np.random.default_rng(5)))
    assert not torch.equal(a, K.motion_kernel_borodenko(48, 0.6, seed=6))
    torch.manual_seed(0)
    b = K.motion_kernel_borodenko(48, 0.6, seed=5, dtype=torch.float64)
    torch.testing.assert_close(b.float(), a)


def test_borodenko_zero_intensity_is_a_straight_segment():
    # intensity 0: every step has direction 0 before the global rotation
    for seed in range(3):
        eigenvalues = np.linalg.eigvalsh(covariance(K.motion_kernel_borodenko(64, 0.0, seed)))
        assert eigenvalues[0] < 0.05 * eigenvalues[1]


def test_borodenko_step_lengths_follow_truncated_beta():
    rng = np.random.default_rng(0)
    scale = 10.0
    steps = K._borodenko_step_lengths(rng, 600.0, scale)  # no truncation: path >> one step
    assert steps.sum() >= 600.0 > steps[:-1].sum()
    assert stats.kstest(steps / scale, stats.beta(1, 30).cdf).pvalue > 0.01
    short = K._borodenko_step_lengths(rng, 0.2, scale)  # every step must be shorter than 0.2
    assert short.max() < 0.2 and short.sum() >= 0.2 > short[:-1].sum()


def test_boracchi_foi_kernel_properties():
    for size in (64, 21):
        for seed in range(3):
            k = K.motion_kernel_boracchi_foi(size, seed)
            assert_is_kernel(k, (size, size))
            assert int((k > 1e-4).sum()) > 1
            assert float(distance_to_origin(k)) <= 1e-4  # bilinear splatting keeps the mean
    assert_is_kernel(K.motion_kernel_boracchi_foi((20, 30), 0), (20, 30))


def test_boracchi_foi_determinism():
    a = K.motion_kernel_boracchi_foi(32, seed=4)
    assert torch.equal(a, K.motion_kernel_boracchi_foi(32, seed=4))
    assert torch.equal(a, K.motion_kernel_boracchi_foi(32, seed=np.random.default_rng(4)))
    assert not torch.equal(a, K.motion_kernel_boracchi_foi(32, seed=5))


def test_boracchi_foi_straight_trajectory_and_exposure():
    # anxiety 0: a straight, uniformly sampled segment of length L; its variance along the segment
    # is L^2 / 12, plus about 1/6 px^2 per axis from bilinear splatting; half the exposure
    # records half the segment
    length = 30.0
    for exposure in (1.0, 0.5):
        k = K.motion_kernel_boracchi_foi(
            64, seed=2, exposure=exposure, anxiety=0.0, max_length=length, dtype=torch.float64
        )
        eigenvalues = np.linalg.eigvalsh(covariance(k))
        assert eigenvalues[1] == pytest.approx((exposure * length) ** 2 / 12, rel=0.03)
        assert eigenvalues[0] < 0.3
        assert float(distance_to_origin(k)) <= 1e-9


# --------------------------------------------------------------------------------------------
# utilities
# --------------------------------------------------------------------------------------------


def test_normalize_batched():
    k = torch.rand(2, 3, 5, 4, dtype=torch.float64) + 0.1
    out = K.normalize(k)
    torch.testing.assert_close(out.sum(dim=(-2, -1)), torch.ones(2, 3, dtype=torch.float64))
    torch.testing.assert_close(out * k.sum(dim=(-2, -1), keepdim=True), k)


def test_center_of_mass_matches_scipy():
    k = torch.rand(3, 6, 9, dtype=torch.float64)
    com = K.center_of_mass(k)
    assert com.shape == (3, 2)
    for i in range(3):
        np.testing.assert_allclose(com[i].numpy(), ndimage.center_of_mass(k[i].numpy()), rtol=1e-12)


def test_recenter_moves_shifted_deltas_back_and_keeps_the_sum():
    k = torch.zeros(3, 9, 8)
    k[0, 1, 7] = 1.0
    k[1, 4, 4] = 1.0
    k[2, 8, 0] = 2.5
    out = K.recenter(k)
    expected = torch.zeros(3, 9, 8)
    expected[:2, 4, 4] = 1.0
    expected[2, 4, 4] = 2.5
    assert torch.equal(out, expected)
    blob = torch.roll(K.gaussian(15, 1.2), shifts=(3, -2), dims=(0, 1)) * 3.0
    moved = K.recenter(blob)
    assert torch.equal(moved, K.gaussian(15, 1.2) * 3.0)


def test_recenter_subpixel_is_exact():
    blob = ndimage.shift(K.gaussian(21, 2.0, dtype=torch.float64).numpy(), (2.3, -1.7), order=1)
    blob = torch.from_numpy(blob).expand(2, 21, 21).clone()
    blob[1] *= 2.0
    out = K.recenter(blob, subpixel=True)
    assert bool((out >= 0).all())
    torch.testing.assert_close(out.sum(dim=(-2, -1)), blob.sum(dim=(-2, -1)))
    assert float(distance_to_origin(out).max()) < 1e-9
    assert float(distance_to_origin(K.recenter(blob)).max()) <= 0.5


def test_recenter_is_differentiable():
    # the shift is computed without gradient; the integer recentring is then a permutation, so
    # the gradient of <recenter(k), w> is w moved back
    k = 1e-4 * torch.rand(7, 7, dtype=torch.float64)
    k[1, 2] = 1.0
    k.requires_grad_(True)
    weights = torch.rand(7, 7, dtype=torch.float64)
    (K.recenter(k) * weights).sum().backward()
    assert torch.equal(k.grad, torch.roll(weights, shifts=(-2, -1), dims=(0, 1)))
    k.grad = None
    (K.recenter(k, subpixel=True) * weights).sum().backward()
    assert bool(torch.isfinite(k.grad).all()) and k.grad.sum().item() == pytest.approx(weights.sum().item())


@pytest.mark.parametrize(
    "kernel_shape,size", [((5, 5), (9, 9)), ((4, 6), (7, 9)), ((5, 4), (8, 10)), ((3, 3), 3)]
)
def test_pad_crop_round_trip_keeps_the_origin(kernel_shape, size):
    k = torch.rand(2, *kernel_shape)
    padded = K.pad_to(k, size)
    big = (size, size) if isinstance(size, int) else size
    assert padded.shape == (2, *big)
    assert torch.equal(K.crop_to(padded, kernel_shape), k)
    assert padded.sum() == pytest.approx(k.sum().item(), rel=1e-6)
    delta = torch.zeros(kernel_shape)
    delta[kernel_shape[0] // 2, kernel_shape[1] // 2] = 1.0
    assert K.pad_to(delta, size)[big[0] // 2, big[1] // 2] == 1.0


@pytest.mark.parametrize("shape", [(3, 3), (4, 4), (4, 5), (5, 2)])
def test_flip_is_the_adjoint_kernel(shape):
    rng = np.random.default_rng(1)
    x, k = rng.random((9, 10)), rng.random(shape)
    flipped = K.flip(torch.from_numpy(k)).numpy()
    expected_shape = tuple(n + 1 - n % 2 for n in shape)
    assert flipped.shape == expected_shape
    # scipy's even-size convention matches ours (origin at n // 2)
    np.testing.assert_allclose(
        ndimage.correlate(x, flipped, mode="constant"), ndimage.convolve(x, k, mode="constant"), atol=1e-12
    )
    if shape[0] % 2 and shape[1] % 2:
        assert np.array_equal(flipped, k[::-1, ::-1])
        assert torch.equal(K.flip(K.flip(torch.from_numpy(k))), torch.from_numpy(k))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_utilities_on_cuda():
    k = torch.rand(2, 7, 8, device="cuda")
    cpu = k.cpu()
    torch.testing.assert_close(K.normalize(k).cpu(), K.normalize(cpu))
    torch.testing.assert_close(K.center_of_mass(k).cpu(), K.center_of_mass(cpu))
    torch.testing.assert_close(K.recenter(k, subpixel=True).cpu(), K.recenter(cpu, subpixel=True))
    assert torch.equal(K.flip(k).cpu(), K.flip(cpu))
    assert torch.equal(K.crop_to(K.pad_to(k, 11), (7, 8)).cpu(), cpu)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: K.gaussian(5, -1.0), "sigma"),
        (lambda: K.gaussian(5, 0.0), "sigma"),
        (lambda: K.gaussian(0, 1.0), "size"),
        (lambda: K.gaussian((5, 0), 1.0), "size"),
        (lambda: K.gaussian((5,), 1.0), "size"),
        (lambda: K.gaussian(5.0, 1.0), "size"),
        (lambda: K.gaussian(5, 1.0, dtype=torch.float16), "dtype"),
        (lambda: K.anisotropic_gaussian(5, 1.0, -2.0, 0.0), "sigma2"),
        (lambda: K.anisotropic_gaussian(5, 1.0, 1.0, float("nan")), "theta"),
        (lambda: K.random_kernel_gallery(0), "n"),
        (lambda: K.random_kernel_gallery(3, seed=-1), "seed"),
        (lambda: K.random_kernel_gallery(3, seed="a"), "seed"),
        (lambda: K.random_kernel_gallery(3, eigenvalue_range=(6.0, 0.35)), "eigenvalue_range"),
        (lambda: K.random_kernel_gallery(3, eigenvalue_range=(0.0, 1.0)), "eigenvalue_range"),
        (lambda: K.random_kernel_gallery(3, noise=1.0), "noise"),
        (lambda: K.mild_blur_kernel(11, 0, variance_range=(3.0,)), "variance_range"),
        (lambda: K.motion_kernel_borodenko(32, -0.1, 0), "intensity"),
        (lambda: K.motion_kernel_borodenko(32, 1.5, 0), "intensity"),
        (lambda: K.motion_kernel_borodenko(32, float("nan"), 0), "intensity"),
        (lambda: K.motion_kernel_borodenko(0, 0.5, 0), "size"),
        (lambda: K.motion_kernel_borodenko(32, 0.5, 1.5), "seed"),
        (lambda: K.motion_kernel_boracchi_foi(32, 0, dtype=torch.int32), "dtype"),
        (lambda: K.motion_kernel_boracchi_foi(32, 0, exposure=0.0), "exposure"),
        (lambda: K.motion_kernel_boracchi_foi(32, 0, exposure=1.2), "exposure"),
        (lambda: K.motion_kernel_boracchi_foi(32, 0, anxiety=-0.1), "anxiety"),
        (lambda: K.motion_kernel_boracchi_foi(32, 0, num_samples=1), "num_samples"),
        (lambda: K.normalize(torch.zeros(3, 3)), "not normalisable"),
        (lambda: K.normalize(torch.tensor([[1.0, -2.0]])), "not normalisable"),
        (lambda: K.normalize(torch.tensor([[1.0, float("nan")]])), "NaN"),
        (lambda: K.normalize(torch.ones(3)), "dimensions"),
        (lambda: K.normalize(torch.ones(3, 3, dtype=torch.int64)), "float32 or float64"),
        (lambda: K.center_of_mass(torch.zeros(2, 3, 3)), "not normalisable"),
        (lambda: K.recenter(torch.full((3, 3), float("inf"))), "NaN or Inf"),
        (lambda: K.recenter(torch.ones(3, 3), subpixel=1), "subpixel"),
        (lambda: K.pad_to(torch.ones(5, 5), 3), "at least"),
        (lambda: K.crop_to(torch.ones(5, 5), (7, 5)), "at most"),
        (lambda: K.flip([[1.0]]), "torch.Tensor"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
