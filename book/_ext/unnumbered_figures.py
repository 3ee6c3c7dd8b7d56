"""Figures without Sphinx's running numbers.

The chapters name their figures after the papers' ("Fig. 2: repeated runs on one input" is
Kotera et al.'s Fig. 2); a running number over the whole book ("Fig. 12") beside that name would
contradict it. ``numfig: false`` in ``_config.yml`` is not enough: Jupyter Book's LaTeX extension
(sphinx-jupyterbook-latex) sets ``numfig`` back to true when the configuration is read, for every
builder. This runs after it.
"""


def _unnumber_figures(app, config):
    config.numfig = False


def setup(app):
    app.connect("config-inited", _unnumber_figures, priority=900)  # after the default 500
    return {"parallel_read_safe": True, "parallel_write_safe": True}
