"""The chapters' "Explore" sections: live controls for Jupyter, and slider figures for the book.

:func:`explore` is a small stand-in for ``ipywidgets.interact``: it shows the controls and an
output area, and re-runs the plotting function only when a control changes. Nothing runs when the
controls are created, because each chapter already shows static figures for the default values
above its controls. (Running the function inside an output widget during batch execution, as
``interact`` does, occasionally left papermill/nbval waiting forever for an idle kernel here.)

:func:`slider_figure` builds what the rendered book shows instead of a kernel: a plotly figure
whose slider steps through frames computed when the chapter executed, so nothing is computed in
the browser. :func:`show` displays it as HTML that expects plotly.js on the page; the book serves
it from its own ``_static/`` (``book/_ext/static_pages.py``), so the pages work offline.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import HTML
from PIL import Image
from plotly.subplots import make_subplots

from ._checks import check_positive_int

PANEL_KINDS = ("image", "heatmap", "lines")


def explore(fn, **controls: widgets.ValueWidget) -> widgets.VBox:
    """Controls named after ``fn``'s keyword arguments; changing one calls ``fn(**values)``.

    Returns the widget to display (the last expression of a notebook cell displays it).
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    if not controls:
        raise ValueError("explore needs at least one control")
    for name, control in controls.items():
        if not isinstance(control, widgets.ValueWidget):
            raise ValueError(f"control {name!r} must be an ipywidgets value widget, got {type(control).__name__}")
    output = widgets.Output()

    def render(_change=None):
        output.clear_output(wait=True)
        with output:
            fn(**{name: control.value for name, control in controls.items()})

    for control in controls.values():
        control.description = control.description or next(n for n, c in controls.items() if c is control)
        control.observe(render, names="value")
    return widgets.VBox([*controls.values(), output])


@dataclass(frozen=True)
class Panel:
    """One subplot of a :func:`slider_figure`, with one entry of ``frames`` per slider step.

    ``kind``:
    - ``"image"``: each frame an array (H, W) or (H, W, 3); grey values in [0, 1] unless
      ``normalise``, which maps each frame's own range onto [0, 1] (kernels);
    - ``"heatmap"``: each frame ``(x, y, z)`` with z of shape (len(y), len(x)) (a loss surface),
      coloured over ``zrange`` (low, high) if given, else over each frame's own range;
    - ``"lines"``: each frame a dict ``{label: (x, y)}`` with the same labels in every frame; a
      frame may add ``"marker": x`` for a vertical line (the current step on a curve).
    ``log_y`` puts a ``"lines"`` panel's y axis on a log scale, ``reverse_x`` runs its x axis from
    right to left (a count-down such as the reverse diffusion steps).
    """

    title: str
    kind: str
    frames: Sequence
    normalise: bool = False
    log_y: bool = False
    reverse_x: bool = False
    zrange: tuple[float, float] | None = None
    x_title: str = ""
    y_title: str = ""

    def __post_init__(self):
        if self.kind not in PANEL_KINDS:
            raise ValueError(f"panel {self.title!r}: kind must be one of {PANEL_KINDS}, got {self.kind!r}")
        if len(self.frames) == 0:
            raise ValueError(f"panel {self.title!r} has no frames")


def slider_values(low: float, high: float, count: int, default: float, geometric: bool = False) -> list[float]:
    """``count`` values evenly spread over [low, high] (geometrically if ``geometric``), rounded to
    4 decimals, with ``default`` among them, in increasing order: the steps of one Explore slider."""
    check_positive_int(count, "count")
    spread = np.geomspace(low, high, count) if geometric else np.linspace(low, high, count)
    return sorted({round(float(v), 4) for v in spread} | {default})


def _png_uri(array, normalise: bool) -> str:
    """An image as a PNG data URI (8 bits per channel): a few kB per frame instead of a JSON
    array of numbers, so that a page with a hundred frames stays small."""
    a = np.asarray(array, dtype=np.float64)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"an image frame must have shape (H, W) or (H, W, 3), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("an image frame holds NaN or infinite values")
    if normalise:
        low, high = a.min(), a.max()
        a = (a - low) / (high - low) if high > low else np.zeros_like(a)
    pixels = np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _round(values, digits: int = 5) -> list:
    """Curves and surfaces rounded to ``digits`` significant digits: what the eye needs, and a
    page that does not change with the last bits of a computation."""
    v = np.asarray(values, dtype=np.float64)
    return [float(f"{x:.{digits}g}") if np.isfinite(x) else None for x in v.reshape(-1)] if v.ndim == 1 else \
        [_round(row, digits) for row in v]


