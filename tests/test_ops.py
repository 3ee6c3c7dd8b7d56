"""Tests of repro.ops: orientation, boundaries, FFT = direct, references, adjoints, gradients."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import torch

from repro import ops
from repro.ops import Blur, blur, blur_adjoint, pad, pad_adjoint, psf2otf

SAME_MODES = ("circular", "reflect", "symmetric", "replicate", "zero")
KERNEL_SIZES = ((3, 3), (4, 4), (2, 5), (5, 4))  # odd, even and mixed
# scipy.ndimage's names for our modes (module docstring of repro.ops)
SCIPY_MODE = {"reflect": "mirror", "symmetric": "reflect", "replicate": "nearest", "zero": "constant",
              "circular": "wrap"}
NUMPY_PAD_MODE = {"reflect": "reflect", "symmetric": "symmetric", "replicate": "edge", "zero": "constant",
                  "circular": "wrap"}


def _rand(*shape, dtype=torch.float64, seed=0):
    return torch.rand(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _kernel(size, rank, B=2, C=3, dtype=torch.float64, seed=1):
    """A positive kernel of the given rank, normalised to sum 1 per kernel."""
    lead = {2: (), 3: (B,), 4: (B, C)}[rank]
    k = _rand(*lead, *size, dtype=dtype, seed=seed) + 0.1
    return k / k.sum(dim=(-2, -1), keepdim=True)


# ------------------------------------------------------------------------------------------
# FFT and direct agree
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("mode", ops.MODES)
@pytest.mark.parametrize("op", ops.OPS)
def test_fft_matches_direct(mode, op, dtype, tol):
    x = _rand(2, 3, 11, 9, dtype=dtype)
    for size in KERNEL_SIZES:
        for rank in (2, 3, 4):
            k = _kernel(size, rank, dtype=dtype)
            direct = blur(x, k, mode, op, "direct")
            fft = blur(x, k, mode, op, "fft")
            assert direct.dtype == fft.dtype == dtype
            torch.testing.assert_close(fft, direct, rtol=0, atol=tol)


def test_large_kernel_fft_matches_direct():
    x = _rand(1, 2, 40, 37, dtype=torch.float32)
    k = _kernel((21, 16), 2, dtype=torch.float32)
    for mode in ops.MODES:
        torch.testing.assert_close(blur(x, k, mode, "conv", "fft"), blur(x, k, mode, "conv", "direct"),
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("crossover, expected", [(1, "fft"), (10**9, "direct")])
def test_auto_uses_the_crossover(monkeypatch, crossover, expected):
    monkeypatch.setattr(ops, "FFT_CROSSOVER_TAPS", crossover)
    x, k = _rand(1, 1, 12, 12), _kernel((3, 3), 2)
    assert torch.equal(blur(x, k, "reflect", "conv", "auto"), blur(x, k, "reflect", "conv", expected))


# ------------------------------------------------------------------------------------------
# independent references
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ("direct", "fft"))
@pytest.mark.parametrize("mode", SAME_MODES)
@pytest.mark.parametrize("op", ops.OPS)
def test_matches_scipy_ndimage(mode, op, method):
    # scipy.ndimage centres a kernel of size n at n // 2 (origin=0), for convolve and correlate
    # alike, which is our origin; 'constant' pads with cval=0.
    x = _rand(2, 3, 10, 9)
    reference = scipy.ndimage.convolve if op == "conv" else scipy.ndimage.correlate
    for size in KERNEL_SIZES:
        k = _kernel(size, 4)
        y = blur(x, k, mode, op, method)
        for b in range(2):
            for c in range(3):
                expected = reference(x[b, c].numpy(), k[b, c].numpy(), mode=SCIPY_MODE[mode], cval=0.0)
                np.testing.assert_allclose(y[b, c].numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ("direct", "fft"))
@pytest.mark.parametrize("op", ops.OPS)
def test_valid_matches_scipy_signal(op, method):
    x = _rand(2, 3, 10, 9)
    reference = scipy.signal.convolve2d if op == "conv" else scipy.signal.correlate2d
    for size in KERNEL_SIZES:
        k = _kernel(size, 3)
        y = blur(x, k, "valid", op, method)
        assert y.shape == (2, 3, 10 - size[0] + 1, 9 - size[1] + 1)
        for b in range(2):
            for c in range(3):
                expected = reference(x[b, c].numpy(), k[b].numpy(), mode="valid")
                np.testing.assert_allclose(y[b, c].numpy(), expected, rtol=0, atol=1e-12)


def test_valid_is_the_interior_of_every_same_mode():
    x, k = _rand(1, 2, 12, 11), _kernel((4, 5), 2)
    for op in ops.OPS:
        top, _, left, _ = ops._blur_pads(4, 5, op)
        valid = blur(x, k, "valid", op)
        for mode in SAME_MODES:
            interior = blur(x, k, mode, op)[..., top : top + 9, left : left + 7]
            torch.testing.assert_close(interior, valid, rtol=0, atol=1e-12)


def test_conv_formula_by_loops():
    # y[i] = sum_m k[m] x[i - (m - c)] (conv) and x[i + (m - c)] (corr), x periodic
    x, k = _rand(1, 1, 6, 7), _kernel((4, 3), 2)
    H, W, (kh, kw) = 6, 7, k.shape
    c = (kh // 2, kw // 2)
    for op, sign in (("conv", -1), ("corr", 1)):
        expected = torch.zeros(H, W, dtype=torch.float64)
        for i in range(H):
            for j in range(W):
                for m in range(kh):
                    for n in range(kw):
                        src = ((i + sign * (m - c[0])) % H, (j + sign * (n - c[1])) % W)
                        expected[i, j] += k[m, n] * x[0, 0, src[0], src[1]]
        torch.testing.assert_close(blur(x, k, "circular", op)[0, 0], expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------
# identities
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ("direct", "fft"))
@pytest.mark.parametrize("mode", SAME_MODES)
def test_delta_kernel_is_identity(mode, method):
    x = _rand(2, 3, 8, 7)
    for kh, kw in KERNEL_SIZES:
        delta = torch.zeros(kh, kw, dtype=torch.float64)
        delta[kh // 2, kw // 2] = 1.0
        for op in ops.OPS:
            torch.testing.assert_close(blur(x, delta, mode, op, method), x, rtol=0, atol=1e-12)


def test_valid_delta_is_a_crop():
    x = _rand(1, 1, 8, 7)
    delta = torch.zeros(4, 3, dtype=torch.float64)
    delta[2, 1] = 1.0
    # conv reads x[i + kh - 1 - m], corr x[i + m] for the valid output index i
    torch.testing.assert_close(blur(x, delta, "valid", "conv"), x[..., 1:6, 1:6], rtol=0, atol=1e-12)
    torch.testing.assert_close(blur(x, delta, "valid", "corr"), x[..., 2:7, 1:6], rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ops.MODES)
def test_conv_with_flipped_kernel_is_corr_for_odd_sizes(mode):
    x, k = _rand(2, 3, 9, 8), _kernel((3, 5), 3)
    conv_flipped = blur(x, k.flip(-2, -1), mode, "conv")
    torch.testing.assert_close(conv_flipped, blur(x, k, mode, "corr"), rtol=0, atol=1e-12)


def test_conv_with_flipped_even_kernel_is_corr_shifted_by_one_pixel():
    # flipping moves the origin of an even axis from kh//2 to kh//2 - 1
    x, k = _rand(1, 2, 9, 8), _kernel((4, 3), 2)
    conv_flipped = blur(x, k.flip(-2, -1), "circular", "conv")
    corr = blur(x, k, "circular", "corr")
    torch.testing.assert_close(conv_flipped, torch.roll(corr, -1, dims=-2), rtol=0, atol=1e-12)
    assert not torch.allclose(conv_flipped, corr)


def test_kernel_ranks_are_consistent():
    x = _rand(2, 3, 9, 8)
    k4 = _kernel((3, 4), 4)
    y4 = blur(x, k4, "reflect")
    for b in range(2):
        for c in range(3):
            torch.testing.assert_close(y4[b, c], blur(x[b : b + 1, c : c + 1], k4[b, c], "reflect")[0, 0])
    k3 = k4[:, 0]
    torch.testing.assert_close(blur(x, k3, "reflect"), blur(x, k3[:, None].expand(2, 3, 3, 4), "reflect"))
    torch.testing.assert_close(blur(x, k4[0, 0], "reflect"), blur(x, k4[0, 0].expand(2, 3, 3, 4), "reflect"))


def test_circular_blur_commutes_with_roll():
    x, k = _rand(1, 1, 9, 10), _kernel((5, 4), 2)
    for op in ops.OPS:
        torch.testing.assert_close(blur(torch.roll(x, (2, -3), (-2, -1)), k, "circular", op),
                                   torch.roll(blur(x, k, "circular", op), (2, -3), (-2, -1)))


# ------------------------------------------------------------------------------------------
# adjoints
# ------------------------------------------------------------------------------------------


def _inner(a, b):
    return float((a * b).sum())


@pytest.mark.parametrize("method", ("direct", "fft"))
@pytest.mark.parametrize("mode", ops.MODES)
@pytest.mark.parametrize("op", ops.OPS)
def test_adjoint_identity(mode, op, method):
    x = _rand(2, 3, 9, 8, seed=2)
    for size in KERNEL_SIZES:
        for rank in (2, 3, 4):
            k = _kernel(size, rank, seed=3)
            Ax = blur(x, k, mode, op, method)
            y = _rand(*Ax.shape, seed=4) - 0.5
            ATy = blur_adjoint(y, k, mode, op, method)
            assert ATy.shape == x.shape
            assert abs(_inner(Ax, y) - _inner(x, ATy)) <= 1e-10 * max(1.0, abs(_inner(Ax, y)))


@pytest.mark.parametrize("mode", ops.MODES)
def test_adjoint_matches_autograd_vjp(mode):
    x, k = _rand(1, 2, 7, 8), _kernel((4, 3), 2)
    y = _rand(*blur(x, k, mode).shape, seed=5)
    _, vjp = torch.autograd.functional.vjp(lambda t: blur(t, k, mode, "corr"), x, y)
    torch.testing.assert_close(blur_adjoint(y, k, mode, "corr"), vjp, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", SAME_MODES)
def test_pad_matches_numpy(mode):
    x = _rand(2, 1, 5, 6)
    limit = 4 if mode == "reflect" else 5  # the largest single extension of the 5 rows
    for pads in ((0, 0, 0, 0), (1, 2, 3, 0), (limit, limit, limit, limit)):
        top, bottom, left, right = pads
        widths = ((0, 0), (0, 0), (top, bottom), (left, right))
        expected = np.pad(x.numpy(), widths, mode=NUMPY_PAD_MODE[mode])
        np.testing.assert_array_equal(pad(x, pads, mode).numpy(), expected)


@pytest.mark.parametrize("mode", SAME_MODES)
def test_pad_adjoint_identity(mode):
    x = _rand(2, 3, 5, 6)
    for pads in ((1, 2, 3, 0), (4, 4, 4, 5)):
        px = pad(x, pads, mode)
        y = _rand(*px.shape, seed=7)
        assert abs(_inner(px, y) - _inner(x, pad_adjoint(y, pads, mode))) < 1e-12


def test_blur_operator_object():
    x, k = _rand(2, 3, 9, 8), _kernel((4, 5), 3)
    A = Blur(k, mode="symmetric", op="corr", method="fft")
    torch.testing.assert_close(A(x), blur(x, k, "symmetric", "corr", "fft"), rtol=0, atol=0)
    torch.testing.assert_close(A.forward(x), A(x), rtol=0, atol=0)
    torch.testing.assert_close(A.adjoint(x), blur_adjoint(x, k, "symmetric", "corr", "fft"), rtol=0, atol=0)
    assert "symmetric" in repr(A) and "(2, 4, 5)" in repr(A)


# ------------------------------------------------------------------------------------------
# psf2otf
# ------------------------------------------------------------------------------------------


def test_psf2otf_diagonalises_the_circular_blur():
    x = _rand(2, 3, 8, 9)
    for size in KERNEL_SIZES:
        for rank in (2, 3, 4):
            k = _kernel(size, rank)
            otf = psf2otf(k, (8, 9), onesided=True)
            if rank == 3:
                otf = otf[:, None]
            for op, transfer in (("conv", otf), ("corr", otf.conj())):
                y = torch.fft.irfft2(transfer * torch.fft.rfft2(x), s=(8, 9))
                torch.testing.assert_close(y, blur(x, k, "circular", op), rtol=0, atol=1e-12)


def test_psf2otf_full_and_onesided_agree_and_match_numpy():
    k = _kernel((4, 3), 2)
    full = psf2otf(k, (7, 6))
    assert full.shape == (7, 6) and psf2otf(k, (7, 6), onesided=True).shape == (7, 4)
    torch.testing.assert_close(psf2otf(k, (7, 6), onesided=True), full[:, :4])
    padded = np.zeros((7, 6))
    padded[:4, :3] = k.numpy()
    np.testing.assert_allclose(full.numpy(), np.fft.fft2(np.roll(padded, (-2, -1), axis=(0, 1))), atol=1e-12)


# ------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ("direct", "fft"))
@pytest.mark.parametrize("mode", ops.MODES)
def test_gradcheck(mode, method):
    x = _rand(1, 2, 5, 4).requires_grad_()
    y = _rand(1, 2, 4, 3, seed=8).requires_grad_()
    k = _kernel((3, 2), 4, B=1, C=2).requires_grad_()
    for op in ops.OPS:
        forward = lambda a, b: blur(a, b, mode, op, method)  # noqa: E731
        adjoint = lambda a, b: blur_adjoint(a, b, mode, op, method)  # noqa: E731
        assert torch.autograd.gradcheck(forward, (x, k), fast_mode=True)
        assert torch.autograd.gradcheck(adjoint, (y, k), fast_mode=True)


def test_psf2otf_gradcheck():
    k = _kernel((3, 2), 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: torch.view_as_real(psf2otf(t, (4, 5))), (k,))


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, k, kwargs, match",
    [
        (_rand(3, 8, 8), _kernel((3, 3), 2), {}, "x must have 4 dimensions"),
        (_rand(2, 3, 8, 8), _rand(1, 2, 3, 3, 3), {}, "k must have 2 or 3 or 4 dimensions"),
        (_rand(2, 3, 8, 8), _kernel((3, 3), 3, B=3), {}, "batch size 2"),
        (_rand(2, 3, 8, 8), _kernel((3, 3), 4, B=2, C=1), {}, r"\(B, C\)=\(2, 3\)"),
        (_rand(2, 3, 8, 8), _kernel((3, 3), 2, dtype=torch.float32), {}, "k has dtype torch.float32"),
        (_rand(1, 1, 8, 8).half(), _kernel((3, 3), 2).half(), {}, "x must be float32 or float64"),
        (torch.ones(1, 1, 8, 8, dtype=torch.int64), _kernel((3, 3), 2), {}, "x must be float32 or float64"),
        ([[1.0]], _kernel((3, 3), 2), {}, "x must be a torch.Tensor"),
        (_rand(1, 1, 8, 8) * float("nan"), _kernel((3, 3), 2), {}, "x contains NaN"),
        (_rand(1, 1, 8, 8), _kernel((3, 3), 2) * float("inf"), {}, "k contains NaN or Inf"),
        (_rand(1, 1, 8, 8), _kernel((3, 3), 2), {"mode": "mirror"}, "mode must be one of"),
        (_rand(1, 1, 8, 8), _kernel((3, 3), 2), {"op": "convolution"}, "op must be one of"),
        (_rand(1, 1, 8, 8), _kernel((3, 3), 2), {"method": "fast"}, "method must be one of"),
        (_rand(1, 1, 8, 8), _kernel((9, 3), 2), {"mode": "valid"}, "larger than the 8x8 image"),
        (_rand(1, 1, 8, 8), _kernel((17, 3), 2), {"mode": "reflect"}, "too large for mode 'reflect'"),
        (_rand(1, 1, 8, 4), _kernel((3, 9), 2), {"mode": "reflect"}, "k of size 3x9 is too large"),
        (_rand(1, 1, 4, 8), _kernel((10, 3), 2), {"mode": "symmetric"}, "too large for mode 'symmetric'"),
        (_rand(1, 1, 4, 8), _kernel((10, 3), 2), {"mode": "circular"}, "too large for mode 'circular'"),
    ],
)
def test_blur_errors(x, k, kwargs, match):
    with pytest.raises(ValueError, match=match):
        blur(x, k, **kwargs)
    if kwargs.get("mode") != "valid":  # the adjoint of valid takes any y (a "full" output)
        with pytest.raises(ValueError, match=match.replace("x ", "y ")):
            blur_adjoint(x, k, **kwargs)


def test_large_kernels_allowed_where_the_extension_allows():
    x = _rand(1, 1, 4, 5)
    for mode in ("replicate", "zero"):
        assert blur(x, _kernel((11, 12), 2), mode).shape == x.shape
    assert blur(x, _kernel((9, 3), 2), "symmetric", "conv").shape == x.shape  # pads 4 rows each side


def test_adjoint_errors():
    y, k = _rand(1, 1, 4, 4), _kernel((3, 3), 2)
    with pytest.raises(ValueError, match="y must have 4 dimensions"):
        blur_adjoint(y[0], k)
    with pytest.raises(ValueError, match="too large for mode 'reflect'"):
        blur_adjoint(y, _kernel((9, 3), 2), "reflect")


def test_pad_errors():
    x = _rand(1, 1, 4, 5)
    with pytest.raises(ValueError, match="pads must be a tuple"):
        pad(x, (1, 1), "zero")
    with pytest.raises(ValueError, match="pads must be four non-negative ints"):
        pad(x, (1, -1, 0, 0), "zero")
    with pytest.raises(ValueError, match="pads must be four non-negative ints"):
        pad(x, (1, 1.5, 0, 0), "zero")
    with pytest.raises(ValueError, match="mode must be one of"):
        pad(x, (1, 1, 1, 1), "valid")
    with pytest.raises(ValueError, match="pads is too large for mode 'reflect'"):
        pad(x, (4, 0, 0, 0), "reflect")
    with pytest.raises(ValueError, match="pads is too large for mode 'circular'"):
        pad(x, (0, 0, 0, 6), "circular")
    with pytest.raises(ValueError, match="smaller than the padding"):
        pad_adjoint(x, (2, 2, 0, 0), "zero")
    with pytest.raises(ValueError, match="pads is too large for mode 'symmetric'"):
        pad_adjoint(_rand(1, 1, 9, 5), (4, 4, 0, 0), "symmetric")


def test_psf2otf_and_blur_object_errors():
    k = _kernel((3, 4), 2)
    with pytest.raises(ValueError, match="shape must be a pair"):
        psf2otf(k, (8,))
    with pytest.raises(ValueError, match="shape must be a pair"):
        psf2otf(k, (8, 0))
    with pytest.raises(ValueError, match="larger than the 8x3 grid"):
        psf2otf(k, (8, 3))
    with pytest.raises(ValueError, match="k must have 2 or 3 or 4 dimensions"):
        psf2otf(k[0], (8, 8))
    with pytest.raises(ValueError, match="kernel contains NaN"):
        Blur(k * float("nan"))
    with pytest.raises(ValueError, match="mode must be one of"):
        Blur(k, mode="periodic")
    with pytest.raises(ValueError, match="x has batch size 1"):
        Blur(_kernel((3, 3), 3, B=2))(_rand(1, 1, 8, 8))


# ------------------------------------------------------------------------------------------
# CUDA
# ------------------------------------------------------------------------------------------

# ------------------------------------------------------------------------------------------
# PreparedBlur: one kernel, one image size, prepared once
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("shape", [(3, 4), (11, 9), (16, 15)])  # smaller than some kernels; smooth, non-smooth
def test_prepared_blur_equals_blur(shape, dtype, tol):
    """Every mode, orientation and method; kernels odd, even and mixed, up to the image size;
    the FFT runs on the image's own grid (or the next smooth one) and redoes the border bands."""
    x = _rand(2, 3, *shape, dtype=dtype)
    for size in KERNEL_SIZES + ((9, 8),):
        k = _kernel(size, 2, dtype=dtype, seed=size[0])
        for mode in ops.MODES:
            for op in ops.OPS:
                for method in ("direct", "fft"):
                    try:
                        expected = blur(x, k, mode, op, method)
                    except ValueError:
                        with pytest.raises(ValueError, match="too large|larger than"):
                            ops.PreparedBlur(k, shape, mode, op, method)
                        continue
                    prepared = ops.PreparedBlur(k, shape, mode, op, method)
                    got = prepared(x)
                    assert got.shape == expected.shape and got.dtype == dtype
                    torch.testing.assert_close(got, expected, rtol=0, atol=tol)


