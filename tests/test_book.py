"""The rendered book, checked as a reader would see it: built, then opened in headless Chromium.

The whole book is built with the real machinery (``repro.chapters.execute`` and ``stage``, then
``jupyter-book build --warningiserror``). To stay within CI's budget only two chapters are
executed (``smoke`` profile): the toy chapter (figures, widgets) and the DRK collapse (Markdown
tables from cell outputs, glued numbers). The other chapters with Explore figures are staged from
the smoke outputs stored with their notebooks (``repro.chapters.stage_stored``; nbval executes
them in ``make test``); every other chapter is the placeholder page of
``repro.chapters.stage_placeholder`` (the complete book is built by ``make reproduce``). The part pages, the Performance page and the cross-references are real. Pages are opened in
Debian's ``chromium`` (installed by ``.ci/run``); screenshots land in ``build/book-screenshots/``.
"""

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from repro import chapters

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EXECUTED = ("toy1d", "d3_collapse")
STORED = ("d3_regularisers", "selfdeblur_failure_modes", "kerneldiff_sampling")
EXPLORE = {"toy1d": 4, "d3_regularisers": 5, "selfdeblur_failure_modes": 1, "kerneldiff_sampling": 1}
"""The chapters with Explore figures (sliders that work without a kernel), and how many each has."""
BOOK_BUDGET_BYTES = 60 * 2**20
SCREENSHOTS = REPO / "build" / "book-screenshots"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's `chromium` is not installed (`apt-get install chromium`; .ci/run does it): rendered-book check skipped",
)


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    book = root / "book"
    shutil.copytree(REPO / "book", book, ignore=shutil.ignore_patterns("_build", "chapters"))
    patch = pytest.MonkeyPatch()
    patch.setenv("REPRO_RESULTS", str(root / "results"))
    patch.setattr(chapters, "BOOK_CHAPTERS", book / "chapters")
    try:
        for name in EXECUTED:
            chapters.execute(name, "smoke", progress=False)
            chapters.stage(name, "smoke")
        for name in STORED:
            chapters.stage_stored(name)
        for name in set(chapters.CHAPTERS) - set(EXECUTED) - set(STORED):
            chapters.stage_placeholder(name, "smoke")
        chapters.stage_performance("smoke")
    finally:
        patch.undo()
    build = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter-book")), "build", str(book), "--warningiserror", "--keep-going"],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return book / "_build" / "html"


CHROMIUM_ATTEMPTS = 3
"""Headless Chromium in a container without D-Bus now and then dies of a signal (SIGSEGV, once in
about 60 page loads here) before it has read the page; such a crash is retried, any other
failure (an exit status, a page that does not load) is not."""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    for _ in range(CHROMIUM_ATTEMPTS):
        with tempfile.TemporaryDirectory() as profile_dir:
            run = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile_dir}", "--virtual-time-budget=3000", *args],
                capture_output=True, text=True, timeout=120,
            )
        if run.returncode >= 0:  # negative: killed by a signal
            break
    return run


