"""nbval settings for ``pytest --nbval notebooks`` (and ``make test``), so that the plain command
compares the smoke profile's stored outputs (:mod:`repro.stored_outputs`) without further options.

Each notebook's kernel starts under :func:`repro.stored_outputs.environment`, with one fresh
results folder for the whole run, and the outputs are compared after the substitutions of
``nbval_sanitize.cfg``.
"""

import os
import shutil
import tempfile

import pytest

from repro import stored_outputs

_results = None


def pytest_configure(config):
    global _results
    if not (config.getoption("nbval", False) or config.getoption("nbval_lax", False)):
        return
    profile = os.environ.get("REPRO_PROFILE")
    if profile not in (None, "", stored_outputs.PROFILE):
        raise pytest.UsageError(
            f"REPRO_PROFILE={profile}: the notebooks store the {stored_outputs.PROFILE} profile's outputs and nbval "
            f"compares that profile only; unset REPRO_PROFILE (`repro reproduce --profile {profile}` executes the book)")
    if config.option.nbval_sanitize_with is None:
        config.option.nbval_sanitize_with = str(stored_outputs.SANITIZE)
    _results = tempfile.mkdtemp(prefix="repro-nbval-")


def pytest_unconfigure(config):
    if _results is not None:
        shutil.rmtree(_results, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """A notebook's kernel starts in the setup of its first cell: under the stored outputs'
    environment, which is undone afterwards (it is the kernel's, not this process's)."""
    if _results is None or type(item).__name__ != "IPyNbCell":
        yield
        return
    saved = dict(os.environ)
    os.environ.update(stored_outputs.environment(_results))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
