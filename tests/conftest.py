"""Shared test settings."""

import pytest
import torch

from repro import data


def needs_data(*datasets):
    """Skip a test that reads the real data sets (default: all) unless they are on this machine
    (:func:`repro.data.available`: the mirror, or the download cache). `make test` runs `repro data
    fetch` first, so under it these tests always run; a plain `pytest` says in its skip reason how
    to get the files."""
    missing = [name for name in (datasets or data.datasets()) if not data.available(name)]
    return pytest.mark.skipif(bool(missing), reason=(
        f"data set(s) {missing} are not on this machine: run `repro data fetch` once (downloads them), "
        f"or set {data.MIRROR_ENV} to a copy of the data mirror"))


@pytest.fixture(autouse=True)
def _float32_without_tf32_in_cuda_tests(request):
    """The CUDA tests compare GPU results with the CPU's at float32 rounding. PyTorch's default on
    recent GPUs computes float32 convolutions in TF32 (cuDNN; a 10-bit mantissa, relative errors
    of about 1e-3), which would swamp that comparison, so the tests marked ``cuda`` run with TF32
    off for convolutions and matrix products; the package itself keeps PyTorch's defaults."""
    if request.node.get_closest_marker("cuda") is None:
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
