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
# # Notes: the crop size of the quick SelfDeblur runs
#
# A SelfDeblur run optimises two networks for hundreds of iterations on one input, and its time
# grows with the pixels of the latent image x, (crop + kernel size − 1)². The quick profile
# therefore deblurs centre crops of its inputs with a fraction of the paper's iterations
# ({doc}`selfdeblur_evaluation` lists every reduction). The crop cannot shrink freely: the
# improved method works coarse to fine through several scales of y, and on a small crop its
# coarsest scale leaves Gx only a few dozen pixels to generate.
#
# This page shows the study behind the quick crop: both methods, both quick inputs (a Kodak
# image with a synthetic blur by one of Levin's kernels, and one of Levin's real blurs), at
# several crop sizes, one seed, the quick profile's iterations, one CPU thread per run as the
# chapters run them. ISNR is the gain over the blurred input and MNC the kernel's match with the true one,
# both scored as in {doc}`selfdeblur_evaluation` ({func}`repro.experiments.selfdeblur.score_run`).
# One seed per cell is a look, not a measurement: {doc}`selfdeblur_failure_modes` shows how far
# runs of one input spread over seeds.
#
# The numbers come from a committed script's output file, not from this page's execution: the
# line under the table names the command that wrote it, its date, machine and commit.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")

# %%
from IPython.display import Markdown, display

from repro import profiles, studies

study = studies.read("selfdeblur_crop_sizes")
display(Markdown(studies.crop_size_table(study)))
display(Markdown(studies.describe(study)))
quick_size = profiles.get("quick").selfdeblur.kodak_size
times = studies.seconds_by_size(study)
display(Markdown("**Time per run against the quick crop of "
                 f"{quick_size} px:** " + ", ".join(f"{size} px × {seconds / times[quick_size]:.2f}"
                                                     for size, seconds in times.items())
                 + " (wall time on the machine named above, with other work beside it)."))
