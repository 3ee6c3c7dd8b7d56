"""The claims ledger: every claim of the three papers (``CLAIMS.md``) decided from this project's
records at one profile.

Each :class:`Claim` fixes, before any run, the statistic computed from the records, the
threshold its 95 % interval must clear and on which side the claim holds. :func:`decide` turns
an interval into a verdict:

- **reproduced**: the whole interval lies on the claim's side of the threshold;
- **not reproduced**: the whole interval lies on the other side;
- **undecided at this profile**: the interval straddles the threshold. The decision then says how
  many inputs would decide it if the estimate and the spread stayed as observed
  (:func:`repro.metrics.inputs_to_decide`), or that a spread cannot be estimated from one input.

Claims with an exact answer (an identity, a count of operations) have a zero-width interval.
:func:`evidence` computes every claim's interval from the chapters' results (computed or read
back from the store, so the ledger costs little after the chapters ran); :func:`ledger` decides
them all, and :func:`decide_all` does the same from intervals given directly (paper-profile
records, or the synthetic ones of the tests).
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass

import torch

from . import dil, metrics, toy1d
from .data import kodak
from .experiments import benchmark, d3, kerneldiff, selfdeblur, toy
from .metrics import Interval
from .profiles import Profile, check
from .store import PROFILES, Store

VERDICTS = ("reproduced", "not reproduced", "undecided")


@dataclass(frozen=True)
class Claim:
    """One claim: ``id`` (CLAIMS.md), ``source``, the paper's ``statement`` and ``paper_value``;
    the ``statistic`` we compute (in words), its ``unit``, the ``threshold`` its interval must
    clear and the side (``holds_when``: "above" or "below") on which the claim holds; ``unit_of_n``
    names what the interval's n counts; ``evidence``: (chapter, heading anchor, link text)."""

    id: str
    source: str
    statement: str
    paper_value: str
    statistic: str
    unit: str
    threshold: float
    holds_when: str
    unit_of_n: str
    evidence: tuple[str, str, str]

    def __post_init__(self):
        if self.holds_when not in ("above", "below"):
            raise ValueError(f"claim {self.id}: holds_when must be 'above' or 'below', got {self.holds_when!r}")


@dataclass(frozen=True)
class Decision:
    """A claim's ``verdict`` from its ``interval`` (None: fewer than two inputs, no interval);
    ``needed``: the inputs that would decide an undecided claim (None when decided or unknown);
    ``note``: what the interval was computed on."""

    claim: Claim
    interval: Interval | None
    verdict: str
    needed: int | None
    note: str


_GUIDED, _ALTERNATING, _UNGUIDED = "Kernel-Diff, guided", "alternating MAP_{x,k}", "Kernel-Diff, unguided"
_KD_PAPER = kerneldiff.PAPER_TABLE  # the paper's Tables 1, 2 and 4 beside the row of ours in the same role


def _paper_isnr(dataset: str) -> str:
    """Kotera et al.'s Table 1 mean ISNR, original → improved, on ``dataset``."""
    table = selfdeblur.PAPER_TABLE1
    return f"{table[(dataset, 'original')][0]:.2f} → {table[(dataset, 'improved')][0]:.2f} dB"


