# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Deep Identity Learning: an inverse learned from kernels alone
#
# D3 {cite}`d3nsddil` never shows its network an image. It trains a deep *linear* CNN, the
# L-CNN, on a Random Kernel Gallery (RKG) of blur kernels $k$, asking that the network undo
# each of them. Because the L-CNN is linear and shift-invariant it *is* one kernel, the Deep
# Restoration Kernel $k^{-1}$ (the DRK, see {doc}`d3_collapse`), and the whole objective is a
# statement about the identity
#
# $$ k \circledast k^{-1} = \delta . $$
#
# The paper's summary names the pieces of Deep Identity Learning (DIL) without numbering them;
# the facts below come from an unofficial code repository of the first author, as summarised in
# the project's implementation notes (`papers/FACTS.md`).
# All terms are L1, averaged over a mini-batch of gallery kernels:
#
# | term | formula | what it asks |
# |---|---|---|
# | identity | $\lVert k \circledast k^{-1} - \delta \rVert_1$ | the network fed $k$ returns a delta |
# | R1, area | $\lvert 1 - \textstyle\sum k^{-1} \rvert$ | brightness is preserved |
# | R2, zero phase | $\operatorname{mean}_\omega \lvert \angle F(k) + \angle F(k^{-1}) \rvert$ | no shift, no phase distortion |
# | R3, unit magnitude | $\operatorname{mean}_\omega \bigl\lvert \lvert F(k)\rvert\,\lvert F(k^{-1})\rvert - 1 \bigr\rvert$ | every frequency restored to its level |
#
# The identity term takes from FACTS.md its input (the 11×11 kernel itself) and its target (a
# delta); FACTS.md gives no padding, and the padding is our choice: fed $k$ with 10 pixels of zero
# padding, the L-CNN outputs the full 21×21 convolution $k \circledast k^{-1}$, so that every
# pixel of the product is asked to match the delta. With "same" padding only its central 11×11
# would be, and the DRK could spread energy into the product's outer ring at no cost. R1–R3 read that same product in the Fourier domain:
# $F(k \circledast k^{-1}) = F(k)\,F(k^{-1})$, whose DC value is $\sum k^{-1}$ (since
# $\sum k = 1$), whose phase is $\angle F(k) + \angle F(k^{-1})$ and whose modulus is
# $\lvert F(k)\rvert\,\lvert F(k^{-1})\rvert$. The weights of the four terms are not in the text;
# we use 1 for each (the docstring of {class}`repro.dil.DILWeights` explains why, and
# {doc}`d3_evaluation` ablates them). The code is {mod}`repro.dil`.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")

# %%
import math

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from myst_nb import glue

from repro import data, dil, interactive, kernels, metrics, ops, profiles
from repro.experiments import d3
from repro.experiments.evaluation import build_cases

P = profiles.get(profile)
settings = P.d3
run = d3.train_variant(P, "full", progress=False)
drk = run.drk.double()
print(f"profile {profile}: L-CNN trained on {run.config.gallery_size} RKG kernels for {run.step} steps")

# %% [markdown]
# ## One kernel and its learned inverse
#
# A test kernel from the RKG family (not from the gallery): an anisotropic Gaussian with
# standard deviations $\sigma_1 = 1.8$ and $\sigma_2 = 1$ px along axes turned by $30°$. Its
# inverse is the DRK the L-CNN learned; their convolution should be close to a delta.

# %% mystnb={"figure": {"caption": "The test kernel $k$ (anisotropic Gaussian, $\\sigma_1 = 1.8$ and $\\sigma_2 = 1$ px, axes turned by $30^\\circ$), the learned DRK $k^{-1}$, and the L-CNN's output when fed $k$, the full $21 \\times 21$ convolution $k \\circledast k^{-1}$. Each panel has a diverging colour scale symmetric about 0 (red positive, blue negative)."}}
def show_kernels(k, drk):
    product = dil.lcnn_apply(run.model.double(), k, "full").detach()  # the network fed k
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, image, title in zip(
        axes, (k, drk, product), (r"blur kernel $k$", r"DRK $k^{-1}$", r"$k \circledast k^{-1}$ (21×21)")
    ):
        limit = image.abs().max().item()
        shown = ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(title)
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.046)
    plt.show()
    return product


