"""Blur forward operators with explicit boundary conditions, and their exact adjoints.

The forward model of every paper in the book is y = k ⊛ x + n (FACTS.md, "Common forward
model"), but the reference codes disagree on two things that this module makes explicit:

**Orientation** (``op``). With the kernel origin c = (kh//2, kw//2) (also for even sizes),

- ``op="conv"``, true convolution (kernel flipped):  y[i] = Σ_m k[m] · x[i − (m − c)]
- ``op="corr"``, cross-correlation (no flip):        y[i] = Σ_m k[m] · x[i + (m − c)]

with i, m two-dimensional indices. ``torch.nn.functional.conv2d`` computes a *correlation*
(SelfDeblur and Blind-DPS use it as their "convolution"). For odd kernels, corr with k equals
conv with the flipped kernel; for even sizes the two differ by a one-pixel shift, because
flipping moves the origin from c to kh − 1 − c.

**Boundary** (``mode``): how x is extended beyond its borders when the formula above reads
outside the image. The output has the size of x, except for ``"valid"``.

============  ==========================================  ===========================
mode          extension of x (row ``abcd``, two pixels)    numpy.pad / scipy.ndimage
============  ==========================================  ===========================
circular      ``cd|abcd|ab``  periodic                      wrap / wrap
reflect       ``cb|abcd|cb``  mirror, edge not repeated     reflect / mirror
symmetric     ``ba|abcd|dc``  mirror, edge repeated         symmetric / reflect
replicate     ``aa|abcd|dd``  edge repeated                 edge / nearest
zero          ``00|abcd|00``  zeros                         constant / constant
valid         no extension: only the outputs whose whole support lies inside x,
              size (H − kh + 1, W − kw + 1) (SelfDeblur's model, FACTS.md)
============  ==========================================  ===========================

Padding is a single extension, so ``reflect`` needs a padding smaller than the image side,
``circular`` and ``symmetric`` at most the side; ``replicate`` and ``zero`` take any size.

**Method**. Every mode is "pad x as named, then a valid correlation". ``method="direct"``
computes that correlation with ``conv2d`` (channels and batch folded into groups, one kernel per
group); ``method="fft"`` computes it as a circular correlation of the padded image by
``rfft2`` on a grid large enough that nothing wraps, then crops. The two are the same
mathematics and agree to rounding (≈1e-6 in float32, ≈1e-15 in float64). ``method="auto"``
takes the FFT for kernels of at least :data:`FFT_CROSSOVER_TAPS` entries.

The adjoint of "pad, then valid correlation" is "full correlation transposed, then the adjoint
of the padding" (scatter-add of the extended borders back onto the pixels they copy), which
:func:`blur_adjoint` computes exactly for every mode.
"""

from __future__ import annotations

import scipy.fft
import torch
import torch.nn.functional as F

from ._checks import check_choice, check_tensor

MODES = ("valid", "circular", "reflect", "symmetric", "replicate", "zero")
PAD_MODES = ("circular", "reflect", "symmetric", "replicate", "zero")
OPS = ("conv", "corr")
METHODS = ("direct", "fft", "auto")

# Kernels with at least this many taps (kh * kw) are applied by FFT when method="auto".
# Measured with ``benchmarks/bench_ops.py`` (a (1, 3, 512, 512) float32 image, circular mode,
# torch 2.13 CPU build) on the reference machine, 2 x86-64 cores shared with other jobs:
# single-threaded, direct 5.6 / 7.1 / 10.1 ms for 3x3 / 5x5 / 7x7 against a flat ~7.7 ms by FFT
# (65x65: 275 ms against 10 ms); with 2 threads the uncontended rows gave the same crossover,
# 5x5 < crossover <= 7x7. Approximate: it moves with the load, the image size and the device.
FFT_CROSSOVER_TAPS = 49


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def check_image_kernel(x, k, x_name: str = "x", k_name: str = "k") -> tuple[torch.Tensor, torch.Tensor]:
    """Validate an image batch and a kernel that goes with it; return ``(x, k4)``.

    ``x`` must be (B, C, H, W); ``k`` one of (kh, kw), (B, kh, kw) or (B, C, kh, kw) with the
    same B (and C) as ``x``, the same dtype (float32/float64) and the same device. ``k4`` is a
    view of ``k`` with four dimensions (Bk, Ck, kh, kw), Bk in {1, B}, Ck in {1, C}, ready to
    broadcast against ``x``.
    """
    check_tensor(x, x_name, (4,))
    check_tensor(k, k_name, (2, 3, 4))
    if k.dtype != x.dtype:
        raise ValueError(f"{k_name} has dtype {k.dtype} but {x_name} has dtype {x.dtype}; use one dtype")
    if k.device != x.device:
        raise ValueError(f"{k_name} is on {k.device} but {x_name} is on {x.device}; use one device")
    B, C = x.shape[:2]
    if k.ndim == 3 and k.shape[0] != B:
        raise ValueError(
            f"{k_name} of shape {tuple(k.shape)} is (B, kh, kw) with B={k.shape[0]}, "
            f"but {x_name} has batch size {B}"
        )
    if k.ndim == 4 and tuple(k.shape[:2]) != (B, C):
        raise ValueError(
            f"{k_name} of shape {tuple(k.shape)} is (B, C, kh, kw) with (B, C)={tuple(k.shape[:2])}, "
            f"but {x_name} has (B, C)=({B}, {C})"
        )
    if k.ndim == 2:
        return x, k[None, None]
    if k.ndim == 3:
        return x, k[:, None]
    return x, k


