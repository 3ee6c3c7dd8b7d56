"""The chapters' Explore sections: the live controls (nothing runs at creation, every change
re-renders with all values) and the slider figures of the static book (one frame per step, stable
HTML, clear errors)."""

import json

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import pytest

from repro.interactive import Panel, explore, show, slider_figure


def test_explore_renders_only_on_change_with_all_values():
    calls = []
    a, b = widgets.FloatSlider(value=1.0), widgets.IntSlider(value=2)
    box = explore(lambda a, b: calls.append((a, b)), a=a, b=b)
    assert calls == []
    a.value = 3.0
    b.value = 5
    assert calls == [(3.0, 2), (3.0, 5)]
    assert box.children[:2] == (a, b) and isinstance(box.children[2], widgets.Output)
    assert a.description == "a" and b.description == "b"


@pytest.mark.parametrize(
    "fn, controls, match",
    [(None, {"a": widgets.FloatSlider()}, "callable"), (print, {}, "at least one"), (print, {"a": 3}, "value widget")],
)
def test_explore_rejects_bad_arguments(fn, controls, match):
    with pytest.raises(ValueError, match=match):
        explore(fn, **controls)


# ------------------------------------------------------------------ slider figures for the book


def _panels(n=3):
    return [Panel("image", "image", [np.full((4, 5), i / n) for i in range(n)]),
            Panel("curve", "lines", [{"a": ([0, 1, 2], [1, 2, 3 + i]), "marker": i} for i in range(n)], log_y=True),
            Panel("surface", "heatmap", [([0, 1], [0, 1], [[i, 1], [1, 0]]) for i in range(n)], zrange=(0, 2))]


def test_slider_figure_has_one_frame_per_step_and_starts_at_the_active_one():
    fig = slider_figure("t", ["a", "b", "c"], _panels(), active=1)
    assert [f.name for f in fig.frames] == ["0", "1", "2"]
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == ["a", "b", "c"] and slider.active == 1
    assert [list(s.args[0]) for s in slider.steps] == [["0"], ["1"], ["2"]]
    # the figure shows the active frame's traces: image, curve + marker, heatmap
    assert len(fig.data) == len(fig.frames[1].data) == 4
    assert fig.data[0].source == fig.frames[1].data[0].source != fig.frames[0].data[0].source
    assert list(fig.data[1].y) == [1, 2, 4]
    assert list(fig.data[2].x) == [1.0, 1.0] and list(fig.data[2].y) == [1, 4]  # the marker spans the curve
    assert fig.data[3].zmin == 0 and fig.data[3].zmax == 2
    assert fig.layout.yaxis2.type == "log"


def test_image_frames_are_small_pngs_and_a_constant_kernel_does_not_divide_by_zero():
    fig = slider_figure("t", [0], [Panel("k", "image", [np.ones((3, 3))], normalise=True)])
    assert fig.data[0].source.startswith("data:image/png;base64,")


@pytest.mark.parametrize("make, match", [
    (lambda: slider_figure("t", [0, 1], _panels(3)), "has 3 frames for 2 steps"),
    (lambda: slider_figure("t", [], []), "at least one step"),
    (lambda: slider_figure("t", [0, 1, 2], _panels(), active=3), "active must be a step index"),
    (lambda: Panel("p", "surface", [1]), "kind must be one of"),
    (lambda: Panel("p", "image", []), "has no frames"),
    (lambda: slider_figure("t", [0], [Panel("p", "image", [np.zeros((2, 2, 4))])]), r"shape \(H, W\) or \(H, W, 3\)"),
    (lambda: slider_figure("t", [0], [Panel("p", "image", [np.full((2, 2), np.nan)])]), "NaN"),
    (lambda: slider_figure("t", [0, 1], [Panel("p", "lines", [{"a": ([0], [1])}, {"b": ([0], [1]), "c": ([0], [1])}])]),
     "same number of traces"),
    (lambda: show("figure", "x"), "plotly Figure"),
    (lambda: show(go.Figure(), "bad id"), "non-empty id"),
])
def test_bad_figures_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_show_is_stable_html_that_expects_plotlyjs_from_the_page():
    html = show(slider_figure("t", ["a", "b", "c"], _panels()), "test-figure").data
    assert html == show(slider_figure("t", ["a", "b", "c"], _panels()), "test-figure").data
    assert 'id="test-figure"' in html and "Plotly.newPlot" in html and "addFrames" in html
    assert "<script src" not in html and len(html) < 50_000  # plotly.js (4 MB) itself is not embedded
    payload = html[html.index('"test-figure",') + len('"test-figure",'):]
    json.JSONDecoder().raw_decode(payload.strip())  # the figure's data is plain JSON
