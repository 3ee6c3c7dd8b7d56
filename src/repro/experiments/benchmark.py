"""One benchmark for every method of the book: the same test sets, one protocol, one table.

None of the three papers compares against the others. This module runs all the methods of the
book on four common test sets and scores them the same way.

Test sets (:func:`test_sets`)
    ``levin``          Levin et al.'s real camera-shake images ``levin_blurred(i, j)`` against
                       ``levin_sharp(i)`` (32 in the paper protocol), grey: the inputs of the
                       SelfDeblur chapter (:func:`repro.experiments.selfdeblur.levin_cases`, its
                       profile's choice and crops), so SelfDeblur's runs are shared with it.
    ``kodak``          Kodak images × Levin's eight kernels, valid blur (8 × 8 in the paper
                       protocol): the SelfDeblur chapter's inputs
                       (:func:`repro.experiments.selfdeblur.kodak_cases`: same images, kernels,
                       downscaling, crops and colour), so the numbers are comparable with it.
    ``bsd100-mild``    BSD100 (BSDS500 ``val``) images, each blurred by one held-out kernel of
                       D3's mild-blur family (:func:`repro.experiments.d3.mild_blur_cases`: anisotropic
                       Gaussians, sizes 11–21, the three variance bins in turn), valid blur.
    ``bsd100-motion``  The BSD100 images and held-out motion kernels of the Kernel-Diff test
                       set (``Profile.kerneldiff_data``, ``test_kernels``: kernel i for
                       image i, the model's kernel size), but as centre crops of the model's
                       image size blurred by the *valid* model (the Kernel-Diff chapter blurs
                       with the reflection boundary of its data model; here every set uses the
                       physical model).

Protocol, the same for every method and set
    * Blur: the physical *valid* convolution (the blurred image sees the scene beyond the
      sharp crop; no boundary assumption favours a method); Levin's images are real blur.
      **No noise is added** (Levin's photographs carry their own sensor noise).
    * Colour: as the set comes (Levin grey; Kodak grey in the smoke and quick profiles, RGB in
      the paper's, as the SelfDeblur chapter; BSD100 RGB). Each method handles colour its own
      way (Wiener, Tikhonov and the DRK per channel; SelfDeblur on the luma; Kernel-Diff on
      RGB, a grey image as three equal channels, averaged back).
    * Scores: PSNR and SSIM over all channels *up to shift* by Levin et al.'s protocol
      (:func:`repro.metrics.compare_up_to_shift`: a border of
      :func:`repro.experiments.selfdeblur.protocol_border` pixels — 15, fewer for small crops — is
      cropped, the best integer then 0.25-px shift is searched), exactly as the SelfDeblur
      chapter scores its runs (:func:`repro.experiments.selfdeblur.score_run`); outputs clamped to
      [0, 1]. MNC (:func:`repro.metrics.mnc`) of the estimated kernel for blind methods that
      estimate one. Seconds per image: wall-clock time of one call (models loaded beforehand).
    * Seeds: deterministic methods run once (seed 0); the stochastic ones (SelfDeblur,
      Kernel-Diff) ``runs`` times with seeds 0, 1, …; their *run-to-run spread* is the mean over
      inputs of the sample standard deviation (ddof = 1) across the runs of one input, as in
      the SelfDeblur chapter's Table 1.

Methods (:func:`adapters`), each run through one adapter ``(case, seed) -> scores``
    The blurred input (the reference: a method below it harms the image), Wiener and Tikhonov
    with the true kernel (oracles, not blind), Wiener with D3's fixed
    Gaussian guess and unsharp masking (the blind classical baselines), D3's DRK, SelfDeblur original and improved,
    Kernel-Diff guided (its kernel and its learned solver F). The user-facing functions of
    :mod:`repro.methods` are reused wherever they fit (``wiener``, ``drk``, ``kerneldiff``);
    SelfDeblur goes through :func:`repro.experiments.selfdeblur.evaluate_runs`, which stores every run
    and shares the Levin and Kodak runs with the SelfDeblur chapter.

Nothing is trained here: the DRK (:func:`repro.experiments.d3.train_variant`, ``full``), the Kernel-Diff
ε-network and solver (:func:`repro.experiments.kerneldiff.trained_model`, :func:`repro.experiments.kerneldiff.chapter_solver`)
come from the other chapters' caches for the same profile; when a cache is missing these
functions train it (seconds in the smoke profile, minutes to tens of minutes in quick).

Storage: every (set, case, method, seed) record is one entry of
``<store>/<profile>/benchmark/records.json``, rewritten atomically after each record
(:func:`run`); a record is reused while its key (the case's data, the method's parameters or
weights, the seed) is unchanged, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .. import data, methods, metrics, nonblind, timing
from .._checks import check_choice, check_positive_int, resolve_device
from .._io import Entries, fingerprint
from ..profiles import Profile, check
from ..store import Store, check_profile
from . import d3, kerneldiff, selfdeblur
from .evaluation import Case, build_cases, counted
from .selfdeblur import protocol_border
from .solver import solver_path

FORMAT = "repro.benchmark/2"
CHAPTER = "benchmark"

SETS = ("levin", "kodak", "bsd100-mild", "bsd100-motion")
SET_TITLES = {
    "levin": "Levin (real blur)",
    "kodak": "Kodak × Levin kernels",
    "bsd100-mild": "BSD100, mild Gaussian blur",
    "bsd100-motion": "BSD100, motion blur",
}

METHODS = (
    "blurred input",
    "Wiener, true k (oracle)",
    "Tikhonov, true k (oracle)",
    "Wiener, Gaussian guess",
    "unsharp masking",
    "DRK (D3)",
    "SelfDeblur, original",
    "SelfDeblur, improved",
    "Kernel-Diff, guided",
)
"""The benchmark's methods, in table order; the first, the blurred input itself, is the
reference a method has to beat to help at all."""

REFERENCE = METHODS[0]
STOCHASTIC = ("SelfDeblur, original", "SelfDeblur, improved", "Kernel-Diff, guided")

TIKHONOV_ORACLE_LAMBDA = 1e-3
"""Weight of the gradient prior of the "Tikhonov, true k (oracle)" row: ``nonblind.tikhonov``'s
default, not tuned."""


# --------------------------------------------------------------------------------------------
# 1. Profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkProfile:
    """What one profile runs (``Profile.benchmark``), every reduction explicit (:func:`describe`).

    Levin and Kodak: the inputs, crops, colour and SelfDeblur iteration scale of the SelfDeblur
    chapter's profile of the same name (:data:`repro.experiments.selfdeblur.PROFILES`). ``n_mild``
    BSD100 images for ``bsd100-mild``, centre-cropped to ``mild_crop`` (None: whole images);
    ``n_motion`` for ``bsd100-motion`` (crops of the Kernel-Diff model's image size). ``runs``:
    seeds per input of the stochastic methods. ``kerneldiff_steps``: reverse steps of
    Kernel-Diff (None: its profile's). ``selfdeblur_sets``: the sets SelfDeblur runs on (it is by
    far the most expensive method).
    """

    name: str
    n_mild: int
    mild_crop: int | None
    n_motion: int
    runs: int
    kerneldiff_steps: int | None
    selfdeblur_sets: tuple[str, ...]

    def __post_init__(self):
        check_profile(self.name)
        for name in ("n_mild", "n_motion", "runs"):
            check_positive_int(getattr(self, name), f"BenchmarkProfile.{name}")
        if self.runs < 2:
            raise ValueError(f"BenchmarkProfile.runs must be >= 2 (the run-to-run spread needs two), got {self.runs!r}")
        for name in ("mild_crop", "kerneldiff_steps"):
            check_positive_int(getattr(self, name), f"BenchmarkProfile.{name}", allow_none=True)
        for s in self.selfdeblur_sets:
            check_choice(s, "selfdeblur_sets", SETS)


PROFILES = {
    # CI: one input per set, the other chapters' smoke models; seconds.
    "smoke": BenchmarkProfile("smoke", n_mild=1, mild_crop=48, n_motion=1, runs=2, kerneldiff_steps=None,
                              selfdeblur_sets=("levin", "kodak")),
    # this 2-core CPU: a few inputs, SelfDeblur only on the SelfDeblur chapter's (cached) runs,
    # Kernel-Diff with 50 strided steps instead of 1,000.
    "quick": BenchmarkProfile("quick", n_mild=3, mild_crop=128, n_motion=3, runs=2, kerneldiff_steps=50,
                              selfdeblur_sets=("levin", "kodak")),
    # a GPU: the full sets (32 Levin, 8×8 Kodak, 100 + 100 BSD100), 5 runs, every method everywhere.
    "paper": BenchmarkProfile("paper", n_mild=100, mild_crop=None, n_motion=100, runs=5, kerneldiff_steps=None,
                              selfdeblur_sets=SETS),
}


def _selfdeblur_skip_reason(name: str, sd, spec) -> str:
    """Why SelfDeblur does not run on set ``name`` at this profile: always its cost (thousands
    of iterations of two networks per run); for the motion set also, where so, crops smaller
    than the inputs the SelfDeblur chapter's profile ``sd`` is sized for (at 64 pixels the
    multiscale method's coarsest scale is too small for Gx: ``repro.experiments.selfdeblur.PROFILES``)."""
    sizes = [size for size in (sd.levin_size, sd.kodak_size) if size is not None]
    if name == "bsd100-motion" and sizes and spec.crop < min(sizes):
        return (f"too slow for this profile, and its {spec.crop}² crops are smaller than the {min(sizes)}² "
                f"inputs this SelfDeblur profile is sized for")
    return "too slow for this profile"


def describe(profile: Profile) -> str:
    """The benchmark's reductions against the full protocol at ``profile``, in words (for the book)."""
    settings, sd, spec = check(profile).benchmark, profile.selfdeblur, profile.kerneldiff_data
    mild = "whole images" if settings.mild_crop is None else f"{settings.mild_crop}² centre crops"
    steps = profile.kerneldiff.sample_steps if settings.kerneldiff_steps is None else settings.kerneldiff_steps
    skipped = [f"{SET_TITLES[s]} ({_selfdeblur_skip_reason(s, sd, spec)})" for s in SETS
               if s not in settings.selfdeblur_sets]
    levin = "whole 255×255 images" if sd.levin_size is None else f"{sd.levin_size}² centre crops"
    kodak = "whole images" if sd.kodak_size is None else f"{sd.kodak_size}² crops"
    down = "" if sd.kodak_downscale == 1 else f" downscaled ×{sd.kodak_downscale:g},"
    return (
        f"Levin: {len(sd.levin_inputs)} of the 32 real-blurred images, {levin}; Kodak: "
        f"{counted(len(sd.kodak_images), 'image')} × {counted(len(sd.kodak_kernels), 'Levin kernel')},{down} {kodak}, "
        f"{'grey' if sd.gray else 'RGB'} (both the SelfDeblur chapter's inputs); BSD100 mild blur: "
        f"{counted(settings.n_mild, 'image')}, {mild}, one kernel each; BSD100 motion blur: {counted(settings.n_motion, 'image')}, "
        f"{spec.crop}² centre crops, {spec.kernel_size}×{spec.kernel_size} held-out motion kernels; "
        f"{settings.runs} runs (seeds 0–{settings.runs - 1}) of the stochastic methods; Kernel-Diff with {steps} "
        f"reverse steps; SelfDeblur with ×{sd.iteration_scale:g} of the paper's iterations"
        + (f", not run on {' and '.join(skipped)}" if skipped else "")
    )


# --------------------------------------------------------------------------------------------
# 2. Test sets
# --------------------------------------------------------------------------------------------


def mild_cases(profile: Profile) -> list[Case]:
    """``bsd100-mild``: D3's mild-blur recipe on the first ``n_mild`` BSD100 images, one kernel each."""
    settings = check(profile).benchmark
    mild = dataclasses.replace(profile.d3, n_bsd100=settings.n_mild, crop=settings.mild_crop, kernels_per_image=1)
    return d3.mild_blur_cases(mild, 0.0, n_images=settings.n_mild)


def motion_cases(profile: Profile) -> list[Case]:
    """``bsd100-motion``: BSD100 image i blurred (valid) by held-out motion kernel i of the
    Kernel-Diff test stream, centre crops of the model's image size."""
    settings, spec = check(profile).benchmark, profile.kerneldiff_data
    if settings.n_motion > spec.n_test_kernels:
        raise ValueError(f"profile {settings.name!r} asks for {settings.n_motion} motion cases but synth has "
                         f"{spec.n_test_kernels} test kernels")
    kernels = spec.test_kernels()
    images = {Path(r).stem: data.load_image(r) for r in data.bsds500("val")[: settings.n_motion]}
    named = {f"motion{i}": kernels[i] for i in range(settings.n_motion)}
    return build_cases(images, named, pairing="zip", crop=spec.crop, meta={"dataset": "BSD100"})


def test_sets(profile: Profile) -> dict[str, list[Case]]:
    """The four test sets of ``profile``: {set name: cases}, deterministic (no random draw
    beyond the seeded kernel streams of the source chapters)."""
    sd = check(profile).selfdeblur
    return {"levin": selfdeblur.levin_cases(sd), "kodak": selfdeblur.kodak_cases(sd),
            "bsd100-mild": mild_cases(profile), "bsd100-motion": motion_cases(profile)}


# --------------------------------------------------------------------------------------------
# 3. Scores
# --------------------------------------------------------------------------------------------


def score(case: Case, x_hat: torch.Tensor, k_hat: torch.Tensor | None = None) -> dict:
    """PSNR and SSIM of x̂ (C, H, W), the shape of ``case.x``, up to shift (Levin's protocol, the
    border of :func:`repro.experiments.selfdeblur.protocol_border`), and the MNC of k̂ with the true
    kernel if k̂ is given (else None)."""
    if not isinstance(x_hat, torch.Tensor) or tuple(x_hat.shape) != tuple(case.x.shape):
        shape = tuple(x_hat.shape) if isinstance(x_hat, torch.Tensor) else type(x_hat).__name__
        raise ValueError(f"x_hat of shape {shape} does not match case {case.name!r} (x {tuple(case.x.shape)})")
    border = protocol_border(min(case.x.shape[-2:]))
    found = metrics.compare_up_to_shift(x_hat[None].double().clamp(0, 1), case.x[None].double(), border=border)
    return {"psnr": float(found["psnr"]), "ssim": float(found["ssim"]),
            "mnc": None if k_hat is None else float(metrics.mnc(k_hat.double().cpu(), case.k.double())),
            "border": border}


# --------------------------------------------------------------------------------------------
# 4. Adapters: one per method, (case, seed) -> scores
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adapter:
    """One method of the benchmark: ``run(case, seed) -> {"psnr", "ssim", "mnc", "seconds"}``,
    ``key`` (its parameters or weights: a stored record is reused only for the same key),
    whether it is an oracle (uses the true kernel), stochastic (several seeds) and which sets
    it runs on (None: all)."""

    name: str
    run: Callable[[Case, int], dict]
    key: str
    oracle: bool = False
    stochastic: bool = False
    sets: tuple[str, ...] | None = None


def _timed(fn: Callable[[Case, int], tuple], device) -> Callable[[Case, int], dict]:
    """Adapter body for a function (case, seed) → (x̂ (1, C, H, W), k̂ or None): time it, score it."""
    device = torch.device(device)

    def run(case: Case, seed: int) -> dict:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        x_hat, k_hat = fn(case, seed)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        return score(case, x_hat[0].detach().cpu().to(case.x.dtype), k_hat) | {"seconds": seconds,
                                                                                "device": str(device)}

    return run


def _y(case: Case) -> torch.Tensor:
    """The blurred image as one (1, C, H, W) float32 image in [0, 1] (a valid blur may exceed 1 by rounding)."""
    return case.y[None].float().clamp(0, 1)


def _selfdeblur_adapter(variant: str, profile: Profile, device, store: Store) -> Adapter:
    """SelfDeblur ``variant`` ("original" or "improved") via :func:`repro.experiments.selfdeblur.evaluate_runs`:
    Levin and Kodak runs in the SelfDeblur chapter's folder (shared), BSD100 runs in
    ``<store>/<profile>/benchmark/selfdeblur/``; scores from its :func:`~repro.experiments.selfdeblur.score_run`
    (the same protocol as :func:`score`)."""
    settings = profile.benchmark
    config = profile.selfdeblur.config(variant)
    own = store.folder(profile, CHAPTER) / "selfdeblur"

    def run(case: Case, seed: int) -> dict:
        dataset = case.meta.get("dataset")
        if dataset in ("levin", "kodak"):
            chosen, folder = case, selfdeblur.chapter_folder(profile, store)
        else:  # SelfDeblur's kernels are odd: the next odd size for an even true kernel
            size = int(case.k.shape[-1]) | 1
            meta = case.meta | {"dataset": f"benchmark-{dataset}",
                                "input": f"{case.meta['image']}_{case.meta['kernel']}",
                                "kernel_size": size}
            chosen, folder = Case(case.name, case.x, case.k, case.y, meta), own
        record = selfdeblur.evaluate_runs([chosen], {variant: config}, [seed], folder, device=device, progress=False)[0]
        m = record["metrics"]
        return {"psnr": m["psnr"], "ssim": m["ssim"], "mnc": m["mnc"], "border": m["border"],
                "seconds": record["seconds"], "device": record["device"]}

    key = fingerprint(config.to_dict())
    return Adapter(f"SelfDeblur, {variant}", run, key, stochastic=True, sets=settings.selfdeblur_sets)


def adapters(profile: Profile, device=None, progress: bool = True, store: Store | None = None) -> dict[str, Adapter]:
    """The benchmark's methods (:data:`METHODS`) for ``profile``, models loaded or trained by
    their own chapters (module docstring) in ``store``."""
    settings = check(profile).benchmark
    device = resolve_device(device)
    store = Store.resolve(store)
    common = {"device": device, "profile": profile.name, "progress": False, "store": store}

    # the other chapters' models: loaded from their caches (trained there if missing)
    drk = d3.train_variant(profile, "full", str(device), progress=progress, store=store).drk
    kerneldiff.chapter_solver(profile, device, progress, store)  # trained here only if its chapter has not
    diffusion = kerneldiff.trained_model(profile, device, progress, store=store)
    model_files = (kerneldiff.model_path(profile, store=store), solver_path(profile, store))
    steps = settings.kerneldiff_steps

    def wiener_oracle(case, seed):
        return methods.deblur("wiener", _y(case), kernel=case.k.float(), noise_sigma=0.0, **common)

    def tikhonov_oracle(case, seed):
        y = _y(case).to(device)
        k = case.k.to(device=device, dtype=y.dtype)
        return nonblind.tikhonov(y, k, TIKHONOV_ORACLE_LAMBDA).clamp(0, 1), None

    def wiener_guess(case, seed):
        return methods.deblur("wiener", _y(case), noise_sigma=0.0, **common)

    def drk_method(case, seed):
        return methods.deblur("drk", _y(case), **common)

    def kernel_diff(case, seed):
        return methods.deblur("kerneldiff", _y(case), seed=seed, steps=steps, **common)

    classical = f"nsr={d3.wiener_nsr(0.0)},guess={d3.GUESS_SIGMA:.4f}"
    table = [
        Adapter(REFERENCE, _timed(lambda case, seed: (_y(case), None), device), ""),
        Adapter("Wiener, true k (oracle)", _timed(wiener_oracle, device), classical, oracle=True),
        Adapter("Tikhonov, true k (oracle)", _timed(tikhonov_oracle, device), f"lam={TIKHONOV_ORACLE_LAMBDA}",
                oracle=True),
        Adapter("Wiener, Gaussian guess", _timed(wiener_guess, device), classical),
        Adapter("unsharp masking", _timed(lambda case, seed: (d3.unsharp_mask(_y(case).to(device)), None), device),
                f"sigma={d3.UNSHARP_SIGMA},amount={d3.UNSHARP_AMOUNT}"),
        Adapter("DRK (D3)", _timed(drk_method, device),
                fingerprint(drk)),
        _selfdeblur_adapter("original", profile, device, store),
        _selfdeblur_adapter("improved", profile, device, store),
        Adapter("Kernel-Diff, guided", _timed(kernel_diff, device),
                f"{fingerprint(*map(Path, model_files))}|step={diffusion.step}|steps={steps}", stochastic=True),
    ]
    return {a.name: a for a in table}


# --------------------------------------------------------------------------------------------
# 5. Resumable runs
# --------------------------------------------------------------------------------------------


def record_id(set_name: str, case: Case, method: str, seed: int) -> str:
    return f"{set_name}/{case.name}/{method}/seed{seed}"


def record_key(case: Case, adapter: Adapter, seed: int) -> str:
    """Hash of everything that determines a record: the case's data, the method's key, the seed."""
    return fingerprint(case.fingerprint(), adapter.name, adapter.key, seed)


def load_records(path: str | Path) -> dict[str, dict]:
    """The records stored at ``path`` (empty if none; a corrupt file is moved aside and rebuilt)."""
    return Entries(path, FORMAT).entries


def run(sets: dict[str, list[Case]], methods: dict[str, Adapter], path: str | Path, runs: int,
        progress: bool = True, stop_after: int | None = None) -> list[dict]:
    """Run every adapter on every case of every set (seeds 0 … runs − 1 for the stochastic ones,
    seed 0 otherwise), resumably; return the records in the order set, case, method, seed.

    A record already in ``path`` with the same :func:`record_key` is reused; every new one is
    added and the file rewritten atomically at once. ``stop_after``: stop after this many new
    records (a later call goes on). An adapter's ``sets`` restricts where it runs.
    """
    if not isinstance(sets, dict) or not sets or not all(isinstance(c, list) and c and all(
            isinstance(x, Case) for x in c) for c in sets.values()):
        raise ValueError("sets must be a non-empty dict set name -> non-empty list of Case")
    if not isinstance(methods, dict) or not methods or not all(isinstance(a, Adapter) for a in methods.values()):
        raise ValueError("methods must be a non-empty dict name -> Adapter (see adapters)")
    if not (isinstance(runs, int) and not isinstance(runs, bool) and runs >= 1):
        raise ValueError(f"runs must be a positive int, got {runs!r}")
    if stop_after is not None and not (isinstance(stop_after, int) and stop_after >= 0):
        raise ValueError(f"stop_after must be None or an int >= 0, got {stop_after!r}")
    for name, cases in sets.items():
        names = [c.name for c in cases]
        if len(set(names)) != len(names):
            raise ValueError(f"the cases of set {name!r} must have distinct names")
    stored = Entries(path, FORMAT)
    plan = [(set_name, case, adapter, seed)
            for set_name, cases in sets.items() for case in cases for adapter in methods.values()
            if adapter.sets is None or set_name in adapter.sets
            for seed in (range(runs) if adapter.stochastic else [0])]
    new = 0
    for set_name, case, adapter, seed in tqdm(plan, desc="benchmark", disable=not progress, leave=False):
        rid, key = record_id(set_name, case, adapter.name, seed), record_key(case, adapter, seed)
        if stored.get(rid, key) is not None:
            continue
        if stop_after is not None and new >= stop_after:
            break
        scores = adapter.run(case, seed)
        stored.put(rid, key, {"id": rid, "set": set_name, "case": case.name, "method": adapter.name, "seed": seed,
                              "oracle": adapter.oracle, "stochastic": adapter.stochastic, **scores})
        new += 1
    order = [record_id(s, c, a.name, seed) for s, c, a, seed in plan]
    return [stored.entries[rid] for rid in order if rid in stored.entries]


# --------------------------------------------------------------------------------------------
# 6. Summary
# --------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _by_case(records: list[dict], metric: str) -> dict[str, list[float]]:
    """The values of ``metric`` in ``records``, grouped by input (case), records without it left out."""
    by_case: dict[str, list[float]] = {}
    for r in records:
        if r.get(metric) is not None:
            by_case.setdefault(r["case"], []).append(r[metric])
    return by_case


def _spread(records: list[dict], metric: str) -> float | None:
    """Mean over inputs of the sample standard deviation (ddof = 1) of ``metric`` across runs."""
    stds = [statistics.stdev(v) for v in _by_case(records, metric).values() if len(v) >= 2]
    return _mean(stds)


def summarize(records: list[dict], sets=SETS, methods=METHODS) -> list[dict]:
    """One row per (set, method) with records: ``inputs``, ``runs`` (per input, the most),
    ``psnr``/``ssim``/``mnc`` means over all records and their run-to-run ``*_spread`` (None for
    deterministic methods or a single run), ``seconds`` (mean per image), ``oracle``."""
    rows = []
    for set_name in sets:
        for method in methods:
            chosen = [r for r in records if r["set"] == set_name and r["method"] == method]
            if not chosen:
                continue
            per_case: dict[str, int] = {}
            for r in chosen:
                per_case[r["case"]] = per_case.get(r["case"], 0) + 1
            row = {"set": set_name, "method": method, "oracle": chosen[0]["oracle"], "inputs": len(per_case),
                   "runs": max(per_case.values()), "seconds": _mean([r["seconds"] for r in chosen])}
            for metric in ("psnr", "ssim", "mnc"):
                row[metric] = _mean([r[metric] for r in chosen if r.get(metric) is not None])
                row[f"{metric}_spread"] = _spread(chosen, metric) if chosen[0]["stochastic"] else None
            rows.append(row)
    return rows


def _cell(value, spread, digits: int) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" + ("" if spread is None else f" ± {spread:.{digits}f}")


def format_table(rows: list[dict], set_name: str) -> str:
    """Markdown table of one set: method, inputs × runs, PSNR, SSIM, MNC (± run-to-run spread), time/image."""
    chosen = [r for r in rows if r["set"] == set_name]
    if not chosen:
        return "(no results)"
    lines = ["| method | inputs × runs | PSNR (dB) | SSIM | MNC | time / image |", "|---|---|---|---|---|---|"]
    for r in chosen:
        lines.append(f"| {r['method']} | {r['inputs']} × {r['runs']} | {_cell(r['psnr'], r['psnr_spread'], 2)} | "
                     f"{_cell(r['ssim'], r['ssim_spread'], 3)} | {_cell(r['mnc'], r['mnc_spread'], 3)} | "
                     f"{timing.seconds(r['seconds'])} |")
    return "\n".join(lines)


def format_matrix(rows: list[dict], metric: str = "psnr", sets=SETS, methods=METHODS) -> str:
    """Markdown table method × set of ``metric`` (± run-to-run spread); — where not run."""
    check_choice(metric, "metric", ("psnr", "ssim", "mnc", "seconds"))
    digits = {"psnr": 2, "ssim": 3, "mnc": 3}.get(metric)
    index = {(r["set"], r["method"]): r for r in rows}
    lines = ["| method | " + " | ".join(SET_TITLES[s] for s in sets) + " |", "|---" * (len(sets) + 1) + "|"]
    for method in methods:
        cells = []
        for s in sets:
            r = index.get((s, method))
            if r is None:
                cells.append("—")
            elif metric == "seconds":
                cells.append(timing.seconds(r["seconds"]))
            else:
                cells.append(_cell(r[metric], r[f"{metric}_spread"], digits))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def case_means(records: list[dict], set_name: str, method: str, metric: str) -> dict[str, float]:
    """Per input of ``set_name``: the mean ``metric`` of ``method`` over its runs (inputs without
    the metric left out)."""
    chosen = [r for r in records if r["set"] == set_name and r["method"] == method]
    return {case: _mean(v) for case, v in _by_case(chosen, metric).items()}


def _inputs_above_reference(records: list[dict], set_name: str, method: str, metric: str) -> tuple[int, int]:
    """On how many inputs of ``set_name`` the mean ``metric`` of ``method`` over its runs is above
    the blurred input's, and out of how many inputs both were measured on."""
    ours, reference = case_means(records, set_name, method, metric), case_means(records, set_name, REFERENCE, metric)
    common = [case for case in ours if case in reference]
    return sum(ours[case] > reference[case] for case in common), len(common)


def winners(rows: list[dict], metric: str = "psnr", records: list[dict] | None = None) -> dict[str, dict]:
    """Per set, the best *blind* method by mean ``metric`` (oracles and the blurred input
    excluded), the runner-up, the margin between them, the best oracle's value (the headroom),
    the blurred input's value and the fastest blind method: {set: {...}}. With the ``records``
    behind the rows, also ``above_reference`` = (inputs on which the best method's mean over its
    runs is above the blurred input, inputs compared), else None: a mean margin of a few
    hundredths of a dB over three inputs can hide a loss on most of them."""
    check_choice(metric, "metric", ("psnr", "ssim"))
    out = {}
    for set_name in dict.fromkeys(r["set"] for r in rows):
        here = [r for r in rows if r["set"] == set_name and r[metric] is not None]
        blind = sorted((r for r in here if not r["oracle"] and r["method"] != REFERENCE), key=lambda r: -r[metric])
        oracle = [r[metric] for r in here if r["oracle"]]
        reference = [r[metric] for r in here if r["method"] == REFERENCE]
        if not blind:
            continue
        best = blind[0]
        out[set_name] = {"method": best["method"], "value": best[metric],
                         "runner_up": blind[1]["method"] if len(blind) > 1 else None,
                         "margin": best[metric] - blind[1][metric] if len(blind) > 1 else math.nan,
                         "oracle": max(oracle) if oracle else None,
                         "reference": reference[0] if reference else None,
                         "fastest": min(blind, key=lambda r: r["seconds"])["method"],
                         "above_reference": None if records is None or not reference
                         else _inputs_above_reference(records, set_name, best["method"], metric)}
    return out


def plot_quality_vs_time(rows: list[dict], metric: str = "psnr", sets=SETS):
    """Quality against seconds per image (log scale), one panel per set, one marker per method,
    error bars the run-to-run spread; returns the matplotlib figure."""
    import matplotlib.pyplot as plt  # here: a slow import that only the figure needs

    check_choice(metric, "metric", ("psnr", "ssim"))
    sets = [s for s in sets if any(r["set"] == s for r in rows)]
    if not sets:
        raise ValueError("no rows to plot")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(sets), figsize=(3.6 * len(sets), 3.4), squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        for r in (r for r in rows if r["set"] == set_name):
            ax.errorbar(max(r["seconds"], 1e-4), r[metric], yerr=r[f"{metric}_spread"] or 0,
                        fmt="s" if r["oracle"] else "o",
                        mfc="none" if r["oracle"] else colours[r["method"]], color=colours[r["method"]], capsize=3,
                        label=r["method"])
        ax.set_xscale("log")
        ax.set_title(SET_TITLES[set_name], fontsize=9)
        ax.set_xlabel("seconds per image")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel({"psnr": "PSNR (dB)", "ssim": "SSIM"}[metric])
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(4, len(handles)), fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


# --------------------------------------------------------------------------------------------
# 7. The chapter
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkResults:
    """What the ``benchmark`` chapter shows (:func:`run_chapter`): the profile's ``settings`` and
    their :func:`describe`, the test ``sets`` (cases), every stored ``records``, the summary
    ``rows`` (:func:`summarize`), the ``winners`` per metric ("psnr", "ssim"; :func:`winners`) and
    ``seconds``, the wall-clock time of the call."""

    profile: str
    settings: BenchmarkProfile
    description: str
    sets: dict[str, list[Case]]
    records: list[dict]
    rows: list[dict]
    winners: dict[str, dict]
    seconds: float


def run_chapter(profile: Profile, device=None, progress: bool = True, store: Store | None = None) -> BenchmarkResults:
    """Everything the ``benchmark`` chapter shows, computed or read back from
    ``<store>/<profile>/benchmark/records.json`` (and the SelfDeblur runs from their folders)."""
    start = time.perf_counter()
    settings = check(profile).benchmark
    store = Store.resolve(store)
    sets = test_sets(profile)
    methods = adapters(profile, device, progress, store)
    records = run(sets, methods, store.folder(profile, CHAPTER) / "records.json", settings.runs, progress)
    rows = summarize(records)
    return BenchmarkResults(profile=profile.name, settings=settings, description=describe(profile), sets=sets,
                            records=records, rows=rows,
                            winners={"psnr": winners(rows, "psnr", records), "ssim": winners(rows, "ssim", records)},
                            seconds=time.perf_counter() - start)