REGISTER = (
    Claim("T1", "Kernel-Diff §3.1, Fig. 2", "In the 1D toy, descent on MAP_{x,k} from random starts often ends away "
          "from the truth.", "figure only", "share of random starts from which joint descent does not reach the truth",
          "", 0.1, "above", "starts", ("toy1d", "many-runs-from-random-starts", "Many runs from random starts")),
    Claim("T2", "Kernel-Diff §3.1, eqs. 12 and 16", "log p(σ | y) has a single peak near the true σ, the "
          "non-blind-solver approximation finds it, and estimating the kernel first succeeds.", "figure only",
          "share of random starts from which kernel-first estimation reaches the truth (0 when either posterior "
          "curve has more than one peak or peaks more than 0.25 from the true σ)", "", 0.9, "above", "starts",
          ("toy1d", "the-kernel-posterior-two-ways", "The kernel posterior, two ways")),
    Claim("D1", "D3 / NSD-DIL, mechanism 3", "The trained deep linear CNN collapses exactly into one Deep "
          "Restoration Kernel.", "exact", "largest difference between the network and its DRK on a Kodak crop, "
          "float64, relative to the image's range", "", 1e-12, "below", "image",
          ("d3_collapse", "the-equality-check", "The equality check")),
    Claim("D2", "D3 / NSD-DIL, abstract", "On mild blur the DRK deblurs better than classical methods.",
          f"{d3.PAPER_RESULT['psnr']:.2f} dB / {d3.PAPER_RESULT['ssim']:.4f} (authors' test set)",
          "PSNR of the DRK minus the best blind classical method's "
          "(unsharp masking or Wiener with a Gaussian guess), paired over the mild-blur test images", "dB", 0.0,
          "above", "images", ("d3_evaluation", "mild-blur-no-noise", "Mild blur, no noise")),
    Claim("D3", "D3 / NSD-DIL, abstract", "It needs at least 100× less computation than other methods.", "≥ 100×",
          "multiply-adds per pixel of the trained L-CNN over those of its DRK (exact)", "×", 100.0, "above", "model",
          ("d3_collapse", "what-the-collapse-saves", "What the collapse saves")),
    Claim("D4", "D3 / NSD-DIL, first experiment", "The regularisers are needed: the identity term alone gives poor "
          "results.", "qualitative", "PSNR of the DRK trained with all regularisers minus the identity-only DRK's, "
          "paired over the mild-blur test images", "dB", 0.0, "above", "images",
          ("d3_evaluation", "ablation-the-regularisers", "Ablation: the regularisers")),
    Claim("S1", "Kotera et al., Fig. 1", "SelfDeblur's image generator fits a blurred image more easily than a sharp "
          "one.", "figure", "final fitting RMSE on the blurred image minus that on the sharp one, paired over inputs",
          "grey levels", 0.0, "below", "inputs",
          ("selfdeblur_failure_modes", "fig-1-the-image-generator-fits-blurred-images-more-easily", "Fig. 1")),
    Claim("S2", "Kotera et al., Fig. 2", "SelfDeblur's result depends strongly on the random seed.", "figure",
          "standard deviation of the original method's ISNR over the seeds of Fig. 2, pooled within inputs "
          "(strong: above 1 dB)", "dB", 1.0, "above", "runs",
          ("selfdeblur_failure_modes", "fig-2-one-input-many-seeds", "Fig. 2")),
    Claim("S3", "Kotera et al., Table 1", "On Kodak the improvements raise the mean ISNR.", _paper_isnr("kodak"),
          "ISNR of the improved method minus the original's, each averaged over seeds, paired over Kodak inputs",
          "dB", 0.0, "above", "inputs", ("selfdeblur_evaluation", "table-1", "Table 1")),
    Claim("S4", "Kotera et al., Table 1", "On Levin's real blur the improvements raise the mean ISNR.",
          _paper_isnr("levin"), "ISNR of the improved method minus the original's, each averaged over seeds, paired "
          "over Levin inputs", "dB", 0.0, "above", "inputs", ("selfdeblur_evaluation", "table-1", "Table 1")),
    Claim("K1", "Kernel-Diff Table 1", "On BSD100 with motion blur Kernel-Diff beats the alternating methods in "
          "PSNR.", f"{_KD_PAPER[_GUIDED]['psnr']:.2f} dB vs {_KD_PAPER[_ALTERNATING]['psnr']:.2f} (Blind-DPS)",
          "PSNR of guided Kernel-Diff minus the alternating MAP_{x,k} "
          "baseline's (our stand-in for Blind-DPS), paired over the test images", "dB", 0.0, "above", "images",
          ("kerneldiff_evaluation", "tables-1-2-and-4-image-and-kernel-quality", "Tables 1, 2 and 4")),
    Claim("K2", "Kernel-Diff Table 2", "Kernel-Diff's kernels match the truth better than the alternating methods'.",
          f"MNC {_KD_PAPER[_GUIDED]['mnc']:.3f} vs {_KD_PAPER[_ALTERNATING]['mnc']:.3f} (Blind-DPS)",
          "kernel MNC of guided Kernel-Diff minus the alternating baseline's, "
          "paired over the test images", "", 0.0, "above", "images",
          ("kerneldiff_evaluation", "tables-1-2-and-4-image-and-kernel-quality", "Tables 1, 2 and 4")),
    Claim("K3", "Kernel-Diff Table 4", "Guidance by the non-blind solver helps.",
          f"{_KD_PAPER[_UNGUIDED]['psnr']:.2f} → {_KD_PAPER[_GUIDED]['psnr']:.2f} dB",
          "PSNR of guided Kernel-Diff minus unguided, paired over the test images", "dB", 0.0, "above", "images",
          ("kerneldiff_evaluation", "tables-1-2-and-4-image-and-kernel-quality", "Tables 1, 2 and 4")),
    Claim("K4", "Kernel-Diff Fig. 5", "Estimating the kernel first ends at a lower reblurring residual than "
          "alternating minimisation.", "figure (50 trials)", "log10 of the final reblurring MSE, kernel-first "
          "(Stage I) minus alternating, over independent trials (Welch)", "", 0.0, "below", "trials per strategy",
          ("kerneldiff_evaluation", "fig-5-the-reblurring-residual-kernel-first-against-alternating", "Fig. 5")),
)
"""The claims of CLAIMS.md, each with its decision rule fixed in advance."""


