"""Pages that work from disk, offline, without console errors.

- plotly.js from the book itself, on the pages that hold a plotly figure. The chapters'
  "Explore" figures (``repro.interactive.show``) are HTML that expects plotly.js on the page; a
  CDN would leave them blank offline. The installed plotly package carries the matching plotly.js:
  it is written once into the built book's ``_static/`` and linked from each page whose body
  contains a plotly figure, so pages without one do not load it.
- Each script once. Jupyter Book 1.0 registers sphinx-thebe's and sphinx-togglebutton's inline
  scripts twice, and the second ``const THEBE_JS_URL`` is an error on every page.
"""

from pathlib import Path

from plotly.offline import get_plotlyjs

FILENAME = "plotly.min.js"


def _link_plotlyjs_on_pages_with_figures(app, pagename, templatename, context, doctree):
    if "plotly-graph-div" in context.get("body", ""):
        app.add_js_file(FILENAME)


def _drop_repeated_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files", [])
    # the same inline script arrives once with filename None and once with "": compare contents
    keys = [(getattr(s, "filename", s) or None, sorted(getattr(s, "attributes", {}).items())) for s in scripts]
    scripts[:] = [s for i, s in enumerate(scripts) if keys[i] not in keys[:i]]


def _write_plotlyjs(app, exception):
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        (static / FILENAME).write_text(get_plotlyjs(), encoding="utf-8")


def setup(app):
    app.connect("html-page-context", _link_plotlyjs_on_pages_with_figures)
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)  # after every other handler
    app.connect("build-finished", _write_plotlyjs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
