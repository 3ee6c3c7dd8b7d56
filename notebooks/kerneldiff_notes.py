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
# # Notes: how the quick Kernel-Diff sampler was chosen
#
# The quick profile cannot run the paper's sampler: its ε_θ is a small U-Net trained a few
# thousand steps on a CPU, and its evaluation draws kernels with fewer strided reverse steps than
# the paper's 1,000. Which step count and which guidance step to use, and whether the small model
# is good enough to beat the alternating baseline at all, must not be decided on the test images. This
# page shows the study that measures it on **validation pairs**: blurred crops of the training
# distribution ({class}`repro.synth.BlurPairs` with the quick profile's training kernels and
# images and a seed of their own), never the BSD100 test images of
# {doc}`kerneldiff_evaluation`.
#
# Every row scores the same pairs with the same learned solver F: the blurred input, the
# alternating MAP_{x,k} baseline, and Algorithm 1's guided sampler at several step counts, with
# the official guidance step δ = 0.04 and multiples of it. Scores are means over the
# pairs ± their standard error; the second table gives each guided sampler's paired difference
# to the baseline and to the longest sampler, over the same pairs, with "ahead" or "behind" only
# where it exceeds two standard errors ({func}`repro.metrics.describe_gap`).
#
# The numbers come from a committed script's output file, not from this page's execution:
# the line under each table names the command that wrote it, its date, machine and commit.
# Rerunning that command (with `--out`) replaces the file and this page follows.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")

# %%
from IPython.display import Markdown, display

from repro import profiles, studies

study = studies.read("kerneldiff_validation_quick")
scores, gaps = studies.kerneldiff_validation_tables(study)
display(Markdown(f"**{study.data['pairs']} validation pairs, ε_θ trained {study.data['train_steps']:,} steps "
                 f"(profile {study.data['profile']}).**\n\n" + scores))
display(Markdown(gaps))
display(Markdown(studies.describe(study)))

settings = profiles.get("quick").kerneldiff
display(Markdown(f"The quick evaluation samples with {settings.sample_steps} steps and the official guidance step; its "
                 f"\"best of {settings.n_select}\" row draws {settings.select_steps}-step samples."))

# %% [markdown]
# **How to read it.** A row of the second table marked "not resolved" means these pairs cannot
# tell its sign: a larger `--pairs` would. The same script compares a longer-trained ε_θ
# (`--train-steps N`, its own checkpoint, continued from the profile's) and other step counts
# (`--steps`).