def claim(claim_id: str) -> Claim:
    """The claim called ``claim_id``; ValueError naming the known ones otherwise."""
    for entry in REGISTER:
        if entry.id == claim_id:
            return entry
    raise ValueError(f"no claim {claim_id!r}; the register holds {[c.id for c in REGISTER]}")


def exact(value: float) -> Interval:
    """A value known exactly: a zero-width interval."""
    return Interval(float(value), float(value), float(value), 1, 0.0, 0.95, "exact")


def decide(entry: Claim, interval: Interval | None, note: str = "") -> Decision:
    """The verdict of ``entry`` on ``interval`` (None: fewer than two inputs, undecided, and how
    many would decide it cannot be estimated)."""
    if interval is None:
        return Decision(entry, None, "undecided", None, note)
    side = metrics.side_of(interval, entry.threshold)
    verdict = ("undecided" if side == "straddles" else "reproduced" if side == entry.holds_when
               else "not reproduced")
    needed = metrics.inputs_to_decide(interval, entry.threshold) if verdict == "undecided" else None
    return Decision(entry, interval, verdict, needed, note)


def decide_all(intervals: dict[str, tuple[Interval | None, str]]) -> list[Decision]:
    """Decide every claim of :data:`REGISTER` from ``intervals`` (claim id → (interval, note)), in
    register order; ValueError for an id the register does not hold or one it misses."""
    unknown = sorted(set(intervals) - {c.id for c in REGISTER})
    missing = [c.id for c in REGISTER if c.id not in intervals]
    if unknown or missing:
        raise ValueError(f"intervals for unknown claims {unknown} or none for {missing}")
    return [decide(entry, *intervals[entry.id]) for entry in REGISTER]


def _per_input(pairs: dict[str, tuple[list[float], list[float]]]) -> tuple[list[float], list[float]]:
    """Two aligned lists of per-input means from input → (values of a, values of b)."""
    names = sorted(pairs)
    return ([statistics.fmean(pairs[n][0]) for n in names], [statistics.fmean(pairs[n][1]) for n in names])


def _count(n: int, unit: str) -> str:
    """"1 input", "3 inputs": ``unit`` is plural, its first word loses its s for one."""
    first, _, rest = unit.partition(" ")
    return f"{n} {first.removesuffix('s') if n == 1 else first}{' ' + rest if rest else ''}"


def _paired(a: list[float], b: list[float], unit: str) -> tuple[Interval | None, str]:
    if len(a) < 2:
        return None, f"{_count(len(a), unit)}: a paired interval needs two or more"
    return metrics.paired_interval(a, b), _count(len(a), unit)


