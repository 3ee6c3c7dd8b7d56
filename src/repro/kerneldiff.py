"""Kernel-Diff: a conditional diffusion model of blur kernels, guided by a non-blind solver.

Sanghvi, Chi & Chan, "Kernel Diffusion: An Alternate Approach to Blind Deconvolution" (2023);
equation numbers refer to that paper (``papers/kernel-diffusion.md``), and the facts the text
leaves out (architecture, schedule, kernel representation, guidance constant, refinement) come
from the authors' code as summarised in ``papers/FACTS.md`` ("Kernel-Diff").

The file follows the method, in order:

1. **Kernel representation.** The diffusion runs on kernels scaled to [−1, 1]; a sample k̂₀
   becomes a blur kernel by k̃ = clip((k̂₀ + 1)/2, 0) / Σ (:func:`kernel_to_unit`,
   :func:`unit_to_kernel`).
2. **Schedule** (DDPM, eq. 6–8, 18–19): T = 1000, β linear from 1e-4 to 0.02, the fixed
   posterior variance β̃ₜ, k̂₀ clamped to [−1, 1] (:class:`Schedule`), and the strided
   (DDIM-style) step that generalises it (:meth:`Schedule.ddim_step`).
3. **The conditional ε-network** ε_θ(kₜ, y, t) (§3.3): a U-Net with two encoders, one for the
   blurred image and one for the kernel bilinearly upsampled to the image size, whose per-level
   features are concatenated and used as skips; a middle block ResBlock–attention–ResBlock; a
   decoder; a zero-initialised output convolution and average pooling back to the kernel size
   (:class:`KernelUNet`, :class:`UNetConfig`).
4. **Training** (eq. 17): Adam, gradient clipping 1, EMA 0.995, seeded and resumable
   (:func:`train`).
5. **Sampling** (Algorithm 1): reverse diffusion, optionally guided at each step by the
   reblurring loss of a non-blind solver F, then the Stage II refinement; strided samplers with
   fewer steps; several kernels per image in one batch (:func:`sample`).

The chapters' experiments around it (profiles, trained models, test cases, tables) are
:mod:`repro.experiments.kerneldiff`.

Conventions, once for the module: images are (B, 3, H, W) in [0, 1] (the network sees 2y − 1);
kernels (B, 1, s, s) sum to 1, true convolution (``op="conv"``) with the origin at (s//2, s//2);
the blur of the data and of the reblurring loss is "reflection padding, same size"
(:func:`reblur`), as in the official code. A non-blind solver is any callable
``solver(y (B, 3, H, W), k (B, 1, s, s)) -> x̂ (B, 3, H, W)`` differentiable in k
(:func:`wiener_solver`, or ``repro.nonblind.LearnedWiener``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_positive, check_positive_int, check_tensor, count_parameters, is_int
from ._distributed import Shard
from ._io import TrainingCheckpoint, jsonable
from ._threads import fixed_cpu_threads
from .nonblind import wiener
from .synth import blur_reflect

Solver = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# 1. Kernel representation and the reblurring loss
# --------------------------------------------------------------------------------------------


def kernel_to_unit(k: torch.Tensor) -> torch.Tensor:
    """Map blur kernels (B, 1, s, s) (non-negative) to the diffusion's range [−1, 1].

    Each kernel is divided by its maximum and mapped affinely, 0 → −1 and the peak → 1. FACTS.md
    gives only the way back (:func:`unit_to_kernel`); the peak scaling is our reading, and
    :func:`unit_to_kernel` inverts it exactly (``unit_to_kernel(kernel_to_unit(k)) == k`` for k
    summing to 1).
    """
    check_tensor(k, "k", (4,))
    if (k < 0).any():
        raise ValueError("k must be non-negative")
    peak = k.amax(dim=(-2, -1), keepdim=True)
    if (peak == 0).any():
        raise ValueError("k must not be identically zero")
    return 2 * k / peak - 1


def unit_to_kernel(k0: torch.Tensor) -> torch.Tensor:
    """k̃ = clip((k̂₀ + 1)/2, 0) / Σ: a diffusion sample in [−1, 1] as a blur kernel summing to 1.

    (FACTS.md, "Kernel-Diff".) A sample with no entry above −1 has nothing to normalise; it
    becomes the uniform kernel rather than a division by zero. Differentiable in k̂₀.
    """
    k = ((k0 + 1) / 2).clamp_min(0)
    total = k.sum(dim=(-2, -1), keepdim=True)
    uniform = torch.full_like(k, 1.0 / (k.shape[-2] * k.shape[-1]))
    return torch.where(total > 0, k / total.clamp_min(torch.finfo(k.dtype).tiny), uniform)


def reblur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """k ⊛ x, same size, reflection padding: the data model of :func:`repro.synth.blur_reflect`.

    ``x`` (B, C, H, W), ``k`` (B, 1, s, s): one kernel per item, applied to every channel.
    Differentiable in both.
    """
    return blur_reflect(x, k.to(x.dtype))


def reblur_loss(y: torch.Tensor, k: torch.Tensor, solver: Solver) -> tuple[torch.Tensor, torch.Tensor]:
    """L = MSE(y, k ⊛ F(y, k)) per item (B,), the reblurring loss of eq. 20 / Algorithm 1, and x̂ = F(y, k)."""
    x_hat = solver(y, k)
    return (reblur(x_hat, k) - y).square().flatten(1).mean(dim=1), x_hat


def wiener_solver(nsr: float) -> Solver:
    """The classical differentiable F: ``repro.nonblind.wiener`` with a flat noise-to-signal
    ratio ``nsr``, symmetric boundary, for kernels (B, 1, s, s). The chapters' Wiener rows use
    :func:`repro.experiments.kerneldiff.classical_solver`."""
    nsr = check_positive(nsr, "nsr")

    def solve(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return wiener(y, k[:, 0].to(y.dtype), nsr, mode="symmetric")

    solve.key = f"wiener(nsr={nsr:g})"
    solve.nsr = nsr
    return solve


# --------------------------------------------------------------------------------------------
# 2. The DDPM schedule
# --------------------------------------------------------------------------------------------


class Schedule:
    """DDPM with T steps and β linear from ``beta_start`` to ``beta_end`` (FACTS.md: 1000, 1e-4, 0.02).

    Tensors (float64, index t = 0 … T−1 for the paper's t = 1 … T): ``betas``, ``alphas`` = 1 − β,
    ``alpha_bar`` ᾱₜ = Πα, ``alpha_bar_prev`` (ᾱ of the previous step, 1 before the first) and
    ``posterior_variance`` β̃ₜ = βₜ (1 − ᾱₜ₋₁)/(1 − ᾱₜ), the fixed variance σₜ² of eq. 18.
    """

    def __init__(self, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        if not is_int(T, 2):
            raise ValueError(f"T must be an int >= 2, got {T!r}")
        check_positive(beta_start, "beta_start")
        check_positive(beta_end, "beta_end")
        if not beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        self.T = T
        self.betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        self.alphas = 1 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.posterior_variance = self.betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)

    def _at(self, values: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
        """values[t] broadcast to (B, 1, 1, 1) in ``like``'s dtype and device; t = −1 reads ᾱ = 1."""
        t = torch.as_tensor(t, device="cpu").reshape(-1)
        if ((t < -1) | (t >= self.T)).any():
            raise ValueError(f"timesteps must lie in [0, {self.T - 1}], got {t.tolist()}")
        padded = torch.cat([torch.ones(1, dtype=values.dtype), values])  # index 0 is "t = −1"
        return padded[t + 1].to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1, 1)

    def q_sample(self, k0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """kₜ = √ᾱₜ k₀ + √(1 − ᾱₜ) ε (the forward process in closed form, eq. 8 and 17)."""
        ab = self._at(self.alpha_bar, t, k0)
        return ab.sqrt() * k0 + (1 - ab).sqrt() * noise

    def predict_k0(self, kt: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """k̂₀ = (kₜ − √(1 − ᾱₜ) ε) / √ᾱₜ (eq. 19), not clamped."""
        ab = self._at(self.alpha_bar, t, kt)
        return (kt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def eps_from_k0(self, kt: torch.Tensor, t, k0: torch.Tensor) -> torch.Tensor:
        """The ε consistent with kₜ and k̂₀: (kₜ − √ᾱₜ k̂₀) / √(1 − ᾱₜ) (inverse of :meth:`predict_k0`)."""
        ab = self._at(self.alpha_bar, t, kt)
        return (kt - ab.sqrt() * k0) / (1 - ab).sqrt()

    def posterior(self, k0: torch.Tensor, kt: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(kₜ₋₁ | kₜ, k₀) (Ho et al. eq. 7): the DDPM reverse step of eq. 18
        with ε_θ replaced by the ε of the (clamped) k̂₀."""
        ab, ab_prev = self._at(self.alpha_bar, t, kt), self._at(self.alpha_bar_prev, t, kt)
        beta, alpha = self._at(self.betas, t, kt), self._at(self.alphas, t, kt)
        mean = (beta * ab_prev.sqrt() / (1 - ab)) * k0 + ((1 - ab_prev) * alpha.sqrt() / (1 - ab)) * kt
        return mean, self._at(self.posterior_variance, t, kt)

    def ddim_step(self, kt: torch.Tensor, t, t_prev, k0: torch.Tensor, eta: float,
                  noise: torch.Tensor) -> torch.Tensor:
        """One strided step from t to t_prev < t (−1: the end), Song et al.'s DDIM:

        k_prev = √ᾱ_prev k̂₀ + √(1 − ᾱ_prev − σ²) ε̂ + σ z,  σ² = η² (1 − ᾱ_prev)/(1 − ᾱₜ) (1 − ᾱₜ/ᾱ_prev),

        with ε̂ = :meth:`eps_from_k0` of the clamped k̂₀. η = 0 is deterministic; with η = 1 and
        t_prev = t − 1, σ² = β̃ₜ and the step *is* the ancestral DDPM step of eq. 18 (the mean
        equals :meth:`posterior`'s), so one function serves both samplers.
        """
        ab = self._at(self.alpha_bar, t, kt)
        ab_prev = self._at(self.alpha_bar, t_prev, kt)
        var = eta**2 * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
        eps = self.eps_from_k0(kt, t, k0)
        return ab_prev.sqrt() * k0 + (1 - ab_prev - var).clamp_min(0).sqrt() * eps + var.sqrt() * noise

    def timesteps(self, steps: int) -> list[int]:
        """``steps`` timesteps from T − 1 down to 0, evenly spaced (all of them for steps = T)."""
        if not is_int(steps, 1) or steps > self.T:
            raise ValueError(f"steps must be an int in [1, {self.T}], got {steps!r}")
        if steps == 1:
            return [self.T - 1]
        return sorted({round(i * (self.T - 1) / (steps - 1)) for i in range(steps)}, reverse=True)


# --------------------------------------------------------------------------------------------
# 3. The conditional ε-network
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UNetConfig:
    """Shape of :class:`KernelUNet`.

    ``image_size`` (side of y) must be divisible by 2^(levels − 1); the kernel is bilinearly
    upsampled to it and the output average-pooled back to ``kernel_size`` (exactly ×4 in the
    paper, 256/64; adaptive pooling when the sizes are not multiples). ``channels``: width
    of each encoder level (FACTS.md: 32/64/128/256, one res-block per level, stride-2 conv
    downsampling); the middle block and the decoder work on the concatenated features, so at
    level l the decoder is ``2 · channels[l]`` wide, with ``decoder_blocks`` res-blocks per level
    (FACTS.md: 2). ``time_dim``: width of each encoder's timestep MLP (the two are concatenated
    for the middle and the decoder).
    """

    image_size: int = 256
    kernel_size: int = 64
    channels: tuple[int, ...] = (32, 64, 128, 256)
    encoder_blocks: int = 1
    decoder_blocks: int = 2
    time_dim: int = 128
    attention_heads: int = 4

    def __post_init__(self):
        for name in ("image_size", "kernel_size", "encoder_blocks", "decoder_blocks", "time_dim", "attention_heads"):
            check_positive_int(getattr(self, name), f"UNetConfig.{name}")
        if not (isinstance(self.channels, tuple) and self.channels and all(is_int(c, 1) for c in self.channels)):
            raise ValueError(f"UNetConfig.channels must be a non-empty tuple of positive ints, got {self.channels!r}")
        if self.kernel_size > self.image_size:
            raise ValueError(f"UNetConfig: kernel_size {self.kernel_size} exceeds image_size {self.image_size}")
        if self.image_size % 2 ** (len(self.channels) - 1):
            raise ValueError(f"UNetConfig: image_size {self.image_size} must be divisible by 2^{len(self.channels) - 1}")
        if (2 * self.channels[-1]) % self.attention_heads:
            raise ValueError("UNetConfig: attention_heads must divide 2 * channels[-1]")
        if self.time_dim % 2:
            raise ValueError("UNetConfig.time_dim must be even")


PAPER_UNET = UNetConfig()
"""The paper's configuration (FACTS.md): 256² images, 64² kernels, about 37 M parameters."""


def _groups(channels: int) -> int:
    return math.gcd(32, channels)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (B,) → (B, dim), as in DDPM/ADM."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResBlock(nn.Module):
    """ADM res-block: GroupNorm–SiLU–conv; the timestep embedding sets a scale and shift of the
    second GroupNorm (ADM's "scale-shift norm"); SiLU–conv (zero initialised, so the block starts
    as its skip path); 1×1 skip when the width changes."""

    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(t_dim, 2 * c_out)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        return self.skip(x) + self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels, residual, output projection zero-initialised."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x).reshape(B, C, H * W)).reshape(B * self.heads, 3 * C // self.heads, H * W).chunk(3, 1)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(C // self.heads), dim=-1)
        out = (v @ weights.transpose(1, 2)).reshape(B, C, H * W)
        return x + self.proj(out).reshape(B, C, H, W)


class Encoder(nn.Module):
    """conv_in, then per level ``blocks`` res-blocks and a stride-2 conv (except the last level);
    returns the features at the end of every level (finest first)."""

    def __init__(self, c_in: int, channels: tuple[int, ...], blocks: int, t_dim: int):
        super().__init__()
        self.conv_in = nn.Conv2d(c_in, channels[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        width = channels[0]
        for i, c in enumerate(channels):
            self.levels.append(nn.ModuleList(ResBlock(width if j == 0 else c, c, t_dim) for j in range(blocks)))
            width = c
            if i < len(channels) - 1:
                self.downs.append(nn.Conv2d(c, c, 3, stride=2, padding=1))

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> list[torch.Tensor]:
        h, features = self.conv_in(x), []
        for i, blocks in enumerate(self.levels):
            for block in blocks:
                h = block(h, temb)
            features.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        return features


def _time_mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))


def _fold_for_upsampling(w: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two 2-tap kernels that a 3-tap kernel ``w`` (along ``dim``) applies to a ×2
    nearest-upsampled signal, one per output phase: even outputs 2i read the low-resolution
    samples i − 1, i with taps (w₀, w₁ + w₂), odd outputs 2i + 1 read i, i + 1 with (w₀ + w₁, w₂)."""
    w0, w1, w2 = w.unbind(dim)
    return torch.stack([w0, w1 + w2], dim), torch.stack([w0 + w1, w2], dim)


def upsample_conv(h: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(F.interpolate(h, scale_factor=2, mode="nearest"))`` for a 3×3 ``conv`` with zero
    padding 1, computed at the low resolution: the output pixel (2i + a, 2j + b) only reads the
    pixels i − 1 … i + 1 (rows) and j − 1 … j + 1 (columns) of h, so each of the four phases
    (a, b) is a 2×2 convolution of h with taps folded from the 3×3 weights
    (:func:`_fold_for_upsampling`), 4/9 of the multiply-adds. The same mathematics (the zero
    padding of the upsampled image is the zero padding of h), differing only by rounding; the
    weights stay the 3×3 ``conv.weight``, so checkpoints are unchanged. ``benchmarks/bench_kerneldiff.py``
    times it against the plain formulation (the Performance page).
    """
    if (conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1) or conv.dilation != (1, 1)
            or conv.groups != 1 or conv.padding_mode != "zeros"):
        raise ValueError(f"upsample_conv needs a 3x3 convolution with zero padding 1, stride 1, got {conv}")
    B, _, H, W = h.shape
    padded = F.pad(h, (1, 1, 1, 1))
    phases = []
    for a, rows in enumerate(_fold_for_upsampling(conv.weight, 2)):
        phases.append(torch.stack([F.conv2d(padded[:, :, a : a + H + 1, b : b + W + 1], taps, conv.bias)
                                   for b, taps in enumerate(_fold_for_upsampling(rows, 3))], dim=-1))
    return torch.stack(phases, dim=3).reshape(B, -1, 2 * H, 2 * W)  # (B, C, H, a, W, b) → (B, C, 2H, 2W)


class KernelUNet(nn.Module):
    """ε_θ(kₜ, y, t) of §3.3 (FACTS.md: the official architecture).

    Two encoders (:class:`Encoder`): one for the blurred image y (3 channels, in [−1, 1]), one
    for kₜ bilinearly upsampled to the image size, each with its own timestep MLP; at every
    level their features are concatenated and kept as the skip of that level. The deepest
    concatenation goes through ResBlock–attention–ResBlock, then the decoder climbs back, each
    level taking the skip, with the two timestep embeddings concatenated; a zero-initialised
    3×3 output conv gives one channel at the image size, average-pooled to the kernel size.
    """

    def __init__(self, config: UNetConfig = PAPER_UNET):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise ValueError(f"config must be a UNetConfig, got {type(config).__name__}")
        self.config = config
        c, td = config.channels, config.time_dim
        self.time_image, self.time_kernel = _time_mlp(td), _time_mlp(td)
        self.image_encoder = Encoder(3, c, config.encoder_blocks, td)
        self.kernel_encoder = Encoder(1, c, config.encoder_blocks, td)
        mid = 2 * c[-1]
        self.middle = nn.ModuleList([ResBlock(mid, mid, 2 * td), AttentionBlock(mid, config.attention_heads),
                                     ResBlock(mid, mid, 2 * td)])
        self.decoder = nn.ModuleList()
        self.ups = nn.ModuleList()
        width = mid
        for level in reversed(range(len(c))):
            out = 2 * c[level]
            blocks = [ResBlock(width + 2 * c[level] if j == 0 else out, out, 2 * td) for j in range(config.decoder_blocks)]
            self.decoder.append(nn.ModuleList(blocks))
            width = out
            if level > 0:
                self.ups.append(nn.Conv2d(out, out, 3, padding=1))
        self.norm_out = nn.GroupNorm(_groups(width), width)
        self.conv_out = nn.Conv2d(width, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, kt: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``kt`` (B, 1, s, s), ``y`` (B, 3, H, W) in [−1, 1], ``t`` (B,) integer steps → ε̂ (B, 1, s, s)."""
        cfg = self.config
        if kt.ndim != 4 or tuple(kt.shape[1:]) != (1, cfg.kernel_size, cfg.kernel_size):
            raise ValueError(f"kt must be (B, 1, {cfg.kernel_size}, {cfg.kernel_size}), got {tuple(kt.shape)}")
        if y.ndim != 4 or tuple(y.shape[1:]) != (3, cfg.image_size, cfg.image_size) or y.shape[0] != kt.shape[0]:
            raise ValueError(f"y must be ({kt.shape[0]}, 3, {cfg.image_size}, {cfg.image_size}), got {tuple(y.shape)}")
        if t.shape != (kt.shape[0],):
            raise ValueError(f"t must have shape ({kt.shape[0]},), got {tuple(t.shape)}")
        emb = timestep_embedding(t, cfg.time_dim).to(kt.dtype)
        t_img, t_ker = self.time_image(emb), self.time_kernel(emb)
        temb = torch.cat([t_img, t_ker], dim=1)
        k_up = F.interpolate(kt, size=(cfg.image_size, cfg.image_size), mode="bilinear", align_corners=False)
        skips = [torch.cat(pair, dim=1) for pair in zip(self.image_encoder(y, t_img), self.kernel_encoder(k_up, t_ker))]
        h = self.middle[0](skips[-1], temb)
        h = self.middle[2](self.middle[1](h), temb)
        for i, blocks in enumerate(self.decoder):
            h = torch.cat([h, skips[-1 - i]], dim=1)
            for block in blocks:
                h = block(h, temb)
            if i < len(self.ups):
                h = upsample_conv(h, self.ups[i])
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.adaptive_avg_pool2d(out, cfg.kernel_size)


def parameter_count(config: UNetConfig) -> int:
    """Parameters of ``KernelUNet(config)``, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return count_parameters(KernelUNet(config))


# --------------------------------------------------------------------------------------------
# 4. Training (eq. 17)
# --------------------------------------------------------------------------------------------

CPU_THREADS = 2
"""Intra-op CPU threads of :func:`train` (``repro._threads.fixed_cpu_threads``) and of the
chapters' sampling: fixed, so that a run is bit-identical whatever the machine's core count;
two, because the quick ε-network's convolutions at 64² run about 1.9× faster on two threads
than on one on this 2-core machine (training: 0.23 against 0.44 s per step of 8; guided
sampling, 250 steps: about 6 against 13 s per image)."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run of ε_θ besides its seed (FACTS.md: Adam lr 1e-5, effective batch 8,
    gradient clipping 1, EMA 0.995, 1 M steps on a GPU; the paper's text: 500 k steps of 16).

    ``checkpoint_every``: steps between checkpoints; ``log_every``: steps per point of the loss
    curve (the mean training loss over those steps).
    """

    steps: int = 1_000_000
    batch_size: int = 8
    lr: float = 1e-5
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    log_every: int = 100
    checkpoint_every: int = 5000

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            check_positive_int(getattr(self, name), f"TrainConfig.{name}")
        check_positive(self.lr, "TrainConfig.lr")
        check_positive(self.grad_clip, "TrainConfig.grad_clip")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay!r}")


@dataclass
class TrainRun:
    """A trained (or partly trained) ε_θ: the raw weights, their EMA (used for sampling), the
    step reached and the loss curve [{"step", "loss"}]."""

    model: KernelUNet
    ema: KernelUNet
    config: TrainConfig
    seed: int
    step: int
    history: list[dict]


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay · θ_ema + (1 − decay) · θ for every parameter, in place (buffers copied)."""
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.mul_(decay).add_(p, alpha=1 - decay)
        for b_ema, b in zip(ema.buffers(), model.buffers()):
            b_ema.copy_(b)


def diffusion_loss(model: KernelUNet, schedule: Schedule, y: torch.Tensor, k: torch.Tensor, t: torch.Tensor,
                   noise: torch.Tensor) -> torch.Tensor:
    """‖ε − ε_θ(√ᾱₜ k + √(1 − ᾱₜ) ε, y, t)‖² averaged (eq. 17), k in [−1, 1] (:func:`kernel_to_unit`)."""
    kt = schedule.q_sample(kernel_to_unit(k), t, noise)
    return F.mse_loss(model(kt, 2 * y - 1, t), noise)


def _step_noise(seed: int, step: int, batch: int, size: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The timesteps and noise of one training step, a pure function of (seed, step)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(T, (batch,), generator=generator), torch.randn(batch, 1, size, size, generator=generator)


def new_model(config: UNetConfig, seed: int = 0) -> KernelUNet:
    """``KernelUNet(config)`` with weights drawn from a generator seeded by ``seed`` (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return KernelUNet(config)


def run_identity(unet: UNetConfig, config: TrainConfig, seed: int, data_key, T: int) -> dict:
    return jsonable({"unet": dataclasses.asdict(unet), "train": dataclasses.asdict(config), "seed": seed,
                      "data": data_key, "T": T})


def train(unet: UNetConfig, config: TrainConfig, data, seed: int = 0, checkpoint_path: str | Path | None = None,
          resume: bool = True, stop_at: int | None = None, device: str | torch.device = "cpu",
          schedule: Schedule | None = None, data_key=None, progress: bool = True) -> TrainRun:
    """Train ε_θ by eq. 17 on ``data`` and return the run.

    * ``data``: anything with ``batch(step, batch_size, device) -> (y, x, k)``, a pure function of
      the step (:class:`repro.synth.BlurPairs`): y (B, 3, H, W) in [0, 1], k (B, 1, s, s).
    * Every step: a mini-batch, timesteps t ~ U{0 … T−1} and noise ε from a generator seeded by
      (``seed``, step); Adam (``config.lr``), the gradient norm clipped to ``config.grad_clip``,
      then the EMA of the weights updated with ``config.ema_decay``.
    * ``checkpoint_path``: model, EMA, optimiser, step and loss curve saved there atomically every
      ``config.checkpoint_every`` steps and at the end (the loss curve also as JSON beside it).
      With ``resume=True`` an existing checkpoint of the same run is continued, and the result is
      bit-identical to an uninterrupted run (on the CPU); one of another run raises ValueError.
    * ``stop_at``: stop after that step (checkpoint saved) instead of ``config.steps``.
    * ``data_key``: what identifies the data in the checkpoint (JSON-able; default ``repr(data)``).
    * Under ``torchrun`` (an initialised process group) each of the P processes trains on its
      contiguous 1/P of every global batch with DistributedDataParallel, which follows the
      single-process run to float tolerance; only rank 0 writes the checkpoint, and a run resumes
      with any number of processes (:mod:`repro._distributed`).
    """
    if not isinstance(unet, UNetConfig) or not isinstance(config, TrainConfig):
        raise ValueError("unet must be a UNetConfig and config a TrainConfig")
    if not is_int(seed, 0):
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if stop_at is not None and not is_int(stop_at, 0):
        raise ValueError(f"stop_at must be None or an int >= 0, got {stop_at!r}")
    if not callable(getattr(data, "batch", None)):
        raise ValueError("data must have a method batch(step, batch_size, device) (repro.synth.BlurPairs)")
    schedule = schedule or Schedule()
    device = torch.device(device)
    shard = Shard.current()
    shard.check_batch(config.batch_size)
    model = new_model(unet, seed).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    identity = run_identity(unet, config, seed, repr(data) if data_key is None else data_key, schedule.T)
    step, history, pending = 0, [], []
    checkpoint = TrainingCheckpoint(checkpoint_path, identity)
    state = checkpoint.load(device, needs=("model", "ema", "optimizer", "step", "pending")) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, pending = state["step"], state["history"], state["pending"]

    def save():
        if shard.writes:
            checkpoint.save(step, history, model=model.state_dict(), ema=ema.state_dict(),
                            optimizer=optimizer.state_dict(), pending=pending)

    last = config.steps if stop_at is None else min(stop_at, config.steps)
    first = step
    bar = tqdm(total=last, initial=min(step, last), desc="Kernel-Diff ε_θ", disable=not (progress and shard.writes),
               leave=False)
    net = shard.wrap(model)
    model.train()
    with fixed_cpu_threads(device, CPU_THREADS):  # bit-identical whatever the core count
        while step < last:
            y, _, k = data.batch(step, config.batch_size, device)
            t, noise = _step_noise(seed, step, config.batch_size, unet.kernel_size, schedule.T)
            y, k, t, noise = shard.take(y, k, t.to(device), noise.to(device))
            loss = diffusion_loss(net, schedule, y, k, t, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            ema_update(ema, model, config.ema_decay)
            step += 1
            pending.append(shard.mean(loss.item()))
            if step % config.log_every == 0 or step == config.steps:
                history.append({"step": step, "loss": sum(pending) / len(pending)})
                pending = []
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            if step % config.checkpoint_every == 0:
                save()
            bar.update(1)
    bar.close()
    if step != first:
        save()
    model.eval()
    ema.eval()
    return TrainRun(model=model, ema=ema, config=config, seed=seed, step=step, history=history)


# --------------------------------------------------------------------------------------------
# 5. Sampling: Algorithm 1, unguided and strided variants
# --------------------------------------------------------------------------------------------

GUIDANCE_SCALE = 0.04
"""δ of Algorithm 1 as the official code sets it (FACTS.md): k_{t−1} = k′_{t−1} − (0.04 / L) ∇_{k̂₀} L.
Dividing by L makes the step 0.04 ∇ log L, independent of how L is normalised."""
CPU_MAX_BATCH = 24
"""``max_batch`` of the chapters' samplers on the CPU: per kernel, guided sampling gets cheaper with
the batch until F's backward pass (its spectra) stops fitting in cache, which for the quick
models happens beyond about 24 kernels (``benchmarks/bench_kerneldiff.py`` times the samplers)."""
REFINE_STEPS, REFINE_STEP_SIZE, REFINE_SPARSITY = 20, 1e3, 1e-4
"""Stage II (FACTS.md): 20 accepted gradient steps on k of MSE + 1e-4 ‖k + 1‖₁ / numel, step 1e3
halved on every increase."""


@dataclass
class SampleResult:
    """What :func:`sample` returns, for N = B · n_samples kernels (image-major order).

    ``kernels`` (N, s, s): the final blur kernels (sum 1); ``stage1`` (N, s, s): the kernels before
    the Stage II refinement (equal to ``kernels`` without refinement); ``images`` (N, 3, H, W):
    F(y, k) clamped to [0, 1] (None without a solver); ``timesteps``: the reverse steps taken;
    ``residual`` (steps, N): the reblurring loss MSE(y, k̃₀ ⊛ F(y, k̃₀)) of the k̂₀ estimate at each
    step (None without a solver); ``refine_residual`` (accepted steps + 1, N) the objective of
    Stage II; ``final_residual`` (N,): the reblurring loss of the final ``kernels`` (None without
    a solver), what :func:`choose_by_residual` ranks samples by; ``trace_steps`` and ``trace_kernels`` (n, N, s, s): k̃₀ estimates along the way;
    ``seconds``: wall-clock time of the call.
    """

    kernels: torch.Tensor
    stage1: torch.Tensor
    images: torch.Tensor | None
    timesteps: list[int]
    residual: torch.Tensor | None
    refine_residual: torch.Tensor | None
    final_residual: torch.Tensor | None
    trace_steps: list[int]
    trace_kernels: torch.Tensor
    seconds: float


def in_chunks(fn, max_batch: int | None, *tensors: torch.Tensor):
    """``fn(*tensors)`` evaluated on consecutive slices of at most ``max_batch`` items (dim 0) and
    concatenated (a tuple of outputs is concatenated element-wise); ``None``: one call. For
    functions that treat every item on its own, the result is that of one call on the whole
    batch; only the size of the intermediate tensors changes."""
    n = tensors[0].shape[0]
    if max_batch is None or n <= max_batch:
        return fn(*tensors)
    parts = [fn(*(tensor[i : i + max_batch] for tensor in tensors)) for i in range(0, n, max_batch)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(items) for items in zip(*parts))
    return torch.cat(parts)


def _check_max_batch(max_batch) -> None:
    if max_batch is not None and not is_int(max_batch, 1):
        raise ValueError(f"max_batch must be None or an int >= 1, got {max_batch!r}")


def refine(y: torch.Tensor, k: torch.Tensor, solver: Solver, steps: int = REFINE_STEPS,
           step_size: float = REFINE_STEP_SIZE, sparsity: float = REFINE_SPARSITY,
           max_iterations: int | None = None, max_batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage II of Algorithm 1 on kernels ``k`` (N, 1, s, s) in [−1, 1], for images y (N, 3, H, W).

    Gradient descent on J(k) = MSE(y, k̃ ⊛ F(y, k̃)) + sparsity · ‖k + 1‖₁ / numel(k), k̃ =
    :func:`unit_to_kernel` (k): a step is accepted only if it lowers J, otherwise the item's step
    size is halved (FACTS.md); ``steps`` accepted steps per item, at most ``max_iterations``
    tries in all (default 3 · steps). Iterates are kept in [−1, 1], the range of the diffusion.
    ``max_batch``: J and its gradient are evaluated on at most that many items at a time
    (:func:`sample`). Returns the refined k and the history of J (iterations + 1, N).
    """
    _check_max_batch(max_batch)
    max_iterations = 3 * steps if max_iterations is None else max_iterations

    def value_and_grad(y_part, k_part):
        with torch.enable_grad():
            kg = k_part.detach().requires_grad_(True)
            loss, _ = reblur_loss(y_part, unit_to_kernel(kg), solver)
            value = loss + sparsity * (kg + 1).abs().flatten(1).mean(dim=1)
            return value.detach(), torch.autograd.grad(value.sum(), kg)[0]

    k = k.detach().clone()
    lr = torch.full((k.shape[0],), float(step_size), dtype=k.dtype, device=k.device)
    accepted = torch.zeros(k.shape[0], dtype=torch.long, device=k.device)
    current, grad = in_chunks(value_and_grad, max_batch, y, k)
    history = [current]
    for _ in range(max_iterations):
        active = accepted < steps
        if not active.any():
            break
        candidate = (k - lr.view(-1, 1, 1, 1) * grad).clamp(-1, 1)
        value, candidate_grad = in_chunks(value_and_grad, max_batch, y, candidate)
        ok = active & (value < current)
        mask = ok.view(-1, 1, 1, 1)
        k = torch.where(mask, candidate, k)
        grad = torch.where(mask, candidate_grad, grad)
        current = torch.where(ok, value, current)
        accepted += ok.long()
        lr = torch.where(active & ~ok, lr / 2, lr)
        history.append(current)
    return k, torch.stack(history)


def _sample_arguments(model, y, solver, guided, steps, eta, n_samples, seed, schedule, refine_steps, trace_every,
                      max_batch):
    """:func:`sample`'s arguments checked: (y (B, 3, H, W), eta, schedule, timesteps, refine_steps,
    trace_every), the defaults filled in."""
    check_tensor(y, "y", (3, 4))
    y = y[None] if y.ndim == 3 else y
    cfg = model.config
    if tuple(y.shape[1:]) != (3, cfg.image_size, cfg.image_size):
        raise ValueError(f"y must be (B, 3, {cfg.image_size}, {cfg.image_size}) for this model, got {tuple(y.shape)}")
    if guided and solver is None:
        raise ValueError("guided sampling needs a non-blind solver (solver=...)")
    if not is_int(n_samples, 1) or not is_int(seed, 0):
        raise ValueError(f"n_samples must be an int >= 1 and seed an int >= 0, got {n_samples!r}, {seed!r}")
    eta = check_positive(eta, "eta", allow_zero=True)
    schedule = schedule or Schedule()
    timesteps = schedule.timesteps(schedule.T if steps is None else steps)
    refine_steps = (REFINE_STEPS if guided else 0) if refine_steps is None else refine_steps
    if not is_int(refine_steps, 0):
        raise ValueError(f"refine_steps must be an int >= 0, got {refine_steps!r}")
    if refine_steps > 0 and solver is None:
        raise ValueError("the Stage II refinement needs a non-blind solver (solver=...)")
    trace_every = max(1, len(timesteps) // 50) if trace_every is None else trace_every
    if not is_int(trace_every, 1):
        raise ValueError(f"trace_every must be an int >= 1, got {trace_every!r}")
    _check_max_batch(max_batch)
    return y, eta, schedule, timesteps, refine_steps, trace_every


def _stage1(model, y, k, guide, solver, schedule, timesteps, eta, generator, guidance_scale, trace_every, max_batch,
            progress):
    """Stage I of Algorithm 1: the reverse diffusion of the kernels ``k`` (N, 1, s, s) from k_T,
    each step guided through the solver ``guide`` (None: unguided). Returns the last iterate,
    the reblurring loss L of every step (when ``solver`` is given), and k̃₀ every ``trace_every``
    steps with their timesteps."""
    N, s = k.shape[0], k.shape[-1]
    y_unit = 2 * y - 1

    def guidance(y_part, k0_part):  # L and ∇_{k̂₀} L
        with torch.enable_grad():
            k0g = k0_part.detach().requires_grad_(True)
            loss, _ = reblur_loss(y_part, unit_to_kernel(k0g), guide)
            return loss.detach(), torch.autograd.grad(loss.sum(), k0g)[0]

    def residual(y_part, k0_part):  # L only (unguided)
        with torch.no_grad():
            return reblur_loss(y_part, unit_to_kernel(k0_part), solver)[0]

    residuals, trace_steps, trace_kernels = [], [], []
    for i, t in enumerate(tqdm(timesteps, desc="Kernel-Diff sampling", disable=not progress, leave=False)):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        with torch.no_grad():
            eps = in_chunks(model, max_batch, k, y_unit, torch.full((N,), t, device=k.device, dtype=torch.long))
            k0 = schedule.predict_k0(k, t, eps).clamp(-1, 1)
        noise = torch.randn(N, 1, s, s, generator=generator, dtype=k.dtype).to(k.device)
        k_next = schedule.ddim_step(k, t, t_prev, k0, eta, noise)
        if guide is not None:
            loss, grad = in_chunks(guidance, max_batch, y, k0)
            k_next = k_next - (guidance_scale / loss).view(-1, 1, 1, 1) * grad
            residuals.append(loss)
        elif solver is not None:
            residuals.append(in_chunks(residual, max_batch, y, k0))
        if i % trace_every == 0 or t_prev == -1:
            trace_steps.append(t)
            trace_kernels.append(unit_to_kernel(k0)[:, 0])
        k = k_next.detach()
    return k, residuals, trace_steps, trace_kernels


def sample(model: KernelUNet, y: torch.Tensor, solver: Solver | None = None, guided: bool = True,
           steps: int | None = None, eta: float = 1.0, n_samples: int = 1, seed: int = 0,
           schedule: Schedule | None = None, guidance_scale: float = GUIDANCE_SCALE,
           refine_steps: int | None = None, trace_every: int | None = None, max_batch: int | None = None,
           progress: bool = False) -> SampleResult:
    """Sample blur kernels for blurred images ``y`` (Algorithm 1 of the paper).

    * ``y``: (3, H, W) or (B, 3, H, W) in [0, 1]; ``n_samples`` kernels per image are drawn as
      one batch (seeds differ through the noise, the same generator).
    * Stage I, reverse diffusion from k_T ~ N(0, I) over ``steps`` timesteps (default T): at each
      step ε_θ gives k̂₀ (eq. 19, clamped to [−1, 1]) and the next iterate by
      :meth:`Schedule.ddim_step` with ``eta``: with all T steps and η = 1 this is the ancestral
      DDPM step of eq. 18; fewer steps give a strided (DDIM-style) sampler, η = 0 a deterministic one.
    * ``guided``: then each step also moves the iterate against the gradient of the reblurring
      loss L = MSE(y, k̃₀ ⊛ F(y, k̃₀)) with respect to k̂₀, scaled by ``guidance_scale`` / L
      (lines 7–9 of Algorithm 1 with the official code's step, FACTS.md), and Stage II
      (:func:`refine`, ``refine_steps`` accepted steps, default 20; 0 to skip) follows. Unguided
      sampling is the ablation of Table 4: the diffusion alone, no refinement.
    * ``solver``: F(y, k), needed when guided; when given, the residual L is also recorded at
      every step (also unguided, for the figures) and x̂ = F(y, k) returned.
    * ``trace_every``: keep k̃₀ every that many steps (and the last); default about 50 in all.
    * ``max_batch``: ε_θ, F and the gradients run on at most that many kernels at a time (the
      random draws are still those of the whole batch, so the samples are those of one call, up
      to floating-point rounding); ``None``: all N at once. On the CPU a very large batch is
      slower per kernel than a moderate one (:data:`CPU_MAX_BATCH`).
    * Seeded: the same arguments give the same kernels on the same machine.
    """
    y, eta, schedule, timesteps, refine_steps, trace_every = _sample_arguments(
        model, y, solver, guided, steps, eta, n_samples, seed, schedule, refine_steps, trace_every, max_batch)
    start = time.perf_counter()
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    y = y.to(device=device, dtype=dtype).repeat_interleave(n_samples, dim=0)
    N, s = y.shape[0], model.config.kernel_size
    generator = torch.Generator().manual_seed(seed)
    k = torch.randn(N, 1, s, s, generator=generator, dtype=dtype).to(device)
    k, residuals, trace_steps, trace_kernels = _stage1(model, y, k, solver if guided else None, solver, schedule,
                                                       timesteps, eta, generator, guidance_scale, trace_every,
                                                       max_batch, progress)
    k = k.clamp(-1, 1)
    stage1 = unit_to_kernel(k)[:, 0]
    refine_residual = None
    if refine_steps > 0:
        k, refine_residual = refine(y, k, solver, steps=refine_steps, max_batch=max_batch)
    kernels = unit_to_kernel(k)
    images = final_residual = None
    if solver is not None:
        with torch.no_grad():
            final_residual, images = in_chunks(lambda y_part, k_part: reblur_loss(y_part, k_part, solver),
                                                max_batch, y, kernels)
        images = images.clamp(0, 1)
    return SampleResult(kernels=kernels[:, 0], stage1=stage1, images=images, timesteps=timesteps,
                        residual=torch.stack(residuals) if residuals else None, refine_residual=refine_residual,
                        final_residual=final_residual, trace_steps=trace_steps,
                        trace_kernels=torch.stack(trace_kernels), seconds=time.perf_counter() - start)


def choose_by_residual(result: SampleResult, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Of the ``n_samples`` kernels :func:`sample` drew for each image (image-major order), the
    one with the smallest final reblurring loss MSE(y, k ⊛ F(y, k)) (``result.final_residual``):
    kernels (B, s, s) and the index (B,) of the chosen sample of each image.

    Beyond the paper. Kernel-first sampling draws kernels from p(k|y); the residual uses only y,
    so this choice needs no ground truth. It is only as good as the residual is at telling kernels
    apart (the identity kernel explains y almost perfectly: the Kernel-Diff sampling chapter)."""
    if result.final_residual is None:
        raise ValueError("choosing by residual needs samples drawn with a solver (sample(..., solver=...))")
    if not is_int(n_samples, 1) or result.kernels.shape[0] % n_samples:
        raise ValueError(f"n_samples must be an int >= 1 that divides the {result.kernels.shape[0]} samples, "
                         f"got {n_samples!r}")
    residual = result.final_residual.view(-1, n_samples)
    index = residual.argmin(dim=1)
    kernels = result.kernels.view(residual.shape[0], n_samples, *result.kernels.shape[1:])
    return kernels[torch.arange(residual.shape[0], device=index.device), index], index
