"""The chapters' live controls: nothing runs at creation, every change re-renders with all values."""

import ipywidgets as widgets
import pytest

from repro.interactive import explore


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
