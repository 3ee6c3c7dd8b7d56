"""Input validation shared by every public function.

Each check raises ``ValueError`` naming the argument and what was expected; none uses
``assert`` (which disappears under ``python -O``).
"""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_tensor(t, name: str, ndims: tuple[int, ...] | None = None) -> torch.Tensor:
    """Check that ``t`` is a floating tensor (float32/64) of one of the ranks ``ndims``, finite."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {t.dtype}")
    if ndims is not None and t.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return t


def check_choice(value, name: str, choices) -> str:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    """Check that a scalar is a finite positive (or non-negative) number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (v == v and abs(v) != float("inf")):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


def check_positive_int(value, name: str, allow_none: bool = False) -> int | None:
    """Check that ``value`` is an int >= 1 (not a bool), or None where ``allow_none``."""
    if value is None and allow_none:
        return None
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be {'None or ' if allow_none else ''}a positive int, got {value!r}")
    return value
