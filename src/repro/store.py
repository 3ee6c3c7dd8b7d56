"""Where the experiments' results live: ``<root>/<profile>/<chapter>/``.

Every experiment that computes something heavy keeps its outputs under the folder of its profile
(``smoke``, ``quick`` or ``paper``) and chapter, so that the book can be rebuilt without
recomputing. The experiments receive a :class:`Store` (by default the one of
:meth:`Store.default`: ``$REPRO_RESULTS`` or ``results/``); the files in it are written
atomically and read back with the checks of :mod:`repro._io`. The science modules never import
this module.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Store:
    """A results tree: each chapter of each profile keeps its files in :meth:`folder`."""

    root: Path

    def __post_init__(self):
        if not isinstance(self.root, (str, os.PathLike)):
            raise ValueError(f"root must be a path, got {type(self.root).__name__}")
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def default(cls) -> Store:
        """The store of :func:`results_root`, read when called (so that ``$REPRO_RESULTS`` set
        later counts)."""
        return cls(results_root())

    @classmethod
    def resolve(cls, store: Store | None) -> Store:
        """``store``, or :meth:`default` for None; anything else is a ``ValueError``."""
        if store is None:
            return cls.default()
        if not isinstance(store, cls):
            raise ValueError(f"store must be a repro.store.Store or None, got {type(store).__name__}")
        return store

    def folder(self, profile, chapter: str) -> Path:
        """``<root>/<profile name>/<chapter>/``, created if missing. ``profile``: a
        ``repro.profiles.Profile`` (its name alone is refused, as by every experiment)."""
        name = getattr(profile, "name", None)
        if isinstance(profile, str) or not isinstance(name, str):
            raise ValueError(f"profile must be a repro.profiles.Profile (repro.profiles.get(name)), got {profile!r}")
        path = self.root / check_profile(name) / chapter
        path.mkdir(parents=True, exist_ok=True)
        return path
