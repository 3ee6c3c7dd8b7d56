"""The Explore figures' frames: computed as the chapters compute their static figures, and each
figure a faithful picture of them (exact identities where the science gives one)."""

import base64
import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from repro import dil, kernels, profiles, toy1d
from repro.experiments import d3, toy
from repro.experiments import selfdeblur as se

SMOKE = profiles.get("smoke")


def test_toy_values_hold_the_chapters_own_value_in_order():
    assert toy.explore_values("a", 3) == [20.0, 55.0, 64.0, 90.0]
    assert toy.explore_values("noise", 3) == [0.001, 0.01, 0.1]
    with pytest.raises(ValueError, match="parameter must be one of"):
        toy.explore_values("beta", 3)


def test_the_toy_frame_of_the_truth_is_the_chapters_observation_and_posterior():
    frame = toy.explore_frame(toy1d.TRUTH, toy.NOISE_STD)
    y = toy1d.observe(toy1d.TRUTH, noise_std=toy.NOISE_STD, seed=0)
    assert torch.equal(frame.y, y)
    expected = toy1d.GridSearch.build(y).log_posterior_sigma(toy.NOISE_STD)
    assert all(torch.equal(frame.posterior[key], expected[key]) for key in expected)
    assert frame.plane.loss.shape == (toy.EXPLORE_PLANE_RESOLUTION,) * 2


def test_toy_figures_start_at_the_truth_and_move_one_parameter(monkeypatch):
    monkeypatch.setattr(toy1d.GridSearch, "build", lambda y: _FakeTable())  # the posterior is tested above
    frames = toy.explore_frames(SMOKE, progress=False)
    assert set(frames) == {"a", "w", "sigma", "noise"}
    for parameter, sweep in frames.items():
        values = [f.value(parameter) for f in sweep]
        assert values == toy.explore_values(parameter, SMOKE.explore.values)
        others = {(f.theta, f.noise) for f in sweep} - {(tuple(toy1d.TRUTH), toy.NOISE_STD)}
        assert len(others) == len(values) - 1
        fig = toy.explore_figure(frames, parameter)
        default = toy.NOISE_STD if parameter == "noise" else toy1d.TRUTH[("a", "w", "sigma").index(parameter)]
        assert fig.layout.sliders[0].active == values.index(default) and len(fig.frames) == len(values)
    assert frames["a"][values.index(toy.NOISE_STD)] is frames["noise"][values.index(toy.NOISE_STD)]  # computed once


def _pixels(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))), dtype=np.int16)


class _FakeTable:
    def log_posterior_sigma(self, noise_std):
        sigma = torch.linspace(0.2, 3, 5, dtype=torch.float64)
        return {"sigma": sigma, "marginal": -sigma, "nonblind": -2 * sigma}


def test_with_the_identity_as_drk_the_restored_crop_is_the_blurred_one():
    identity = kernels.pad_to(torch.ones(1, 1, dtype=torch.float64), (11, 11))
    image = torch.rand(3, 160, 160, generator=torch.Generator().manual_seed(0))
    fig = d3.drk_explore_figure(identity, image, "sigma1", 2)
    assert [s.label.split(" ")[0] for s in fig.layout.sliders[0].steps] == ["0.3", "1.8", "3"]
    for step in fig.layout.sliders[0].steps:
        before, after = step.label.split("(")[1].split(" dB")[0].split(" → ")
        assert before == after
    for frame in fig.frames:  # equal up to the rounding of the 8-bit PNGs
        blurred, restored = (_pixels(trace.source) for trace in frame.data[2:4])
        assert np.abs(blurred - restored).max() <= 1
    with pytest.raises(ValueError, match="parameter must be one of"):
        d3.drk_explore_figure(identity, image, "sigma3", 2)


def test_the_collapse_figure_ends_at_the_drk():
    model = dil.LinearCNN(seed=0).double()
    fig = d3.collapse_figure(model)
    assert len(fig.frames) == len(model.layers) and fig.layout.sliders[0].active == len(model.layers) - 1
    last = [e[0] for e in dil.collapse_steps(model)][-1]
    assert torch.equal(last.flip(-2, -1), dil.collapse(model))


def test_selfdeblur_traces_keep_evenly_spread_snapshots_of_each_run():
    settings = dataclasses.replace(SMOKE.selfdeblur, explore_scale=0.002)
    case, traces = se.trace_methods(settings, snapshots=4)
    assert set(traces) == {"original", "improved"}
    for trace in traces.values():
        total = len(trace.loss)
        assert trace.iterations[0] == 0 and trace.iterations[-1] == total - 1 and len(trace.iterations) <= 4
        assert all(x.shape == case.y.shape[-2:] for x in trace.x)
        assert all(k.shape == case.k.shape for k in trace.k)
    fig = se.trace_figure(traces, 4)
    assert len(fig.frames) == 4 and len(fig.data) == 4 + 2 + 1
