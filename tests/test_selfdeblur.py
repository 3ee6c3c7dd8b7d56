"""Tests of repro.selfdeblur: architectures against a layer-by-layer torch.nn reconstruction of the
reference code, parameter counts, fast path = plain path, restarts, determinism, losses and
their schedule, the three modifications, validation."""

import dataclasses
import json
import math
import sys

import numpy as np
import pytest
import scipy.signal
import torch
from torch import nn

from repro import kernels, metrics, ops
from repro._checks import count_parameters
from repro import selfdeblur as sd
from repro.selfdeblur import (
    LossWeights,
    SelfDeblurConfig,
    crop_to_observation,
    data_loss,
    kernel_l2,
    loss_schedule,
    objective,
    pad_observation,
    rgb_to_ycbcr,
    run_selfdeblur,
    scale_plan,
    total_variation,
    ycbcr_to_rgb,
)
from repro.selfdeblur_nets import ImageGenerator, KernelGenerator, NonLocalBlock

F64 = torch.float64
QUICK = SelfDeblurConfig(iterations=3, ssim_switch=2)  # a few iterations of the original method


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny images gain nothing from a second thread, and on the shared 2-core machine two
    spinning OpenMP threads per process make this module ~8x slower when other jobs run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rand(*shape, seed=0, dtype=F64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _generators(n, seed=0):
    return [torch.Generator().manual_seed(seed + r) for r in range(n)]


def _synthetic(size=32, ksize=5, seed=0, dtype=F64):
    """A smooth sharp image x (size + ksize - 1) and its valid blur y by a Gaussian kernel."""
    x = torch.nn.functional.avg_pool2d(_rand(1, 1, size + ksize - 1, size + ksize - 1, seed=seed, dtype=dtype),
                                       3, 1, 1)
    k = kernels.gaussian(ksize, 1.0, dtype=dtype)
    return x, k, ops.blur(x, k, mode="valid", op="conv")


# ------------------------------------------------------------------------------------------
# A layer-by-layer torch.nn rebuild of DIP's skip() and of the dot-product non-local block,
# following the structure of the reference code, with the weights of restart 0 of our model.
# ------------------------------------------------------------------------------------------


class _RefConcat(nn.Module):
    """DIP's Concat(1, skip, deeper): central crop to the smallest size, then torch.cat."""

    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        h, w = min(o.shape[2] for o in outs), min(o.shape[3] for o in outs)
        outs = [o[:, :, (o.shape[2] - h) // 2:(o.shape[2] - h) // 2 + h,
                  (o.shape[3] - w) // 2:(o.shape[3] - w) // 2 + w] for o in outs]
        return torch.cat(outs, dim=1)


class _RefNonLocal(nn.Module):
    """NONLocalBlock2D (dot product, sub_sample=True, bn_layer=True), reference formulation."""

    def __init__(self, block: NonLocalBlock):
        super().__init__()
        self.inter = block.inner
        self.g = nn.Sequential(_ref_conv(block.g), nn.MaxPool2d(2))
        self.theta = _ref_conv(block.theta)
        self.phi = nn.Sequential(_ref_conv(block.phi), nn.MaxPool2d(2))
        self.W = nn.Sequential(_ref_conv(block.out), _ref_bn(block.out_bn))

    def forward(self, x):
        b = x.size(0)
        g_x = self.g(x).view(b, self.inter, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(b, self.inter, -1).permute(0, 2, 1)
        phi_x = self.phi(x).view(b, self.inter, -1)
        f = torch.matmul(theta_x, phi_x)
        y = torch.matmul(f / f.size(-1), g_x).permute(0, 2, 1).contiguous()
        return self.W(y.view(b, self.inter, *x.size()[2:])) + x


def _ref_conv(c):
    out_c, in_c = c.weight.shape[1:3]
    conv = nn.Conv2d(in_c, out_c, c.size, c.stride).to(c.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(c.weight[0])
        conv.bias.copy_(c.bias[0])
    return nn.Sequential(nn.ReflectionPad2d((c.size - 1) // 2), conv) if c.size > 1 else nn.Sequential(conv)


def _ref_bn(b):
    bn = nn.BatchNorm2d(b.weight.shape[1]).to(b.weight.dtype)
    with torch.no_grad():
        bn.weight.copy_(b.weight[0])
        bn.bias.copy_(b.bias[0])
    return bn


def _ref_block(block):
    return [_ref_conv(block.conv), _ref_bn(block.bn), nn.LeakyReLU(0.2, inplace=True)]


def _ref_level(level):
    deeper = _ref_block(level.down)
    if level.nonlocal_block is not None:
        deeper.append(_RefNonLocal(level.nonlocal_block))
    deeper += _ref_block(level.down2)
    if level.inner is not None:
        deeper.append(_ref_level(level.inner))
    deeper.append(nn.Upsample(scale_factor=2, mode="bilinear"))
    return nn.Sequential(_RefConcat(nn.Sequential(*_ref_block(level.skip)), nn.Sequential(*deeper)),
                         _ref_bn(level.merge_bn), *_ref_block(level.up), *_ref_block(level.up1x1))


def _reference_skip(model: ImageGenerator) -> nn.Sequential:
    return nn.Sequential(_ref_level(model.body), _ref_conv(model.out), nn.Sigmoid())


# ------------------------------------------------------------------------------------------
# Architectures and parameter counts
# ------------------------------------------------------------------------------------------


def test_image_generator_parameter_count():
    # Derived by hand from the reference layer list (FACTS.md: "about 2.4 M"):
    # level 0: skip 8·16+16 + BN 32; down 8·9·128+128 + BN 256; down2 128·9·128+128 + BN 256;
    #          merge BN 2·144; up 144·9·128+128 + BN 256; up1x1 128·128+128 + BN 256  = 340,944
    # levels 1-4: the same with 128 input channels                                     = 481,104 each
    # three non-local blocks: 3·(128·64+64) + 64·128+128 + BN 256                       = 33,344 each
    # output conv 128·1+1                                                               = 129
    expected = 340_944 + 4 * 481_104 + 3 * 33_344 + 129
    assert expected == 2_365_521
    model = ImageGenerator()
    assert count_parameters(model) == expected
    assert count_parameters(_reference_skip(model)) == expected  # the torch.nn rebuild agrees
    assert count_parameters(ImageGenerator(out_channels=3)) == expected + 2 * 129
    assert count_parameters(ImageGenerator(restarts=3)) == 3 * expected


@pytest.mark.parametrize("size", [(5, 5), (17, 17), (3, 7)])
def test_kernel_generator_parameter_count(size):
    taps = size[0] * size[1]
    assert count_parameters(KernelGenerator(size)) == 200 * 1000 + 1000 + 1000 * taps + taps
    assert count_parameters(KernelGenerator((17, 17))) == 490_289


@pytest.mark.parametrize("fast", [False, True])
def test_image_generator_matches_reference_layers(fast):
    torch.manual_seed(0)
    model = ImageGenerator(generators=_generators(1)).to(F64)
    with torch.no_grad():  # make the non-local branches count (their BN starts at zero)
        for block in model.modules():
            if isinstance(block, NonLocalBlock):
                block.out_bn.weight.normal_()
    model.fast = fast
    reference = _reference_skip(model).train()
    for size in ((40, 40), (37, 45)):  # odd sizes exercise the crops of Concat
        z = _rand(1, 8, *size, seed=1) * 0.1
        out = model(z)
        assert out.shape == (1, 1, *size)
        torch.testing.assert_close(out, reference(z), rtol=1e-10, atol=1e-12)


def test_restarts_are_independent_copies():
    single = [ImageGenerator(generators=_generators(1, seed=s)).to(F64) for s in (4, 5)]
    batched = ImageGenerator(restarts=2, generators=_generators(2, seed=4)).to(F64)
    for a, b in zip(single[1].parameters(), batched.parameters()):
        assert torch.equal(a[0], b[1])  # restart 1 drew its parameters from seed 5
    z = [_rand(1, 8, 36, 36, seed=s) for s in (1, 2)]
    out = batched(torch.cat(z, dim=1))
    assert out.shape == (2, 1, 36, 36)
    for r in range(2):  # per-restart BatchNorm statistics: each restart equals its own network
        torch.testing.assert_close(out[r:r + 1], single[r](z[r]), rtol=1e-10, atol=1e-12)


def test_kernel_generator_is_softmax_mlp():
    gk = KernelGenerator((5, 3), restarts=2, generators=_generators(2)).to(F64)
    z = _rand(2, 200) * 0.1
    k = gk(z)
    assert k.shape == (2, 5, 3)
    assert (k >= 0).all()
    torch.testing.assert_close(k.sum(dim=(1, 2)), torch.ones(2, dtype=F64))
    for r in range(2):
        first, second = nn.Linear(200, 1000).to(F64), nn.Linear(1000, 15).to(F64)
        with torch.no_grad():
            first.weight.copy_(gk.weight1[r]); first.bias.copy_(gk.bias1[r])
            second.weight.copy_(gk.weight2[r]); second.bias.copy_(gk.bias2[r])
        expected = torch.softmax(second(nn.functional.relu6(first(z[r]))), dim=0).reshape(5, 3)
        torch.testing.assert_close(k[r], expected)


def test_nonlocal_reassociation_is_exact():
    block = NonLocalBlock(2, 16, _generators(2)).to(F64)
    with torch.no_grad():
        block.out_bn.weight.normal_()
    x = _rand(1, 32, 9, 7)
    plain = block(x)
    block.reassociate = True
    torch.testing.assert_close(block(x), plain, rtol=1e-12, atol=1e-13)
    assert not torch.allclose(plain, x)  # the non-local branch contributes


def test_fast_path_outputs_and_gradients_match_plain():
    z = _rand(1, 16, 36, 36) * 0.1
    target = _rand(2, 1, 36, 36, seed=3)
    grads, outs = [], []
    for fast in (False, True):
        model = ImageGenerator(restarts=2, generators=_generators(2)).to(F64)
        with torch.no_grad():
            for block in model.modules():
                if isinstance(block, NonLocalBlock):
                    block.out_bn.weight.fill_(0.5)
        model.fast = fast
        out = model(z)
        (out - target).square().mean().backward()
        outs.append(out)
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-13)
    scale = max(g.abs().max() for g in grads[0])
    for g_fast, g_plain in zip(grads[1], grads[0]):
        # Conv biases followed by BatchNorm have a zero gradient in exact arithmetic: compare
        # against the largest gradient, not each one's own (rounding-noise) size.
        torch.testing.assert_close(g_fast, g_plain, rtol=1e-8, atol=1e-10 * scale)


# ------------------------------------------------------------------------------------------
# Forward model helpers and loss terms
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ksize", [(5, 5), (3, 7)])
def test_pad_and_crop_observation_are_the_no_blur_pair(ksize):
    y = _rand(1, 2, 20, 24)
    x = pad_observation(y, ksize)
    assert x.shape == (1, 2, 20 + ksize[0] - 1, 24 + ksize[1] - 1)
    assert torch.equal(crop_to_observation(x, ksize), y)
    delta = kernels.pad_to(torch.ones(1, 1, dtype=F64), ksize)
    assert torch.equal(ops.blur(x, delta, mode="valid", op="conv"), y)


def test_data_loss_matches_scipy_valid_convolution():
    x, y = _rand(1, 1, 30, 30), _rand(1, 1, 26, 26, seed=1)
    k = kernels.normalize(_rand(5, 5, seed=2))
    blurred = scipy.signal.convolve2d(x[0, 0].numpy(), k.numpy(), mode="valid")
    expected = np.mean((blurred - y[0, 0].numpy()) ** 2)
    assert data_loss(y, x, k).item() == pytest.approx(expected, rel=1e-12)
    assert data_loss(y, x, k, "ssim").item() == pytest.approx(
        1 - metrics.ssim(torch.from_numpy(blurred)[None, None], y).item(), rel=1e-12)


def test_no_blur_and_true_pairs():
    """Both explain a noise-free y exactly; with noise the no-blur pair explains it better."""
    x, k, y = _synthetic()
    delta = kernels.pad_to(torch.ones(1, 1, dtype=F64), 5)
    no_blur = pad_observation(y, 5)
    assert data_loss(y, no_blur, delta).item() == 0
    assert data_loss(y, x, k).item() < 1e-30
    sigma = 0.01
    noisy = y + sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    true_loss = data_loss(noisy, x, k).item()
    assert true_loss == pytest.approx(sigma**2, rel=0.1)
    assert data_loss(noisy, pad_observation(noisy, 5), delta).item() == 0 < true_loss
    # the kernel l2 regulariser of eq. (9) is what penalises the no-blur pair; by default per
    # entry: the sum of k^2 divided by the 5 x 5 kernel entries
    weights = LossWeights("mse", 0.1, 0.0)
    assert weights.kernel_l2_per_entry
    assert objective(noisy, pad_observation(noisy, 5), delta, weights).item() == pytest.approx(0.1 / 25)
    assert objective(noisy, x, k, weights).item() == pytest.approx(true_loss + 0.1 * kernel_l2(k).item() / 25)
    # as printed, a sum: 0.1 for the delta
    summed = LossWeights("mse", 0.1, 0.0, kernel_l2_per_entry=False)
    assert objective(noisy, pad_observation(noisy, 5), delta, summed).item() == pytest.approx(0.1)
    assert objective(noisy, x, k, summed).item() == pytest.approx(true_loss + 0.1 * kernel_l2(k).item())
    assert objective(noisy, x, k, summed) < objective(noisy, pad_observation(noisy, 5), delta, summed)
    with pytest.raises(ValueError, match="kernel_l2_per_entry"):
        objective(noisy, x, k, LossWeights("mse", 0.1, 0.0, kernel_l2_per_entry=1))


def test_kernel_l2_and_total_variation_values():
    assert kernel_l2(kernels.pad_to(torch.ones(1, 1, dtype=F64), 5)).item() == 1
    assert kernel_l2(torch.full((5, 5), 1 / 25, dtype=F64)).item() == pytest.approx(1 / 25)
    ramp = 0.01 * torch.arange(12, dtype=F64).expand(1, 1, 8, 12)  # rises 0.01 per column
    assert total_variation(ramp).item() == pytest.approx(0.01)
    assert total_variation(ramp.transpose(-1, -2)).item() == pytest.approx(0.01)


def test_loss_schedule_original_and_regularised():
    original = SelfDeblurConfig()
    assert loss_schedule(999, original) == LossWeights("mse", 0.0, 0.0)
    assert loss_schedule(1000, original) == LossWeights("ssim", 0.0, 0.0)
    kotera = SelfDeblurConfig.kotera()
    assert loss_schedule(0, kotera) == LossWeights("mse", 0.1, 0.0)
    assert loss_schedule(1999, kotera) == LossWeights("mse", 0.1, 0.0)
    assert loss_schedule(2000, kotera) == LossWeights("ssim", 0.0, 0.0)  # strict inequalities of (9)
    summed = dataclasses.replace(kotera, kernel_l2_per_entry=False)
    assert loss_schedule(0, summed) == LossWeights("mse", 0.1, 0.0, kernel_l2_per_entry=False)
    assert loss_schedule(0, summed) != loss_schedule(0, kotera)
    assert loss_schedule(2001, kotera) == LossWeights("ssim", 0.0, 0.01)
    assert loss_schedule(2500, kotera, last_scale=False) == LossWeights("ssim", 0.0, 0.0)
    with pytest.raises(ValueError, match="iteration"):
        loss_schedule(-1, kotera)


def test_tv_initial_weight_schedule():
    """§4.1 over-regularisation: TV from tv_initial_weight decreasing linearly to 0 at the switch."""
    config = SelfDeblurConfig(tv_initial_weight=0.2, regularisation_switch=100)
    assert loss_schedule(0, config).image_tv == pytest.approx(0.2)
    assert loss_schedule(50, config).image_tv == pytest.approx(0.1)
    assert loss_schedule(100, config).image_tv == 0
    kotera = SelfDeblurConfig.kotera(tv_initial_weight=0.2, regularisation_switch=100, iterations=200)
    assert loss_schedule(150, kotera).image_tv == kotera.tv_weight  # the paper's late TV is unchanged
    assert loss_schedule(25, kotera) == LossWeights("mse", 0.1, pytest.approx(0.15))
    with pytest.raises(ValueError, match="tv_initial_weight"):
        SelfDeblurConfig(tv_initial_weight=-1)


def test_rgb_ycbcr_round_trip():
    rgb = _rand(2, 3, 6, 5)
    ycc = rgb_to_ycbcr(rgb)
    torch.testing.assert_close(ycc[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])
    torch.testing.assert_close(ycbcr_to_rgb(ycc), rgb, rtol=0, atol=1e-14)
    grey = torch.full((1, 3, 2, 2), 0.3, dtype=F64)
    torch.testing.assert_close(rgb_to_ycbcr(grey)[:, 1:], torch.full((1, 2, 2, 2), 0.5, dtype=F64))


# ------------------------------------------------------------------------------------------
# Configuration, scales
# ------------------------------------------------------------------------------------------


def test_config_defaults_follow_facts_md_and_paper():
    c = SelfDeblurConfig()
    assert (c.iterations, c.lr_image, c.lr_kernel, c.milestones, c.gamma) == (5000, 1e-2, 1e-4, (2000, 3000, 4000), 0.5)
    assert (c.input_channels, c.kernel_input_size, c.kernel_hidden, c.input_scale, c.input_noise_std) == \
        (8, 200, 1000, 0.1, 1e-3)
    assert c.ssim_switch == 1000 and not (c.multiscale or c.initialisation or c.regularisation)
    k = SelfDeblurConfig.kotera()
    assert k.multiscale and k.initialisation and k.regularisation
    assert (k.scales, k.scale_factor, k.coarse_iterations) == (3, math.sqrt(2), 500)
    assert (k.init_rmse, k.kernel_l2_weight, k.tv_weight, k.regularisation_switch) == (10 / 255, 0.1, 0.01, 2000)
    json.dumps(k.to_dict())


def test_config_scaled():
    s = SelfDeblurConfig.kotera().scaled(0.02)
    assert (s.iterations, s.coarse_iterations, s.ssim_switch, s.regularisation_switch) == (100, 10, 20, 40)
    assert s.milestones == (40, 60, 80)
    assert SelfDeblurConfig().scaled(1e-6).iterations == 1
    # Gk's rate grows in proportion to the lost iterations, capped at Gx's; Gx's stays
    assert SelfDeblurConfig().scaled(0.1).lr_kernel == pytest.approx(1e-3)
    assert (s.lr_kernel, s.lr_image) == (pytest.approx(5e-3), 1e-2)
    assert SelfDeblurConfig().scaled(0.004).lr_kernel == 1e-2  # capped at Gx's rate
    assert SelfDeblurConfig().scaled(1.0) == SelfDeblurConfig()
    assert SelfDeblurConfig().scaled(2.0).lr_kernel == pytest.approx(5e-5)


@pytest.mark.parametrize("field, value, match", [
    ("iterations", -5, "iterations"), ("iterations", 0, "iterations"), ("iterations", 2.5, "iterations"),
    ("coarse_iterations", 0, "coarse_iterations"), ("lr_image", -1e-2, "lr_image"),
    ("lr_kernel", float("nan"), "lr_kernel"), ("milestones", (3000, 2000), "milestones"),
    ("gamma", 1.5, "gamma"), ("scale_factor", 1.0, "scale_factor"), ("color", "lab", "color"),
    ("initial_image", "zeros", "initial_image"), ("multiscale", 1, "multiscale"),
    ("tv_weight", -0.01, "tv_weight"), ("ssim_switch", -1, "ssim_switch"),
])
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        SelfDeblurConfig(**{field: value})


def test_scale_plan():
    plan = scale_plan((255, 255), 17, SelfDeblurConfig.kotera())
    assert [s.image_size for s in plan] == [(128, 128), (180, 180), (255, 255)]
    assert [s.kernel_size for s in plan] == [(9, 9), (13, 13), (17, 17)]
    assert [s.iterations for s in plan] == [500, 500, 5000]
    assert [s.last for s in plan] == [False, False, True]
    single = scale_plan((255, 255), 17, SelfDeblurConfig())
    assert len(single) == 1 and single[0].kernel_size == (17, 17) and single[0].iterations == 5000


# ------------------------------------------------------------------------------------------
# run_selfdeblur
# ------------------------------------------------------------------------------------------


def test_run_shapes_grey_and_rgb():
    y = _rand(1, 1, 32, 32, dtype=torch.float32)
    r = run_selfdeblur(y, 5, QUICK, seed=0, progress=False)
    assert r.x_hat.shape == (1, 1, 36, 36) and r.x_hat.dtype == torch.float32
    assert r.k_hat.shape == (1, 5, 5) and (r.k_hat >= 0).all()
    assert r.k_hat.sum().item() == pytest.approx(1, abs=1e-5)
    assert r.loss_curve.shape == (1, 3) and r.seeds == [0] and r.seconds > 0
    assert ((r.x_hat >= 0) & (r.x_hat <= 1)).all()
    rgb = _rand(1, 3, 32, 32, dtype=torch.float32)
    luma = run_selfdeblur(rgb, (5, 3), QUICK, seed=0, progress=False)
    assert luma.x_hat.shape == (1, 3, 36, 34) and luma.k_hat.shape == (1, 5, 3)
    # luma mode keeps y's chroma: on the region aligned with y, Cb and Cr are y's
    chroma = crop_to_observation(rgb_to_ycbcr(luma.x_hat), (5, 3))[:, 1:]
    inside = (crop_to_observation(luma.x_hat, (5, 3)) > 0) & (crop_to_observation(luma.x_hat, (5, 3)) < 1)
    assert torch.allclose(chroma[inside.all(1, keepdim=True).expand_as(chroma)],
                          rgb_to_ycbcr(rgb)[:, 1:][inside.all(1, keepdim=True).expand_as(chroma)], atol=1e-5)
    full = run_selfdeblur(rgb, 5, dataclasses.replace(QUICK, color="rgb"), seed=0, progress=False)
    assert full.x_hat.shape == (1, 3, 36, 36)


def test_run_is_deterministic_for_a_seed():
    y = _rand(1, 1, 32, 32, dtype=torch.float32)
    a = run_selfdeblur(y, 5, QUICK, seed=7, progress=False)
    b = run_selfdeblur(y, 5, QUICK, seed=7, progress=False)
    assert torch.equal(a.x_hat, b.x_hat) and torch.equal(a.k_hat, b.k_hat)
    assert torch.equal(a.loss_curve, b.loss_curve)
    c = run_selfdeblur(y, 5, QUICK, seed=8, progress=False)
    assert not torch.equal(a.x_hat, c.x_hat)


def test_callback_sees_every_iteration():
    y = _rand(1, 1, 64, 64, dtype=torch.float32)
    config = SelfDeblurConfig(multiscale=True, scales=2, iterations=3, coarse_iterations=2, init_max_iterations=1)
    seen = []
    r = run_selfdeblur(y, 5, config, seed=5, progress=False, restarts=2, callback=seen.append)
    assert [(i.stage, i.iteration) for i in seen] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert seen[0].x.shape == (2, 1, 45 + 3 - 1, 45 + 3 - 1) and seen[-1].k.shape == (2, 5, 5)
    assert all(i.seed == 5 for i in seen)
    assert torch.equal(torch.stack([i.loss.double().cpu() for i in seen], dim=1), r.loss_curve)
    assert all(a.time <= b.time for a, b in zip(seen, seen[1:]))
    with pytest.raises(ValueError, match="callback"):
        run_selfdeblur(y, 5, QUICK, progress=False, callback="print")


def test_loss_decreases_on_a_synthetic_problem():
    _, _, y = _synthetic(dtype=torch.float32)
    r = run_selfdeblur(y, 5, SelfDeblurConfig(iterations=30), seed=0, progress=False)
    curve = r.loss_curve[0]
    assert curve[-5:].mean() < 0.5 * curve[0]


def test_batched_restarts_equal_single_runs():
    y = _rand(1, 1, 32, 32)
    config = dataclasses.replace(QUICK, initialisation=True, init_max_iterations=60)
    batched = run_selfdeblur(y, 5, config, seed=3, progress=False, restarts=2)
    sequential = run_selfdeblur(y, 5, config, seed=3, progress=False, restarts=2, batched=False)
    single = run_selfdeblur(y, 5, config, seed=4, progress=False)
    assert batched.x_hat.shape == (2, 1, 36, 36) and batched.seeds == [3, 4]
    # the kernel fits stop at different iterations per restart; the batched fit keeps each one's own
    assert batched.stages[0]["fit_iterations"] == sequential.stages[0]["fit_iterations"]
    assert batched.stages[0]["fit_iterations"][1] == single.stages[0]["fit_iterations"][0]
    for other, rows in ((sequential, slice(0, 2)), (single, slice(1, 2))):
        torch.testing.assert_close(batched.x_hat[rows], other.x_hat, rtol=0, atol=1e-7)
        torch.testing.assert_close(batched.k_hat[rows], other.k_hat, rtol=0, atol=1e-9)
        torch.testing.assert_close(batched.loss_curve[rows], other.loss_curve, rtol=1e-8, atol=1e-12)
    assert not torch.allclose(batched.x_hat[0], batched.x_hat[1])


def test_fast_and_plain_runs_agree():
    y = _rand(1, 1, 32, 32)
    fast = run_selfdeblur(y, 5, QUICK, seed=1, progress=False)
    plain = run_selfdeblur(y, 5, dataclasses.replace(QUICK, fast=False), seed=1, progress=False)
    # The two paths differ by rounding (~1e-14 here); Adam's first steps, which normalise each
    # gradient entry, amplify that to ~1e-7 in x after three iterations.
    torch.testing.assert_close(fast.loss_curve, plain.loss_curve, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(fast.x_hat, plain.x_hat, rtol=0, atol=1e-5)


def test_regularisation_adds_the_kernel_l2_term():
    y = _rand(1, 1, 32, 32)
    # a negligible kernel learning rate keeps k at its initial value, so k_hat is the k of step 0
    base = SelfDeblurConfig(iterations=1, lr_kernel=1e-12)
    original = run_selfdeblur(y, 5, base, seed=2, progress=False)
    regular = run_selfdeblur(y, 5, dataclasses.replace(base, regularisation=True), seed=2, progress=False)
    extra = regular.loss_curve[0, 0] - original.loss_curve[0, 0]
    assert extra.item() == pytest.approx(0.1 * kernel_l2(regular.k_hat[0]).item() / 25, rel=1e-6)
    summed = run_selfdeblur(y, 5, dataclasses.replace(base, regularisation=True, kernel_l2_per_entry=False),
                            seed=2, progress=False)
    extra = summed.loss_curve[0, 0] - original.loss_curve[0, 0]
    assert extra.item() == pytest.approx(0.1 * kernel_l2(summed.k_hat[0]).item(), rel=1e-6)


def test_initialisation_fits_the_gaussian_kernel():
    y = _rand(1, 1, 32, 32)
    config = SelfDeblurConfig(iterations=1, lr_kernel=1e-12, initialisation=True, init_max_iterations=300)
    r = run_selfdeblur(y, 5, config, seed=0, progress=False)
    k0 = kernels.gaussian(5, 2.0, dtype=F64)  # sigma = half-width of a 5x5 kernel
    tolerance = (10 / 255) * k0.max().item()
    stage = r.stages[0]
    assert stage["fit_iterations"][0] < 300 and stage["fit_rmse_image"] is None
    assert stage["fit_rmse_kernel"][0] <= tolerance
    assert (r.k_hat[0] - k0).square().mean().sqrt().item() <= tolerance * 1.001
    plain = run_selfdeblur(y, 5, dataclasses.replace(config, initialisation=False), seed=0, progress=False)
    assert plain.stages[0]["fit_iterations"] is None
    assert (plain.k_hat[0] - k0).square().mean().sqrt().item() > tolerance


def test_initial_image_observation_fits_gx_to_padded_y():
    _, _, y = _synthetic(dtype=torch.float32)
    config = SelfDeblurConfig(iterations=1, initial_image="observation", init_max_iterations=400)
    first = []
    r = run_selfdeblur(y, 5, config, seed=0, progress=False, callback=first.append)
    stage = r.stages[0]
    assert stage["fit_rmse_kernel"] is None  # without `initialisation` Gk stays random
    assert stage["fit_iterations"][0] < 400 and stage["fit_rmse_image"][0] <= 10 / 255
    # the deblurring loop starts from the fitted Gx (a fresh input perturbation aside)
    start = (first[0].x - pad_observation(y, 5)).square().mean().sqrt().item()
    assert start == pytest.approx(stage["fit_rmse_image"][0], rel=0.05)


def test_multiscale_runs_every_scale_and_refits():
    y = _rand(1, 1, 64, 64, dtype=torch.float32)
    config = SelfDeblurConfig(multiscale=True, iterations=2, coarse_iterations=1, init_max_iterations=2)
    r = run_selfdeblur(y, 7, config, seed=0, progress=False)
    assert [s["image_size"] for s in r.stages] == [[32, 32], [45, 45], [64, 64]]
    assert [s["kernel_size"] for s in r.stages] == [[3, 3], [5, 5], [7, 7]]
    assert r.loss_curve.shape == (1, 1 + 1 + 2)
    assert r.stages[0]["fit_iterations"] is None  # coarsest scale: random start without initialisation
    assert all(s["fit_iterations"] == [2] for s in r.stages[1:])  # finer scales: fitted to the estimates
    assert r.x_hat.shape == (1, 1, 70, 70) and r.k_hat.shape == (1, 7, 7)


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=4), "odd"),
    (dict(kernel_size=(5, 6)), "odd"),
    (dict(kernel_size=41), "larger"),
    (dict(kernel_size=0), "kernel_size"),
    (dict(seed=-1), "seed"),
    (dict(restarts=0), "restarts"),
    (dict(config="fast"), "config"),
    (dict(progress="no"), "progress"),
    (dict(device="gpu0"), "device"),
])
def test_run_validation(kwargs, match):
    args = dict(y=_rand(1, 1, 32, 32), kernel_size=5, config=QUICK, progress=False, **{})
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        run_selfdeblur(**args)


def test_run_validation_of_y():
    bad = _rand(1, 1, 32, 32)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN"):
        run_selfdeblur(bad, 5, QUICK, progress=False)
    with pytest.raises(ValueError, match="one grey or RGB image"):
        run_selfdeblur(_rand(2, 1, 32, 32), 5, QUICK, progress=False)
    with pytest.raises(ValueError, match="too small"):
        run_selfdeblur(_rand(1, 1, 20, 20), 5, QUICK, progress=False)
    with pytest.raises(ValueError, match="too small"):  # the coarsest scale of multiscale
        run_selfdeblur(_rand(1, 1, 40, 40), 5, dataclasses.replace(QUICK, multiscale=True), progress=False)
    with pytest.raises(ValueError, match="int64"):
        run_selfdeblur(torch.zeros(1, 1, 32, 32, dtype=torch.int64), 5, QUICK, progress=False)


def test_helper_validation():
    y, x, k = _rand(1, 1, 10, 10), _rand(1, 1, 14, 14), kernels.gaussian(5, 1.0, dtype=F64)
    with pytest.raises(ValueError, match="larger than y"):
        data_loss(y, x[..., :13], k)
    with pytest.raises(ValueError, match="kind"):
        data_loss(y, x, k, kind="l1")
    with pytest.raises(ValueError, match="weights"):
        objective(y, x, k, {"data": "mse"})
    with pytest.raises(ValueError, match="generators"):
        ImageGenerator(restarts=2, generators=_generators(1))
    with pytest.raises(ValueError, match="z must be"):
        ImageGenerator()(_rand(1, 3, 40, 40))
    with pytest.raises(ValueError, match="odd"):
        KernelGenerator((4, 4))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tune_cpu_allocator():
    assert sd.tune_cpu_allocator() is True
    with pytest.raises(ValueError, match="top_pad_bytes"):
        sd.tune_cpu_allocator(-1)
    with pytest.raises(ValueError, match="top_pad_bytes"):
        sd.tune_cpu_allocator(2**31)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_without_perturbation():
    """The initial state is drawn on the CPU, so without the (device-drawn) input perturbation a
    CUDA run follows the CPU run up to rounding."""
    y = _rand(1, 1, 32, 32)
    config = dataclasses.replace(QUICK, input_noise_std=0.0)
    cpu = run_selfdeblur(y, 5, config, seed=0, progress=False, restarts=2)
    gpu = run_selfdeblur(y.cuda(), 5, config, seed=0, device="cuda", progress=False, restarts=2)
    assert gpu.x_hat.is_cuda
    torch.testing.assert_close(gpu.loss_curve, cpu.loss_curve, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(gpu.x_hat.cpu(), cpu.x_hat, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [33, 52, 64])
def test_level_sizes_are_those_of_the_image_generator(size):
    model = sd.ImageGenerator(in_channels=2, channels=4, skip_channels=2)
    seen, level = [], model.body
    while level is not None:
        level.down.register_forward_hook(lambda module, args, out: seen.append(out.shape[-1]))
        level = level.inner
    with torch.no_grad():
        model(torch.rand(1, 2, size, size))
    assert sd.level_sizes(size) == seen
    with pytest.raises(ValueError, match="size"):
        sd.level_sizes(0)
