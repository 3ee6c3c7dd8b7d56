"""The 1D toy chapter's runs (Kernel-Diff §3.1, supplement A): one noisy observation of the true
pulse, its exhaustive loss table, the random starts and where each strategy ends from them.
Cheap (seconds at the quick profile), so computed on every call rather than cached."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .. import toy1d
from ..interactive import Panel, slider_figure, slider_values
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


EXPLORE_RANGES = {"a": (20.0, 90.0), "w": (2.0, 30.0), "sigma": (0.4, 3.0), "noise": (0.001, 0.1)}
"""The range of each parameter in the Explore figures (noise: its standard deviation, on a log
scale); the other three parameters stay at the truth and the noise at :data:`NOISE_STD`."""

EXPLORE_LABELS = {"a": "pulse start a", "w": "pulse width w", "sigma": "blur σ", "noise": "noise std"}

EXPLORE_PLANE_RESOLUTION = 61
"""Side of the loss plane in each Explore frame: the live controls' resolution, small enough for a
page of many frames."""

_THETA = ("a", "w", "sigma")


@dataclass(frozen=True)
class ToyFrame:
    """One Explore frame: the ``theta`` = (a, w, σ) and ``noise`` observed; the sharp pulse ``x``
    and observation ``y``; the data term on random plane 0 through ``theta`` (``plane``, the
    :class:`repro.toy1d.Plane`); both kernel posteriors (``posterior``, eqs. 12 and 16)."""

    theta: tuple[float, float, float]
    noise: float
    x: torch.Tensor
    y: torch.Tensor
    plane: toy1d.Plane
    posterior: dict[str, torch.Tensor]

    def value(self, parameter: str) -> float:
        return self.noise if parameter == "noise" else self.theta[_THETA.index(parameter)]


def _check_parameter(parameter: str) -> str:
    if parameter not in EXPLORE_RANGES:
        raise ValueError(f"parameter must be one of {list(EXPLORE_RANGES)}, got {parameter!r}")
    return parameter


def _default(parameter: str) -> float:
    return NOISE_STD if parameter == "noise" else toy1d.TRUTH[_THETA.index(parameter)]


def _point(parameter: str, value: float) -> tuple[tuple[float, float, float], float]:
    """(θ, noise) with ``parameter`` set to ``value`` and the others at the chapter's own."""
    theta = list(toy1d.TRUTH)
    if parameter != "noise":
        theta[_THETA.index(parameter)] = value
    return tuple(theta), value if parameter == "noise" else NOISE_STD


def explore_values(parameter: str, count: int) -> list[float]:
    """``count`` values evenly spread over :data:`EXPLORE_RANGES` (geometrically for the noise),
    with the chapter's own value among them, in increasing order."""
    low, high = EXPLORE_RANGES[_check_parameter(parameter)]
    return slider_values(low, high, count, _default(parameter), geometric=parameter == "noise")


def explore_frame(theta, noise: float) -> ToyFrame:
    """Everything one Explore frame shows, computed as the chapter computes its default figures
    (observation seed 0, plane seed 0, the grid posterior of step 0.5)."""
    a, w, sigma = (float(v) for v in theta)
    y = toy1d.observe((a, w, sigma), noise_std=noise, seed=0)
    x = toy1d.pulse(torch.tensor(a, dtype=torch.float64), torch.tensor(w, dtype=torch.float64))
    plane = toy1d.random_plane(y, seed=0, resolution=EXPLORE_PLANE_RESOLUTION, center=(a, w, sigma))
    posterior = toy1d.GridSearch.build(y).log_posterior_sigma(noise)
    return ToyFrame((a, w, sigma), float(noise), x, y, plane, posterior)


def explore_frames(profile: Profile, progress: bool = True) -> dict[str, list[ToyFrame]]:
    """The frames of the Explore sliders, one list per parameter (a, w, sigma, noise): that
    parameter over :func:`explore_values` (``profile.explore.values`` of them besides its
    default), the others at the truth; the frame of the defaults is computed once. A progress bar
    unless not ``progress``."""
    count = check(profile).explore.values
    points = {p: [_point(p, v) for v in explore_values(p, count)] for p in EXPLORE_RANGES}
    computed: dict[tuple, ToyFrame] = {}
    for point in tqdm([q for qs in points.values() for q in qs], desc="Explore frames", disable=not progress,
                      leave=False):
        if point not in computed:
            computed[point] = explore_frame(*point)
    return {p: [computed[q] for q in qs] for p, qs in points.items()}


def explore_figure(frames: dict[str, list[ToyFrame]], parameter: str):
    """The Explore figure of one parameter's slider (:func:`explore_frames`), starting at the
    chapter's value: the pulse and its observation, log10 of the data term on plane 0 through the
    frame's θ, and both posteriors (clipped below at −2000, as in the chapter's figure) with the
    frame's σ marked."""
    sweep = frames[_check_parameter(parameter)]
    t = list(range(toy1d.N))
    values = [f.value(parameter) for f in sweep]
    panels = [
        Panel("pulse and observation", "lines", [{"sharp x": (t, f.x), "observed y": (t, f.y)} for f in sweep],
              x_title="t"),
        Panel("log10 data term, plane 0", "heatmap",
              [(f.plane.alpha, f.plane.beta, torch.log10(f.plane.loss.T + 1e-6)) for f in sweep],
              x_title="α", y_title="β"),
        Panel("log p(σ|y) + const", "lines",
              [{"eq. (12)": (f.posterior["sigma"], f.posterior["marginal"].clamp(min=-2000)),
                "eq. (16)": (f.posterior["sigma"], f.posterior["nonblind"].clamp(min=-2000)),
                "marker": f.theta[2]} for f in sweep], x_title="σ"),
    ]
    return slider_figure(EXPLORE_LABELS[parameter], [f"{v:g}" for v in values], panels,
                         active=values.index(_default(parameter)))
