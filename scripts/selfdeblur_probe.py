"""One SelfDeblur run on one input of the quick profile, with any configuration field changed:
the probe behind the quick profile's choices (crop size, Gk's learning rate): any run of the
SelfDeblur evaluation chapter's inputs at another setting.

    python scripts/selfdeblur_probe.py --method improved --size 64 --case 1          # the 64-px crop
    python scripts/selfdeblur_probe.py --method improved --size 128 --case 1         # the 128-px crop
    python scripts/selfdeblur_probe.py --method improved --size 128 --set kernel_l2_weight=0
    python scripts/selfdeblur_probe.py --method improved --size 128 --set kernel_l2_per_entry=false  # ℓ² as a sum
    python scripts/selfdeblur_probe.py --method original --size 64 --kodak-kernel 2 --set lr_kernel=1e-4

``--case``: index into the quick profile's Kodak inputs followed by its Levin inputs (0 =
kodim01 × Levin kernel 5, 1 = Levin im1_kernel3). Prints one JSON line: ISNR, kernel MNC and
effective support (``repro.experiments.selfdeblur.score_run``) and the seconds taken. ``--threads``
defaults to the chapters' ``repro.experiments.selfdeblur.RUN_THREADS`` (one): SelfDeblur's result
depends on the thread count (the book's Reproduce page, "Determinism").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from repro import profiles
from repro import selfdeblur as sd
from repro.experiments import selfdeblur as se


def parse_field(config: sd.SelfDeblurConfig, assignment: str) -> tuple[str, object]:
    """``name=value`` → (name, value typed like the field of ``config``)."""
    name, sep, text = assignment.partition("=")
    if not sep or not hasattr(config, name):
        raise SystemExit(f"--set expects FIELD=VALUE with a SelfDeblurConfig field, got {assignment!r}")
    current = getattr(config, name)
    if isinstance(current, bool):
        return name, text.lower() in ("1", "true", "yes")
    return name, type(current)(float(text)) if isinstance(current, (int, float)) else text


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=list(se.METHODS), default="improved")
    parser.add_argument("--scale", type=float, default=None, help="iteration scale (default: the quick profile's)")
    parser.add_argument("--size", type=int, default=None, help="crop size of both data sets (default: quick's)")
    parser.add_argument("--kodak-kernel", type=int, default=None,
                        help="Levin kernel (1-8) of the Kodak input (default: the quick profile's)")
    parser.add_argument("--case", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--threads", type=int, default=se.RUN_THREADS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = profiles.get("quick").selfdeblur
    if args.size is not None:
        settings = dataclasses.replace(settings, kodak_size=args.size, levin_size=args.size)
    if args.kodak_kernel is not None:
        settings = dataclasses.replace(settings, kodak_kernels=(args.kodak_kernel,))
    config = se.METHODS[args.method].scaled(settings.iteration_scale if args.scale is None else args.scale)
    changes = dict(parse_field(config, a) for a in args.set)
    config = dataclasses.replace(config, **changes)
    cases = se.kodak_cases(settings) + se.levin_cases(settings)
    if not 0 <= args.case < len(cases):
        raise SystemExit(f"--case must be in 0..{len(cases) - 1}")
    case = cases[args.case]
    start = time.perf_counter()
    result = sd.run_selfdeblur(case.y[None], case.meta["kernel_size"], config, seed=args.seed, progress=True)
    scores = se.score_run(case, result.x_hat[0], result.k_hat[0])
    out = {"case": case.meta["input"], "size": int(case.y.shape[-1]), "method": args.method,
           "iterations": config.iterations, "lr_kernel": config.lr_kernel, "seed": args.seed,
           "threads": args.threads, **changes,
           "isnr": round(scores["isnr"], 2), "mnc": round(scores["mnc"], 3),
           "kernel_support": round(scores["kernel_support"], 1), "seconds": round(time.perf_counter() - start)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
