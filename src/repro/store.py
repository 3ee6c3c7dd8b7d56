"""Where the experiments' results live: ``results/<profile>/<chapter>/``.

Every experiment that computes something heavy keeps its outputs under the folder of its profile
(``smoke``, ``quick`` or ``paper``) and chapter, so that the book can be rebuilt without
recomputing. The files are written atomically and read back with the checks of
:mod:`repro._io`. The science modules never import this module.
"""

from __future__ import annotations

import os
from pathlib import Path

PROFILES = ("smoke", "quick", "paper")
"""``smoke``: CI, seconds. ``quick``: a 2-core laptop. ``paper``: a GPU, the paper's protocol."""


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is a known profile, else raise a ``ValueError`` listing them."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    return profile


def results_root() -> Path:
    """Root of the results tree: ``$REPRO_RESULTS`` or ``results/`` in the repository."""
    env = os.environ.get("REPRO_RESULTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "results"


def results_dir(profile: str, chapter: str) -> Path:
    """``results/<profile>/<chapter>/``, created if missing."""
    path = results_root() / check_profile(profile) / chapter
    path.mkdir(parents=True, exist_ok=True)
    return path
