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
# # Kernel-Diff sampling
#
# Kernel-Diff {cite}`sanghvi2023kerneldiff` does not estimate the sharp image and the kernel
# together. It samples the **kernel** from $p(k \mid y)$ with a conditional diffusion model and
# obtains the image only through a non-blind solver, $\hat x = F(y, k)$ (eq. 14). Each reverse
# step of Algorithm 1 has two parts:
#
# 1. a DDPM step of the kernel, $k_t \to k_{t-1/2}$ (eq. 18), with the network's estimate of the
#    clean kernel $\hat k_0$ (eq. 19);
# 2. a guidance step: the reblurring loss $L = \lVert y - \tilde k_0 \circledast F(y, \tilde k_0)\rVert^2$
#    of that estimate, differentiated through the solver, moves the kernel,
#    $k_{t-1} = k_{t-1/2} - (0.04 / L)\,\nabla_{\hat k_0} L = k_{t-1/2} - 0.04\,\nabla_{\hat k_0} \log L$,
#    the official code's constant; the paper's eq. 33 writes the same rule with 0.1 instead of
#    0.04 (a step along $\nabla \log L$ does not depend on how $L$ is normalised).
#
# After the last step, a few accepted gradient steps on the same loss refine the kernel
# (Stage II). This chapter runs the sampler on one blurred test image and watches the kernel
# estimate $\tilde k_0$ take shape, with guidance and without, together with the reblurring residual.
#
# The models are ours, trained by {func}`repro.experiments.kerneldiff.trained_model` and
# {func}`repro.experiments.solver.train_learned_wiener` (the paper's pretrained weights are not available to this project): a
# conditional U-Net with two encoders ({class}`repro.kerneldiff.KernelUNet`) and a small
# DWDN-style learned Wiener solver as $F$. Their sizes depend on the profile and are printed below;
# {doc}`kerneldiff_evaluation` states every reduction against the paper.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from myst_nb import glue

from repro import kerneldiff as kd
from repro import metrics, profiles
from repro.experiments import kerneldiff as kdx

torch.set_num_threads(kd.CPU_THREADS)  # fixed, so that the samples do not depend on the core count
P = profiles.get(profile)
settings, spec = P.kerneldiff, P.kerneldiff_data
run = kdx.trained_model(P, device="cpu", progress=False)
solver = kdx.chapter_solver(P, device="cpu", progress=False)
cases = kdx.test_cases(P)
model = run.ema
steps = settings.sample_steps
eta = settings.eta(steps, kd.Schedule().T)
scope = (f"{spec.kernel_size}×{spec.kernel_size} kernels, {spec.crop}×{spec.crop} images; ε_θ with "
         f"{kd.count_parameters(model):,} parameters trained {run.step:,} steps; learned solver with "
         f"{sum(p.numel() for p in solver.model.parameters()):,} parameters; {steps} reverse steps (η = {eta:g})")
print(f"profile {profile}: {scope}")
glue("scope", scope, display=False)
glue("profile", profile, display=False)

# %% [markdown]
# Profile **{glue:text}`profile`**: {glue:text}`scope`.
#
# ## One blurred image, two samplers
#
# The first test case: a BSD100 crop blurred by a held-out motion kernel (never seen in training).
# Both samplers start from the same noise (seed 0); the unguided one is the ablation of the
# paper's Table 4, the diffusion model alone.

# %% mystnb={"figure": {"caption": "The kernel estimate $\\tilde k_0$ for the first test image along the reverse steps, for the guided sampler (top row) and the unguided sampler (bottom row) started from the same noise, at seven steps spread from the first ($t = T - 1$) to the last ($t = 0$). The last column is each sampler's final kernel (after Stage II for the guided one), titled with its MNC against the true kernel."}}
case = cases[0]
y = case.y[None].float()
guided = kd.sample(model, y, solver, guided=True, steps=steps, eta=eta, seed=0)
unguided = kd.sample(model, y, solver, guided=False, steps=steps, eta=eta, seed=0)
with torch.no_grad():
    true_residual = kd.reblur_loss(y, case.k[None, None].float(), solver)[0].item()
    oracle = solver(y, case.k[None, None].float()).clamp(0, 1)[0]


def show_kernel(ax, k, title):
    ax.imshow(np.asarray(k), cmap="magma")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


columns = np.linspace(0, len(guided.trace_steps) - 1, 7).round().astype(int)
fig, axes = plt.subplots(2, len(columns) + 1, figsize=(2 * (len(columns) + 1), 4.4))
for row, (name, result) in zip(axes, (("guided", guided), ("unguided", unguided))):
    for ax, j in zip(row, columns):
        show_kernel(ax, result.trace_kernels[j, 0], f"{name}, t = {result.trace_steps[j]}")
    show_kernel(row[-1], result.kernels[0], f"{name}, final\nMNC {metrics.mnc(result.kernels[0], case.k):.3f}")
plt.suptitle("the estimate k̃₀ along the reverse steps (t counts down)")
plt.tight_layout()
plt.show()

