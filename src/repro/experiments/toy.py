"""The 1D toy chapter's runs (Kernel-Diff §3.1, supplement A): one noisy observation of the true
pulse, its exhaustive loss table, the random starts and where each strategy ends from them.
Cheap (seconds at the quick profile), so computed on every call rather than cached."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import toy1d
from ..profiles import Profile, ToyProfile, check

NOISE_STD = 0.01
"""The observation's noise standard deviation (the chapter's y)."""


@dataclass(frozen=True)
class ToyResults:
    """``settings``: the profile's toy sizes; ``y``: the observation (noise ``noise_std``, seed 0);
    ``table``: its :class:`repro.toy1d.GridSearch`; ``starts``: the random starts (seed 1);
    ``estimates``: each strategy's end points from them (:func:`repro.toy1d.compare_strategies`)."""

    settings: ToyProfile
    noise_std: float
    y: torch.Tensor
    table: toy1d.GridSearch
    starts: torch.Tensor
    estimates: dict[str, torch.Tensor]


def run_chapter(profile: Profile) -> ToyResults:
    """Everything the toy chapter computes from its observation."""
    settings = check(profile).toy1d
    y = toy1d.observe(toy1d.TRUTH, noise_std=NOISE_STD, seed=0)
    table = toy1d.GridSearch.build(y)
    starts = toy1d.random_starts(settings.starts, seed=1)
    estimates = toy1d.compare_strategies(y, NOISE_STD, starts, settings.steps, settings.rounds, table)
    return ToyResults(settings, NOISE_STD, y, table, starts, estimates)
