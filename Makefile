# Attention in Vision: two commands on a fresh machine with Python 3.11+.
#   make book   create .venv if missing, install everything, execute every notebook,
#               build the HTML book into _build/html (Sphinx warnings are errors)
#   make test   run every test (unit, export sync, nbval, papermill, book build, browser)
# Other targets: make export (regenerate attention_lib from the notebooks),
#   make compare ARGS='--epochs 20' (train every mechanism, results into book/results/),
#   make benchmark (our modules against timm's), make clean,
#   make screenshot (refresh the README's picture with the browser test; needs Chromium).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test export compare benchmark screenshot clean venv

venv: $(STAMP)

# The stamp is rebuilt when the declared dependencies change.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[book,test]"
	touch $(STAMP)

# The book executes every notebook in smoke mode (cheap on a CPU), two at a time, into
# Jupyter Book's execution cache (attention_lib.execute), then renders them; results of real
# runs come from book/results/, never from this build.
book: $(STAMP)
	ATTENTION_LIB_SMOKE=1 $(BIN)/python -m attention_lib.execute --jobs 2
	ATTENTION_LIB_SMOKE=1 $(BIN)/jupyter-book build . --warningiserror --keep-going

# Two test processes (pytest-xdist): each notebook runs whole in one of them, and the book
# is built once from what nbval executed (conftest.py).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder

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