# %% mystnb={"figure": {"caption": "The true blur kernel of the first test image, a held-out motion kernel never seen in training, in the same colour map as the estimates above."}}
fig, ax = plt.subplots(figsize=(2, 2))
show_kernel(ax, case.k, "true kernel")
plt.show()

# %% [markdown]
# ## The reblurring residual along the reverse steps
#
# $L(\hat k_0) = \mathrm{MSE}(y, \tilde k_0 \circledast F(y, \tilde k_0))$ at every step, for both
# samplers (the unguided one only measures it). The dashed line is the residual of the true
# kernel; the last point of the guided curve is after Stage II.

# %% mystnb={"figure": {"caption": "The reblurring loss $L = \\mathrm{MSE}(y, \\tilde k_0 \\circledast F(y, \\tilde k_0))$ (log scale) of the kernel estimate at every reverse step of the guided and unguided samplers, $t$ running down from left to right. The single point at $t = 0$ is the guided sampler's final kernel after Stage II, and the dashed black line is the loss of the true kernel."}}
final = {name: kd.reblur_loss(y, r.kernels[:, None], solver)[0].item() for name, r in (("guided", guided),
                                                                                         ("unguided", unguided))}
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, result in (("guided", guided), ("unguided", unguided)):
    ax.semilogy(result.timesteps, result.residual[:, 0], label=name)
ax.semilogy([0], [final["guided"]], "o", label="guided, after Stage II")
ax.axhline(true_residual, ls="--", color="k", lw=1, label="true kernel")
ax.invert_xaxis()
ax.set_xlabel("t (the sampler runs from t = T − 1 on the left to 0 on the right)")
ax.set_ylabel("reblurring MSE")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
for name, value in final.items():
    glue(f"residual_{name}", f"{value:.2e}", display=False)
glue("residual_true", f"{true_residual:.2e}", display=False)
glue("mnc_guided", f"{metrics.mnc(guided.kernels[0], case.k):.3f}", display=False)
glue("mnc_unguided", f"{metrics.mnc(unguided.kernels[0], case.k):.3f}", display=False)

# %% [markdown]
# Final residuals on this image: guided {glue:text}`residual_guided`, unguided
# {glue:text}`residual_unguided`, true kernel {glue:text}`residual_true`; kernel MNC (maximum of
# normalised correlation with the true kernel, 1 is perfect) guided {glue:text}`mnc_guided`,
# unguided {glue:text}`mnc_unguided`. A residual *below* the true kernel's is possible: the
# reblurring loss alone does not identify the kernel (next section).

# %% mystnb={"figure": {"caption": "The blurred input $y$, the non-blind restorations $F(y, k)$ with the guided, the unguided and the true kernel (oracle), and the sharp image $x$. Every panel but the sharp image gives its PSNR against $x$ in the title."}}
images = {"blurred y": y[0], "F(y, guided k)": guided.images[0], "F(y, unguided k)": unguided.images[0],
          "F(y, true k) (oracle)": oracle, "sharp x": case.x}
fig, axes = plt.subplots(1, len(images), figsize=(3 * len(images), 3.2))
for ax, (name, image) in zip(axes, images.items()):
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    extra = "" if name == "sharp x" else f"\n{metrics.psnr(image.clamp(0, 1), case.x):.2f} dB"
    ax.set_title(name + extra, fontsize=8)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Several kernels for one image
#
# The sampler draws several kernels for the same image as one batch (here four seeds of the
# guided sampler). Their spread is the uncertainty of $p(k \mid y)$ as the trained model sees it.

