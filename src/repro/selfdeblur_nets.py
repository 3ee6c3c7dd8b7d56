"""The generators of SelfDeblur (Ren et al., CVPR 2020), x = Gx(θx) and k = Gk(θk) of eq. (6) of
Kotera et al., with a leading restart axis; :mod:`repro.selfdeblur` fits them.

Gx is the DIP ``skip`` network with non-local blocks, Gk a two-layer perceptron ending in a
softmax (FACTS.md, "SelfDeblur"). Every module holds R independent copies of its parameters and
runs them as one grouped computation: convolutions with ``groups=R``, one BatchNorm channel per
(restart, channel), so that statistics stay per restart, and batched matrix products. Restart r
draws its initial weights from its own generator, so a batched run computes what R single runs
compute (up to floating-point rounding of the grouped kernels). BatchNorm always uses the batch
statistics of the one image, as SelfDeblur (which never calls ``eval()``) does.

``ImageGenerator.fast`` switches on the two parts of :mod:`repro.selfdeblur`'s fast CPU path that
live here: the upsampling computed directly at the size Concat crops it to, and the non-local
product re-associated as θᵀ(φgᵀ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_int

# --------------------------------------------------------------------------------------------
# 1. Building blocks with a leading restart axis
# --------------------------------------------------------------------------------------------


def _uniform_(param: torch.Tensor, bound: float, generators: Sequence[torch.Generator] | None) -> None:
    """Fill ``param[r]`` with U(−bound, bound) from ``generators[r]`` (the global RNG if None).

    PyTorch's default initialisation of ``Conv2d``/``Linear`` (Kaiming-uniform with a = √5 for
    the weight, and the bias rule) is exactly U(±1/√fan_in) for both weight and bias.
    """
    with torch.no_grad():
        for r in range(param.shape[0]):
            gen = None if generators is None else generators[r]
            values = torch.rand(param.shape[1:], generator=gen, dtype=torch.float64)
            param[r].copy_((2 * values - 1) * bound)


class RestartConv2d(nn.Module):
    """R independent ``Conv2d(in_channels, out_channels, size, stride)`` with reflection
    padding of (size − 1)/2 (DIP's ``conv(..., pad='reflection')``), run as one grouped
    convolution on (1, R·in_channels, H, W)."""

    def __init__(self, restarts: int, in_channels: int, out_channels: int, size: int, stride: int = 1,
                 generators=None):
        super().__init__()
        self.restarts, self.size, self.stride = restarts, size, stride
        self.weight = nn.Parameter(torch.empty(restarts, out_channels, in_channels, size, size))
        self.bias = nn.Parameter(torch.empty(restarts, out_channels))
        bound = 1 / math.sqrt(in_channels * size * size)
        _uniform_(self.weight, bound, generators)
        _uniform_(self.bias, bound, generators)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.size - 1) // 2
        if pad:
            x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        return F.conv2d(x, self.weight.flatten(0, 1), self.bias.flatten(), stride=self.stride, groups=self.restarts)


class RestartBatchNorm2d(nn.Module):
    """R independent ``BatchNorm2d(channels)`` in training mode (batch statistics, eps 1e-5):
    one normalisation per (restart, channel) channel of (1, R·channels, H, W). ``zero=True``
    initialises the affine weight to 0 (the non-local block's output BN), else to 1."""

    def __init__(self, restarts: int, channels: int, zero: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.full((restarts, channels), 0.0 if zero else 1.0))
        self.bias = nn.Parameter(torch.zeros(restarts, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, None, None, self.weight.flatten(), self.bias.flatten(), training=True, eps=1e-5)


class ConvBlock(nn.Module):
    """conv → BatchNorm → LeakyReLU(0.2): DIP's ``conv``, ``bn``, ``act`` triple (the activation
    in place, as DIP's ``act``)."""

    def __init__(self, restarts, in_channels, out_channels, size, stride=1, generators=None):
        super().__init__()
        self.conv = RestartConv2d(restarts, in_channels, out_channels, size, stride, generators)
        self.bn = RestartBatchNorm2d(restarts, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.bn(self.conv(x)), 0.2, inplace=True)


class NonLocalBlock(nn.Module):
    """Non-local block, dot-product version with sub-sampling (Wang et al. 2018, as used by
    SelfDeblur): with θ, φ, g 1×1 convolutions to C/2 channels, φ and g followed by a 2×2 max
    pooling, N the number of pooled positions,

        z = x + BN(W · y),   y_i = (1/N) Σ_j (θ_i · φ_j) g_j,

    W a 1×1 convolution back to C channels and the BN's affine weight and bias initialised to 0
    (the block starts as the identity). There is no softmax: the normalisation is the constant
    1/N, so y = θᵀ(φ gᵀ)/N equals (θᵀφ/N) gᵀ exactly; ``reassociate=True`` computes the former,
    a (C/2)×(C/2) matrix instead of an HW×N one -- the same mathematics, fewer operations.
    """

    def __init__(self, restarts: int, channels: int, generators=None):
        super().__init__()
        inner = channels // 2
        self.restarts, self.inner = restarts, inner
        self.g = RestartConv2d(restarts, channels, inner, 1, generators=generators)
        self.theta = RestartConv2d(restarts, channels, inner, 1, generators=generators)
        self.phi = RestartConv2d(restarts, channels, inner, 1, generators=generators)
        self.out = RestartConv2d(restarts, inner, channels, 1, generators=generators)
        self.out_bn = RestartBatchNorm2d(restarts, channels, zero=True)
        self.reassociate = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        R, C, (H, W) = self.restarts, self.inner, x.shape[-2:]
        theta = self.theta(x).reshape(R, C, H * W)
        phi = F.max_pool2d(self.phi(x), 2).reshape(R, C, -1)
        g = F.max_pool2d(self.g(x), 2).reshape(R, C, -1)
        n = phi.shape[-1]
        if self.reassociate:  # yᵀ = (g φᵀ / N) θ : (C×N)(N×C)(C×HW)
            y = torch.bmm(torch.bmm(g, phi.transpose(1, 2)) / n, theta)
        else:  # y = (θᵀ φ / N) gᵀ : (HW×C)(C×N)(N×C), the reference formulation
            y = torch.bmm(torch.bmm(theta.transpose(1, 2), phi) / n, g.transpose(1, 2)).transpose(1, 2)
        return x + self.out_bn(self.out(y.reshape(1, R * C, H, W)))


def _concat_per_restart(restarts: int, *parts: torch.Tensor) -> torch.Tensor:
    """DIP's ``Concat``: crop every part centrally to the smallest height and width, then stack
    the channels of each restart: (1, R·C₁, ·,·), (1, R·C₂, ·,·) → (1, R·(C₁+C₂), H, W)."""
    h = min(p.shape[-2] for p in parts)
    w = min(p.shape[-1] for p in parts)
    cropped = []
    for p in parts:
        top, left = (p.shape[-2] - h) // 2, (p.shape[-1] - w) // 2
        cropped.append(p[..., top : top + h, left : left + w])
    return torch.cat([p.reshape(restarts, -1, h, w) for p in cropped], dim=1).reshape(1, -1, h, w)


# --------------------------------------------------------------------------------------------
# 2. The generators
# --------------------------------------------------------------------------------------------


class SkipLevel(nn.Module):
    """One scale of DIP's ``skip`` encoder–decoder, wrapping the deeper scales (``inner``).

    With x the input of this scale (``in_channels`` channels)::

        skip   = ConvBlock(1×1, in → skip_channels)(x)
        deeper = ConvBlock(3×3 stride 2, in → channels)(x)
                 [NonLocalBlock(channels)]                  (levels ≥ 2 in SelfDeblur)
                 ConvBlock(3×3, channels → channels)
                 [inner scales]                              (all but the deepest level)
                 bilinear upsampling ×2 (align_corners=False)
        out    = BN(concat(skip, deeper))                   (central crop to the smaller size)
                 ConvBlock(3×3, skip + channels → channels)
                 ConvBlock(1×1, channels → channels)        (``need1x1_up=True``)
    """

    def __init__(self, restarts, in_channels, channels, skip_channels, nonlocal_block, inner=None,
                 generators=None):
        super().__init__()
        self.restarts = restarts
        self.skip = ConvBlock(restarts, in_channels, skip_channels, 1, generators=generators)
        self.down = ConvBlock(restarts, in_channels, channels, 3, stride=2, generators=generators)
        self.nonlocal_block = NonLocalBlock(restarts, channels, generators) if nonlocal_block else None
        self.down2 = ConvBlock(restarts, channels, channels, 3, generators=generators)
        self.inner = inner
        self.merge_bn = RestartBatchNorm2d(restarts, skip_channels + channels)
        self.up = ConvBlock(restarts, skip_channels + channels, channels, 3, generators=generators)
        self.up1x1 = ConvBlock(restarts, channels, channels, 1, generators=generators)
        self.upsample_to_skip = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x)
        deeper = self.down(x)
        if self.nonlocal_block is not None:
            deeper = self.nonlocal_block(deeper)
        deeper = self.down2(deeper)
        if self.inner is not None:
            deeper = self.inner(deeper)
        if self.upsample_to_skip:
            # The ×2 upsampling is 2⌈s/2⌉ ≥ s pixels and Concat crops it at offset
            # (2⌈s/2⌉ − s)//2 = 0: computing only the first s rows and columns (the ×2 sampling
            # positions, explicit scales) gives the same values without the crop's copy.
            deeper = torch.ops.aten.upsample_bilinear2d(deeper, list(skip.shape[-2:]), False, 2.0, 2.0)
        else:
            deeper = F.interpolate(deeper, scale_factor=2, mode="bilinear", align_corners=False)
        merged = self.merge_bn(_concat_per_restart(self.restarts, skip, deeper))
        return self.up1x1(self.up(merged))


#: Smallest height/width of Gx's output: the deepest level must keep 2×2 pixels.
MIN_IMAGE_SIZE = 33


def level_sizes(size: int, levels: int = 5) -> list[int]:
    """The height (or width) of each of Gx's ``levels`` stride-2 levels for an input of ``size``
    pixels, outermost first: a 3×3 stride-2 convolution with padding 1 turns n into ⌈n/2⌉, so
    level i has ⌈size / 2^i⌉."""
    check_int(size, "size", 1)
    check_int(levels, "levels", 1)
    return [-(-size // 2**i) for i in range(1, levels + 1)]


def kernel_pair(kernel_size) -> tuple[int, int]:
    """``kernel_size`` (int or pair) as (kh, kw) of odd ints >= 1, else ValueError."""
    pair = (kernel_size, kernel_size) if isinstance(kernel_size, int) and not isinstance(kernel_size, bool) \
        else kernel_size
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in pair)):
        raise ValueError(f"kernel_size must be a positive int or a pair (kh, kw) of them, got {kernel_size!r}")
    if pair[0] % 2 == 0 or pair[1] % 2 == 0:
        raise ValueError(f"kernel_size must be odd (SelfDeblur's kernels are odd), got {kernel_size!r}")
    return int(pair[0]), int(pair[1])


def _check_generators(generators, restarts: int) -> None:
    if generators is not None and (not isinstance(generators, Sequence) or len(generators) != restarts
                                   or not all(isinstance(g, torch.Generator) for g in generators)):
        raise ValueError(f"generators must be a list of {restarts} torch.Generator (one per restart), "
                         f"got {generators!r}")


class ImageGenerator(nn.Module):
    """Gx: SelfDeblur's image generator, DIP's ``skip`` network (FACTS.md "SelfDeblur").

    ``skip(8, out_channels, num_channels_down=[128]*5, num_channels_up=[128]*5,
    num_channels_skip=[16]*5, upsample_mode='bilinear', need_sigmoid=True, need1x1_up=True,
    pad='reflection', act_fun='LeakyReLU')`` with non-local blocks at levels 2, 3, 4 (0-based):
    five nested :class:`SkipLevel`, a 1×1 output convolution and a sigmoid. The output has the
    input's height and width. 2,365,521 parameters for one output channel (2,365,779 for three);
    ``restarts`` = R independent copies.

    Input (1, R·in_channels, H, W) -- restart r's noise in channels r·in_channels… -- output
    (R, out_channels, H, W). Five stride-2 levels with reflection padding need
    ceil(min(H, W) / 32) ≥ 2, i.e. H, W ≥ :data:`MIN_IMAGE_SIZE`.
    """

    def __init__(self, in_channels: int = 8, out_channels: int = 1, channels: int = 128,
                 skip_channels: int = 16, levels: int = 5, nonlocal_from: int = 2, restarts: int = 1,
                 generators: Sequence[torch.Generator] | None = None):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("channels", channels),
                            ("skip_channels", skip_channels), ("levels", levels), ("restarts", restarts)):
            check_int(value, name, 1)
        _check_generators(generators, restarts)
        self.restarts, self.in_channels, self.out_channels = restarts, in_channels, out_channels
        chain = [SkipLevel(restarts, in_channels if i == 0 else channels, channels, skip_channels,
                           i >= nonlocal_from, generators=generators) for i in range(levels)]
        for outer, inner in zip(chain[:-1], chain[1:]):
            outer.inner = inner
        self.body = chain[0]
        self.out = RestartConv2d(restarts, channels, out_channels, 1, generators=generators)
        self._fast = False

    @property
    def fast(self) -> bool:
        """The fast CPU path: the re-associated non-local product and the upsampling computed
        at the cropped size.
        The same mathematics as the plain path, which differs only by floating-point rounding
        (checked by the tests in float64). See also :func:`tune_cpu_allocator`."""
        return self._fast

    @fast.setter
    def fast(self, enabled: bool) -> None:
        self._fast = bool(enabled)
        for module in self.modules():
            if isinstance(module, NonLocalBlock):
                module.reassociate = self._fast
            if isinstance(module, SkipLevel):
                module.upsample_to_skip = self._fast

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[0] != 1 or z.shape[1] != self.restarts * self.in_channels:
            raise ValueError(f"z must be (1, restarts·in_channels = {self.restarts * self.in_channels}, H, W), "
                             f"got shape {tuple(z.shape)}")
        x = torch.sigmoid(self.out(self.body(z)))
        return x.reshape(self.restarts, self.out_channels, *x.shape[-2:]).contiguous()


class KernelGenerator(nn.Module):
    """Gk: SelfDeblur's kernel generator (FACTS.md "SelfDeblur"): an MLP
    ``in_features → hidden`` (ReLU6) ``→ kh·kw`` followed by a softmax over all kh·kw entries,
    so the kernel is non-negative and sums to 1 (constraint (7)). Input (R, in_features), one
    vector per restart; output (R, kh, kw). 200·1000 + 1000 + 1000·kh·kw + kh·kw parameters per
    restart with the defaults."""

    def __init__(self, kernel_size: tuple[int, int], in_features: int = 200, hidden: int = 1000,
                 restarts: int = 1, generators: Sequence[torch.Generator] | None = None):
        super().__init__()
        self.kernel_size = kernel_pair(kernel_size)
        for name, value in (("in_features", in_features), ("hidden", hidden), ("restarts", restarts)):
            check_int(value, name, 1)
        _check_generators(generators, restarts)
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.weight1 = nn.Parameter(torch.empty(restarts, hidden, in_features))
        self.bias1 = nn.Parameter(torch.empty(restarts, hidden))
        self.weight2 = nn.Parameter(torch.empty(restarts, taps, hidden))
        self.bias2 = nn.Parameter(torch.empty(restarts, taps))
        for param, fan_in in ((self.weight1, in_features), (self.bias1, in_features),
                              (self.weight2, hidden), (self.bias2, hidden)):
            _uniform_(param, 1 / math.sqrt(fan_in), generators)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        expected = (self.bias1.shape[0], self.weight1.shape[2])
        if tuple(z.shape) != expected:
            raise ValueError(f"z must be (restarts, in_features) = {expected}, got shape {tuple(z.shape)}")
        h = F.relu6(torch.baddbmm(self.bias1.unsqueeze(-1), self.weight1, z.unsqueeze(-1)))
        logits = torch.baddbmm(self.bias2.unsqueeze(-1), self.weight2, h).squeeze(-1)
        return torch.softmax(logits, dim=-1).reshape(-1, *self.kernel_size)
