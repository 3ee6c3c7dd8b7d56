"""Tests of repro.experiments.evaluation: deterministic test cases, resumable scoring, summaries."""

import json
import statistics
import warnings
import math

import numpy as np
import pytest
import scipy.signal
import torch

from repro import metrics, ops
from repro.experiments import evaluation
from repro.kernels import anisotropic_gaussian, gaussian


def images(n=3, size=(20, 26), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {f"img{i}": torch.rand(3, *size, generator=generator, dtype=torch.float64) for i in range(n)}


def kernels():
    return {
        "g5": gaussian(5, 1.0, dtype=torch.float64),
        "a7": anisotropic_gaussian(7, 2.0, 0.7, 0.5, dtype=torch.float64),
    }


# ------------------------------------------------------------------------------ build_cases


def test_valid_cases_match_scipy_and_centre_x():
    image = images(1)["img0"]
    k = kernels()["a7"]
    (case,) = evaluation.build_cases({"img0": image}, {"a7": k})
    assert case.x.shape == case.y.shape == (3, 14, 20)
    for c in range(3):
        reference = scipy.signal.convolve2d(image[c].numpy(), k.numpy(), mode="valid")
        np.testing.assert_allclose(case.y[c].numpy(), reference, atol=1e-12)
    assert torch.equal(case.x, image[:, 3:-3, 3:-3])
    assert case.name == "img0|a7|σ=0"
    assert case.meta == {"image": "img0", "kernel": "a7", "noise_sigma": 0.0, "blur_mode": "valid"}


def test_valid_cases_with_a_crop_see_the_border_of_the_crop():
    image = images(1, size=(30, 30))["img0"]
    k = kernels()["g5"]
    (case,) = evaluation.build_cases({"img0": image}, {"g5": k}, crop=10)
    assert case.x.shape == (3, 10, 10)
    assert torch.equal(case.x, image[:, 10:20, 10:20])
    assert torch.allclose(case.y, ops.blur(image[None], k, mode="zero")[0, :, 10:20, 10:20])


def test_other_blur_modes_blur_x_itself():
    cases = evaluation.build_cases(images(1), kernels(), blur_mode="circular", crop=16)
    for case in cases:
        assert case.x.shape == (3, 16, 16)
        assert torch.equal(case.y, ops.blur(case.x[None], case.k, mode="circular")[0])


def test_pairings():
    assert len(evaluation.build_cases(images(3), kernels())) == 6
    two = dict(list(images(2).items()))
    zipped = evaluation.build_cases(two, kernels(), pairing="zip")
    assert [c.name for c in zipped] == ["img0|g5|σ=0", "img1|a7|σ=0"]
    with pytest.raises(ValueError, match="as many images as kernels"):
        evaluation.build_cases(images(3), kernels(), pairing="zip")


def test_noise_is_seeded_per_case():
    a = evaluation.build_cases(images(3), kernels(), noise_sigma=0.05, seed=1, meta={"dataset": "toy"})
    b = evaluation.build_cases(images(3), kernels(), noise_sigma=0.05, seed=1)
    c = evaluation.build_cases(images(3), kernels(), noise_sigma=0.05, seed=2)
    alone = evaluation.build_cases({"img2": images(3)["img2"]}, {"a7": kernels()["a7"]}, noise_sigma=0.05, seed=1)
    assert all(torch.equal(p.y, q.y) for p, q in zip(a, b))
    assert not torch.equal(a[0].y, c[0].y)
    assert torch.equal(a[-1].y, alone[0].y)  # independent of the other cases
    clean = evaluation.build_cases(images(3), kernels())
    residual = torch.cat([(p.y - q.y).flatten() for p, q in zip(a, clean)])
    assert residual.std().item() == pytest.approx(0.05, rel=0.05)
    assert a[0].meta["dataset"] == "toy" and a[0].meta["noise_sigma"] == 0.05


def test_build_cases_errors():
    with pytest.raises(ValueError, match="images must be a non-empty dict"):
        evaluation.build_cases({}, kernels())
    with pytest.raises(ValueError, match=r"images\['bad'\] must have 3 dimensions"):
        evaluation.build_cases({"bad": torch.rand(5, 5)}, kernels())
    with pytest.raises(ValueError, match=r"kernels\['nan'\] contains NaN"):
        evaluation.build_cases(images(1), {"nan": torch.full((3, 3), float("nan"), dtype=torch.float64)})
    with pytest.raises(ValueError, match="blur_mode"):
        evaluation.build_cases(images(1), kernels(), blur_mode="periodic")
    with pytest.raises(ValueError, match="too small"):
        evaluation.build_cases(images(1), kernels(), crop=20)
    with pytest.raises(ValueError, match="smaller than crop"):
        evaluation.build_cases(images(1), kernels(), blur_mode="zero", crop=40)
    with pytest.raises(ValueError, match="noise_sigma"):
        evaluation.build_cases(images(1), kernels(), noise_sigma=-1)


# ------------------------------------------------------------------------------ evaluate


class Counting:
    """A method that returns y and counts its calls; optionally interrupts at a given case."""

    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = [], interrupt_at

    def __call__(self, y, case):
        if case.name == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls.append(case.name)
        return y.clamp(0, 1)


def three_cases():
    return evaluation.build_cases(images(3), {"g5": kernels()["g5"]})


def test_scores_and_summary(tmp_path):
    cases = three_cases()
    rows = evaluation.evaluate({"identity": Counting(), "truth": lambda y, case: case.x}, cases,
                               tmp_path / "r.json", progress=False)
    psnrs = [metrics.psnr(c.y, c.x).item() for c in cases]
    ssims = [metrics.ssim(c.y, c.x).item() for c in cases]
    identity, truth = rows
    assert identity["method"] == "identity" and identity["n"] == 3
    assert identity["psnr_mean"] == pytest.approx(np.mean(psnrs), rel=1e-12)
    assert identity["psnr_std"] == pytest.approx(np.std(psnrs), rel=1e-9)
    assert identity["ssim_mean"] == pytest.approx(np.mean(ssims), rel=1e-12)
    assert truth["psnr_mean"] == math.inf and truth["ssim_mean"] == pytest.approx(1.0)
    stored = json.loads((tmp_path / "r.json").read_text())
    assert set(stored["entries"]) == {c.name for c in cases}


def test_rerun_reuses_everything(tmp_path):
    cases, path = three_cases(), tmp_path / "r.json"
    first = Counting()
    rows = evaluation.evaluate({"m": first}, cases, path, progress=False)
    assert len(first.calls) == 3
    again = Counting()
    assert evaluation.evaluate({"m": again}, cases, path, progress=False) == rows
    assert again.calls == []


def test_interrupted_evaluation_resumes_at_the_unfinished_case(tmp_path):
    cases, path = three_cases(), tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate({"m": Counting(interrupt_at=cases[2].name)}, cases, path, progress=False)
    assert set(evaluation.load_results(path)) == {cases[0].name, cases[1].name}
    resumed = Counting()
    evaluation.evaluate({"m": resumed}, cases, path, progress=False)
    assert resumed.calls == [cases[2].name]


def test_changed_key_or_data_is_recomputed(tmp_path):
    cases, path = three_cases(), tmp_path / "r.json"
    evaluation.evaluate({"m": Counting(), "n": Counting()}, cases, path, progress=False)
    m, n = Counting(), Counting()
    evaluation.evaluate({"m": m, "n": n}, cases, path, keys={"n": "v2"}, progress=False)
    assert m.calls == [] and len(n.calls) == 3
    noisy = evaluation.build_cases(images(3), {"g5": kernels()["g5"]}, noise_sigma=0.1)
    noisy[0].name = cases[0].name  # same name, other data
    m = Counting()
    evaluation.evaluate({"m": m, "n": Counting()}, [noisy[0]], path, keys={"n": "v2"}, progress=False)
    assert m.calls == [cases[0].name]


def test_evaluate_errors(tmp_path):
    cases = three_cases()
    with pytest.raises(ValueError, match="method 'bad' returned"):
        evaluation.evaluate({"bad": lambda y, case: y[0]}, cases, tmp_path / "r.json", progress=False)
    with pytest.raises(ValueError, match="distinct names"):
        evaluation.evaluate({"m": Counting()}, cases + cases[:1], tmp_path / "r.json", progress=False)
    with pytest.raises(ValueError, match="methods must be"):
        evaluation.evaluate({}, cases, tmp_path / "r.json", progress=False)
    with pytest.raises(ValueError, match="cases must be"):
        evaluation.evaluate({"m": Counting()}, [], tmp_path / "r.json", progress=False)


def test_corrupt_or_foreign_results_are_recomputed(tmp_path):
    cases = three_cases()
    for name, content in (("corrupt.json", "{ not json"), ("other.json", json.dumps({"something": "else"}))):
        path = tmp_path / name
        path.write_text(content)
        m = Counting()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            evaluation.evaluate({"m": m}, cases, path, progress=False)
        why = "is corrupt" if name == "corrupt.json" else "is not of format"  # both set aside, with a warning
        assert [str(w.message).startswith(f"cache entry {path} {why}") for w in caught] == [True]
        assert m.calls == [c.name for c in cases]  # everything recomputed, nothing read from the bad file
        assert set(evaluation.load_results(path)) == {c.name for c in cases}
    assert (tmp_path / "corrupt.json.corrupt").read_text() == "{ not json"  # kept for inspection
    assert json.loads((tmp_path / "other.json.stale").read_text()) == {"something": "else"}


def test_summarize_groups_and_filters(tmp_path):
    path = tmp_path / "r.json"
    cases = evaluation.build_cases(images(2), kernels(), meta={"dataset": "toy"})
    evaluation.evaluate({"m": Counting()}, cases, path, progress=False)
    by_kernel = evaluation.summarize(path, group_by="kernel")
    assert [(r["group"], r["n"]) for r in by_kernel] == [("a7", 2), ("g5", 2)]  # groups sorted
    only = evaluation.summarize(path, where={"kernel": "a7"})
    assert only[0]["n"] == 2 and only[0]["psnr_mean"] == pytest.approx(by_kernel[0]["psnr_mean"])
    table = evaluation.format_table(by_kernel, title="toy")
    assert "| m | g5 | 2 |" in table and f"{by_kernel[0]['psnr_mean']:.2f}" in table
    assert table.splitlines()[2].startswith("| method | kernel | n |")  # the column is named after the key
    by_family = [dict(r, group_by="family") for r in by_kernel]
    assert "| method | kernel family | n |" in evaluation.format_table(by_family)
    assert evaluation.summarize(path, methods=["absent"]) == []
    with_paper = evaluation.format_table(only, extra={"paper": {"m": "27.01"}})
    assert with_paper.splitlines()[0].endswith("| paper |") and with_paper.splitlines()[-1].endswith("| 27.01 |")


def test_counted_agrees_in_number():
    assert evaluation.counted(1, "image") == "1 image"
    assert evaluation.counted(0, "image") == "0 images"
    assert evaluation.counted(3, "Levin kernel") == "3 Levin kernels"
    assert evaluation.counted(2, "child", "children") == "2 children"


def test_find_row_returns_the_one_matching_row_and_refuses_none_or_several():
    rows = [{"method": "a", "psnr_mean": 1.0}, {"method": "b", "group": "x", "psnr_mean": 2.0},
            {"method": "b", "group": "y", "psnr_mean": 3.0}]
    assert evaluation.find_row(rows, method="a")["psnr_mean"] == 1.0
    assert evaluation.find_row(rows, method="a", group=None) is rows[0]  # a missing entry counts as None
    assert evaluation.find_row(rows, method="b", group="y")["psnr_mean"] == 3.0
    with pytest.raises(ValueError, match=r"2 rows match \{'method': 'b'\} in a table of 3 rows"):
        evaluation.find_row(rows, method="b")
    with pytest.raises(ValueError, match=r"no rows match \{'method': 'c'\}"):
        evaluation.find_row(rows, method="c")
    assert evaluation.rows_for(rows[:1], ["c", "a"]) == [rows[0]]


def test_summarize_keeps_each_cases_scores_in_case_order_so_that_methods_pair(tmp_path):
    path = tmp_path / "r.json"
    cases = evaluation.build_cases(images(2), kernels(), meta={"dataset": "toy"})
    evaluation.evaluate({"m": Counting(), "identity": lambda y, case: y}, cases, path, progress=False)
    stored = evaluation.load_results(path)
    returned = evaluation.evaluate({"m": Counting(), "identity": lambda y, case: y}, cases, path, progress=False)
    assert all(row["cases"] == [c.name for c in cases] for row in returned)  # the order of the cases given
    for row in evaluation.summarize(path):  # read from the file: its order
        assert row["cases"] == list(stored)
        assert row["psnr_per_case"] == [stored[name]["methods"][row["method"]]["psnr"] for name in stored]
        assert statistics.fmean(row["ssim_per_case"]) == pytest.approx(row["ssim_mean"])
    grouped = evaluation.summarize(path, group_by="kernel")
    assert all(set(row["cases"]) == {c.name for c in cases if c.meta["kernel"] == row["group"]} for row in grouped)
