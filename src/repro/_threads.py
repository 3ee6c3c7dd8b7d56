"""A fixed intra-op CPU thread count for the training loops (DIL, the learned solver, the
Kernel-Diff ε-network), so that a run does not depend on the machine's core count."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def fixed_cpu_threads(device: torch.device, threads: int = 1):
    """Run the block with ``threads`` intra-op CPU threads, then restore the previous count
    (no-op off the CPU).

    PyTorch's CPU kernels split their work by the thread count, so a seeded run is
    bit-identical from one run to the next only at the same count: fixing it, rather than
    taking the machine's default, makes a training run the same on a 2-core laptop and on a
    64-core server (of the same instruction set). The DIL and learned-solver loops use one
    thread: their tensors are small, and on a busy 2-core machine threads made them 2–40×
    slower. The Kernel-Diff ε-network uses two (its convolutions at 64² gain 1.9× on this
    2-core machine). SelfDeblur does not use this: its results depend on the thread count.
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    if torch.device(device).type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