k = kernels.anisotropic_gaussian(11, 1.8, 1.0, math.pi / 6, dtype=torch.float64)
product = show_kernels(k, drk)
terms = {name: value.item() for name, value in dil.dil_terms(k, drk).items()}
print("DIL terms for this kernel:", {name: round(value, 4) for name, value in terms.items()})
print(f"centre of k ⊛ DRK: {product[10, 10]:.3f} (1 for a perfect inverse); centre of k: {k[5, 5]:.3f}")
glue("centre_product", f"{product[10, 10]:.2f}", display=False)
glue("centre_kernel", f"{k[5, 5]:.2f}", display=False)

# %% [markdown]
# The DRK is a sharpening filter: a positive centre surrounded by negative lobes. It does not
# reach the delta: the centre of $k \circledast k^{-1}$ is {glue:text}`centre_product`, up from
# {glue:text}`centre_kernel` for $k$ alone. One kernel has to serve the whole gallery, and an
# exact inverse of a Gaussian does not exist in 11×11 taps anyway.
#
# ## What R1–R3 act on: the spectra
#
# The transfer functions on a fine frequency grid (the loss samples them on the 21×21 grid of
# the product; both are origin-centred, `ops.psf2otf`). R3 wants the modulus of the product at 1
# everywhere, R2 its phase at 0, R1 its value at $\omega = 0$ at 1.

# %% mystnb={"figure": {"caption": "Transfer functions on a $64 \\times 64$ frequency grid centred on $\\omega = 0$: $\\lvert F(k) \\rvert$, $\\lvert F(k^{-1}) \\rvert$ (labelled DRK), their product (R3 asks for 1) and the phase $\\angle F(k) + \\angle F(k^{-1})$ on a cyclic scale from $-\\pi$ to $\\pi$ (R2 asks for 0). The last panel cuts the three moduli along the horizontal frequency axis ($\\omega_v = 0$), with the level 1 as a black line."}}
GRID = 64


def spectra(k, drk, grid=GRID):
    fk = ops.psf2otf(k, (grid, grid))
    fd = ops.psf2otf(drk.to(k.dtype), (grid, grid))
    shift = lambda z: torch.fft.fftshift(z).numpy()
    return {"|F(k)|": shift(fk.abs()), "|F(DRK)|": shift(fd.abs()),
            "|F(k)| |F(DRK)|  (R3 → 1)": shift(fk.abs() * fd.abs()),
            "∠F(k) + ∠F(DRK)  (R2 → 0)": shift(torch.angle(fk * fd))}


