# Attention in Vision: two commands on a fresh machine with Python 3.11+.
#   make book   create .venv if missing, install everything, execute every notebook,
#               build the HTML book into _build/html (Sphinx warnings are errors)
#   make test   run every test (unit, export sync, nbval, papermill, book build, browser)
# Other targets: make export (regenerate attention_lib from the notebooks),
#   make compare ARGS='--epochs 20' (train every mechanism via notebooks/08_training.ipynb),
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

# The book executes every notebook in smoke mode (cheap on a CPU); results of real
# runs come from book/results/, never from this build.
book: $(STAMP)
	ATTENTION_LIB_SMOKE=1 $(BIN)/jupyter-book build . --warningiserror --keep-going

test: $(STAMP)
	$(BIN)/python -m pytest

export: $(STAMP)
	$(BIN)/python -m attention_lib.exporter

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