def _row_pair(rows: list[dict], a: str, b: str, metric: str) -> tuple[list[float], list[float]]:
    """Per-case scores of methods ``a`` and ``b`` on the cases both were scored on, in the same order."""
    found = {row["method"]: dict(zip(row["cases"], row[f"{metric}_per_case"])) for row in rows if row["method"] in (a, b)}
    names = [n for n in found[a] if n in found[b]]
    return [found[a][n] for n in names], [found[b][n] for n in names]


def toy_intervals(results) -> dict[str, tuple[Interval, str]]:
    """T1 and T2 from :func:`repro.experiments.toy.run_chapter`'s results."""
    n = len(results.starts)
    failures = int((~toy1d.reached_truth(results.estimates["joint descent"])).sum())
    post = results.table.log_posterior_sigma(results.noise_std)
    peaks = {}
    for curve in ("marginal", "nonblind"):
        c = post[curve]
        peaks[curve] = (int(((c[1:-1] > c[:-2]) & (c[1:-1] > c[2:])).sum()), float(post["sigma"][c.argmax()]))
    single = all(count == 1 and abs(at - toy1d.TRUTH[2]) <= 0.25 for count, at in peaks.values())
    successes = int(toy1d.reached_truth(results.estimates["kernel first"]).sum()) if single else 0
    shape = "; ".join(f"eq. {12 if k == 'marginal' else 16}: {count} peak(s), at σ = {at:.2f}"
                      for k, (count, at) in peaks.items())
    return {"T1": (metrics.rate_interval(failures, n), f"{failures} of {n} starts"),
            "T2": (metrics.rate_interval(successes, n), f"{successes} of {n} starts; {shape}")}


def d3_intervals(results) -> dict[str, tuple[Interval | None, str]]:
    """D1–D4 from :func:`repro.experiments.d3.run_chapter`'s results."""
    model = copy.deepcopy(results.runs["full"].model).cpu().double()
    side = 64
    image = kodak(3)[None, :, :side, :side].double()
    error = dil.collapse_error(model, image) / float(image.max() - image.min())
    adds = {row["method"]: row["mult_adds_per_pixel"] for row in results.compute}
    blind = [r for r in results.mild if r["method"] in ("unsharp masking", "Wiener, Gaussian guess")]
    best = max(blind, key=lambda r: r["psnr_mean"])["method"]
    d2 = _paired(*_row_pair(results.mild, "DRK full", best, "psnr"), "images")
    d4 = _paired(*_row_pair(results.mild, "DRK full", "DRK identity", "psnr"), "images")
    return {"D1": (exact(error), f"{side}² Kodak crop, float64"),
            "D2": (d2[0], f"{d2[1]}; against {best}, the better blind classical method on average"),
            "D3": (exact(adds["L-CNN"] / adds["DRK, direct"]),
                   f"{adds['L-CNN']:,} multiply-adds per pixel against {adds['DRK, direct']:,}"),
            "D4": d4}


def failure_mode_intervals(results) -> dict[str, tuple[Interval | None, str]]:
    """S1 and S2 from :func:`repro.experiments.selfdeblur.run_failure_modes`'s results: the Gx fits
    of Fig. 1 and the original method's runs of Fig. 2."""
    blurred = (results.curves["blurred"][:, -10:].mean(dim=1) * 255).tolist()
    sharp = (results.curves["sharp"][:, -10:].mean(dim=1) * 255).tolist()
    by_input: dict[str, list[float]] = {}
    for record in results.spread:
        if record["method"] == "original":
            by_input.setdefault(record["input"], []).append(record["metrics"]["isnr"])
    runs = f"{_count(sum(len(v) for v in by_input.values()), 'runs')} on {_count(len(by_input), 'inputs')}"
    try:
        spread = (metrics.spread_interval(by_input.values()), runs)
    except ValueError:
        spread = (None, f"{runs}: a spread needs two seeds of one input")
    return {"S1": _paired(blurred, sharp, "inputs"), "S2": spread}


