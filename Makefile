# The two commands of the README: `make reproduce` (the main job) and `make test`.
# Both create the virtual environment first if it is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROFILE ?= quick
CHAPTERS ?=

.PHONY: install test reproduce book bench notebooks-refresh clean help

help:
	@echo "make reproduce [PROFILE=smoke|quick|paper]  execute every chapter, run the benchmarks (not for smoke), build the book"
	@echo "make test                                   unit tests, then nbval: the notebooks' smoke outputs against the stored ones"
	@echo "make notebooks-refresh [CHAPTERS=...]       regenerate the smoke outputs stored in notebooks/*.ipynb"
	@echo "make book [PROFILE=...]                     build the book from already-executed chapters"
	@echo "make bench                                  run the benchmark scripts (about 4 min)"
	@echo "make clean                                  remove the build outputs (keeps results/)"

$(BIN)/activate: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(BIN)/activate

install: $(BIN)/activate

# The data sets are fetched (downloaded once, or read from REPRO_DATA_MIRROR) and checked first, so
# that the tests that read them always run here. Two pytest-xdist workers: most tests are too small
# to keep two cores busy, and on a 2-core machine the unit tests take 0.6 of the time of one worker;
# --dist loadfile keeps each test file on one worker, so the rendered-book tests build the book once.
test: install
	$(BIN)/repro data fetch --quiet
	$(BIN)/python -m pytest -n 2 --dist loadfile tests
	$(BIN)/python -m pytest --nbval --nbval-cell-timeout=600 -p no:cacheprovider notebooks

# After an intended change of a smoke result: execute the chapters at the smoke profile and store
# their outputs in the paired notebooks, which nbval compares (src/repro/stored_outputs.py).
notebooks-refresh: install
	$(BIN)/python -m repro.stored_outputs $(CHAPTERS)

# `repro reproduce` (src/repro/cli.py): execute the chapters, run the benchmarks when the whole
# book (no CHAPTERS) runs with a profile other than smoke (repro.chapters.benchmarks_follow), stage
# the executed chapters and build the book, stopping at the first step that fails.
reproduce: install
	$(BIN)/repro reproduce --profile $(PROFILE) $(if $(strip $(CHAPTERS)),--only $(CHAPTERS))

book: install
	$(BIN)/python -m repro.chapters stage --profile $(PROFILE) $(CHAPTERS)
	$(BIN)/jupyter-book build book --warningiserror --keep-going
	@echo "The book: book/_build/html/index.html"

bench: install
	$(BIN)/python -m repro.chapters bench

clean:
	rm -rf book/_build book/chapters build