def _check_pads(pads) -> tuple[int, int, int, int]:
    if not (isinstance(pads, (tuple, list)) and len(pads) == 4):
        raise ValueError(f"pads must be a tuple (top, bottom, left, right), got {pads!r}")
    if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pads):
        raise ValueError(f"pads must be four non-negative ints (top, bottom, left, right), got {pads!r}")
    return tuple(pads)


def _check_pads_fit(size: tuple[int, int], pads, mode: str, name: str) -> None:
    """Raise if a single extension of an image of ``size`` cannot provide ``pads``."""
    if mode in ("replicate", "zero"):
        return
    H, W = size
    top, bottom, left, right = pads
    slack = 1 if mode == "reflect" else 0  # reflect does not repeat the edge pixel
    limit_h, limit_w = H - slack, W - slack
    if max(top, bottom) > limit_h or max(left, right) > limit_w:
        raise ValueError(
            f"{name} is too large for mode {mode!r} on a {H}x{W} image: it needs padding "
            f"(top, bottom, left, right)={tuple(pads)} but {mode!r} can extend by at most "
            f"{limit_h} rows and {limit_w} columns; use a larger image, a smaller kernel or padding, "
            f"or mode 'replicate'/'zero'"
        )


# --------------------------------------------------------------------------------------------
# padding and its adjoint
# --------------------------------------------------------------------------------------------


