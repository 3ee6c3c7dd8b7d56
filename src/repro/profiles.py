"""The three profiles, one frozen :class:`Profile` each: what every chapter runs at that size.

``smoke`` is for CI (seconds per chapter), ``quick`` for a 2-core laptop (the whole book in about
90 minutes), ``paper`` for a GPU and the papers' protocols. A :class:`Profile` composes the
settings of each chapter, named by field; each chapter's settings class and table live beside the
experiment that reads them (:mod:`repro.experiments`). The experiments receive a :class:`Profile`,
never a profile's name; the name only chooses the folder of the results
(``results/<name>/<chapter>/``, :mod:`repro.store`)::

    from repro import profiles
    quick = profiles.get("quick")
    quick.kerneldiff.sample_steps, quick.d3.gallery_size
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from typing import TYPE_CHECKING

from ._checks import check_positive_int
from .store import PROFILES as NAMES
from .store import check_profile

if TYPE_CHECKING:
    from .experiments.benchmark import BenchmarkProfile
    from .experiments.d3 import DILProfile
    from .experiments.kerneldiff import KernelDiffProfile
    from .experiments.kerneldiff_data import KernelDiffData
    from .experiments.selfdeblur import SelfDeblurProfile
    from .experiments.solver import SolverProfile


@dataclass(frozen=True)
class ToyProfile:
    """The 1D toy chapter's sizes: the ``resolution`` of the random loss planes, the number of
    random ``starts``, the gradient ``steps`` of each descent and the alternating ``rounds``."""

    name: str
    resolution: int
    starts: int
    steps: int
    rounds: int

    def __post_init__(self):
        for name in ("resolution", "starts", "steps", "rounds"):
            check_positive_int(getattr(self, name), f"ToyProfile.{name}")


TOY = {
    "smoke": ToyProfile("smoke", resolution=41, starts=16, steps=150, rounds=8),
    "quick": ToyProfile("quick", resolution=151, starts=200, steps=600, rounds=30),
    "paper": ToyProfile("paper", resolution=301, starts=1000, steps=1500, rounds=75),
}


@dataclass(frozen=True)
class ExploreProfile:
    """The frames of the book's Explore figures (:mod:`repro.interactive`): ``values`` of each
    slider's parameter besides the chapter's own value, ``snapshots`` of each scrubbed run."""

    name: str
    values: int
    snapshots: int

    def __post_init__(self):
        for name in ("values", "snapshots"):
            check_positive_int(getattr(self, name), f"ExploreProfile.{name}")


EXPLORE = {
    "smoke": ExploreProfile("smoke", values=2, snapshots=8),
    "quick": ExploreProfile("quick", values=6, snapshots=25),
    "paper": ExploreProfile("paper", values=10, snapshots=50),
}


@dataclass(frozen=True)
class Profile:
    """Everything one profile runs, chapter by chapter.

    ``toy1d``: the 1D toy; ``d3``: D3 / NSD-DIL; ``selfdeblur``: the SelfDeblur chapters;
    ``kerneldiff_data``: the data sizes shared by the Kernel-Diff solver, model and test sets;
    ``solver``: the training of the learned non-blind solver F; ``kerneldiff``: ε_θ, its samplers
    and the evaluation; ``benchmark``: every method on the same test sets; ``explore``: the frames
    of the book's Explore figures. Every part carries
    the profile's ``name``, which also names the results folder. Make one with :func:`get`, and a
    variant of it with ``dataclasses.replace``.
    """

    name: str
    toy1d: ToyProfile
    d3: DILProfile
    selfdeblur: SelfDeblurProfile
    kerneldiff_data: KernelDiffData
    solver: SolverProfile
    kerneldiff: KernelDiffProfile
    benchmark: BenchmarkProfile
    explore: ExploreProfile

    def __post_init__(self):
        check_profile(self.name)
        for part in dataclasses.fields(self)[1:]:
            value = getattr(self, part.name)
            if getattr(value, "name", None) != self.name:
                raise ValueError(f"Profile {self.name!r}: its {part.name} settings belong to profile "
                                 f"{getattr(value, 'name', None)!r}")


def get(name: str) -> Profile:
    """The :class:`Profile` called ``name`` ("smoke", "quick" or "paper"); ValueError otherwise."""
    from .experiments import benchmark, d3, kerneldiff, kerneldiff_data, selfdeblur, solver  # here: they import Profile

    check_profile(name)
    return Profile(name, toy1d=TOY[name], d3=d3.PROFILES[name], selfdeblur=selfdeblur.PROFILES[name],
                   kerneldiff_data=kerneldiff_data.DATA_PROFILES[name], solver=solver.SOLVER_PROFILES[name],
                   kerneldiff=kerneldiff.PROFILES[name], benchmark=benchmark.PROFILES[name],
                   explore=EXPLORE[name])


def check(profile) -> Profile:
    """Return ``profile`` if it is a :class:`Profile`; a ValueError that says how to get one
    otherwise (a profile's name is not accepted: ``repro.profiles.get(name)`` makes the object)."""
    if not isinstance(profile, Profile):
        raise ValueError(f"expected a repro.profiles.Profile, got {profile!r}; "
                         f"use repro.profiles.get(name) with a name in {list(NAMES)}")
    return profile
