"""Tests of repro.dil: the L-CNN, its collapse into the DRK, the DIL terms, training, deblurring."""

import copy
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from conftest import needs_data

from repro import profiles
from repro import dil, ops
from repro.kernels import anisotropic_gaussian, gaussian
from repro.experiments import d3


def delta(size=11, at=None, dtype=torch.float64):
    k = torch.zeros(size, size, dtype=dtype)
    k[at if at is not None else (size // 2, size // 2)] = 1
    return k


def identity_model(dtype=torch.float64, width=1):
    """An L-CNN whose every layer passes channel 0 through unchanged: its DRK is δ."""
    model = dil.LinearCNN(width=width).to(dtype)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.zero_()
            layer.weight[0, 0, 1, 1] = 1
    return model


def tiny_config(**changes):
    settings = dict(gallery_size=40, steps=8, batch_size=8, log_every=2, checkpoint_every=4)
    return dil.DILConfig(**(settings | changes))


def tiny_gallery(n=40):
    from repro.kernels import random_kernel_gallery

    return random_kernel_gallery(n, 11, seed=3)


# ------------------------------------------------------------------------------ the network


def test_parameter_count_and_receptive_field():
    model = dil.LinearCNN()
    assert dil.count_parameters(model) == 28_224  # 9·32 + 3·(9·32·32) + 9·32 (FACTS.md)
    assert dil.multiply_adds_per_pixel(model) == 28_224
    assert model.receptive_field == 11
    assert [tuple(layer.weight.shape) for layer in model.layers] == [
        (32, 1, 3, 3), (32, 32, 3, 3), (32, 32, 3, 3), (32, 32, 3, 3), (1, 32, 3, 3)
    ]
    assert all(layer.bias is None for layer in model.layers)


def test_seed_fixes_the_initial_weights():
    a, b, c = dil.LinearCNN(seed=1), dil.LinearCNN(seed=1), dil.LinearCNN(seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)


# ------------------------------------------------------------------------------ collapse


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("mode", ["zero", "symmetric", "reflect", "circular", "replicate", "valid"])
def test_drk_equals_lcnn_everywhere_under_each_border_convention(dtype, tol, mode):
    model = dil.LinearCNN(seed=4).to(dtype)
    drk = dil.collapse(model).detach()
    x = torch.rand(2, 3, 23, 29, generator=torch.Generator().manual_seed(0), dtype=dtype)
    with torch.no_grad():
        by_network = dil.lcnn_apply(model, x, mode)
    by_kernel = ops.blur(x, drk, mode=mode, op="conv", method="direct")
    assert by_network.shape == by_kernel.shape
    scale = by_kernel.abs().max()
    assert (by_network - by_kernel).abs().max() <= tol * max(1.0, scale.item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_layer_zero_padding_agrees_with_drk_only_in_the_interior(dtype):
    """The usual 'same' network (padding 1 in every layer) equals the DRK 5 px from the borders."""
    model = dil.LinearCNN(seed=5).to(dtype)
    x = torch.rand(1, 1, 30, 30, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with torch.no_grad():
        same = x
        for layer in model.layers:
            same = F.conv2d(same, layer.weight, padding=1)
        drk = dil.collapse(model)
    by_kernel = ops.blur(x, drk, mode="circular")
    interior = (slice(None), slice(None), slice(5, -5), slice(5, -5))
    assert (same[interior] - by_kernel[interior]).abs().max() < 1e-5
    assert (same - by_kernel).abs().max() > 1e-4  # the borders differ


def test_channels_last_network_gives_the_same_output():
    model = dil.LinearCNN(seed=11)
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 20, 17, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        planar, last = dil.lcnn_apply(model, x), dil.lcnn_apply(nhwc, x, channels_last=True)
    assert last.shape == planar.shape == x.shape
    torch.testing.assert_close(last, planar, rtol=0, atol=1e-5)


def test_collapse_is_the_response_to_a_delta_and_steps_grow_by_two():
    model = dil.LinearCNN(seed=6).double()
    steps = dil.collapse_steps(model)
    assert [tuple(e.shape) for e in steps] == [(32, 3, 3), (32, 5, 5), (32, 7, 7), (32, 9, 9), (1, 11, 11)]
    assert torch.equal(steps[0], model.layers[0].weight[:, 0])
    impulse = torch.ones(1, 1, dtype=torch.float64)
    with torch.no_grad():
        response = dil.lcnn_apply(model, impulse, "full")
    assert torch.allclose(response, dil.collapse(model), atol=1e-15)


def test_collapse_orientation_is_convolution():
    """A first layer that correlates with a tap at offset (−1, +1) moves x[i−1, j+1] to (i, j):
    as a convolution kernel, that is a 1 at origin + (1, −1) = (6, 4)."""
    model = identity_model()
    with torch.no_grad():
        model.layers[0].weight.zero_()
        model.layers[0].weight[0, 0, 0, 2] = 1
    drk = dil.collapse(model)
    assert torch.equal(drk, delta(at=(6, 4)))
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    out = dil.lcnn_apply(model, x, "valid")
    assert torch.equal(out[0, 0], x[0, 0, 5 - 1 : 5 - 1 + 6, 5 + 1 : 5 + 1 + 6])


# ------------------------------------------------------------------------------ DIL terms


def test_terms_vanish_for_a_perfect_inverse():
    terms = dil.dil_terms(delta(), dil.collapse(identity_model()))
    for name, value in terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-12), name


def test_each_term_detects_its_own_failure():
    drk = dil.collapse(identity_model())
    # a shifted delta: magnitude is exactly right, phase and identity are not
    shifted = dil.dil_terms(delta(at=(5, 6)), drk)
    assert shifted["magnitude"].item() == pytest.approx(0.0, abs=1e-12)
    assert shifted["phase"].item() > 0.5
    assert shifted["identity"].item() == pytest.approx(2.0)
    # a symmetric Gaussian: zero phase, but blurred (identity, magnitude > 0)
    blurred = dil.dil_terms(gaussian(11, 1.0, dtype=torch.float64), drk)
    assert blurred["phase"].item() == pytest.approx(0.0, abs=1e-12)
    assert blurred["magnitude"].item() > 0.1 and blurred["identity"].item() > 0.5
    assert blurred["area"].item() == pytest.approx(0.0, abs=1e-12)
    # a DRK of sum 2: only the area term (and the others) see it
    doubled = dil.dil_terms(delta(), 2 * drk)
    assert doubled["area"].item() == pytest.approx(1.0)
    assert doubled["magnitude"].item() == pytest.approx(1.0)
    assert doubled["phase"].item() == pytest.approx(0.0, abs=1e-12)


def test_identity_term_is_the_network_fed_the_kernel():
    """FACTS.md: input the kernel itself, target a delta; computed through the DRK."""
    model = dil.LinearCNN(seed=7).double()
    k = anisotropic_gaussian(11, 2.0, 1.0, 0.3, dtype=torch.float64)
    with torch.no_grad():
        output = dil.lcnn_apply(model, k, "full")
        terms = dil.dil_terms(k, dil.collapse(model))
    assert output.shape == (21, 21)
    assert terms["identity"].item() == pytest.approx((output - delta(21)).abs().sum().item(), rel=1e-12)


def test_identity_term_penalises_the_whole_product_not_only_its_centre():
    """Our padding choice (FACTS.md gives none): the product k ⊛ DRK is compared with δ on all
    21×21 pixels. A kernel and a DRK both shifted by (+5, +5) put the product's mass at (+10, +10),
    outside the central 11×11 that "same" padding would see: the full term counts the missing
    delta and the stray mass (2), a "same" crop would count only the missing delta (1)."""
    k, drk = delta(at=(10, 10)), delta(at=(10, 10))
    assert dil.dil_terms(k, drk)["identity"].item() == pytest.approx(2.0)
    product = dil._full_convolution(k[None], drk)[0]
    assert product[20, 20].item() == 1.0 and (product[5:16, 5:16] - delta()).abs().sum().item() == 1.0


def test_loss_is_the_weighted_sum_and_has_finite_gradients():
    model = dil.LinearCNN(seed=8).double()
    kernels = torch.stack([delta(), gaussian(11, 1.5, dtype=torch.float64), delta(at=(0, 0))])
    weights = dil.DILWeights(identity=1.0, area=0.5, phase=0.0, magnitude=2.0)
    loss, terms = dil.dil_loss(kernels, model, weights)
    assert loss.item() == pytest.approx(terms["identity"] + 0.5 * terms["area"] + 2.0 * terms["magnitude"], rel=1e-12)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_weights_and_config_validation():
    with pytest.raises(ValueError, match="at least one weight"):
        dil.DILWeights(0, 0, 0, 0)
    with pytest.raises(ValueError, match="DILWeights.phase"):
        dil.DILWeights(phase=-1)
    with pytest.raises(ValueError, match="DILConfig.steps"):
        dil.DILConfig(steps=0)
    with pytest.raises(ValueError, match="val_fraction"):
        dil.DILConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match="empty training or validation"):
        dil.DILConfig(gallery_size=2)
    with pytest.raises(ValueError, match="weights must be a DILWeights"):
        dil.dil_loss(delta(), dil.LinearCNN(), weights={"identity": 1})
    with pytest.raises(ValueError, match="kernels"):
        dil.dil_terms(torch.full((11, 11), float("nan")), delta())
    with pytest.raises(ValueError, match="share dtype"):
        dil.dil_terms(delta(dtype=torch.float32), delta())
    with pytest.raises(ValueError, match="depth"):
        dil.LinearCNN(depth=0)


def test_config_round_trips_through_a_dict():
    config = tiny_config(weights=dil.DILWeights(1, 0, 0.5, 2))
    assert dil.DILConfig.from_dict(config.to_dict()) == config
    assert config.learning_rate(0) == pytest.approx(config.lr)
    assert config.learning_rate(config.steps) == pytest.approx(config.lr * config.lr_final_ratio)


# ------------------------------------------------------------------------------ training


def test_training_is_deterministic_and_lowers_the_loss():
    gallery = tiny_gallery()
    a = dil.train_dil(tiny_config(), seed=1, gallery=gallery, progress=False)
    b = dil.train_dil(tiny_config(), seed=1, gallery=gallery, progress=False)
    c = dil.train_dil(tiny_config(), seed=2, gallery=gallery, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert a.history == b.history
    assert not torch.equal(a.drk, c.drk)
    assert [h["step"] for h in a.history] == [2, 4, 6, 8]
    assert a.history[-1]["val"]["loss"] < a.history[0]["val"]["loss"]


def test_resume_after_stop_equals_an_uninterrupted_run(tmp_path):
    gallery = tiny_gallery()
    straight = dil.train_dil(tiny_config(), seed=0, gallery=gallery, progress=False)
    path = tmp_path / "run.pt"
    first = dil.train_dil(tiny_config(), seed=0, checkpoint_path=path, gallery=gallery, stop_at=4, progress=False)
    assert first.step == 4 and path.exists() and path.with_suffix(".json").exists()
    resumed = dil.train_dil(tiny_config(), seed=0, checkpoint_path=path, gallery=gallery, progress=False)
    assert resumed.step == 8
    assert all(torch.equal(p, q) for p, q in zip(straight.model.parameters(), resumed.model.parameters()))
    assert resumed.history == straight.history


def test_resume_after_a_crash_replays_from_the_last_checkpoint(tmp_path, monkeypatch):
    gallery = tiny_gallery()
    straight = dil.train_dil(tiny_config(), seed=0, gallery=gallery, progress=False)
    path = tmp_path / "run.pt"
    original = dil._batch_indices

    def crash_at_step_6(n, batch_size, seed, step, device):
        if step == 6:
            raise KeyboardInterrupt
        return original(n, batch_size, seed, step, device)

    monkeypatch.setattr(dil, "_batch_indices", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        dil.train_dil(tiny_config(), seed=0, checkpoint_path=path, gallery=gallery, progress=False)
    monkeypatch.setattr(dil, "_batch_indices", original)
    resumed = dil.train_dil(tiny_config(), seed=0, checkpoint_path=path, gallery=gallery, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(straight.model.parameters(), resumed.model.parameters()))


def test_finished_checkpoint_is_loaded_without_training(tmp_path, monkeypatch):
    gallery = tiny_gallery()
    path = tmp_path / "run.pt"
    done = dil.train_dil(tiny_config(), seed=0, checkpoint_path=path, gallery=gallery, progress=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(dil, "dil_loss", no_training)
    written = {p.name: p.read_bytes() for p in (path, path.with_suffix(".json"))}
    again = dil.train_dil(tiny_config(), seed=0, checkpoint_path=path, gallery=gallery, progress=False)
    assert torch.equal(again.drk, done.drk) and again.history == done.history
    # nor written again: torch.save's bytes differ per call, and the chapter records count a
    # rewritten result as computing (repro.chapters.execute)
    assert {p.name: p.read_bytes() for p in (path, path.with_suffix(".json"))} == written


def test_checkpoint_errors_name_the_file(tmp_path):
    gallery = tiny_gallery()
    path = tmp_path / "run.pt"
    dil.train_dil(tiny_config(), seed=0, checkpoint_path=path, gallery=gallery, stop_at=4, progress=False)
    with pytest.raises(ValueError, match="run.pt.*another run"):
        dil.train_dil(tiny_config(), seed=1, checkpoint_path=path, gallery=gallery, progress=False)
    straight = dil.train_dil(tiny_config(), seed=0, gallery=gallery, progress=False)
    torch.save({"something": "else"}, path)  # not a checkpoint of train_dil: overwritten by a new run
    rebuilt = dil.train_dil(tiny_config(), seed=0, checkpoint_path=path, gallery=gallery, progress=False)
    assert torch.equal(rebuilt.drk, straight.drk)
    path.write_bytes(b"not a checkpoint")  # corrupt: moved aside, the run starts over
    with pytest.warns(UserWarning, match="run.pt is corrupt"):
        rebuilt = dil.train_dil(tiny_config(), seed=0, checkpoint_path=path, gallery=gallery, progress=False)
    assert torch.equal(rebuilt.drk, straight.drk) and (tmp_path / "run.pt.corrupt").exists()
    with pytest.raises(ValueError, match="gallery has 40 kernels"):
        dil.train_dil(tiny_config(gallery_size=50), gallery=gallery, progress=False)
    with pytest.raises(ValueError, match="seed"):
        dil.train_dil(tiny_config(), seed=-1, gallery=gallery, progress=False)


# ------------------------------------------------------------------------------ deblurring


def test_deblur_matches_scipy_per_channel_with_symmetric_borders():
    drk = gaussian(11, 0.8, dtype=torch.float64) * 0.5 + delta() * 0.5  # stays in [0, 1]
    image = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = dil.deblur_drk(image, drk)
    for c in range(3):
        # scipy's "reflect" is the half-sample symmetric extension; convolve is a true convolution
        reference = scipy.ndimage.convolve(image[c].numpy(), drk.numpy(), mode="reflect")
        np.testing.assert_allclose(out[c].numpy(), reference, atol=1e-12)


def test_deblur_shapes_grey_rgb_and_clamping():
    model = dil.LinearCNN(seed=9)
    drk = dil.collapse(model).detach() * 50
    rgb = torch.rand(2, 3, 16, 18, generator=torch.Generator().manual_seed(3))
    batched = dil.deblur_drk(rgb, drk)
    assert batched.shape == rgb.shape and batched.dtype == torch.float32
    assert batched.min() >= 0 and batched.max() <= 1 and ((batched == 0) | (batched == 1)).any()
    assert torch.equal(dil.deblur_drk(rgb[1], drk), batched[1])
    grey = dil.deblur_drk(rgb[0, 2], drk)
    assert grey.shape == (16, 18) and torch.equal(grey, batched[0, 2])  # channels are independent
    assert dil.deblur_drk(rgb.double(), drk).dtype == torch.float64
    assert torch.allclose(dil.deblur_drk(rgb, drk, method="fft"), batched, atol=1e-4)


@pytest.mark.parametrize("method", ("direct", "fft", "auto"))
@pytest.mark.parametrize("mode", ("symmetric", "zero", "circular"))
def test_fast_deblur_equals_ops_blur(mode, method):
    """The prepared path (one padding, the DRK's spectrum cached) gives ops.blur's result."""
    drk = dil.collapse(dil.LinearCNN(seed=4)).detach()
    drk = drk / drk.sum()
    image = torch.rand(2, 3, 40, 45, generator=torch.Generator().manual_seed(5))
    expected = ops.blur(image, drk, mode=mode, op="conv", method=method).clamp(0, 1)
    torch.testing.assert_close(dil.deblur_drk(image, drk, mode, method), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(dil.deblur_drk(image, drk, mode, method), expected, rtol=0, atol=1e-5)  # cached


def test_prepared_drk_is_cached_by_value():
    drk = dil.collapse(dil.LinearCNN(seed=4)).detach()
    first = dil.prepared_drk(drk, (20, 24))
    assert dil.prepared_drk(drk.clone(), (20, 24)) is first
    assert dil.prepared_drk(drk * 2, (20, 24)) is not first
    assert dil.prepared_drk(drk, (20, 25)) is not first
    assert dil.prepared_drk(drk, (20, 24), dtype=torch.float64) is not first
    for i in range(dil.PREPARED_CACHE_SIZE + 1):
        dil.prepared_drk(drk, (20 + i, 30))
    assert dil.prepared_drk(drk, (20, 24)) is not first  # evicted, least recently used
    assert len(dil._prepared) <= dil.PREPARED_CACHE_SIZE


def test_compute_table_rows_and_reference():
    threads = torch.get_num_threads()
    rows = d3.compute_table(dil.LinearCNN(seed=0), 16, repeats=1)
    assert torch.get_num_threads() == threads  # restored
    names = [row["method"] for row in rows]
    assert names == ["L-CNN", "L-CNN, channels-last", "DRK, direct", "DRK, FFT", "Wiener, known k",
                     "FFT convolution (reference)"]
    assert rows[0]["parameters"] == 28224 and rows[2]["mult_adds_per_pixel"] == 121
    assert max(rows[0]["speedup_vs_lcnn"], rows[1]["speedup_vs_lcnn"]) == 1  # the faster L-CNN is the reference
    assert rows[-1]["time_vs_fft_reference"] == 1
    assert all(row["threads"] == 1 for row in rows)
    table = d3.format_compute_table(rows)
    assert table.count("\n") == len(rows) + 1 and "FFT convolution (reference) | cpu" in table


def test_deblur_errors():
    drk = delta(dtype=torch.float32)
    with pytest.raises(ValueError, match="image must have 2 or 3 or 4 dimensions"):
        dil.deblur_drk(torch.rand(8), drk)
    with pytest.raises(ValueError, match="image must have"):
        dil.deblur_drk(torch.rand(1, 1, 1, 8, 8), drk)
    with pytest.raises(ValueError, match="image contains NaN"):
        dil.deblur_drk(torch.full((8, 8), float("nan")), drk)
    with pytest.raises(ValueError, match="odd side"):
        dil.deblur_drk(torch.rand(8, 8), torch.ones(4, 4))
    with pytest.raises(ValueError, match="odd side"):
        dil.deblur_drk(torch.rand(8, 8), torch.ones(3, 5))
    with pytest.raises(ValueError, match="mode"):
        dil.deblur_drk(torch.rand(8, 8), drk, mode="valid")
    with pytest.raises(ValueError, match="image must be float32 or float64"):
        dil.deblur_drk(torch.zeros(8, 8, dtype=torch.uint8), drk)
    for bad in (float("inf"), -float("inf"), float("nan")):  # one pixel is enough (checked by a sum)
        image = torch.rand(3, 8, 8)
        image[1, 2, 3] = bad
        with pytest.raises(ValueError, match="image contains NaN or Inf"):
            dil.deblur_drk(image, drk)
    with pytest.raises(ValueError, match="image is empty"):
        dil.deblur_drk(torch.zeros(0, 8, 8), drk)


# ------------------------------------------------------------------------------ profiles


def test_profiles():
    assert set(d3.PROFILES) == {"smoke", "quick", "paper"}
    assert profiles.get("paper").d3.gallery_size == 2400  # FACTS.md
    assert profiles.get("quick").d3.config().gallery_size == 2400
    assert profiles.get("smoke").d3.config(gallery_size=128).gallery_size == 128
    with pytest.raises(ValueError, match="profile must be one of"):
        profiles.get("fast").d3


# ------------------------------------------------------------------------------ Wiener NSR selection


def _smooth_images(n, size=48, seed=0):
    """Smooth random RGB images (low-pass noise), a stand-in for natural images."""
    generator = torch.Generator().manual_seed(seed)
    images = {}
    for i in range(n):
        noise = torch.rand(1, 3, size, size, generator=generator, dtype=torch.float64)
        images[f"synthetic{i}"] = ops.blur(noise, gaussian(9, 2.0, dtype=torch.float64), "circular")[0].float()
    return images


def test_nsr_selection_picks_the_best_candidate_and_fits_the_rule():
    images = _smooth_images(3)
    candidates = (1e-5, 1e-3, 1e-1)
    result = d3.select_wiener_nsr(images=images, crop=24, noise_levels=(0.0, 0.05), candidates=candidates)
    assert result["images"] == list(images) and result["candidates"] == list(candidates)
    for row, best in zip(result["psnr"], result["best"]):
        assert len(row) == 3 and best == candidates[int(np.argmax(row))]
    assert result["best"][1] >= result["best"][0]  # noise never asks for less regularisation
    floor, factor = result["best"][0], (result["best"][1] - result["best"][0]) / 0.05**2
    assert result["floor"] == float(f"{floor:.0e}") and result["noise_factor"] == float(f"{factor:.0e}")
    assert d3.select_wiener_nsr(images=images, crop=24, noise_levels=(0.0, 0.05), candidates=candidates) == result
    with pytest.raises(ValueError, match="must contain 0"):
        d3.select_wiener_nsr(images=images, noise_levels=(0.01, 0.02))
    with pytest.raises(ValueError, match="images must be a non-empty dict"):
        d3.select_wiener_nsr(images={})


@needs_data("bsds500")
@pytest.mark.slow
def test_nsr_selection_on_train_crops_reproduces_the_constants():
    """The constants WIENER_NSR and WIENER_NOISE_FACTOR are what the selection gives (36 BSDS500
    train crops; never a val or test image)."""
    from repro import data

    torch.set_num_threads(1)
    result = d3.select_wiener_nsr()
    train = {Path(r).stem for r in data.bsds500("train")}
    held_out = {Path(r).stem for split in ("val", "test") for r in data.bsds500(split)}
    assert set(result["images"]) <= train and not set(result["images"]) & held_out
    assert (result["floor"], result["noise_factor"]) == (d3.WIENER_NSR, d3.WIENER_NOISE_FACTOR)
    assert d3.wiener_nsr(0.01) == pytest.approx(d3.WIENER_NSR + d3.WIENER_NOISE_FACTOR * 1e-4)


def test_train_variant_moves_a_stale_checkpoint_aside(tmp_path, monkeypatch):
    from repro._io import save_checkpoint
    from repro.store import Store

    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path))
    path = Store.default().folder(profiles.get("smoke"), "d3") / "dil_full.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = d3.variant_configs(profiles.get("smoke"))["full"]
    current = {"run": {"config": config.to_dict(), "seed": d3.SEED}, "model": {}}
    calls = []
    monkeypatch.setattr(d3, "train_dil", lambda *a, **k: calls.append(a[2]) or "trained")
    save_checkpoint(current, path)
    assert d3.train_variant(profiles.get("smoke"), "full", "cpu", progress=False) == "trained"
    assert path.exists()  # the same settings: resumed or loaded by train_dil, not moved
    save_checkpoint(current | {"run": {"config": {**config.to_dict(), "steps": 1}, "seed": d3.SEED}}, path)
    with pytest.warns(UserWarning, match="other settings"):
        d3.train_variant(profiles.get("smoke"), "full", "cpu", progress=False)
    assert not path.exists() and path.with_name("dil_full.pt.stale").exists() and calls == [path, path]


def test_unsharp_mask_matches_scikit_image_away_from_the_border():
    from skimage.filters import unsharp_mask as reference

    image = torch.rand(3, 40, 36, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.6 + 0.2
    ours = d3.unsharp_mask(image)
    theirs = torch.stack([torch.from_numpy(reference(channel.numpy(), radius=d3.UNSHARP_SIGMA, amount=d3.UNSHARP_AMOUNT))
                          for channel in image])  # per channel, clipped to [0, 1] as ours
    inner = (slice(None), slice(5, -5), slice(5, -5))  # the two differ only in the boundary rule
    torch.testing.assert_close(ours[inner], theirs[inner], rtol=0, atol=1e-12)
    assert torch.equal(d3.unsharp_mask(image[None])[0], ours)  # a batch: image by image
    flat = torch.full((1, 12, 12), 0.4, dtype=torch.float64)
    torch.testing.assert_close(d3.unsharp_mask(flat), flat)  # nothing to sharpen


# ------------------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_and_collapse():
    """On a GPU the collapse is still exact (the DRK equals the L-CNN under each border
    convention), and DIL training, whose initial weights and batches are drawn on the CPU,
    follows the CPU run up to rounding."""
    gallery = tiny_gallery()
    cpu = dil.train_dil(tiny_config(), seed=1, gallery=gallery, progress=False)
    gpu = dil.train_dil(tiny_config(), seed=1, gallery=gallery, progress=False, device="cuda")
    assert gpu.drk.is_cuda
    torch.testing.assert_close(gpu.drk.cpu(), cpu.drk, rtol=1e-3, atol=1e-3)
    model = dil.LinearCNN(seed=4).double().cuda()
    drk = dil.collapse(model).detach()
    x = torch.rand(2, 3, 23, 29, generator=torch.Generator().manual_seed(0), dtype=torch.float64).cuda()
    for mode in ("zero", "symmetric", "valid"):
        with torch.no_grad():
            by_network = dil.lcnn_apply(model, x, mode)
        torch.testing.assert_close(by_network, ops.blur(x, drk, mode=mode), rtol=0, atol=1e-12)


def test_speed_verdict_judges_both_targets_only_at_their_image_size():
    assert d3.speed_verdict(1024, 112.0, 1.25) == ("in this run the speed-up target (≥ 100×) is met and the FFT "
                                                   "target (≤ 1.5×) is met")
    assert "speed-up target (≥ 100×) is not met and the FFT target (≤ 1.5×) is met" in d3.speed_verdict(1024, 62.0, 1.5)
    assert "FFT target (≤ 1.5×) is not met" in d3.speed_verdict(1024, 100.0, 1.51)
    assert d3.speed_verdict(64, 500.0, 1.0) == ("the targets are set for 1024² images, so this 64² timing does not "
                                                "test them")


def test_profile_describes_its_evaluation_and_training():
    assert profiles.get("quick").d3.describe() == ("20 BSD100 + 8 Kodak24 images, 256² centre crops, 1 kernel per image; "
                                                  "DRKs trained on 2400 RKG kernels for 1000 steps")
    assert profiles.get("paper").d3.describe().startswith("100 BSD100 + 24 Kodak24 images, whole images, 3 kernels per image")


def test_least_squares_drk_recovers_a_filter_that_explains_the_pairs_exactly():
    torch.manual_seed(0)
    sharp = [torch.rand(3, 20, 24, dtype=torch.float64) for _ in range(2)]
    blurred = [ops.blur(x[None], torch.full((3, 3), 1 / 9, dtype=torch.float64), mode="symmetric")[0] for x in sharp]
    target = torch.randn(5, 5, dtype=torch.float64)
    restored = [ops.blur(y[None], target, mode="symmetric", op="conv")[0] for y in blurred]
    fitted = dil.least_squares_drk(zip(blurred, restored), 5)
    assert torch.allclose(fitted, target, atol=1e-9)


def test_least_squares_drk_is_no_worse_than_any_other_filter_on_its_pairs():
    torch.manual_seed(1)
    sharp = [torch.rand(1, 16, 16, dtype=torch.float64) for _ in range(3)]
    blur = gaussian(3, 0.8, dtype=torch.float64)
    pairs = [(ops.blur(x[None], blur, mode="symmetric")[0] + 0.01 * torch.randn(1, 16, 16, dtype=torch.float64), x)
             for x in sharp]
    fitted = dil.least_squares_drk(pairs, 3)

    def error(f):
        return sum(float((ops.blur(y[None], f, mode="symmetric", op="conv")[0] - x).square().sum()) for y, x in pairs)

    best = error(fitted)
    for _ in range(5):
        assert error(fitted + 1e-3 * torch.randn(3, 3, dtype=torch.float64)) > best


def test_least_squares_drk_refuses_bad_pairs():
    x = torch.rand(1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="size must be odd"):
        dil.least_squares_drk([(x, x)], 4)
    with pytest.raises(ValueError, match="at least one"):
        dil.least_squares_drk([], 3)
    with pytest.raises(ValueError, match=r"pairs\[0\]: y \(1, 8, 8\) and x \(1, 8, 7\) must have one shape"):
        dil.least_squares_drk([(x, x[..., :7])], 3)


def test_attainable_share_is_the_drks_part_of_the_ceilings_gain():
    rows = [{"method": m, "psnr_mean": v, "group": g} for g, values in (("a", (20.0, 21.0, 24.0)), ("b", (20.0, 19.0, 20.0)))
            for m, v in zip(("blurred input", "DRK full", d3.CEILING_ROW), values)]
    shares = d3.attainable_share(rows)
    assert shares["a"] == {"blurred": 20.0, "method": 21.0, "ceiling": 24.0, "share": 0.25}
    assert shares["b"]["share"] is None  # the ceiling gains nothing: no share to speak of