# %% mystnb={"figure": {"caption": "The true kernel (left) and four kernels drawn as one batch by the guided sampler for the same blurred image, each titled with its MNC against the true kernel."}}
several = kd.sample(model, y, solver, guided=True, steps=steps, eta=eta, n_samples=4, seed=1)
fig, axes = plt.subplots(1, 5, figsize=(10, 2.2))
show_kernel(axes[0], case.k, "true")
for i, ax in enumerate(axes[1:]):
    show_kernel(ax, several.kernels[i], f"sample {i}: MNC {metrics.mnc(several.kernels[i], case.k):.3f}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The connection to the 1D toy: kernel first, in two dimensions
#
# In {doc}`toy1d` the kernel-first strategy estimates $\sigma$ alone from
# $p(\sigma \mid y) \approx \exp(-\lVert y - k_\sigma \circledast x(\sigma)\rVert^2/2\beta)$
# (eq. 16, $\beta$ the noise variance as there), where $x(\sigma)$ is the non-blind solution for that kernel: the image is never a free variable.
# Kernel-Diff's guidance is the same objective in two dimensions, with $F$ as the non-blind
# solver and $\hat k_0$ as the kernel: the descent happens in kernel space only. What the toy
# does not show is why the 2D problem needs a *prior on kernels*: in 2D the reblurring loss
# is nearly indifferent to the kernel, because a good non-blind solver explains $y$ well with
# almost any kernel, the identity above all ($F(y, \delta) \approx y$, so $L(\delta) \approx 0$,
# the no-blur solution of Levin et al.). Below, $L$ along the straight line from the identity
# kernel $\delta$ ($\alpha = 0$) to the true kernel ($\alpha = 1$), for this image.

# %% mystnb={"figure": {"caption": "The reblurring loss $L$ (log scale) of the first test image along the straight path $k = (1 - \\alpha)\\,\\delta + \\alpha\\,k_\\text{true}$ (normalised to sum 1), from the identity kernel $\\delta$ at $\\alpha = 0$ to the true kernel at $\\alpha = 1$. The two-dimensional counterpart of the kernel-first objective of eq. 16 in the 1D toy."}}
s = spec.kernel_size
delta = torch.zeros(s, s)
delta[s // 2, s // 2] = 1
alphas = torch.linspace(0, 1, 11)
path = torch.stack([((1 - a) * delta + a * case.k).clamp_min(0) for a in alphas])
path = path / path.sum(dim=(-2, -1), keepdim=True)
with torch.no_grad():
    losses = kd.reblur_loss(y.expand(len(alphas), -1, -1, -1), path[:, None].float(), solver)[0]
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.semilogy(alphas, losses, "o-")
ax.set_xlabel("α  (k = (1 − α) δ + α k_true)")
ax.set_ylabel("reblurring MSE")
plt.tight_layout()
plt.show()
glue("loss_delta", f"{losses[0].item():.2e}", display=False)
glue("loss_true", f"{losses[-1].item():.2e}", display=False)
to_delta, to_truth = metrics.mnc(guided.kernels[0], delta), metrics.mnc(guided.kernels[0], case.k)
glue("prior_reading",
     f"the guided sample of the first section ended closer to the identity (MNC with δ {to_delta:.3f}) than to "
     f"the true kernel (MNC {to_truth:.3f}): on this image the prior of our small model did not hold the guidance "
     "away from the no-blur solution" if to_delta > to_truth else
     f"the guided sample of the first section ended closer to the true kernel (MNC {to_truth:.3f}) than to the "
     f"identity (MNC with δ {to_delta:.3f}): on this image the prior held the guidance away from the no-blur solution",
     display=False)

# %% [markdown]
# On this image $L(\delta)$ = {glue:text}`loss_delta` and $L(k_\text{true})$ =
# {glue:text}`loss_true`. The diffusion model is meant to supply what the bounded one-parameter
# family supplied in the toy: to keep $\hat k_0$ among plausible motion kernels for this $y$, so
# that the guidance only chooses among those. Whether it does is measured, not assumed:
# {glue:text}`prior_reading`. The evaluation chapter compares the two strategies on many images
# and trials (its Fig. 5 analogue).
#
# ## Explore
#
# The two samples of the first section, step by step: move the slider along the reverse steps to
# see $\tilde k_0$ of the guided and the unguided sampler at that step, the restoration
# $F(y, \tilde k_0)$ of the guided one, and where the step lies on both reblurring curves. The
# frames come from the same two runs as the figures above, so the slider works in the static
# book too.

# %% tags=["nbval-ignore-output"]
from repro import interactive

interactive.show(kdx.sampling_figure(y, guided, unguided, solver), "kerneldiff-sampling")

# %% [markdown]
# In Jupyter, the controls below run both samplers on any test image and seed.

# %%
import ipywidgets as widgets

from repro.interactive import explore

_runs = {}


def _samples(index, seed):
    if (index, seed) not in _runs:
        y_i = cases[index].y[None].float()
        _runs[index, seed] = tuple(kd.sample(model, y_i, solver, guided=g, steps=steps, eta=eta, seed=seed)
                                   for g in (True, False))
    return _runs[index, seed]


def show_step(image=0, seed=0, position=1.0):
    results = _samples(image, seed)
    j = int(round(position * (len(results[0].trace_steps) - 1)))
    fig, axes = plt.subplots(1, 4, figsize=(14, 3))
    axes[0].imshow(cases[image].y.permute(1, 2, 0).numpy())
    axes[0].set_title("blurred y")
    axes[0].axis("off")
    for ax, name, result in zip(axes[1:3], ("guided", "unguided"), results):
        show_kernel(ax, result.trace_kernels[j, 0], f"{name}, t = {result.trace_steps[j]}")
    for name, result in zip(("guided", "unguided"), results):
        axes[3].semilogy(result.timesteps, result.residual[:, 0], label=name)
    axes[3].axvline(results[0].trace_steps[j], color="k", lw=1)
    axes[3].invert_xaxis()
    axes[3].legend(fontsize=8)
    axes[3].set_title("reblurring MSE")
    plt.tight_layout()
    plt.show()


explore(
    show_step,
    image=widgets.Dropdown(options=[(c.meta["image"], i) for i, c in enumerate(cases)], value=0),
    seed=widgets.IntSlider(value=0, min=0, max=9),
    position=widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.02, description="progress"),
)