def _source_index(i: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Index of the pixel of an axis of length ``n`` that position ``i`` of its extension copies."""
    if mode == "circular":
        return i % n
    if mode == "replicate":
        return i.clamp(0, n - 1)
    if mode == "reflect":  # period 2(n - 1), mirror about the edge pixels
        period = max(2 * (n - 1), 1)
        j = i % period
        return torch.minimum(j, period - j)
    # symmetric: period 2n, mirror about the pixel borders
    j = i % (2 * n)
    return torch.minimum(j, 2 * n - 1 - j)


def _border_index(n: int, before: int, after: int, mode: str, device) -> torch.Tensor:
    """Source indices of the ``before`` then the ``after`` extended positions of an axis."""
    i = torch.cat([torch.arange(-before, 0, device=device), torch.arange(n, n + after, device=device)])
    return _source_index(i, n, mode)


def pad(x: torch.Tensor, pads, mode: str) -> torch.Tensor:
    """Extend ``x`` (B, C, H, W) beyond its borders.

    ``pads`` = (top, bottom, left, right) in pixels (note: *not* the (left, right, top, bottom)
    order of ``torch.nn.functional.pad``); ``mode`` one of :data:`PAD_MODES` (table in the module
    docstring). Returns (B, C, H + top + bottom, W + left + right). Differentiable.
    """
    check_tensor(x, "x", (4,))
    pads = _check_pads(pads)
    check_choice(mode, "mode", PAD_MODES)
    _check_pads_fit(tuple(x.shape[-2:]), pads, mode, "pads")
    return _pad(x, pads, mode)


def _pad(x: torch.Tensor, pads, mode: str) -> torch.Tensor:
    top, bottom, left, right = pads
    if mode == "zero":
        return F.pad(x, (left, right, top, bottom))
    for dim, before, after in ((-2, top, bottom), (-1, left, right)):
        borders = x.index_select(dim, _border_index(x.shape[dim], before, after, mode, x.device))
        x = torch.cat([borders.narrow(dim, 0, before), x, borders.narrow(dim, before, after)], dim)
    return x


def pad_adjoint(y: torch.Tensor, pads, mode: str) -> torch.Tensor:
    """Adjoint of :func:`pad`: ``<pad(x), y> = <x, pad_adjoint(y)>``.

    ``y`` is an extended image (B, C, H + top + bottom, W + left + right); every extended pixel is
    added back onto the pixel of x it copies (for ``zero`` the borders are simply cropped).
    Returns (B, C, H, W).
    """
    check_tensor(y, "y", (4,))
    pads = _check_pads(pads)
    check_choice(mode, "mode", PAD_MODES)
    top, bottom, left, right = pads
    H, W = y.shape[-2] - top - bottom, y.shape[-1] - left - right
    if H < 1 or W < 1:
        raise ValueError(f"y of shape {tuple(y.shape)} is smaller than the padding {pads}")
    _check_pads_fit((H, W), pads, mode, "pads")
    return _pad_adjoint(y, pads, mode)


def _pad_adjoint(y: torch.Tensor, pads, mode: str) -> torch.Tensor:
    top, bottom, left, right = pads
    for dim, before, after in ((-2, top, bottom), (-1, left, right)):
        n = y.shape[dim] - before - after
        core = y.narrow(dim, before, n)
        if mode == "zero":
            y = core
            continue
        borders = torch.cat([y.narrow(dim, 0, before), y.narrow(dim, before + n, after)], dim)
        y = core.index_add(dim, _border_index(n, before, after, mode, y.device), borders)
    return y


# --------------------------------------------------------------------------------------------
# blur
# --------------------------------------------------------------------------------------------


def _blur_pads(kh: int, kw: int, op: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) read outside x by a same-size blur with origin (kh//2, kw//2)."""
    ch, cw = kh // 2, kw // 2
    if op == "conv":  # reads x[i - m + c], m in [0, kh): from i - (kh - 1 - c) to i + c
        return (kh - 1 - ch, ch, kw - 1 - cw, cw)
    return (ch, kh - 1 - ch, cw, kw - 1 - cw)  # corr reads x[i + m - c]


def _correlate_valid(xp: torch.Tensor, g: torch.Tensor, method: str) -> torch.Tensor:
    """z[p] = Σ_j g[j] · xp[p + j] for the positions where the kernel lies inside ``xp``.

    ``xp`` (B, C, P, Q), ``g`` (Bk, Ck, kh, kw) broadcastable to (B, C); result
    (B, C, P − kh + 1, Q − kw + 1).
    """
    B, C, P, Q = xp.shape
    kh, kw = g.shape[-2:]
    if method == "direct":
        # conv2d is a correlation; one group per (batch item, channel) with its own kernel.
        # contiguous(): a broadcast (stride-0) weight sends oneDNN to a path ~5x slower.
        weight = g.expand(B, C, kh, kw).reshape(B * C, 1, kh, kw).contiguous()
        z = F.conv2d(xp.reshape(1, B * C, P, Q), weight, groups=B * C)
        return z.reshape(B, C, P - kh + 1, Q - kw + 1)
    # Circular correlation on a grid of at least P x Q: the kept outputs p < P - kh + 1 read
    # xp[p .. p + kh - 1] inside [0, P), so nothing wraps; growing the grid to a size that
    # pocketFFT/cuFFT like (2-3-5-smooth) only adds zeros that are never read.
    grid = (scipy.fft.next_fast_len(P, real=True), scipy.fft.next_fast_len(Q, real=True))
    spectrum = torch.fft.rfft2(xp, s=grid) * torch.fft.rfft2(g, s=grid).conj()
    return torch.fft.irfft2(spectrum, s=grid)[..., : P - kh + 1, : Q - kw + 1]


def _resolve_method(method: str, kh: int, kw: int) -> str:
    if method == "auto":
        return "fft" if kh * kw >= FFT_CROSSOVER_TAPS else "direct"
    return method


def _check_options(mode: str, op: str, method: str) -> None:
    check_choice(mode, "mode", MODES)
    check_choice(op, "op", OPS)
    check_choice(method, "method", METHODS)


def _blur(x: torch.Tensor, k4: torch.Tensor, mode: str, op: str, method: str) -> torch.Tensor:
    """:func:`blur` on validated inputs (``k4`` from :func:`check_image_kernel`)."""
    kh, kw = k4.shape[-2:]
    g = k4.flip(-2, -1) if op == "conv" else k4  # the correlation kernel
    if mode == "valid":
        if kh > x.shape[-2] or kw > x.shape[-1]:
            raise ValueError(
                f"k of size {kh}x{kw} is larger than the {x.shape[-2]}x{x.shape[-1]} image: "
                f"mode 'valid' has no output"
            )
        xp = x
    else:
        pads = _blur_pads(kh, kw, op)
        _check_pads_fit(tuple(x.shape[-2:]), pads, mode, f"k of size {kh}x{kw}")
        xp = _pad(x, pads, mode)
    return _correlate_valid(xp, g, _resolve_method(method, kh, kw))


def blur(
    x: torch.Tensor, k: torch.Tensor, mode: str = "circular", op: str = "conv", method: str = "auto"
) -> torch.Tensor:
    """Blur ``x`` (B, C, H, W) with ``k`` under the boundary ``mode`` and orientation ``op``.

    ``op="conv"``: y[i] = Σ_m k[m] x[i − (m − c)]; ``op="corr"``: y[i] = Σ_m k[m] x[i + (m − c)],
    c = (kh//2, kw//2), x extended beyond its borders according to ``mode`` (module docstring).
    ``k`` is (kh, kw), (B, kh, kw) or (B, C, kh, kw). The output has the shape of ``x`` except for
    ``mode="valid"``: (B, C, H − kh + 1, W − kw + 1). ``method`` "direct" (``conv2d``), "fft"
    (``rfft2``) or "auto" (FFT from :data:`FFT_CROSSOVER_TAPS` taps). Differentiable in x and k.
    """
    x, k4 = check_image_kernel(x, k)
    _check_options(mode, op, method)
    return _blur(x, k4, mode, op, method)


def blur_adjoint(
    y: torch.Tensor, k: torch.Tensor, mode: str = "circular", op: str = "conv", method: str = "auto"
) -> torch.Tensor:
    """Exact adjoint of :func:`blur` with the same ``k, mode, op``: <blur(x), y> = <x, blur_adjoint(y)>.

    ``y`` has the shape of ``blur``'s output; the result has the shape of its input: the same as
    ``y``, or (B, C, H + kh − 1, W + kw − 1) for ``mode="valid"`` (the "full" transposed
    correlation). For ``circular`` and ``zero`` the adjoint is the same blur with conv and corr
    swapped; for the other modes it is the full transposed blur followed by :func:`pad_adjoint`.
    """
    y, k4 = check_image_kernel(y, k, x_name="y")
    _check_options(mode, op, method)
    swapped = "corr" if op == "conv" else "conv"
    if mode in ("circular", "zero"):
        return _blur(y, k4, mode, swapped, method)
    kh, kw = k4.shape[-2:]
    pads = _blur_pads(kh, kw, op)
    if mode != "valid":
        _check_pads_fit(tuple(y.shape[-2:]), pads, mode, f"k of size {kh}x{kw}")
    # transpose of the valid correlation: zero-pad by the kernel size, swap conv <-> corr
    full = _blur(_pad(y, (kh - 1, kh - 1, kw - 1, kw - 1), "zero"), k4, "valid", swapped, method)
    return full if mode == "valid" else _pad_adjoint(full, pads, mode)


class Blur:
    """The blur operator A: x ↦ blur(x, kernel, mode, op, method), with ``A.adjoint`` = Aᵀ.

    Example: ``A = Blur(torch.ones(3, 3) / 9, mode="reflect"); y = A(x); z = A.adjoint(y)``.
    """

    def __init__(self, kernel: torch.Tensor, mode: str = "circular", op: str = "conv", method: str = "auto"):
        check_tensor(kernel, "kernel", (2, 3, 4))
        _check_options(mode, op, method)
        self.kernel, self.mode, self.op, self.method = kernel, mode, op, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur(x, self.kernel, self.mode, self.op, self.method)

    __call__ = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return blur_adjoint(y, self.kernel, self.mode, self.op, self.method)

    def __repr__(self) -> str:
        return (
            f"Blur(kernel {tuple(self.kernel.shape)}, mode={self.mode!r}, op={self.op!r}, "
            f"method={self.method!r})"
        )


def psf2otf(k: torch.Tensor, shape, onesided: bool = False) -> torch.Tensor:
    """Transfer function of the kernel ``k`` (…, kh, kw) on an image grid of ``shape`` = (H, W).

    The kernel is zero-padded to (H, W) and its origin (kh//2, kw//2) rolled to (0, 0), then
    Fourier transformed (MATLAB's ``psf2otf``): for the circular convolution,
    ``blur(x, k, "circular", "conv") == irfft2(psf2otf(k, (H, W), onesided=True) * rfft2(x))``.
    For ``op="corr"`` use the complex conjugate. Returns a complex tensor (…, H, W), or
    (…, H, W//2 + 1) with ``onesided=True`` (the ``rfft2`` half-spectrum). Differentiable in k.
    """
    check_tensor(k, "k", (2, 3, 4))
    if not (
        isinstance(shape, (tuple, list))
        and len(shape) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise ValueError(f"shape must be a pair of positive ints (H, W), got {shape!r}")
    H, W = shape
    kh, kw = k.shape[-2:]
    if kh > H or kw > W:
        raise ValueError(f"k of size {kh}x{kw} is larger than the {H}x{W} grid of shape")
    rolled = torch.roll(F.pad(k, (0, W - kw, 0, H - kh)), (-(kh // 2), -(kw // 2)), dims=(-2, -1))
    return torch.fft.rfft2(rolled) if onesided else torch.fft.fft2(rolled)