def _traces(panel: Panel, frame) -> list:
    if panel.kind == "image":
        return [go.Image(source=_png_uri(frame, panel.normalise), hoverinfo="skip")]
    if panel.kind == "heatmap":
        x, y, z = frame
        low, high = panel.zrange if panel.zrange is not None else (None, None)
        return [go.Heatmap(x=_round(x), y=_round(y), z=_round(z, 3), zmin=low, zmax=high, colorscale="Viridis",
                           showscale=False)]
    curves = {label: xy for label, xy in frame.items() if label != "marker"}
    lines = [go.Scatter(x=_round(x), y=_round(y), mode="lines", name=label) for label, (x, y) in curves.items()]
    if frame.get("marker") is not None:  # a vertical line over the curves' range: the current step
        values = np.concatenate([np.asarray(y, dtype=np.float64).reshape(-1) for _, y in curves.values()])
        values = values[np.isfinite(values) & ((values > 0) if panel.log_y else True)]
        lines.append(go.Scatter(x=[float(frame["marker"])] * 2, y=_round([values.min(), values.max()]),
                                mode="lines", line={"color": "black", "width": 1}, name="this step",
                                showlegend=False))
    return lines


def slider_figure(label: str, steps: Sequence, panels: Sequence[Panel], active: int = 0,
                  height: int = 320) -> go.Figure:
    """A row of ``panels`` and one slider over ``steps`` (its labels), starting at step
    ``active``: moving the slider shows each panel's frame of that step. Every panel needs one
    frame per step."""
    if not steps:
        raise ValueError("slider_figure needs at least one step")
    if not panels:
        raise ValueError("slider_figure needs at least one panel")
    for panel in panels:
        if len(panel.frames) != len(steps):
            raise ValueError(f"panel {panel.title!r} has {len(panel.frames)} frames for {len(steps)} steps")
    check_positive_int(height, "height")
    if not isinstance(active, int) or not 0 <= active < len(steps):
        raise ValueError(f"active must be a step index in [0, {len(steps) - 1}], got {active!r}")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p.title for p in panels],
                        horizontal_spacing=0.06)
    frames = []
    for i, step in enumerate(steps):
        data = []
        for column, panel in enumerate(panels, start=1):
            traces = _traces(panel, panel.frames[i])
            if i == active:
                for trace in traces:
                    fig.add_trace(trace, row=1, col=column)
            data.extend(traces)
        frames.append(go.Frame(data=data, name=str(i)))
    if any(len(f.data) != len(fig.data) for f in frames):
        raise ValueError("every frame of a panel must have the same number of traces (the same curve labels)")
    fig.frames = frames
    for column, panel in enumerate(panels, start=1):
        if panel.kind == "image":
            fig.update_xaxes(visible=False, row=1, col=column)
            fig.update_yaxes(visible=False, row=1, col=column)
        else:
            fig.update_xaxes(title_text=panel.x_title, autorange="reversed" if panel.reverse_x else True,
                             row=1, col=column)
            fig.update_yaxes(title_text=panel.y_title, type="log" if panel.log_y else None, row=1, col=column)
    fig.update_layout(
        height=height + 60, margin={"l": 40, "r": 20, "t": 40, "b": 20},
        legend={"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top"},
        sliders=[{"active": active, "currentvalue": {"prefix": f"{label}: "}, "pad": {"t": 90},
                  "steps": [{"label": str(s), "method": "animate",
                             "args": [[str(i)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                                 "transition": {"duration": 0}}]}
                            for i, s in enumerate(steps)]}],
    )
    return fig


def show(fig: go.Figure, name: str) -> HTML:
    """The figure as HTML for the notebook output (and so for the book), in a ``<div>`` with the
    stable id ``name`` (the output does not change between runs); plotly.js itself is not
    embedded but served once by the book."""
    if not isinstance(fig, go.Figure):
        raise ValueError(f"fig must be a plotly Figure, got {type(fig).__name__}")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"name must be a non-empty id of letters, digits, '-' and '_', got {name!r}")
    html = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=name, auto_play=False,
                       config={"displaylogo": False, "responsive": True})
    return HTML(f'<div class="repro-explore">{html}</div>')