def show_spectra(k, drk):
    maps = spectra(k, drk)
    frequencies = np.fft.fftshift(np.fft.fftfreq(GRID))
    extent = (frequencies[0], frequencies[-1], frequencies[-1], frequencies[0])
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.4))
    for ax, (title, image) in zip(axes, maps.items()):
        is_phase = title.startswith("∠")
        shown = ax.imshow(image, extent=extent, cmap="twilight" if is_phase else "viridis",
                          vmin=-np.pi if is_phase else 0, vmax=np.pi if is_phase else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("cycles / px")
        fig.colorbar(shown, ax=ax, fraction=0.046)
    row = GRID // 2  # the horizontal frequency axis through ω = 0
    for name in ("|F(k)|", "|F(DRK)|", "|F(k)| |F(DRK)|  (R3 → 1)"):
        axes[4].plot(frequencies, maps[name][row], label=name.split("  ")[0])
    axes[4].axhline(1, color="k", lw=0.5)
    axes[4].set_xlabel("horizontal frequency (cycles / px)")
    axes[4].set_title("cut through ω_v = 0", fontsize=9)
    axes[4].legend(fontsize=7)
    plt.tight_layout()
    plt.show()


show_spectra(k, drk)
boost = spectra(k, drk)["|F(DRK)|"]
print(f"|F(DRK)|: {boost[GRID // 2, GRID // 2]:.3f} at ω = 0, at most {boost.max():.2f}")
glue("drk_boost_max", f"{boost.max():.1f}", display=False)

# %% [markdown]
# $\lvert F(k^{-1}) \rvert$ is 1 at $\omega = 0$ (R1) and rises towards the highest frequencies,
# up to {glue:text}`drk_boost_max` in the corners: the DRK is a high-boost filter, a positive centre
# with a negative cross around it, close to $\delta - \alpha \nabla^2$. Where the blur left
# something, the product is lifted a little above $\lvert F(k) \rvert$; where the blur removed
# everything no bounded filter can bring it back, and under an L1 penalty R3 stops trying (the
# product stays near 0 there). The phase of the product is 0 except on thin bands where the
# sampled Gaussian's spectrum changes sign (a phase of ±π) and where it vanishes.
#
# ## Why R2 is almost inert on this gallery
#
# FACTS.md's gallery multiplies each kernel pixel by $1 + U[-0.25, 0.25]$. That noise is white:
# it puts a floor under $\lvert F(k) \rvert$ with a *random* phase, which dominates wherever the
# Gaussian's own spectrum has decayed. One DRK shared by 2,400 kernels cannot cancel thousands
# of independent random phases, so R2 sits at a constant that training barely moves.

# %% mystnb={"figure": {"caption": "Phase $\\angle F(k)$ of the first kernel of the same gallery draw without (left) and with (right) the RKG's per-pixel multiplicative noise $1 + U[-0.25, 0.25]$, on a $64 \\times 64$ frequency grid centred on $\\omega = 0$, with a cyclic colour scale from $-\\pi$ to $\\pi$."}}
gallery_noisy = kernels.random_kernel_gallery(200, 11, seed=1, dtype=torch.float64)
gallery_clean = kernels.random_kernel_gallery(200, 11, seed=1, noise=0.0, dtype=torch.float64)
identity_drk = torch.zeros(11, 11, dtype=torch.float64)
identity_drk[5, 5] = 1
phase_noisy = dil.dil_terms(gallery_noisy, identity_drk)["phase"].item()
phase_clean = dil.dil_terms(gallery_clean, identity_drk)["phase"].item()
phase_trained = run.history[-1]["val"]["phase"]
print(f"R2 with k⁻¹ = δ: noisy gallery {phase_noisy:.3f} rad, noise-free gallery {phase_clean:.3f} rad")
print(f"R2 of the trained DRK on the validation kernels: {phase_trained:.3f} rad")
glue("phase_noisy", f"{phase_noisy:.2f}", display=False)
glue("phase_clean", f"{phase_clean:.2f}", display=False)
glue("phase_trained", f"{phase_trained:.2f}", display=False)

fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
for ax, gallery, title in zip(axes, (gallery_clean, gallery_noisy), ("noise-free kernel", "RKG kernel (noisy)")):
    phase = torch.fft.fftshift(torch.angle(ops.psf2otf(gallery[0], (GRID, GRID)))).numpy()
    shown = ax.imshow(phase, cmap="twilight", vmin=-np.pi, vmax=np.pi)
    ax.set_title(f"∠F(k), {title}")
    ax.axis("off")
fig.colorbar(shown, ax=axes, fraction=0.03)
plt.show()

# %% [markdown]
# With the identity as inverse, R2 is {glue:text}`phase_clean` rad on noise-free Gaussians and
# {glue:text}`phase_noisy` rad on the noisy gallery; after training it is still
# {glue:text}`phase_trained` rad. The ablation in {doc}`d3_evaluation` measures what removing
# R2 changes on images.
#
# ## Why the identity term alone is not enough
#
# With an L1 norm, the identity term on its own is minimised by the *zero* filter. For a blur
# whose centre tap $k_0$ is below ½, any output mass lands mostly where the delta is 0:
# $\lVert k \circledast \alpha\delta - \delta \rVert_1 = 1 + \alpha(1 - 2k_0) > 1 =
# \lVert 0 - \delta \rVert_1$. Training on the identity alone indeed drives the DRK to zero
# (a black image); the area term R1 is what prevents it.

# %%
identity_run = d3.train_variant(P, "identity", progress=False)
validation = dil.split_gallery(kernels.random_kernel_gallery(settings.gallery_size, 11, 0), 0.1)[1].double()
rows = {"zero filter": torch.zeros(11, 11, dtype=torch.float64), "δ (no deblurring)": identity_drk,
        "DRK, identity term only": identity_run.drk.double(), "DRK, full DIL": drk}
print(f"{'inverse':28s} {'identity term':>14s} {'Σ k⁻¹':>8s}")
for name, inverse in rows.items():
    value = dil.dil_terms(validation, inverse)["identity"].item()
    print(f"{name:28s} {value:14.4f} {inverse.sum().item():8.4f}")
glue("identity_only_sum", f"{identity_run.drk.sum().item():.3f}", display=False)

# %% [markdown]
# The DRK trained on the identity term alone sums to {glue:text}`identity_only_sum`. With all
# four terms, the identity error is *higher* than the zero filter's: the regularisers trade it
# for a filter that actually sharpens.
#
# ## Loss curves
#
# Every term on the training mini-batch and on the held-out 10 % of the gallery, for the run
# used above (Adam, half-cosine learning-rate decay; {class}`repro.dil.DILConfig`).

# %% mystnb={"figure": {"caption": "The DIL objective against the training step: the total loss and its four terms (identity, R1 area, R2 phase, R3 magnitude), on the training mini-batch and on the held-out 10 % of the gallery (validation)."}}
steps = [h["step"] for h in run.history]
fig, axes = plt.subplots(1, 5, figsize=(17, 3))
for ax, name in zip(axes, ("loss", "identity", "area", "phase", "magnitude")):
    ax.plot(steps, [h["train"][name] for h in run.history], label="train batch", alpha=0.6)
    ax.plot(steps, [h["val"][name] for h in run.history], label="validation")
    ax.set_title(name)
    ax.set_xlabel("step")
axes[0].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Restoring an image
#
# The same kernel blurs a Kodak crop (valid convolution, so nothing is assumed about the
# borders); the DRK restores it with symmetric borders, each colour channel alike.

# %% mystnb={"figure": {"caption": "A centre crop of Kodak image 23: sharp, blurred by the test kernel $k$ (valid convolution), and restored by the DRK with symmetric borders. The blurred and restored panels are titled with their PSNR against the sharp crop."}}
crop = 96 if profile == "smoke" else 256
image = data.kodak(23)


def restore(k, noise_sigma=0.0):
    (case,) = build_cases({"kodim23": image}, {"k": k.float()}, crop=crop, noise_sigma=noise_sigma)
    restored = dil.deblur_drk(case.y, drk)
    return case, restored


def show_restoration(case, restored):
    blurred = case.y.clamp(0, 1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, img, title in zip(axes, (case.x, blurred, restored), ("sharp", "blurred", "DRK")):
        ax.imshow(img.permute(1, 2, 0).numpy())
        label = title if title == "sharp" else f"{title}: {metrics.psnr(img, case.x):.2f} dB"
        ax.set_title(label)
        ax.axis("off")
    plt.show()


case, restored = restore(k)
show_restoration(case, restored)
gain = (metrics.psnr(restored, case.x) - metrics.psnr(case.y.clamp(0, 1), case.x)).item()
print(f"PSNR gain of the DRK on this crop: {gain:+.2f} dB")

# %% [markdown]
# ## Explore
#
# Each slider below moves one parameter of the test kernel (standard deviations in px, angle in
# degrees) or the noise added to the blurred crop, the others staying at the chapter's values:
# the kernel, the product $\lvert F(k) \rvert \lvert F(\mathrm{DRK}) \rvert$ that R3 pushes
# towards 1, and a {glue:text}`explore_crop`-pixel crop of Kodak 23 blurred and restored by the
# DRK; each step's label gives both PSNRs. Large blurs (σ beyond the gallery's ≈ 2.45 px) and
# noise show the limits of one fixed inverse. The frames were computed when this page was
# executed, so the sliders work in the static book too.

# %% tags=["nbval-ignore-output"]
from IPython.display import display

glue("explore_crop", d3.EXPLORE_CROP, display=False)
for parameter in d3.EXPLORE_RANGES:
    display(interactive.show(d3.drk_explore_figure(drk, image, parameter, P.explore.values), f"drk-{parameter}"))

# %% [markdown]
# The collapse of the first section, layer by layer: the effective kernel from the input to
# channel 0 grows by two pixels per layer until, after the last layer, it is the DRK (flipped:
# the network correlates, the DRK convolves).

# %% tags=["nbval-ignore-output"]
interactive.show(d3.collapse_figure(run.model.cpu()), "drk-collapse")

# %% [markdown]
# In Jupyter, the controls below recompute any combination of the four.

# %%
def explore(sigma1=1.8, sigma2=1.0, theta_degrees=30, noise=0.0):
    k = kernels.anisotropic_gaussian(11, sigma1, sigma2, math.radians(theta_degrees), dtype=torch.float64)
    show_kernels(k, drk)
    show_spectra(k, drk)
    show_restoration(*restore(k, noise))


interactive.explore(
    explore,
    sigma1=ipywidgets.FloatSlider(value=1.8, min=0.3, max=3.0, step=0.1),
    sigma2=ipywidgets.FloatSlider(value=1.0, min=0.3, max=3.0, step=0.1),
    theta_degrees=ipywidgets.IntSlider(value=30, min=0, max=180, step=5),
    noise=ipywidgets.FloatSlider(value=0.0, min=0.0, max=0.05, step=0.0025, readout_format=".4f"),
)
