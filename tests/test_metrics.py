"""Tests for repro.metrics: agreement with scikit-image / brute force, identities, errors."""

import math
import statistics

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats
import torch
import torch.nn.functional as F
from skimage import data, metrics as skm, transform

from repro import metrics as M

SSIM_SKIMAGE = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def camera():
    """camera() in [0, 1], 128x128 (box-downscaled x4), float64 numpy."""
    return transform.downscale_local_mean(data.camera() / 255.0, (4, 4))


@pytest.fixture(scope="module")
def astronaut():
    """astronaut() in [0, 1], 128x128x3, float64 numpy (H, W, C)."""
    return transform.downscale_local_mean(data.astronaut() / 255.0, (4, 4, 1))


def degrade(img, seed, sigma=0.05):
    rng = np.random.default_rng(seed)
    blur = (0.8, 0.8, 0.0)[: img.ndim]  # not across colour channels
    return np.clip(ndi.gaussian_filter(img, blur) + sigma * rng.standard_normal(img.shape), 0, 1)


def to_torch(img, dtype):
    """numpy (H, W) or (H, W, C) -> torch (H, W) or (C, H, W)."""
    t = torch.from_numpy(np.ascontiguousarray(img)).to(dtype)
    return t.permute(2, 0, 1) if t.ndim == 3 else t


TOL = {torch.float64: (1e-6, 1e-4), torch.float32: (1e-3, 1e-4)}  # (psnr dB, ssim)


# ---------------------------------------------------------------------------- PSNR / SSIM
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["camera", "astronaut", "random_grey", "random_rgb"])
def test_psnr_ssim_match_skimage(name, dtype, request):
    if name.startswith("random"):
        shape = (40, 56) if name == "random_grey" else (40, 56, 3)
        ref = np.random.default_rng(1).random(shape)
    else:
        ref = request.getfixturevalue(name)
    est = degrade(ref, seed=2)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    ref_np, est_np = ref.astype(np_dtype), est.astype(np_dtype)
    channel_axis = 2 if ref.ndim == 3 else None
    want_psnr = skm.peak_signal_noise_ratio(ref_np, est_np, data_range=1)
    want_ssim = skm.structural_similarity(ref_np, est_np, channel_axis=channel_axis, **SSIM_SKIMAGE)
    x, r = to_torch(est, dtype), to_torch(ref, dtype)
    got_psnr, got_ssim = M.psnr(x, r), M.ssim(x, r)
    assert got_psnr.shape == () and got_ssim.shape == ()
    assert got_psnr.dtype == dtype and got_ssim.dtype == dtype
    tol_psnr, tol_ssim = TOL[dtype]
    assert abs(got_psnr.item() - want_psnr) < tol_psnr
    assert abs(got_ssim.item() - want_ssim) < tol_ssim
    assert 0.1 < want_ssim < 0.99  # a non-trivial comparison


def test_batched_metrics_are_per_item(astronaut):
    refs = np.stack([astronaut, astronaut[::-1]])
    ests = np.stack([degrade(astronaut, 3), degrade(astronaut[::-1], 4, sigma=0.1)])
    x = torch.from_numpy(ests).permute(0, 3, 1, 2)
    r = torch.from_numpy(refs).permute(0, 3, 1, 2)
    got_psnr, got_ssim = M.psnr(x, r), M.ssim(x, r)
    assert got_psnr.shape == (2,) and got_ssim.shape == (2,)
    for b in range(2):
        want_psnr = skm.peak_signal_noise_ratio(refs[b], ests[b], data_range=1)
        assert got_psnr[b].item() == pytest.approx(want_psnr, abs=1e-6)
        assert got_ssim[b].item() == pytest.approx(
            skm.structural_similarity(refs[b], ests[b], channel_axis=2, **SSIM_SKIMAGE), abs=1e-4
        )
    assert got_psnr[0] > got_psnr[1]  # the noisier item really is worse


def test_data_range(camera):
    est = degrade(camera, 5)
    x, r = torch.from_numpy(est), torch.from_numpy(camera)
    scaled = M.psnr(255 * x, 255 * r, data_range=255)
    assert scaled.item() == pytest.approx(M.psnr(x, r).item(), abs=1e-9)
    want = skm.structural_similarity(255 * camera, 255 * est, **{**SSIM_SKIMAGE, "data_range": 255})
    assert M.ssim(255 * x, 255 * r, data_range=255).item() == pytest.approx(want, abs=1e-6)


