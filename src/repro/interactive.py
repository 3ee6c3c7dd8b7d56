"""Live controls for the chapters' "Explore" sections.

:func:`explore` is a small stand-in for ``ipywidgets.interact``: it shows the controls and an
output area, and re-runs the plotting function only when a control changes. Nothing runs when the
controls are created, because each chapter already shows static figures for the default values
above its controls. (Running the function inside an output widget during batch execution, as
``interact`` does, occasionally left papermill/nbval waiting forever for an idle kernel here.)
"""

from __future__ import annotations

import ipywidgets as widgets


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
