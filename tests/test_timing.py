"""The timing helper: warm-up calls are not timed, the reduction is applied, bad counts refused."""

import pytest

from repro.timing import time_call


def test_time_call_counts_and_reduces():
    calls = []
    seconds = time_call(lambda: calls.append(1), repeats=4, warmup=2, reduce=min)
    assert len(calls) == 6 and 0 <= seconds < 1


@pytest.mark.parametrize("repeats, warmup", [(0, 1), (2, -1)])
def test_time_call_rejects_bad_counts(repeats, warmup):
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=repeats, warmup=warmup)