def test_prepared_blur_large_image_and_auto():
    """A DRK-sized 11x11 kernel on a 64x80 RGB image: auto picks the FFT as blur does; the
    prepared kernel is a copy (changing the original later has no effect)."""
    x = _rand(1, 3, 64, 80, dtype=torch.float32)
    k = _kernel((11, 11), 2, dtype=torch.float32)
    prepared = ops.PreparedBlur(k, (64, 80), "symmetric")
    assert prepared.method == "fft" and prepared.grid == (64, 80)
    expected = blur(x, k, "symmetric")
    k.mul_(2)
    torch.testing.assert_close(prepared(x), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(ops.PreparedBlur(k / 2, (64, 80), "symmetric", method="direct")(x), expected,
                               rtol=0, atol=1e-5)
    assert torch.equal(prepared(x), prepared.apply(x))
    assert "PreparedBlur" in repr(prepared)


def test_prepared_blur_errors():
    k = _kernel((3, 3), 2)
    with pytest.raises(ValueError, match="kernel must have 2 dimensions"):
        ops.PreparedBlur(_kernel((3, 3), 3), (8, 8))
    with pytest.raises(ValueError, match="shape must be a pair"):
        ops.PreparedBlur(k, (8, 0))
    with pytest.raises(ValueError, match="mode must be one of"):
        ops.PreparedBlur(k, (8, 8), mode="mirror")
    with pytest.raises(ValueError, match="larger than the 2x8 image"):
        ops.PreparedBlur(k, (2, 8), mode="valid")
    with pytest.raises(ValueError, match="too large for mode 'reflect'"):
        ops.PreparedBlur(_kernel((9, 9), 2), (4, 8), mode="reflect")
    prepared = ops.PreparedBlur(k, (8, 8))
    with pytest.raises(ValueError, match="does not match the prepared image size"):
        prepared(_rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="does not match the prepared kernel"):
        prepared(_rand(1, 1, 8, 8, dtype=torch.float32))
    with pytest.raises(ValueError, match="x contains NaN"):
        prepared(torch.full((1, 1, 8, 8), float("nan"), dtype=torch.float64))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_cuda_matches_cpu(dtype, tol):
    x = _rand(2, 3, 12, 11, dtype=dtype)
    for size in KERNEL_SIZES:
        k = _kernel(size, 4, dtype=dtype)
        for mode in ops.MODES:
            for op in ops.OPS:
                expected = blur(x, k, mode, op, "direct")
                for method in ("direct", "fft"):
                    got = blur(x.cuda(), k.cuda(), mode, op, method)
                    assert got.is_cuda
                    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=tol)
                    y = _rand(*expected.shape, dtype=dtype, seed=9)
                    torch.testing.assert_close(blur_adjoint(y.cuda(), k.cuda(), mode, op, method).cpu(),
                                               blur_adjoint(y, k, mode, op, "direct"), rtol=0, atol=tol)


@pytest.mark.cuda
@cuda
def test_cuda_gradcheck_and_device_mismatch():
    x = _rand(1, 2, 5, 6).cuda().requires_grad_()
    k = _kernel((3, 2), 2).cuda().requires_grad_()
    for method in ("direct", "fft"):
        assert torch.autograd.gradcheck(lambda a, b: blur(a, b, "reflect", "conv", method), (x, k))
    with pytest.raises(ValueError, match="k is on cpu but x is on cuda"):
        blur(x.detach(), k.detach().cpu())
