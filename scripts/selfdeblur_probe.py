"""SelfDeblur runs on the quick profile's inputs with any setting changed: the probe behind the
quick profile's choices (crop size, Gk's learning rate). Every combination of ``--method``,
``--size``, ``--case`` and ``--seed`` is one run (one CPU thread each, the runs side by side in
``--workers`` processes, as the chapters run them).

    python scripts/selfdeblur_probe.py --method improved --size 64 --case 1          # one run: the 64-px crop
    python scripts/selfdeblur_probe.py --method improved --size 128 --set kernel_l2_weight=0
    python scripts/selfdeblur_probe.py --method improved --size 128 --set kernel_l2_per_entry=false  # ℓ² as a sum
    python scripts/selfdeblur_probe.py --method original --size 64 --kodak-kernel 2 --set lr_kernel=1e-4
    python scripts/selfdeblur_probe.py --method original improved --size 64 92 128 --case 0 1 \
        --out scripts/outputs/selfdeblur_crop_sizes.json                              # the crop-size study

``--case``: index into the quick profile's Kodak inputs followed by its Levin inputs (0 =
kodim01 × Levin kernel 5, 1 = Levin im1_kernel3). Prints one JSON line per run as it finishes:
ISNR, kernel MNC and effective support (``repro.experiments.selfdeblur.score_run``) and the
seconds taken; ``--out FILE`` writes every run, in grid order, with the command, date, machine
and commit (``repro.studies``). ``--threads`` defaults to the chapters'
``repro.experiments.selfdeblur.RUN_THREADS`` (one): SelfDeblur's result depends on the thread
count (the book's Reproduce page, "Determinism"), not on the number of workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time

import torch

from repro import profiles, studies
from repro import selfdeblur as sd
from repro._threads import check_workers, parallel_map
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


def settings_for(size: int | None, kodak_kernel: int | None) -> se.SelfDeblurProfile:
    """The quick profile's SelfDeblur settings with both crops at ``size`` and the Kodak input
    blurred by Levin kernel ``kodak_kernel`` (None: the profile's)."""
    settings = profiles.get("quick").selfdeblur
    if size is not None:
        settings = dataclasses.replace(settings, kodak_size=size, levin_size=size)
    if kodak_kernel is not None:
        settings = dataclasses.replace(settings, kodak_kernels=(kodak_kernel,))
    return settings


def probe(job: dict) -> dict:
    """One run: ``job`` holds method, size, kodak_kernel, case, seed, scale, threads, progress
    and the ``changes`` (field → value) of the method's :class:`repro.selfdeblur.SelfDeblurConfig`."""
    torch.set_num_threads(job["threads"])
    settings = settings_for(job["size"], job["kodak_kernel"])
    config = se.METHODS[job["method"]].scaled(settings.iteration_scale if job["scale"] is None else job["scale"])
    config = dataclasses.replace(config, **job["changes"])
    case = (se.kodak_cases(settings) + se.levin_cases(settings))[job["case"]]
    start = time.perf_counter()
    result = sd.run_selfdeblur(case.y[None], case.meta["kernel_size"], config, seed=job["seed"], progress=job["progress"])
    scores = se.score_run(case, result.x_hat[0], result.k_hat[0])
    return {"case": case.meta["input"], "size": int(case.y.shape[-1]), "method": job["method"],
            "iterations": config.iterations, "lr_kernel": config.lr_kernel, "seed": job["seed"],
            "threads": job["threads"], **job["changes"],
            "isnr": round(scores["isnr"], 2), "mnc": round(scores["mnc"], 3),
            "kernel_support": round(scores["kernel_support"], 1), "seconds": round(time.perf_counter() - start)}


def main(argv=None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", nargs="+", choices=list(se.METHODS), default=["improved"])
    parser.add_argument("--scale", type=float, default=None, help="iteration scale (default: the quick profile's)")
    parser.add_argument("--size", type=int, nargs="+", default=[None],
                        help="crop sizes of both data sets (default: quick's)")
    parser.add_argument("--kodak-kernel", type=int, default=None,
                        help="Levin kernel (1-8) of the Kodak input (default: the quick profile's)")
    parser.add_argument("--case", type=int, nargs="+", default=[0])
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--threads", type=int, default=se.RUN_THREADS)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--out", default=None, help="write every run to this JSON file (repro.studies)")
    args = parser.parse_args(argv)
    settings = settings_for(None, args.kodak_kernel)
    config = se.METHODS[args.method[0]]
    changes = dict(parse_field(config, a) for a in args.set)
    n_cases = len(se.kodak_cases(settings)) + len(se.levin_cases(settings))
    if not all(0 <= case < n_cases for case in args.case):
        parser.error(f"--case must be in 0..{n_cases - 1}, got {args.case}")
    jobs = [{"method": method, "size": size, "kodak_kernel": args.kodak_kernel, "case": case, "seed": seed,
             "scale": args.scale, "threads": args.threads, "changes": changes, "progress": False}
            for method, size, case, seed in itertools.product(args.method, args.size, args.case, args.seed)]
    if len(jobs) == 1:  # a bar for the one run; the bars of runs side by side would garble the JSON lines
        jobs[0]["progress"] = True
    rows = [None] * len(jobs)
    for i, row in parallel_map(probe, jobs, check_workers(args.workers)):
        rows[i] = row
        print(json.dumps(row), flush=True)
    if args.out:
        studies.write(args.out, {"runs": rows}, "selfdeblur_probe.py", argv)
    return rows


if __name__ == "__main__":
    main()