def test_identical_images():
    x = torch.rand(2, 3, 24, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.isinf(M.psnr(x, x)).all() and (M.psnr(x, x) > 0).all()
    assert torch.allclose(M.ssim(x, x), torch.ones(2, dtype=torch.float64), atol=1e-12)


def test_psnr_hand_value():
    ref = torch.zeros(10, 10)
    assert M.psnr(ref + 0.1, ref).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 20 dB


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_gradient(dtype, camera):
    r = torch.from_numpy(camera[:48, :48]).to(dtype)
    x = torch.from_numpy(degrade(camera[:48, :48], 6)).to(dtype).requires_grad_(True)
    loss = 1 - M.ssim(x, r)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # a small step against the gradient increases the SSIM (it is a usable loss)
    with torch.no_grad():
        better = M.ssim(x - 1e-3 * x.grad / x.grad.abs().max(), r)
    assert better > 1 - loss.detach()


def test_ssim_gradient_matches_skimage(camera):
    ref = camera[:40, :40]
    est = degrade(ref, 7)
    x = torch.from_numpy(est).requires_grad_(True)
    M.ssim(x, torch.from_numpy(ref)).backward()
    # skimage's analytic gradient is w.r.t. its second image, over the uncropped mean
    _, grad = skm.structural_similarity(ref, est, gradient=True, **SSIM_SKIMAGE)
    interior = slice(12, -12)  # skimage's gradient ignores the crop; compare deep inside
    n_full, n_crop = ref.size, (ref.shape[0] - 10) * (ref.shape[1] - 10)
    got = x.grad.numpy()[interior, interior] * n_crop / n_full
    np.testing.assert_allclose(got, grad[interior, interior], rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------- ISNR / error ratio
def test_isnr(camera):
    x = torch.from_numpy(camera)
    y = torch.from_numpy(degrade(camera, 8))
    assert M.isnr(y, y, x).item() == 0.0
    # halving the error everywhere gains 20 log10(2) dB
    x_hat = x + 0.5 * (y - x)
    assert M.isnr(x_hat, y, x).item() == pytest.approx(20 * math.log10(2), abs=1e-9)
    psnr_gain = M.psnr(x_hat, x) - M.psnr(y, x)
    assert M.isnr(x_hat, y, x).item() == pytest.approx(psnr_gain.item(), abs=1e-12)


def test_error_ratio():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64, generator=g)
    x_k = x + 0.01 * torch.randn(x.shape, dtype=torch.float64, generator=g)
    assert torch.allclose(M.error_ratio(x_k, x, x_k), torch.ones(3, dtype=torch.float64))
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(3, 1, 1, 1)
    got = M.error_ratio(x + scale * (x_k - x), x, x_k)
    assert torch.allclose(got, scale.flatten() ** 2)  # a ratio of squared errors (SSD)
    assert M.error_ratio(x[0], x[0], x_k[0]).shape == ()


# ---------------------------------------------------------------------------------- MNC
def mnc_brute_force(a, b):
    """max_g sum_t a(t) b(t + g) / (|a| |b|), double loop over all shifts with overlap."""
    best = -np.inf
    for gy in range(-(a.shape[0] - 1), b.shape[0]):
        for gx in range(-(a.shape[1] - 1), b.shape[1]):
            total = 0.0
            for ty in range(a.shape[0]):
                for tx in range(a.shape[1]):
                    by, bx = ty + gy, tx + gx
                    if 0 <= by < b.shape[0] and 0 <= bx < b.shape[1]:
                        total += a[ty, tx] * b[by, bx]
            best = max(best, total)
    return best / (np.linalg.norm(a) * np.linalg.norm(b))


@pytest.mark.parametrize("shapes", [((5, 5), (5, 5)), ((3, 6), (7, 4)), ((6, 4), (2, 3))])
@pytest.mark.parametrize("signed", [False, True])
def test_mnc_brute_force(shapes, signed):
    rng = np.random.default_rng(sum(shapes[0]) + 10 * sum(shapes[1]) + signed)
    a, b = (rng.standard_normal(s) if signed else rng.random(s) for s in shapes)
    got = M.mnc(torch.from_numpy(a), torch.from_numpy(b)).item()
    assert got == pytest.approx(mnc_brute_force(a, b), abs=1e-12)
    swapped = M.mnc(torch.from_numpy(b), torch.from_numpy(a)).item()
    assert got == pytest.approx(swapped, abs=1e-12)  # symmetric in its arguments
    if not signed:
        assert 0 <= got <= 1 + 1e-12


def test_mnc_shifted_copy_and_different_kernels():
    yy, xx = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    k = torch.exp(-((yy - 4) ** 2 / 4 + (xx - 3) ** 2 / 1.5)).double()
    padded = torch.zeros(15, 13, dtype=torch.float64)
    padded[5:14, 1:10] = 3 * k  # shifted (and scaled) copy in a larger support
    assert M.mnc(k, padded).item() == pytest.approx(1.0, abs=1e-12)
    assert M.mnc(padded, k).item() == pytest.approx(1.0, abs=1e-12)
    line = torch.zeros(9, 9, dtype=torch.float64)
    line[4, :] = 1.0
    assert M.mnc(k, line).item() < 0.95


def test_mnc_batched_and_broadcast():
    g = torch.Generator().manual_seed(3)
    k_hat = torch.rand(4, 7, 7, dtype=torch.float64, generator=g)
    k = torch.rand(4, 9, 5, dtype=torch.float64, generator=g)
    got = M.mnc(k_hat, k)
    assert got.shape == (4,)
    for b in range(4):
        assert got[b].item() == pytest.approx(M.mnc(k_hat[b], k[b]).item(), abs=1e-12)
    one = M.mnc(k_hat, k[0])  # a 2D kernel against each item of a batch
    assert torch.allclose(one, torch.stack([M.mnc(k_hat[b], k[0]) for b in range(4)]))
    assert M.mnc(k_hat[0], k[0]).shape == ()


def test_mnc_differentiable():
    g = torch.Generator().manual_seed(4)
    k_hat = torch.rand(6, 6, dtype=torch.float64, generator=g).requires_grad_(True)
    M.mnc(k_hat, torch.rand(6, 6, dtype=torch.float64, generator=g)).backward()
    assert torch.isfinite(k_hat.grad).all() and k_hat.grad.abs().sum() > 0


# ------------------------------------------------------------------- comparison up to shift
@pytest.fixture(scope="module")
def smooth_camera():
    """Full-resolution camera() pre-blurred (sigma 4) so that box-downsampling x4 gives a
    near band-limited image whose sub-pixel shifts are known exactly."""
    return torch.from_numpy(ndi.gaussian_filter(data.camera() / 255.0, 4.0))


def box_sample(hi, top, left, n=64):
    """n x n image, pixel (i, j) = mean of hi[top + 4i : +4, left + 4j : +4]."""
    return F.avg_pool2d(hi[None, None, top : top + 4 * n, left : left + 4 * n], 4)[0, 0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_align_integer_shift_exact(dtype):
    big = torch.from_numpy(data.camera() / 255.0).to(dtype)
    ref = big[200:280, 220:300]
    x_hat = big[197:277, 222:302]  # x_hat(p) = ref(p - (3, -2))
    assert M.psnr(M._crop(x_hat, 15), M._crop(ref, 15)) < 25
    aligned, shift = M.align(x_hat, ref)
    assert shift.tolist() == [3.0, -2.0]
    assert shift.dtype == dtype
    assert M.psnr(M._crop(aligned, 15), M._crop(ref, 15)) > (250 if dtype == torch.float64 else 100)
    # the interior of the aligned image is the slice of x_hat
    torch.testing.assert_close(M._crop(aligned, 15), x_hat[18:68, 13:63], atol=1e-5, rtol=0)


def test_align_subpixel_shift(smooth_camera):
    ref = box_sample(smooth_camera, 200, 200)
    x_hat = box_sample(smooth_camera, 195, 198)  # displaced by (5/4, 2/4) = (1.25, 0.5) px
    before = M.psnr(M._crop(x_hat, 15), M._crop(ref, 15))
    result = M.compare_up_to_shift(x_hat, ref)
    assert result["shift"].tolist() == [1.25, 0.5]
    assert before < 30 and result["psnr"] > 60
    assert result["ssim"] > 0.9999


def test_align_batched_shifts(smooth_camera):
    ref = torch.stack([box_sample(smooth_camera, 200, 200), box_sample(smooth_camera, 240, 160)])
    x_hat = torch.stack([box_sample(smooth_camera, 208, 199), box_sample(smooth_camera, 237, 166)])
    ref, x_hat = ref[:, None].expand(2, 3, 64, 64), x_hat[:, None].expand(2, 3, 64, 64)  # RGB-like
    aligned, shift = M.align(x_hat, ref, max_shift=4, border=6)
    assert shift.tolist() == [[-2.0, 0.25], [0.75, -1.5]]
    assert aligned.shape == x_hat.shape
    assert (M.psnr(M._crop(aligned, 6), M._crop(ref, 6)) > 50).all()


def test_compare_up_to_shift_protocol(camera):
    ref = torch.from_numpy(camera[:64, :64])
    est = torch.from_numpy(degrade(camera[:64, :64], 9))
    result = M.compare_up_to_shift(est, ref, max_shift=3, border=8)
    assert set(result) == {"psnr", "ssim", "shift"}
    plain = M.psnr(M._crop(est, 8), M._crop(ref, 8))
    assert result["psnr"] >= plain - 1e-12  # shift 0 is a candidate
    # x_k: a shifted copy of the estimate itself -> the same error after alignment, ratio 1
    wide = torch.from_numpy(degrade(camera[:64, :70], 9))
    with_k = M.compare_up_to_shift(wide[:, :64], ref, x_k=wide[:, 2:66], max_shift=3, border=8)
    assert with_k["shift"].tolist() == [0.0, 0.0]
    assert with_k["error_ratio"].item() == pytest.approx(1.0, abs=1e-9)
    # x_k twice as close to ref as the estimate -> SSD ratio 4
    x_k = ref + 0.5 * (wide[:, :64] - ref)
    halved = M.compare_up_to_shift(wide[:, :64], ref, x_k=x_k, max_shift=3, border=8)
    assert halved["error_ratio"].item() == pytest.approx(4.0, abs=1e-6)


def test_shift_image():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 20, 24, dtype=torch.float64, generator=g)
    torch.testing.assert_close(M.shift_image(x, (0.0, 0.0)), x, atol=1e-12, rtol=0)
    moved = M.shift_image(x, (2, -3))
    torch.testing.assert_close(moved[..., 2:, :-3], x[..., :-2, 3:], atol=1e-12, rtol=0)
    # uncovered rows are filled by mirroring: out[1] = x(-1) = x(0), out[0] = x(-2) = x(1)
    torch.testing.assert_close(moved[..., 0, :-3], x[..., 1, 3:], atol=1e-12, rtol=0)
    per_item = M.shift_image(x, torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(per_item[0, :, 1:], x[0, :, :-1], atol=1e-12, rtol=0)
    torch.testing.assert_close(per_item[1, :, :, 1:], x[1, :, :, :-1], atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------- errors
def test_errors():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        M.psnr(x, torch.rand(1, 1, 16, 15))
    with pytest.raises(ValueError, match="ref contains NaN"):
        M.ssim(x, torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        M.psnr(torch.full_like(x, float("inf")), x)
    with pytest.raises(ValueError, match="x must have 2 or 3 or 4 dimensions"):
        M.psnr(torch.rand(16), torch.rand(16))
    with pytest.raises(ValueError, match="x must have"):
        M.ssim(torch.rand(1, 1, 1, 16, 16), torch.rand(1, 1, 1, 16, 16))
    with pytest.raises(ValueError, match="x must be float32 or float64"):
        M.psnr(torch.ones(4, 4, dtype=torch.int64), torch.ones(4, 4, dtype=torch.int64))
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="data_range"):
            M.psnr(x, x, data_range=bad)
        with pytest.raises(ValueError, match="data_range"):
            M.ssim(x, x, data_range=bad)
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ssim(torch.rand(10, 16), torch.rand(10, 16))
    with pytest.raises(ValueError, match="y and x must have the same shape"):
        M.isnr(x, torch.rand(1, 1, 18, 18), x)
    with pytest.raises(ValueError, match="x_hat and x must have the same shape"):
        M.isnr(torch.rand(1, 1, 18, 18), x, x)
    with pytest.raises(ValueError, match="x_hat must be a torch.Tensor"):
        M.compare_up_to_shift(np.zeros((48, 48)), torch.rand(48, 48))
    with pytest.raises(ValueError, match="x_hat and x"):
        M.error_ratio(torch.rand(1, 1, 8, 8), x, x)
    with pytest.raises(ValueError, match="x_k must differ from x"):
        M.error_ratio(x + 0.1, x, x)


def test_kernel_errors():
    k = torch.rand(5, 5)
    with pytest.raises(ValueError, match="k_hat must have 2 or 3 dimensions"):
        M.mnc(torch.rand(5), k)
    with pytest.raises(ValueError, match="k must have 2 or 3 dimensions"):
        M.mnc(k, torch.rand(1, 1, 5, 5))
    with pytest.raises(ValueError, match="k contains NaN"):
        M.mnc(k, torch.full((5, 5), float("nan")))
    with pytest.raises(ValueError, match="same batch size"):
        M.mnc(torch.rand(2, 5, 5), torch.rand(3, 5, 5))
    with pytest.raises(ValueError, match="k_hat must not be identically zero"):
        M.mnc(torch.zeros(5, 5), k)


def test_shift_protocol_errors():
    x = torch.rand(48, 48)
    with pytest.raises(ValueError, match="max_shift must be <= border"):
        M.align(x, x, max_shift=5, border=4)
    with pytest.raises(ValueError, match="max_shift"):
        M.align(x, x, max_shift=-1)
    for bad in (0, -0.25, 1.5):
        with pytest.raises(ValueError, match="step"):
            M.align(x, x, step=bad)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="border"):
            M.align(x, x, border=bad)
    with pytest.raises(ValueError, match="x_hat .* after cropping border=24"):
        M.align(x, x, border=24)
    with pytest.raises(ValueError, match="x_hat .* at least 11"):
        M.compare_up_to_shift(x, x, border=19)
    with pytest.raises(ValueError, match="x_hat and ref must have the same shape"):
        M.align(x, torch.rand(48, 47))
    with pytest.raises(ValueError, match="shift must be"):
        M.shift_image(torch.rand(2, 1, 8, 8), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="shift must be finite"):
        M.shift_image(x, (float("nan"), 0.0))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(camera):
    r = torch.from_numpy(camera[:64, :64])
    x = torch.from_numpy(degrade(camera[:64, :64], 10))
    for fn in (M.psnr, M.ssim):
        assert fn(x.cuda(), r.cuda()).item() == pytest.approx(fn(x, r).item(), abs=1e-9)
    k = torch.rand(3, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(M.mnc(k.cuda(), k.flip(0).cuda()).cpu(), M.mnc(k, k.flip(0)))
    _, shift = M.align(x.cuda(), r.cuda(), max_shift=3, border=8)
    assert torch.equal(shift.cpu(), M.align(x, r, max_shift=3, border=8)[1])


def test_describe_gap_says_ahead_or_behind_only_beyond_two_standard_errors():
    assert M.describe_gap(3.091, 0.8, 2, "dB") == "+3.09 ± 0.80 dB, ahead"
    assert M.describe_gap(-0.21, 0.05, 3) == "-0.210 ± 0.050, behind"
    assert M.describe_gap(0.1, 0.05, 2).endswith("not resolved")  # exactly two standard errors
    assert M.describe_gap(0.0, 0.0, 1) == "+0.0 ± 0.0, not resolved"
    assert M.gap_verdict(0.11, 0.05) == "ahead" and M.gap_verdict(-0.11, 0.05) == "behind"
    for bad in ((float("nan"), 0.1), (0.1, -1.0), (0.1, float("inf"))):
        with pytest.raises(ValueError, match="finite"):
            M.describe_gap(*bad, 2)


def test_paired_gap_is_the_mean_difference_and_its_standard_error():
    gap, se = M.paired_gap([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])  # differences 2, 3, 4
    assert gap == 3.0 and se == pytest.approx(1 / math.sqrt(3), rel=1e-15)
    with pytest.raises(ValueError):
        M.paired_gap([1.0, 2.0], [1.0])  # not the same inputs


def test_mean_interval_is_the_student_t_interval():
    interval = M.mean_interval([2.0, 3.0, 4.0])  # mean 3, sd 1, t_{2, 0.975} = 4.302653
    assert interval.estimate == 3.0 and interval.sd == 1.0 and interval.n == 3
    assert interval.high - 3.0 == pytest.approx(4.302653 / math.sqrt(3), abs=1e-6)
    assert interval.low == pytest.approx(6.0 - interval.high)
    wider = M.mean_interval([2.0, 3.0, 4.0], level=0.99)
    assert wider.low < interval.low and wider.high > interval.high


def test_paired_interval_is_the_interval_of_the_differences():
    assert M.paired_interval([3.0, 5.0, 7.0], [1.0, 2.0, 3.0]) == M.mean_interval([2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        M.paired_interval([1.0, 2.0], [1.0])


def test_intervals_refuse_what_cannot_make_one():
    with pytest.raises(ValueError, match="at least two finite values"):
        M.mean_interval([1.0])
    with pytest.raises(ValueError, match="at least two finite values"):
        M.mean_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="level must be a float in"):
        M.mean_interval([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        M.rate_interval(4, 3)


def test_rate_interval_is_clopper_pearson():
    interval = M.rate_interval(3, 10)  # the exact interval of 3 of 10: [0.0667, 0.6525]
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.0667, 0.6525)
    assert M.rate_interval(0, 10).low == 0.0 and M.rate_interval(10, 10).high == 1.0
    assert M.rate_interval(10, 10).low == pytest.approx(0.025 ** (1 / 10))  # (α/2)^(1/n)


def test_a_decision_needs_the_whole_interval_on_one_side_and_says_how_many_inputs_would_decide():
    interval = M.paired_interval([1.0, 2.0, 3.0, 4.5], [0.5, 1.0, 2.9, 3.0])  # +0.775, sd 0.608: straddles 0
    assert M.side_of(interval, 0.0) == "straddles"
    assert M.side_of(interval, -1.0) == "above" and M.side_of(interval, 2.0) == "below"
    needed = M.inputs_to_decide(interval, 0.0)
    assert needed == 5  # t_{4} 0.608 / √5 = 0.754 < 0.775, and t_{3} 0.608 / √4 = 0.967 is not
    decided = M.mean_interval([interval.estimate + d for d in (-0.6, 0.6) * 3])  # the same mean and spread at n = 6
    assert M.side_of(decided, 0.0) == "above"
    assert M.inputs_to_decide(M.mean_interval([-1.0, 1.0]), 0.0, cap=1000) == 1000  # a mean on the threshold
    assert M.inputs_to_decide(M.mean_interval([1.0, 1.1, 1.2]), 0.0) is None  # already decided


def test_welch_interval_matches_scipys_welch_test():
    a, b = [1.0, 2.0, 3.0, 2.5], [0.0, 0.5, 1.0, 1.5, 0.2]
    interval = M.welch_interval(a, b)
    test = scipy.stats.ttest_ind(a, b, equal_var=False)
    low, high = test.confidence_interval(0.95)
    assert interval.estimate == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    with pytest.raises(ValueError, match="at least two finite values per sample"):
        M.welch_interval([1.0], b)


def test_spread_interval_pools_the_variance_within_groups():
    interval = M.spread_interval([[1.0, 2.0, 3.0], [4.0, 6.0], [9.0]])  # the single value adds nothing
    assert interval.estimate == pytest.approx(math.sqrt((2 * 1.0 + 1 * 2.0) / 3))  # df 2 + 1
    assert interval.low < interval.estimate < interval.high
    chi2 = scipy.stats.chi2
    assert interval.high == pytest.approx(interval.estimate * math.sqrt(3 / chi2.ppf(0.025, 3)))
    with pytest.raises(ValueError, match="at least one group of two"):
        M.spread_interval([[1.0], [2.0]])


def test_how_many_would_decide_a_rate_and_a_spread():
    every = M.rate_interval(16, 16)  # [0.794, 1]: straddles 0.9
    needed = M.inputs_to_decide(every, 0.9)
    assert needed == 36  # 0.025 ** (1 / n) > 0.9 first at n = 36
    assert M.side_of(M.rate_interval(needed, needed), 0.9) == "above"
    assert M.side_of(M.rate_interval(needed - 1, needed - 1), 0.9) == "straddles"
    spread = M.spread_interval([[0.0, 0.7]])  # sd 0.49 from 2 runs: [0.22, 15.8]
    n = M.inputs_to_decide(spread, 1.0)
    chi2 = scipy.stats.chi2
    assert spread.estimate * math.sqrt((n - 1) / chi2.ppf(0.025, n - 1)) < 1.0  # decided below 1 at n
    assert spread.estimate * math.sqrt((n - 2) / chi2.ppf(0.025, n - 2)) >= 1.0  # not at n - 1