def _open(html: Path) -> str:
    """The page's DOM after Chromium has loaded it (scripts run), plus a screenshot."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{html.parent.name}_{html.stem}.png"
    _chromium("--window-size=1300,2000", f"--screenshot={shot}", html.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000, f"no screenshot of {html.name}"
    dom = _chromium("--dump-dom", html.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


PAGES = ["intro.html", "chapters/toy1d.html", "chapters/d3_collapse.html", "selfdeblur.html", "kerneldiff.html",
         "reproduce.html", "chapters/performance.html"]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_theme_and_without_errors(built_book, page):
    html = built_book / page
    assert html.exists(), f"{page} was not built"
    dom = _open(html)
    stylesheets = re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"', dom)
    assert any("sphinx-book-theme" in s for s in stylesheets), "the book theme's stylesheet is missing"
    for href in stylesheets:
        if not href.startswith(("http", "//")):
            assert (html.parent / href.split("?")[0]).exists(), f"{page}: stylesheet {href} does not exist"
    assert "Traceback" not in dom and "output error" not in dom and "ansi-red" not in dom, f"{page} shows an error"


def test_a_chapter_not_executed_says_how_to_execute_it(built_book):
    dom = _open(built_book / "chapters" / "benchmark.html")
    assert "admonition warning" in dom and "has not been executed with profile" in dom
    assert "make reproduce PROFILE=smoke CHAPTERS=benchmark" in re.sub(r"<[^>]+>", "", dom)


@pytest.mark.parametrize("page", ["intro.html", "chapters/toy1d.html"])
def test_equations_render_from_the_books_own_mathjax(built_book, page):
    """MathJax is served from the book's ``_static/`` (sphinx-mathjax-offline), so the equations
    typeset without a network, as in this test, where Chromium reaches none."""
    html = built_book / page
    dom = _open(html)
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', dom)
    mathjax = [s for s in scripts if "mathjax" in s.lower()]
    assert mathjax, f"{page}: no MathJax script"
    for src in mathjax:
        assert not src.startswith(("http", "//")), f"{page}: MathJax loads from {src}"
        assert (html.parent / src.split("?")[0]).exists(), f"{page}: MathJax script {src} does not exist"
    assert "<mjx-container" in dom, f"{page}: its equations were not typeset"


def test_executed_chapters_show_figures_tables_and_provenance(built_book):
    for name in EXECUTED:
        html = built_book / "chapters" / f"{name}.html"
        dom = _open(html)
        images = re.findall(r'<img[^>]+src="([^"]+)"', dom)
        local = [s for s in images if not s.startswith(("http", "data:"))]
        assert local or any(s.startswith("data:image") for s in images), f"{name}: no figure"
        for src in local:
            assert (html.parent / src).exists(), f"{name}: figure {src} is missing"
        figures = re.findall(r"<figure\b.*?</figure>", dom, flags=re.S)
        assert len(figures) == len(images), f"{name}: {len(images)} images but {len(figures)} figures"
        assert all(re.search(r"<figcaption>.*?\S.*?</figcaption>", f, flags=re.S) and f.count("<img") == 1
                   for f in figures), f"{name}: a figure without a caption of its own"
        # figures are named after the papers' (Kotera et al.'s Fig. 2), never given a running number
        assert "caption-number" not in dom, f"{name}: a figure numbered by Sphinx"
        assert "executed with profile" in dom and "smoke" in dom, f"{name}: no provenance note"
        assert "tag_hide-input" in dom and "tag_remove-cell" not in dom, f"{name}: code cells not collapsed for the book"
    collapse = _open(built_book / "chapters" / "d3_collapse.html")
    assert collapse.count("<table") >= 1, "d3_collapse: its Markdown tables did not render as tables"


# ------------------------------------------------------------------ the Explore figures, offline
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _console(browser, html: Path, wait_for: str | None = None):
    """Open ``html`` offline; return the page, its console errors and its requests off the disk."""
    context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
    errors, remote = [], []
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None)
    page.goto(html.as_uri())
    page.wait_for_function(wait_for or "document.readyState === 'complete'", timeout=20_000)
    return page, errors, remote


@pytest.mark.parametrize("page", PAGES)
def test_pages_work_offline_without_console_errors(built_book, browser, page):
    opened, errors, remote = _console(browser, built_book / page)
    opened.wait_for_timeout(500)
    assert errors == [], f"{page}: console errors {errors}"
    assert remote == [], f"{page}: the page asked the network for {remote}"
    opened.context.close()


@pytest.mark.parametrize("name", sorted(EXPLORE))
def test_explore_sliders_change_the_figure_offline_without_console_errors(built_book, browser, name):
    """Each Explore figure of the static book: plotly.js comes from the book's own files (the
    network is off), the page logs no error, and moving each slider to its first step (then its
    last) changes the figure's pixels."""
    start = time.perf_counter()
    page, errors, remote = _console(
        browser, built_book / "chapters" / f"{name}.html",
        f"document.querySelectorAll('.repro-explore .slider-container').length == {EXPLORE[name]}")
    # recorded, not asserted (a wall time depends on the machine): the budget is 2 s
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / f"explore_{name}_interactive_after_s.txt").write_text(f"{time.perf_counter() - start:.2f}\n")
    figures = page.locator(".repro-explore .js-plotly-plot")
    assert figures.count() == EXPLORE[name], f"{name}: {figures.count()} Explore figures"
    for i in range(figures.count()):
        figure = figures.nth(i)
        figure.scroll_into_view_if_needed()
        before = figure.screenshot(path=str(SCREENSHOTS / f"explore_{name}_{i}_before.png"))
        changed = False
        rail = figure.locator(".slider-rail-touch-rect").bounding_box()
        for step, x in (("first", rail["x"] + 2), ("last", rail["x"] + rail["width"] - 2)):
            # a click on the rail moves the slider to the nearest step, as a reader's click does;
            # one of the two ends differs from the step the figure starts at
            page.mouse.click(x, rail["y"] + rail["height"] / 2)
            page.wait_for_timeout(300)
            after = figure.screenshot(path=str(SCREENSHOTS / f"explore_{name}_{i}_{step}.png"))
            changed = changed or after != before
        assert changed, f"{name}: moving the slider of Explore figure {i} did not change it"
    assert errors == [], f"{name}: console errors {errors}"
    assert remote == [], f"{name}: the page asked the network for {remote}"
    page.context.close()


def test_the_book_serves_plotlyjs_itself_only_where_needed_and_fits_its_budget(built_book):
    assert (built_book / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    toy = (built_book / "chapters" / "toy1d.html").read_text()
    assert re.search(r'<script src="\.\./_static/plotly\.min\.js', toy), "toy1d.html does not load plotly.js"
    assert "plotly.min.js" not in (built_book / "intro.html").read_text(), "a page without figures loads plotly.js"
    size = sum(p.stat().st_size for p in built_book.rglob("*") if p.is_file())
    assert size < BOOK_BUDGET_BYTES, f"the built book is {size / 2**20:.1f} MiB"
