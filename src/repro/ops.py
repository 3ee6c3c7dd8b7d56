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

:class:`PreparedBlur` applies one fixed kernel to many images of one size (a deblurring filter
such as the D3 DRK) with the same results to rounding, at the cost of a bare FFT convolution of
the image: the kernel's spectrum is computed once, the FFT runs on the image's own grid and only
the border bands are recomputed directly.

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

# Kernels with at least this many taps (kh * kw) are applied by FFT when method="auto": below it the
# direct convolution is faster, above it the FFT's flat cost wins. ``benchmarks/bench_ops.py``
# measures the crossover; it moves with the load, the image size and the device.
FFT_CROSSOVER_TAPS = 49


# PreparedBlur's direct method cuts the image into up to this many bands of rows and stacks them
# as channels: oneDNN's depthwise convolution vectorises over channels in channels-last layout,
# and 3 colour channels alone leave most of a vector register empty (``benchmarks/bench_dil.py``
# times the DRK's direct path).
DIRECT_TILES = 16

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


def _pad_into(out: torch.Tensor, x: torch.Tensor, pads, mode: str) -> torch.Tensor:
    """Write ``_pad(x, pads, mode)`` into the top-left corner of ``out`` and return that view.

    ``out`` (…, ≥ H + top + bottom, ≥ W + left + right) may have any memory layout; the rest of
    it is left untouched. One pass over x and none over a temporary: the values are those of
    :func:`_pad` exactly (rows extended first, then columns, each a copy of a pixel).
    """
    top, bottom, left, right = pads
    H, W = x.shape[-2:]
    view = out[..., : H + top + bottom, : W + left + right]
    view[..., top : top + H, left : left + W] = x
    if mode == "zero":
        for part in (view[..., :top, :], view[..., top + H :, :], view[..., :, :left], view[..., :, left + W :]):
            part.zero_()
        return view
    rows = _border_index(H, top, bottom, mode, x.device)
    view[..., :top, left : left + W] = x.index_select(-2, rows[:top])
    view[..., top + H :, left : left + W] = x.index_select(-2, rows[top:])
    columns = left + _border_index(W, left, right, mode, x.device)
    view[..., :, :left] = view.index_select(-1, columns[:left])
    view[..., :, left + W :] = view.index_select(-1, columns[left:])
    return view


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


def _fft_grid(P: int, Q: int) -> tuple[int, int]:
    """FFT grid of at least P x Q: the next 2-3-5-smooth sizes for real transforms."""
    return scipy.fft.next_fast_len(P, real=True), scipy.fft.next_fast_len(Q, real=True)


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
    grid = _fft_grid(P, Q)
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