def table1_intervals(results) -> dict[str, tuple[Interval | None, str]]:
    """S3 and S4 from :func:`repro.experiments.selfdeblur.run_evaluation`'s records: per input,
    each method's ISNR averaged over the seeds, paired over the inputs."""
    out = {}
    for claim_id, dataset in (("S3", "kodak"), ("S4", "levin")):
        pairs: dict[str, tuple[list[float], list[float]]] = {}
        for record in results.records:
            if record["dataset"] == dataset:
                entry = pairs.setdefault(record["input"], ([], []))
                entry[0 if record["method"] == "improved" else 1].append(record["metrics"]["isnr"])
        seeds = len({r["seed"] for r in results.records if r["dataset"] == dataset})
        out[claim_id] = _paired(*_per_input(pairs), f"inputs (× {seeds} seeds)")
    return out


def kerneldiff_intervals(results) -> dict[str, tuple[Interval | None, str]]:
    """K1–K4 from :func:`repro.experiments.kerneldiff.run_chapter`'s results."""
    out = {"K1": _paired(*_row_pair(results.table, _GUIDED, _ALTERNATING, "psnr"), "images"),
           "K2": _paired(*_row_pair(results.table, _GUIDED, _ALTERNATING, "mnc"), "images"),
           "K3": _paired(*_row_pair(results.table, _GUIDED, _UNGUIDED, "psnr"), "images")}
    first = results.figure5["images"][0]
    kernel_first = [float(torch.tensor(trace[-1]).log10()) for trace in first["kernel_diff"]]
    alternate = [float(torch.tensor(trace[-1]).log10()) for trace in first["alternating"]]
    out["K4"] = (metrics.welch_interval(kernel_first, alternate),
                 f"{len(kernel_first)} and {len(alternate)} trials on the image {first['case']}")
    return out


def evidence(profile: Profile, store: Store | None = None, device=None) -> dict[str, tuple[Interval | None, str]]:
    """Every claim's interval and note at ``profile``, from the chapters' results (computed, or
    read back from ``store`` when the chapters ran before)."""
    profile = check(profile)
    out = toy_intervals(toy.run_chapter(profile))
    out |= d3_intervals(d3.run_chapter(profile, device=device, progress=False, store=store))
    out |= failure_mode_intervals(selfdeblur.run_failure_modes(profile, device=device, progress=False, store=store))
    out |= table1_intervals(selfdeblur.run_evaluation(profile, device=device, progress=False, store=store))
    out |= kerneldiff_intervals(kerneldiff.run_chapter(profile, device=device, progress=False, store=store))
    return out


def ledger(profile: Profile, store: Store | None = None, device=None) -> list[Decision]:
    """Every claim of :data:`REGISTER` decided at ``profile``."""
    return decide_all(evidence(profile, store, device))


def _number(value: float, unit: str, signed: bool = False) -> str:
    """A statistic as the ledger prints it: 2 decimals in dB or grey levels, 3 without a unit,
    tiny values in scientific notation, ratios as whole numbers; ``signed`` for differences."""
    if unit == "×":
        return f"{value:,.0f}×"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:{'+' if signed else ''}.{3 if unit == '' else 2}f} {unit}".strip()


def _rule(c: Claim) -> str:
    return f"{'>' if c.holds_when == 'above' else '<'} {_number(c.threshold, c.unit)}"


def describe(decision: Decision) -> str:
    """The ledger's evidence cell: the estimate, its 95 % interval and what it was computed on."""
    interval, unit, signed = decision.interval, decision.claim.unit, decision.claim.threshold == 0
    if interval is None:
        return decision.note
    if interval.low == interval.high:
        return f"{_number(interval.estimate, unit)} (exact; {decision.note})"
    return (f"{_number(interval.estimate, unit, signed)}, 95 % interval [{_number(interval.low, unit, signed)}, "
            f"{_number(interval.high, unit, signed)}] ({decision.note})")


def verdict_text(decision: Decision) -> str:
    """The verdict as the ledger prints it, with the size that would decide an undecided claim."""
    if decision.verdict != "undecided":
        return f"**{decision.verdict}**"
    if decision.needed is not None:
        return f"undecided at this profile: about {decision.needed:,} {decision.claim.unit_of_n} would decide it"
    return "undecided at this profile: too few inputs to estimate how many would decide it"


