"""The shared validation helpers (repro._checks), and that no module keeps a copy of its own."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from repro._checks import check_int, count_parameters, is_int, resolve_device

SRC = Path(__file__).resolve().parents[1] / "src" / "repro"


def test_is_int_takes_python_and_numpy_integers_but_not_bools():
    assert is_int(3) and is_int(np.int64(3)) and is_int(0, 0) and is_int(-2)
    assert not is_int(True) and not is_int(3.0) and not is_int("3") and not is_int(None)
    assert not is_int(0, 1) and is_int(1, 1) and not is_int(np.int32(-1), 0)


def test_check_int_returns_a_python_int_or_names_the_argument():
    assert check_int(np.int64(5), "n") == 5 and type(check_int(np.int64(5), "n")) is int
    assert check_int(0, "seed", 0) == 0
    for bad in (0, 2.5, False, "4"):
        with pytest.raises(ValueError, match=r"n must be an int >= 1, got"):
            check_int(bad, "n")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    assert resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must name a torch device"):
        resolve_device("gpu0")


def test_count_parameters():
    assert count_parameters(torch.nn.Conv2d(3, 4, 5)) == 3 * 4 * 25 + 4
    assert count_parameters(torch.nn.Sequential()) == 0


@pytest.mark.parametrize("helper", ["_is_int", "_check_count", "count_parameters", "_device", "_resolve_device",
                                    "_default_device"])
def test_no_module_keeps_its_own_copy_of_a_shared_helper(helper):
    copies = [p.name for p in SRC.glob("*.py") if p.name != "_checks.py"
              and re.search(rf"^def {helper}\(", p.read_text(), flags=re.M)]
    assert copies == [], f"{helper} is defined again in {copies}; use repro._checks"
