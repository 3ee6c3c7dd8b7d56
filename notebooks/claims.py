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
# # What reproduces
#
# Every claim of the three papers that this book can test, decided from this profile's runs.
# The rules were fixed before the runs, in {mod}`repro.claims`: for each claim a statistic (most
# often a paired difference between two methods over the same test inputs), the threshold its
# 95 % interval must clear, and the side on which the claim holds.
#
# - **reproduced**: the whole interval lies on the claim's side of the threshold;
# - **not reproduced**: the whole interval lies on the other side;
# - **undecided at this profile**: the interval straddles the threshold. The row then says how
#   many inputs would decide it if the estimate and its spread stayed as observed, or that one
#   input cannot tell how far inputs spread.
#
# The paper's value stands in its own column: it was measured on the paper's protocol (its data,
# models and sizes), and our statistic is a test of the claim's direction on ours, not of the
# paper's number. Each row links to the section that shows the evidence. The quick and smoke
# profiles run a few inputs per claim, so several claims stay undecided there; the `paper`
# profile runs the papers' protocols and this page then decides from those runs.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "quick")

# %%
from IPython.display import Markdown, display
from myst_nb import glue

from repro import claims, profiles

decisions = claims.ledger(profiles.get(profile), device="cpu")
counts = {verdict: sum(d.verdict == verdict for d in decisions) for verdict in claims.VERDICTS}
glue("profile", profile, display=False)
for verdict, count in counts.items():
    glue(verdict.replace(" ", "_"), count, display=False)
display(Markdown(claims.markdown(decisions)))

# %% [markdown]
# At profile **{glue:text}`profile`**: {glue:text}`reproduced` claims reproduced,
# {glue:text}`not_reproduced` not reproduced and {glue:text}`undecided` undecided.
