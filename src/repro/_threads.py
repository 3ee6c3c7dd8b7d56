"""One intra-op CPU thread for the training loops (DIL, the learned solver, the Kernel-Diff ε-network)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_cpu_thread(device: torch.device):
    """Run the block with one intra-op CPU thread, then restore the previous count (no-op off the CPU).

    The tensors of these loops are small: threads only add synchronisation, and on a busy 2-core
    machine they made training 2–40× slower than one thread. One thread also makes a run
    bit-identical whatever the machine's core count (SelfDeblur, whose large convolutions gain
    from threads, does not use this: its results depend on the thread count).
    """
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