def markdown(decisions: list[Decision]) -> str:
    """The ledger as a Markdown table, each row linking to the section that holds its evidence."""
    lines = ["| claim | verdict | evidence (ours) | our statistic | rule | paper | paper's value |",
             "|---|---|---|---|---|---|---|"]
    for d in decisions:
        c = d.claim
        chapter, anchor, text = c.evidence
        cells = [f"{c.id}: {c.statement}", verdict_text(d), describe(d), c.statistic, _rule(c), c.source, c.paper_value]
        cells = [cell.replace("|", "\\|") for cell in cells]  # a | inside a cell (p(σ | y)) would end it
        cells[2] += f", <a href=\"{chapter}.html#{anchor}\">{text}</a>"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quote(decision: Decision) -> str:
    """One Markdown line with which a chapter quotes the ledger's verdict on a claim."""
    c = decision.claim
    return (f"**Ledger, claim {c.id}** ({c.source}: \"{c.statement}\") {c.statistic}: "
            f"{describe(decision)}; {verdict_text(decision)} (rule: {_rule(c)}; {{doc}}`claims`).")


def quotes(intervals: dict[str, tuple[Interval | None, str]]) -> str:
    """The chapter's quotes of the claims in ``intervals`` (in register order), one paragraph each."""
    return "\n\n".join(quote(decide(entry, *intervals[entry.id])) for entry in REGISTER if entry.id in intervals)


DEBLUR_BENCHMARK_ROWS = {"drk": "DRK (D3)", "selfdeblur": "SelfDeblur, improved", "kerneldiff": "Kernel-Diff, guided"}
"""The benchmark row that measures each blind method of ``repro deblur`` (:mod:`repro.methods`)."""


def against_blurred_input(records: list[dict], method: str, metric: str = "psnr") -> dict[str, Interval | None]:
    """Per benchmark set: ``method``'s ``metric`` minus the blurred input's, each averaged over the
    runs of an input and paired over the inputs both were scored on (None below two inputs)."""
    out = {}
    for set_name in dict.fromkeys(r["set"] for r in records):
        ours = benchmark.case_means(records, set_name, method, metric)
        reference = benchmark.case_means(records, set_name, benchmark.REFERENCE, metric)
        common = sorted(set(ours) & set(reference))
        if common:
            out[set_name] = (metrics.paired_interval([ours[c] for c in common], [reference[c] for c in common])
                             if len(common) >= 2 else None)
    return out


def _benchmark_records(store: Store, profile_name: str) -> list[dict]:
    path = store.root / profile_name / benchmark.CHAPTER / "records.json"
    return list(benchmark.load_records(path).values()) if path.is_file() else []


def deblur_warning(method: str, profile_name: str, store: Store | None = None) -> str | None:
    """One line for ``repro deblur --method <method> --profile <profile_name>`` when that
    profile's benchmark (in ``store``) found the method worse than the blurred input, with a
    95 % interval wholly below zero on some set: which sets, by how much, and the profile of
    this store whose models were not worse there, if any. None otherwise (also when the
    benchmark has not run)."""
    row = DEBLUR_BENCHMARK_ROWS.get(method)
    store = Store.resolve(store)
    if row is None:
        return None
    here = against_blurred_input(_benchmark_records(store, profile_name), row)
    worse = {s: i for s, i in here.items() if i is not None and i.high < 0}
    if not worse:
        return None
    better = []
    for other in PROFILES:
        there = against_blurred_input(_benchmark_records(store, other), row) if other != profile_name else {}
        if all(there.get(s) is not None and there[s].high >= 0 for s in worse):
            better.append(other)
    sets = "; ".join(f"{s}: {i.estimate:+.2f} dB, 95 % interval [{i.low:+.2f}, {i.high:+.2f}], {i.n} inputs"
                     for s, i in worse.items())
    advice = (f"the {better[0]} profile's models were not worse there (--profile {better[0]})" if better
              else "no other profile's benchmark in this store did better")
    return (f"{method} with the {profile_name} profile's models did worse than the blurred input in that "
            f"profile's benchmark (PSNR against the input: {sets}); {advice}")
