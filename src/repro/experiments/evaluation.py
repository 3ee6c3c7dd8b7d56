"""Benchmarks of deblurring methods: test cases, resumable scoring, summary tables.

Generic, used by every chapter that compares restorations:

1. :func:`build_cases` makes a deterministic test set of :class:`Case` (name, sharp x, kernel
   k, blurred y): images × kernels under a stated blur model, optionally with Gaussian noise
   from a seeded generator.
2. :func:`evaluate` runs every method on every case and scores it (PSNR and SSIM over all
   colour channels, ``repro.metrics``). Scores are stored per case in a JSON file, rewritten
   atomically after each case, so an interrupted evaluation resumes at the first unfinished
   case and a finished one is simply read back; a case whose data changed, or a method whose
   ``key`` changed, is recomputed.
3. :func:`summarize` turns the stored scores into mean ± std rows, optionally per group of a
   case attribute (dataset, variance bin, noise level...); :func:`format_table` prints them.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .. import metrics, ops
from .._checks import check_choice, check_positive, check_tensor
from .._io import Entries, fingerprint

FORMAT = "repro.evaluation/2"
BLUR_MODES = ("valid",) + ops.PAD_MODES
"""``valid``: the physical model, y sees the scene beyond x's border (see :func:`build_cases`);
the others: x blurred with that boundary extension (``repro.ops.blur``)."""


@dataclass
class Case:
    """One test case: sharp ``x`` (C, H, W), kernel ``k`` (kh, kw), blurred ``y`` (C, H, W).

    ``meta`` holds JSON-able facts about the case (image, kernel, noise level, ...) that
    :func:`summarize` can group by; ``noise_sigma`` is also in it.
    """

    name: str
    x: torch.Tensor
    k: torch.Tensor
    y: torch.Tensor
    meta: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """The fingerprint of x, k and y: a stored score is reused only for the same data."""
        return fingerprint(self.x, self.k, self.y)


def centre_crop(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (image.shape[-2] - h) // 2, (image.shape[-1] - w) // 2
    return image[..., top : top + h, left : left + w]


def build_cases(
    images: dict[str, torch.Tensor],
    kernels: dict[str, torch.Tensor],
    pairing: str = "product",
    blur_mode: str = "valid",
    crop: int | None = None,
    noise_sigma: float = 0.0,
    seed: int = 0,
    meta: dict | None = None,
) -> list[Case]:
    """A deterministic list of test cases.

    * ``images``: name → (C, H, W) sharp image in [0, 1]; ``kernels``: name → (kh, kw) kernel.
    * ``pairing``: ``"product"`` blurs every image with every kernel, ``"zip"`` the i-th image
      with the i-th kernel (same number of each).
    * ``blur_mode``: ``"valid"`` (default) is the physical model: y = valid convolution of the
      image, and x the part of the image y sees *centred*: the pixels at distance ≥ kh//2 from
      the border, so no boundary assumption favours any method. The other modes of
      ``repro.ops`` blur x itself with that extension (``"circular"`` favours Fourier methods).
      Orientation: true convolution (``op="conv"``), kernel origin at (kh//2, kw//2).
    * ``crop``: side of x (a centre crop), or None for as large as the image allows.
    * ``noise_sigma``: standard deviation of white Gaussian noise added to y (not clipped),
      drawn from a generator seeded by ``seed`` and the case name, so a case's noise does not
      depend on the other cases.
    * ``meta``: extra facts stored in every case's ``meta`` (e.g. {"dataset": "BSD100"}); the
      image and kernel names and ``noise_sigma`` are always added.

    Case names are ``"<image>|<kernel>|σ=<noise_sigma>"``.
    """
    if not isinstance(images, dict) or not images:
        raise ValueError("images must be a non-empty dict name -> (C, H, W) tensor")
    if not isinstance(kernels, dict) or not kernels:
        raise ValueError("kernels must be a non-empty dict name -> (kh, kw) tensor")
    for name, image in images.items():
        check_tensor(image, f"images[{name!r}]", (3,))
    for name, k in kernels.items():
        check_tensor(k, f"kernels[{name!r}]", (2,))
    check_choice(pairing, "pairing", ("product", "zip"))
    check_choice(blur_mode, "blur_mode", BLUR_MODES)
    if crop is not None and not (isinstance(crop, int) and not isinstance(crop, bool) and crop >= 1):
        raise ValueError(f"crop must be None or a positive int, got {crop!r}")
    noise_sigma = check_positive(noise_sigma, "noise_sigma", allow_zero=True)
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if pairing == "zip":
        if len(images) != len(kernels):
            raise ValueError(f"pairing 'zip' needs as many images as kernels, got {len(images)} and {len(kernels)}")
        pairs = list(zip(images, kernels))
    else:
        pairs = [(i, k) for i in images for k in kernels]

    cases = []
    for image_name, kernel_name in pairs:
        image, k = images[image_name], kernels[kernel_name].to(images[image_name].dtype)
        kh, kw = k.shape
        H, W = image.shape[-2:]
        if blur_mode == "valid":
            h = H - kh + 1 if crop is None else crop
            w = W - kw + 1 if crop is None else crop
            if h < 1 or w < 1 or h + kh - 1 > H or w + kw - 1 > W:
                raise ValueError(
                    f"images[{image_name!r}] of size {H}x{W} is too small for crop={crop} with the "
                    f"{kh}x{kw} kernel {kernel_name!r} in mode 'valid'"
                )
            seen = centre_crop(image, h + kh - 1, w + kw - 1)
            y = ops.blur(seen[None], k, mode="valid")[0]
            x = seen[..., kh // 2 : kh // 2 + h, kw // 2 : kw // 2 + w]
        else:
            if crop is not None and (crop > H or crop > W):
                raise ValueError(f"images[{image_name!r}] of size {H}x{W} is smaller than crop={crop}")
            x = image if crop is None else centre_crop(image, crop, crop)
            y = ops.blur(x[None], k, mode=blur_mode)[0]
        name = f"{image_name}|{kernel_name}|σ={noise_sigma:g}"
        if noise_sigma > 0:
            # torch's CPU generator keeps 32 bits of a seed: hash seed and name together
            generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}|{name}".encode()))
            y = y + noise_sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
        info = {**(meta or {}), "image": image_name, "kernel": kernel_name, "noise_sigma": noise_sigma,
                "blur_mode": blur_mode}
        cases.append(Case(name=name, x=x.contiguous(), k=k, y=y.contiguous(), meta=info))
    return cases


Method = Callable[[torch.Tensor, Case], torch.Tensor]
"""A restoration method: (y (C, H, W), case) → x̂ (C, H, W). Blind methods ignore ``case.k``;
oracle methods may read it."""


def _score(x_hat, case: Case, method: str) -> dict[str, float]:
    if not isinstance(x_hat, torch.Tensor) or tuple(x_hat.shape) != tuple(case.x.shape):
        shape = tuple(x_hat.shape) if isinstance(x_hat, torch.Tensor) else type(x_hat).__name__
        raise ValueError(f"method {method!r} returned {shape} on case {case.name!r}, expected {tuple(case.x.shape)}")
    x_hat = x_hat.detach().to(case.x.dtype)
    return {"psnr": metrics.psnr(x_hat, case.x).item(), "ssim": metrics.ssim(x_hat, case.x).item()}


def load_results(path: str | Path) -> dict:
    """The stored scores of :func:`evaluate`: {case name: {"key" (the case's fingerprint), "meta",
    "methods"}}. A missing file is an empty result; so is a corrupt one or one of another format,
    which :class:`repro._io.Entries` moves aside with a warning so that it is recomputed."""
    return Entries(path, FORMAT).entries


def evaluate(
    methods: dict[str, Method],
    cases: list[Case],
    results_path: str | Path,
    keys: dict[str, str] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Score every method on every case, resumably; return the :func:`summarize` table.

    ``methods``: name → callable (y, case) → x̂ (C, H, W), scored against ``case.x`` by PSNR and
    SSIM over all channels (``repro.metrics``; x̂ is *not* clamped here: a method clamps if it
    means to). ``results_path``: JSON file rewritten atomically after each case; what it
    already holds for a case with the same data (:meth:`Case.fingerprint`) and, per method,
    the same ``keys[name]`` (a string naming the method's version, e.g. a hash of its
    parameters; default "") is reused, everything else is computed. Results of other cases
    and methods in the file are kept.
    """
    if not isinstance(methods, dict) or not methods or not all(callable(m) for m in methods.values()):
        raise ValueError("methods must be a non-empty dict name -> callable(y, case)")
    if not isinstance(cases, list) or not cases or not all(isinstance(c, Case) for c in cases):
        raise ValueError("cases must be a non-empty list of Case (see build_cases)")
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError("cases must have distinct names")
    keys = {name: "" for name in methods} | dict(keys or {})
    stored = Entries(results_path, FORMAT)

    for case in tqdm(cases, desc="evaluate", disable=not progress, leave=False):
        # an entry per case, for the case's data; in it a score per method, for the method's key
        data_key = case.fingerprint()
        entry = stored.get(case.name, data_key)
        todo = [m for m in methods if entry is None or entry["methods"].get(m, {}).get("key") != keys[m]]
        if not todo:
            continue
        entry = entry or {"meta": case.meta, "methods": {}}
        for name in todo:
            with torch.no_grad():
                x_hat = methods[name](case.y, case)
            entry["methods"][name] = {**_score(x_hat, case, name), "key": keys[name]}
        stored.put(case.name, data_key, entry)
    return summarize({name: stored.entries[name] for name in names}, methods=list(methods))


def summarize(
    results: dict | str | Path,
    methods: list[str] | None = None,
    group_by: str | None = None,
    where: dict | None = None,
) -> list[dict]:
    """Mean ± standard deviation (population, over cases) of PSNR and SSIM per method.

    ``results``: the dict of :func:`load_results` or the path of a results file. ``methods``:
    which and in what order (default: all, sorted by name as stored). ``group_by``: a key of the
    cases' ``meta`` (one row per method and value, values sorted); ``where``: keep only the cases whose meta
    has these values. Rows: {"method", "group" and "group_by" (if grouped), "n", "psnr_mean",
    "psnr_std", "ssim_mean", "ssim_std", "cases", "psnr_per_case", "ssim_per_case"}: the per-case
    lists follow ``cases`` (the names, in the order of ``results``), so that two methods' scores pair
    by case (:func:`repro.metrics.paired_interval`). Methods missing on some case are averaged over
    the others.
    """
    if isinstance(results, (str, Path)):
        results = load_results(results)
    selected = [
        (name, entry) for name, entry in results.items()
        if all(entry["meta"].get(key) == value for key, value in (where or {}).items())
    ]
    if methods is None:
        methods = list(dict.fromkeys(m for _, entry in selected for m in entry["methods"]))
    if group_by is None:
        groups = [(None, selected)]
    else:
        values = sorted({entry["meta"].get(group_by) for _, entry in selected}, key=lambda v: (type(v).__name__, v))
        groups = [(value, [(n, e) for n, e in selected if e["meta"].get(group_by) == value]) for value in values]
    rows = []
    for value, entries in groups:
        for method in methods:
            scored = [(name, e["methods"][method]) for name, e in entries if method in e["methods"]]
            if not scored:
                continue
            row = {"method": method} | ({"group": value, "group_by": group_by} if group_by is not None else {}) | {
                "n": len(scored)}
            for metric in ("psnr", "ssim"):
                values = [s[metric] for _, s in scored]
                mean = sum(values) / len(values)
                row[f"{metric}_mean"] = mean
                row[f"{metric}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            row["cases"] = [name for name, _ in scored]
            row |= {f"{metric}_per_case": [s[metric] for _, s in scored] for metric in ("psnr", "ssim")}
            rows.append(row)
    return rows


GROUP_TITLES = {"variance_bin": "variance bin", "dataset": "data set", "family": "kernel family",
                "noise_sigma": "noise σ"}
"""Column titles of :func:`format_table` for the ``meta`` keys the chapters group by (others: the
key with spaces for underscores)."""


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` for a sentence of the book: "1 image", "3 images", "2 Levin kernels"
    (``plural`` where adding "s" is wrong)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def format_table(rows: list[dict], title: str | None = None, extra: dict[str, dict[str, str]] | None = None) -> str:
    """A Markdown table of :func:`summarize` rows: PSNR and SSIM as mean ± std.

    ``extra``: more columns, {column title: {method: text}} (empty where a method has none),
    e.g. a paper's reported numbers beside ours.
    """
    if not rows:
        return "(no results)"
    extra = extra or {}
    grouped = "group" in rows[0]
    group_title = GROUP_TITLES.get(rows[0].get("group_by"), str(rows[0].get("group_by", "group")).replace("_", " "))
    header = ["method"] + ([group_title] if grouped else []) + ["n", "PSNR (dB)", "SSIM"] + list(extra)
    lines = ([f"**{title}**", ""] if title else []) + [
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header)
    ]
    for row in rows:
        cells = [row["method"]] + ([str(row["group"])] if grouped else []) + [
            str(row["n"]),
            f"{row['psnr_mean']:.2f} ± {row['psnr_std']:.2f}",
            f"{row['ssim_mean']:.4f} ± {row['ssim_std']:.4f}",
        ] + [column.get(row["method"], "") for column in extra.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def find_row(rows: list[dict], **fields) -> dict:
    """The one row of ``rows`` (a table of :func:`summarize`, or any list of dicts) whose entries
    equal ``fields`` (a missing entry counts as None, so ``group=None`` finds an ungrouped row);
    ValueError naming the fields when no row or several match."""
    found = [row for row in rows if all(row.get(key) == value for key, value in fields.items())]
    if len(found) != 1:
        raise ValueError(f"{'no' if not found else len(found)} rows match {fields} in a table of {len(rows)} rows")
    return found[0]


def rows_for(rows: list[dict], methods) -> list[dict]:
    """The rows of ``methods`` in that order, leaving out the methods the table does not have."""
    by_method = {row["method"]: row for row in rows}
    return [by_method[m] for m in methods if m in by_method]

