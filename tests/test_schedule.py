import math

import pytest

from repro._schedule import half_cosine_lr
from repro.dil import DILConfig
from repro.experiments.solver import SolverProfile


def test_half_cosine_lr_starts_at_lr_ends_at_the_final_ratio_and_holds_it():
    assert half_cosine_lr(2.0, 0.1, 0, 100) == 2.0
    assert half_cosine_lr(2.0, 0.1, 50, 100) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert half_cosine_lr(2.0, 0.1, 100, 100) == pytest.approx(0.2)
    assert half_cosine_lr(2.0, 0.1, 250, 100) == half_cosine_lr(2.0, 0.1, 100, 100)
    values = [half_cosine_lr(1.0, 0.05, step, 40) for step in range(41)]
    assert all(a > b for a, b in zip(values, values[1:]))
    # symmetric about the midpoint: lr(t) + lr(T - t) = lr · (1 + r)
    assert half_cosine_lr(1.0, 0.05, 10, 40) + half_cosine_lr(1.0, 0.05, 30, 40) == pytest.approx(1.05)


@pytest.mark.parametrize("config", [DILConfig(steps=300, lr=3e-3, lr_final_ratio=0.01),
                                    SolverProfile("test", steps=300, lr=3e-3, lr_final_ratio=0.01)])
def test_both_training_loops_follow_the_shared_schedule(config):
    for step in (0, 1, 77, 150, 299, 300, 301):
        progress = min(step / 300, 1.0)
        expected = 3e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
        assert config.learning_rate(step) == expected
