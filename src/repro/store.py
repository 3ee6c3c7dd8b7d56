"""Where results live, and how they are written: atomically, per profile, resumable.

Every chapter that computes something heavy takes one ``profile`` (``smoke``, ``quick`` or
``paper``) and keeps its outputs under ``results/<profile>/<chapter>/``, so that the book can be
rebuilt without recomputing. Files are written to a temporary name in the same folder and moved
into place with :func:`os.replace`, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_json(path: str | os.PathLike):
    """Read JSON written by :func:`save_json`; a corrupt file raises ``ValueError`` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to recompute") from None


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """``torch.save`` ``state`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint; an unreadable file raises ``ValueError`` naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for a corrupt archive
        raise ValueError(f"checkpoint {path} is corrupt or unreadable ({err}); delete it to recompute") from None


def load_cached(path: str | os.PathLike, loader=load_json, is_valid=None):
    """Return the cache entry at ``path`` read by ``loader``, or ``None`` when it must be (re)built.

    ``None`` when the file is missing, or stale: readable, but ``is_valid(obj)`` is false (written
    for another configuration or format); the caller then overwrites it. ``None`` also when it is
    corrupt (``loader`` raises ``ValueError``, as :func:`load_json` and :func:`load_checkpoint` do
    for a truncated or damaged file): a corrupt entry is never silently used, it is renamed to
    ``<name>.corrupt`` (kept for inspection, replacing an older one) with a warning, and the
    caller computes it again.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = loader(path)
    except ValueError as err:
        move_aside(path, "corrupt", f"is corrupt ({err})")
        return None
    return obj if is_valid is None or is_valid(obj) else None


def move_aside(path: str | os.PathLike, suffix: str, why: str) -> Path:
    """Rename the cache entry ``path`` to ``<name>.<suffix>`` (kept for inspection, replacing an
    older one) with a warning that says ``why``, so that the caller rebuilds it; returns the new path.
    Used for a corrupt entry, and for a training checkpoint written for another configuration of
    its profile (``"stale"``), which is retrained rather than resumed or refused."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.{suffix}")
    os.replace(path, aside)
    warnings.warn(f"cache entry {path} {why}; moved to {aside.name} and rebuilt", stacklevel=3)
    return aside
