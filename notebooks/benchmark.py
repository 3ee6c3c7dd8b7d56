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
# # One benchmark for every method
#
# D3 {cite}`d3nsddil`, SelfDeblur with Kotera et al.'s improvements and Kernel-Diff each report
# numbers on their own test sets, with their own protocols; none compares against the others.
# This chapter runs every method of the book on the same four test sets and scores them the
# same way, to answer one practical question: *which method for which blur?*
#
# **Test sets.** *Levin*: Levin et al.'s real camera-shake photographs (grey). *Kodak*: Kodak
# images blurred by Levin's eight kernels — the inputs of the SelfDeblur chapters, so their
# numbers and ours are the same runs. *BSD100, mild blur*: BSD100 images blurred by held-out
# anisotropic Gaussians of D3's recipe (sizes 11–21, three variance bins). *BSD100, motion
# blur*: BSD100 images blurred by held-out motion kernels of the Kernel-Diff recipe, at the
# Kernel-Diff model's kernel and image size.
#
# **One protocol.** The physical *valid* blur (the blurred image sees the scene beyond the
# sharp crop) everywhere; no noise added (Levin's photographs carry their own); colour as each
# set comes. Every output is scored *up to shift* by Levin et al.'s protocol — a border
# (15 px, fewer for small crops) cropped, the best integer then 0.25-px shift searched, PSNR and
# SSIM over all channels — because a blind method's estimate is only determined up to a
# translation; the non-blind methods are scored the same way. MNC of the kernel for the blind
# methods that estimate one. Seconds per image: one call, models already loaded. The
# stochastic methods (SelfDeblur, Kernel-Diff) run with several seeds; ± is their run-to-run
# spread (mean over inputs of the standard deviation across seeds).
#
# **Methods.** The blurred input (the reference a method must beat); Wiener and Tikhonov with
# the *true* kernel (oracles, an upper bound for a linear inverse, not blind); Wiener with D3's
# fixed Gaussian guess and unsharp masking (the blind classical baselines, neither estimates a
# kernel); D3's DRK; SelfDeblur, original and
# improved; Kernel-Diff, guided (its sampled kernel, then its learned solver).
#
# **Dependencies.** Nothing is trained here: the DRK comes from the D3 chapters
# (`results/<profile>/d3/`), the Kernel-Diff ε-network and solver from the Kernel-Diff chapters
# (`results/<profile>/kerneldiff/`), the Levin and Kodak SelfDeblur runs from the SelfDeblur
# chapters (`results/<profile>/selfdeblur/`). Where a cache is missing, the chapter's own function
# trains or runs it. Everything is computed by {func}`repro.experiments.benchmark.run_chapter` and stored,
# resumably, in `results/<profile>/benchmark/`.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from repro import methods, profiles
from repro.experiments import benchmark
from repro.experiments.evaluation import counted

results = benchmark.run_chapter(profiles.get(profile), progress=False)
rows, best = results.rows, results.winners["psnr"]
glue("profile", profile, display=False)
glue("scope", results.description, display=False)
glue("n_records", str(len(results.records)), display=False)

# %% [markdown]
# Profile **{glue:text}`profile`**: {glue:text}`scope`. {glue:text}`n_records` scored runs in all.
#
# ## The table
#
# PSNR (dB) per method and test set, ± the run-to-run spread of the stochastic methods; "—"
# where a method was not run in this profile:

# %%
display(Markdown(benchmark.format_matrix(rows, "psnr")))

# %% [markdown]
# SSIM, MNC of the estimated kernel, and seconds per image on this profile's machine:

# %%
for metric, title in (("ssim", "SSIM"), ("mnc", "MNC of the estimated kernel"), ("seconds", "seconds per image")):
    display(Markdown(f"**{title}**\n\n" + benchmark.format_matrix(rows, metric)))

# %% [markdown]
# Each set in detail (inputs × runs per method):

# %%
for name in benchmark.SETS:
    display(Markdown(f"**{benchmark.SET_TITLES[name]}**\n\n" + benchmark.format_table(rows, name)))

# %% [markdown]
# ## Quality against time
#
# Each marker is a method on one set (hollow squares: the oracles, which know the kernel);
# error bars show the run-to-run spread; the time axis is logarithmic.

# %% mystnb={"figure": {"caption": "Mean PSNR up to shift (dB) against mean seconds per image (log scale), one panel per test set run in this profile and one colour per method, named in the legend below. Hollow squares are the oracles with the true kernel, filled circles the blind methods and the blurred input; error bars show the run-to-run spread of the stochastic methods (SelfDeblur, Kernel-Diff)."}}
fig = benchmark.plot_quality_vs_time(rows, "psnr")
plt.show()

# %% [markdown]
# ## Which method for which blur
#
# The best *blind* method of each set by mean PSNR (the oracles and the blurred input left out),
# its margin over the runner-up, and what the blurred input and the best oracle reach on the same
# set. These sentences are generated from the numbers above:

# %%
lines = []
for name in benchmark.SETS:
    if name not in best:
        continue
    w = best[name]
    ssim_winner = results.winners["ssim"][name]["method"]
    agree = "also" if ssim_winner == w["method"] else f"while by SSIM it is {ssim_winner}"
    reference = ""
    if w["reference"] is not None:
        above, compared = w["above_reference"]
        reference = (f" Against the blurred input ({w['reference']:.2f} dB) its mean differs by "
                     f"{w['value'] - w['reference']:+.2f} dB, and it is above it on {above} of "
                     f"{counted(compared, 'input')}.")
    oracle = "" if w["oracle"] is None else f" The best oracle, which knows the kernel, reaches {w['oracle']:.2f} dB."
    lines.append(f"- **{benchmark.SET_TITLES[name]}**: {w['method']} ({w['value']:.2f} dB), "
                 f"{w['margin']:.2f} dB ahead of {w['runner_up']}, {agree} the best by SSIM.{reference}{oracle} "
                 f"The fastest blind method here is {w['fastest']}.")
display(Markdown("\n".join(lines)))
image_size, kernel_size = methods.kerneldiff_sizes(profiles.get(profile))
glue("kd_kernel", f"{kernel_size}×{kernel_size}", display=False)

# %% [markdown]
# How to read this. With the profile's reductions (stated above: fewer inputs, fewer SelfDeblur
# iterations, fewer Kernel-Diff steps, smaller models outside the paper profile) a margin of a
# few tenths of a dB between two methods on one or two inputs is within the run-to-run spread
# of the stochastic methods and decides nothing; only the paper profile has enough inputs for a
# ranking. What the table can show in every profile is the kind of result: whether a blind
# method beats the blurred input at all on a set, how far the blind methods stay below the
# oracles that know the kernel, and how many orders of magnitude in time separate a fixed
# inverse filter (the DRK, a Wiener filter) from the iterative and generative methods. The
# Kernel-Diff model of this profile estimates {glue:text}`kd_kernel` kernels (the size of its
# training motion kernels), so on sets with larger kernels (Levin's are 13–27 px, D3's 11–21
# px) its estimate is cut off by construction; and SelfDeblur with a fraction of its iterations
# is not SelfDeblur at its best. The chapters of each method show those effects in detail.