def _gather_extended(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
    """x at the positions rows × cols of its extension by ``mode`` (indices may lie outside x).

    The same pixel values as :func:`_pad` (one extension, :func:`_source_index`), read directly:
    (B, C, len(rows), len(cols)).
    """
    H, W = x.shape[-2:]
    if mode == "zero":
        inside = ((rows >= 0) & (rows < H))[:, None] & ((cols >= 0) & (cols < W))[None, :]
        window = x.index_select(-2, rows.clamp(0, H - 1)).index_select(-1, cols.clamp(0, W - 1))
        return window * inside.to(x.dtype)
    return x.index_select(-2, _source_index(rows, H, mode)).index_select(-1, _source_index(cols, W, mode))


class PreparedBlur:
    """``blur(x, kernel, mode, op, method)`` for one fixed kernel and one image size, prepared once.

    For the repeated application of one kernel (kh, kw), shared by every image and channel, to
    images (B, C, H, W) with (H, W) = ``shape`` (e.g. a deblurring filter such as the D3 DRK).
    Everything that depends only on the kernel and the size is computed at construction.

    * ``fft``: one circular correlation on the **image's own grid** (H, W), or the next
      2-3-5-smooth size when H or W is not one, with the kernel's spectrum precomputed: one
      ``rfft2`` over all images and channels, a product, one ``irfft2``, i.e. exactly the cost
      of a bare FFT convolution of the image (no padded grid). Away from the borders that *is*
      the blur: an output at least (top, bottom, left, right) = the kernel's reach from every
      border reads no wrapped pixel. The bands along the borders, where the circular
      correlation would read the opposite side instead of the ``mode`` extension, are then
      recomputed directly from the extended image (:func:`_gather_extended`): four strips as
      wide as the kernel's reach, negligible for large images. ``mode="valid"`` needs no band
      (its outputs never wrap), nor does ``circular`` on a grid equal to the image.
    * ``direct``: pads x once, cuts it into up to :data:`DIRECT_TILES` bands of rows (each
      with the kh − 1 rows of overlap its outputs read), stacks the bands of every image and
      channel as the channels of one channels-last tensor and runs one depthwise ``conv2d``.
      On the CPU, oneDNN vectorises depthwise convolutions over channels in that layout: for an
      11×11 kernel on a 1024² RGB image, ~5× faster than the planar grouped convolution of
      :func:`blur` (``benchmarks/bench_dil.py``).

    The result equals ``blur(x, kernel, mode, op, method)`` up to rounding (≈1e-7 in float32;
    ``method="auto"`` is resolved the same way). The kernel is copied (detached): changing it
    later, or differentiating in it, has no effect.
    """

    def __init__(self, kernel: torch.Tensor, shape, mode: str = "circular", op: str = "conv", method: str = "auto"):
        check_tensor(kernel, "kernel", (2,))
        _check_options(mode, op, method)
        if not (isinstance(shape, (tuple, list)) and len(shape) == 2
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
            raise ValueError(f"shape must be a pair of positive ints (H, W), got {shape!r}")
        H, W = shape
        kh, kw = kernel.shape
        if mode == "valid":
            if kh > H or kw > W:
                raise ValueError(f"k of size {kh}x{kw} is larger than the {H}x{W} image: mode 'valid' has no output")
            self.pads = (0, 0, 0, 0)
        else:
            self.pads = _blur_pads(kh, kw, op)
            _check_pads_fit((H, W), self.pads, mode, f"k of size {kh}x{kw}")
        self.shape, self.mode, self.op, self.method = (H, W), mode, op, _resolve_method(method, kh, kw)
        top, bottom, left, right = self.pads
        self.padded = (H + top + bottom, W + left + right)
        self.out_shape = (self.padded[0] - kh + 1, self.padded[1] - kw + 1)
        g = (kernel.flip(-2, -1) if op == "conv" else kernel).detach().clone()
        self.dtype, self.device, self.weight = g.dtype, g.device, g[None, None]
        if self.method == "fft":
            self.grid = _fft_grid(max(H, kh), max(W, kw))  # the kernel must fit in the grid
            # z[i] = Σ_m g[m] x[i + m − (top, left)]: the kernel's origin rolled to (top, left)
            rolled = torch.roll(F.pad(g, (0, self.grid[1] - kw, 0, self.grid[0] - kh)), (-top, -left), (0, 1))
            self.spectrum = torch.fft.rfft2(rolled).conj().resolve_conj()  # a lazy conj costs a copy per call
            self.exact = mode == "valid" or (mode == "circular" and self.grid == self.shape)
            if not self.exact:
                self._prepare_bands()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", (4,))
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"x of shape {tuple(x.shape)} does not match the prepared image size {self.shape}")
        if x.dtype != self.dtype or x.device != self.device:
            raise ValueError(
                f"x ({x.dtype}, {x.device}) does not match the prepared kernel ({self.dtype}, {self.device})"
            )
        return self.apply(x)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The call without validating ``x`` (one pass over the image less): for callers that
        have checked it already, as :func:`repro.dil.deblur_drk` does. Returns a new tensor."""
        return self._fft(x) if self.method == "fft" else self._direct(x)

    def _prepare_bands(self) -> None:
        """Source indices of the strips of the extended image that the border bands read.

        Rows band (top and bottom, all columns): two strips of ``ry = max(top, bottom) + kh − 1``
        extended rows × (W + kw − 1) extended columns, stacked. Columns band (left and right, the
        rows in between, whose windows lie inside the image): two strips of all H rows ×
        ``rx = max(left, right) + kw − 1`` extended columns. For ``zero`` a 0/1 mask stands for
        the pixels outside the image.
        """
        (H, W), (top, bottom, left, right) = self.shape, self.pads
        kh, kw = self.weight.shape[-2:]
        ry, rx = max(top, bottom) + kh - 1, max(left, right) + kw - 1
        dev = self.device
        rows = torch.cat([torch.arange(-top, ry - top, device=dev), torch.arange(H + bottom - ry, H + bottom, device=dev)])
        cols = torch.arange(-left, W + right, device=dev)
        side = torch.cat([torch.arange(-left, rx - left, device=dev), torch.arange(W + right - rx, W + right, device=dev)])
        self._bands = {"ry": ry, "rx": rx}
        for name, index, n in (("rows", rows, H), ("cols", cols, W), ("side", side, W)):
            if self.mode == "zero":
                inside = (index >= 0) & (index < n)
                self._bands[name] = index.clamp(0, n - 1)
                self._bands[name + "_mask"] = inside.to(self.dtype)
            else:
                self._bands[name] = _source_index(index, n, self.mode)

    def _fft(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft2(x, s=self.grid)
        spectrum *= self.spectrum
        z = torch.fft.irfft2(spectrum, s=self.grid)[..., : self.out_shape[0], : self.out_shape[1]]
        if self.exact:
            return z
        # the border bands, where the circular correlation read the opposite side instead of the
        # extension: recomputed directly, two strips per convolution (images and strips as batch)
        (H, W), (top, bottom, left, right), b = self.shape, self.pads, self._bands
        B, C = x.shape[:2]
        ry, rx = b["ry"], b["rx"]
        n_top, n_bottom, n_left, n_right = min(top, H), min(bottom, H), min(left, W), min(right, W)  # small images
        if top or bottom:
            strips = x.index_select(-2, b["rows"]).index_select(-1, b["cols"])  # (B, C, 2·ry, W + kw − 1)
            if self.mode == "zero":
                strips = strips * (b["rows_mask"][:, None] * b["cols_mask"][None, :])
            out = F.conv2d(strips.reshape(2 * B * C, 1, ry, strips.shape[-1]), self.weight).reshape(B, C, 2, -1, W)
            z[..., :n_top, :] = out[:, :, 0, :n_top]
            z[..., H - n_bottom :, :] = out[:, :, 1, out.shape[3] - n_bottom :]
        if H - top - bottom > 0 and (left or right):
            strips = x.index_select(-1, b["side"])  # (B, C, H, 2·rx): rows inside the image
            if self.mode == "zero":
                strips = strips * b["side_mask"]
            strips = strips.unflatten(-1, (2, rx)).movedim(-2, 2).reshape(2 * B * C, 1, H, rx)
            out = F.conv2d(strips, self.weight).reshape(B, C, 2, H - top - bottom, -1)
            z[..., top : H - bottom, :n_left] = out[:, :, 0, :, :n_left]
            z[..., top : H - bottom, W - n_right :] = out[:, :, 1, :, out.shape[4] - n_right :]
        return z

    def _direct(self, x: torch.Tensor) -> torch.Tensor:
        N = x.shape[0] * x.shape[1]
        (Ho, Wo), (P, Q) = self.out_shape, self.padded
        kh, kw = self.weight.shape[-2:]
        tiles = max(1, min(DIRECT_TILES, Ho // (2 * kh)))
        h = -(-Ho // tiles)  # output rows per tile; the last tile may run past the image
        padded = x.new_empty(N, tiles * h + kh - 1, Q)
        padded[:, P:].zero_()  # rows only the discarded outputs of the last tile read
        _pad_into(padded, x.reshape(N, *self.shape), self.pads, self.mode)
        # tile t reads padded rows [t·h, t·h + h + kh − 1): N·tiles channels, channels-last
        stacked = x.new_empty(1, N * tiles, h + kh - 1, Q).contiguous(memory_format=torch.channels_last)
        stacked[0].view(N, tiles, h + kh - 1, Q).copy_(padded.unfold(1, h + kh - 1, h).transpose(-1, -2))
        z = F.conv2d(stacked, self.weight.expand(N * tiles, 1, kh, kw).contiguous(), groups=N * tiles)
        out = x.new_empty(N, tiles * h, Wo)
        out.view(N, tiles, h, Wo).copy_(z[0].view(N, tiles, h, Wo))
        return out[:, :Ho].reshape(*x.shape[:2], Ho, Wo)

    def __repr__(self) -> str:
        return (f"PreparedBlur(image {self.shape}, mode={self.mode!r}, op={self.op!r}, "
                f"method={self.method!r})")


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
