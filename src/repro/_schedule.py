"""The learning-rate schedule shared by two training loops: D3's deep identity learning
(:meth:`repro.dil.DILConfig.learning_rate`) and the learned non-blind solver
(:meth:`repro.experiments.solver.SolverProfile.learning_rate`)."""

from __future__ import annotations

import math


def half_cosine_lr(lr: float, final_ratio: float, step: int, steps: int) -> float:
    """``lr`` decayed along a half cosine to ``lr · final_ratio`` at step ``steps``, and held
    there after it:  lr · (r + (1 − r) · ½ (1 + cos(π · min(step / steps, 1))))."""
    progress = min(step / steps, 1.0)
    return lr * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
