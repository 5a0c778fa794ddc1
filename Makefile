# Attention in Vision: two commands on a fresh machine with Python 3.11+.
#   make book   create .venv if missing, install everything, execute every notebook,
#               build the HTML book into _build/html (Sphinx warnings are errors)
#   make test   run every test (unit, export sync, nbval, papermill, book build, browser)
# Other targets: make export (regenerate attention_lib from the notebooks),
#   make compare ARGS='--epochs 20' (train every mechanism, results into book/results/),
#   make benchmark (our modules against timm's), make clean,
#   make screenshot (refresh the README's picture with the browser test; needs Chromium),
#   make pdf (the whole book as one PDF, _build/pdf/attention-in-vision.pdf; needs Chromium),
#   make lock (re-resolve requirements/lock.txt, the exact versions .venv installs).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

LOCK   := requirements/lock.txt
# The uv that installs the lock is the one the lock pins.
UV_VERSION = $(shell sed -n 's/^uv==\([^ ;]*\).*/\1/p' $(LOCK))
# uv reads no pip configuration: hand it the package indexes and find-links that pip is
# configured with on this machine (a local mirror of PyPI, say), if any. PyPI stays the
# default index; a package is taken from whichever index has the locked version.
PIP_EXTRA_INDEXES = $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)
PIP_FIND_LINKS_CONFIG = $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
UV_ENV := UV_INDEX_STRATEGY=unsafe-best-match \
	$(if $(PIP_EXTRA_INDEXES),UV_EXTRA_INDEX_URL="$(PIP_EXTRA_INDEXES)") \
	$(if $(PIP_FIND_LINKS_CONFIG),UV_FIND_LINKS="$(PIP_FIND_LINKS_CONFIG)")

# `make book` and `make test` run two processes at once (two notebooks, two test workers):
# one PyTorch thread each. Two processes of two threads on two cores spin against each other
# and run several times slower (a smoke training run: 28 s against 6 s, measured under load).
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: book test export compare benchmark screenshot clean venv lock pdf

venv: $(STAMP)

# .venv holds exactly the versions of requirements/lock.txt (the set that last passed
# `make test`), the project itself editable: uv, at the version the lock pins, makes the
# environment match the lock (installs, upgrades, downgrades and removes). The stamp is
# rebuilt when the lock or pyproject.toml changes.
$(STAMP): $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv && $(BIN)/uv --version | grep -qx 'uv $(UV_VERSION)' || \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV_ENV) $(BIN)/uv pip sync --quiet --python $(BIN)/python $(LOCK)
	$(BIN)/python attention_lib/environment.py
	touch $(STAMP)

# Re-resolve the lock from requirements/lock.in (the project's [book] and [test] extras):
# the newest versions pyproject.toml allows, for every platform and Python >= 3.11 (the
# versions already locked are kept where they still fit; `make lock ARGS=--upgrade` takes
# the newest of everything, `ARGS='--upgrade-package timm'` of one package). Then run
# `make test` and commit lock.txt with environment.yml (tests/test_environment.py checks
# that they agree).
lock:
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"; }
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --custom-compile-command "make lock" \
	  requirements/lock.in -o $(LOCK) $(ARGS)
	$(PYTHON) attention_lib/environment.py --write-conda environment.yml

# The book executes every notebook in smoke mode (cheap on a CPU), two at a time, into
# Jupyter Book's execution cache (attention_lib.execute), then renders them; results of real
# runs come from book/results/, never from this build.
book: $(STAMP)
	$(BIN)/python attention_lib/environment.py --no-lock
	ATTENTION_LIB_SMOKE=1 $(ONE_THREAD) $(BIN)/python -m attention_lib.execute --jobs 2
	ATTENTION_LIB_SMOKE=1 $(ONE_THREAD) $(BIN)/jupyter-book build . --warningiserror --keep-going $(BOOK_ARGS)

# The whole book as one PDF: every page of the built HTML book (build it first with
# `make book`), printed by headless Chromium once MathJax has typeset it, in the order of
# _toc.yml, with a bookmark per page (attention_lib/pdf.py). Needs Debian's chromium
# (`apt-get install chromium`), or ATTENTION_LIB_CHROMIUM naming a Chromium/Chrome binary.
pdf: $(STAMP)
	$(BIN)/python -m attention_lib.pdf _build/html --output _build/pdf/attention-in-vision.pdf

# Two test processes (pytest-xdist): each notebook runs whole in one of them, and the book
# is built once from what nbval executed (conftest.py).
test: $(STAMP)
	$(ONE_THREAD) $(BIN)/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder

# The exporter runs as a script, so that a package broken by a half-made edit cannot stop
# its own regeneration.
export: $(STAMP)
	$(BIN)/python attention_lib/exporter.py

compare: $(STAMP)
	$(BIN)/python -m attention_lib.compare $(ARGS)

benchmark: $(STAMP)
	$(BIN)/python -m attention_lib.benchmark $(ARGS)

# The browser test (headless Chromium) screenshots every page into _build/screenshots/;
# the README shows its view of the SE chapter.
screenshot: $(STAMP)
	$(BIN)/python -m pytest tests/test_browser.py -q
	cp _build/screenshots/chapter-screenshot.png book/images/chapter-screenshot.png

clean:
	rm -rf _build
