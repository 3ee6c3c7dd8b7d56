"""Input validation shared by every public function, and the few helpers every module needs.

Each check raises ``ValueError`` naming the argument and what was expected; none uses
``assert`` (which disappears under ``python -O``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

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


def is_int(value, minimum: int | None = None) -> bool:
    """Whether ``value`` is an integer (Python or NumPy, not a bool), at least ``minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return False
    return minimum is None or value >= minimum


def check_int(value, name: str, minimum: int = 1) -> int:
    """Check that ``value`` is an integer (not a bool) >= ``minimum``; return it as an int."""
    if not is_int(value, minimum):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def resolve_device(device) -> torch.device:
    """``device`` as a ``torch.device``; None means CUDA where available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from None


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (every module here trains all of its parameters)."""
    return sum(p.numel() for p in model.parameters())
