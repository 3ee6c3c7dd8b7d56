"""CPU parallelism that keeps results reproducible: a fixed intra-op thread count for the
training loops and runs (DIL, the learned solver, the Kernel-Diff ε-network, SelfDeblur), so
that a result does not depend on the machine's core count, and worker processes for
independent jobs (:func:`parallel_map`)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import torch


@contextlib.contextmanager
def fixed_cpu_threads(device: torch.device, threads: int = 1):
    """Run the block with ``threads`` intra-op CPU threads, then restore the previous count
    (no-op off the CPU).

    PyTorch's CPU kernels split their work by the thread count, so a seeded run is
    bit-identical from one run to the next only at the same count: fixing it, rather than
    taking the machine's default, makes a training run the same on a 2-core laptop and on a
    64-core server (of the same instruction set). The DIL loop uses one thread: its tensors
    are small, and on a busy 2-core machine threads made it 2–40× slower; its variants train
    side by side in worker processes (:func:`parallel_map`). The learned solver and the
    Kernel-Diff ε-network use two (at 64², 1.7× and 1.9× faster than one on an idle 2-core
    machine). A SelfDeblur run uses one, and several runs go to worker processes.
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


def default_workers() -> int:
    """Worker processes for CPU runs: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_workers(workers, device: torch.device | str = "cpu") -> int:
    """``workers`` checked (an int >= 1), or :func:`default_workers` for None; 1 when ``device``
    is not the CPU (work there runs in this process, batched)."""
    workers = default_workers() if workers is None else workers
    if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise ValueError(f"workers must be None or an int >= 1, got {workers!r}")
    return workers if torch.device(device).type == "cpu" else 1


def parallel_map(fn: Callable, jobs: Sequence, workers: int) -> Iterator[tuple[int, object]]:
    """Yield ``(i, fn(jobs[i]))`` for every job, in the order they finish.

    With ``workers`` > 1 and more than one job the jobs run in that many fresh worker processes
    ("spawn": nothing inherited but the arguments and the environment; ``fn`` must be a
    module-level function, and a script that calls this must do so under
    ``if __name__ == "__main__":``, as Python's multiprocessing requires), otherwise one after
    another here. An error in a job is raised here once the jobs already
    running have finished; the ones not started are cancelled. Every result that was yielded
    before stays yielded, so a caller that stores results as they come loses nothing.
    """
    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            yield i, fn(job)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BrokenProcessPool as err:
                    raise RuntimeError(
                        "a worker process died before finishing its job: killed (out of memory?) or unable to "
                        "start. Workers are fresh Python processes that import the main script again, so a script "
                        "that starts them must do so under `if __name__ == \"__main__\":`; or pass workers=1 to "
                        "run the jobs one after another in this process") from err
                yield futures[future], result
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
