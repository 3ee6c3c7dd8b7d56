"""Shared test settings."""

import pytest
import torch


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
