"""Shared test configuration.

Every notebook run from the tests (nbval, papermill, the book build) uses smoke mode:
the parameters cell of each notebook reads ATTENTION_LIB_SMOKE=1.

The book is built once per test session (`built_book`), and both the static checks of
tests/test_book.py and the browser checks of tests/test_browser.py read that one build.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["ATTENTION_LIB_SMOKE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Set to the `_build/html` folder of a book you have already built to skip the build
# (e.g. while working on the browser tests); the build-warnings test is then skipped.
PREBUILT_ENV = "ATTENTION_LIB_BOOK_HTML"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """Folder of the interpreter running the tests (the project's .venv under make test)."""
    return Path(sys.executable).parent


@pytest.fixture(scope="session")
def built_book(tmp_path_factory, venv_bin):
    """Build the book once, as `make book` does, into a temporary folder.

    Returns (returncode, log, html folder). Notebooks run in smoke mode.
    """
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        html = Path(prebuilt).resolve()
        assert (html / "index.html").is_file(), f"{PREBUILT_ENV}={prebuilt} is not a built book's html folder"
        return 0, f"{PREBUILT_ENV}: using the book already built in {html}", html
    out = tmp_path_factory.mktemp("book")
    env = dict(os.environ, ATTENTION_LIB_SMOKE="1")
    # MPLBACKEND=Agg (set above for the tests' own plots) must not reach the notebooks'
    # kernels: under Agg, `plt.show()` draws nothing and the book would lose its figures.
    env.pop("MPLBACKEND", None)
    result = subprocess.run(
        [str(venv_bin / "jupyter-book"), "build", str(ROOT), "--path-output", str(out),
         "--warningiserror", "--keep-going"],
        capture_output=True, text=True, env=env, timeout=1200,
    )
    log = result.stdout + result.stderr
    return result.returncode, log, out / "_build" / "html"


def pytest_terminal_summary(terminalreporter):
    """Say why the browser tests were skipped, even without `-rs`: never a silent pass."""
    reasons = {report.longrepr[2] for report in terminalreporter.stats.get("skipped", [])
               if "test_browser.py" in report.nodeid and isinstance(report.longrepr, tuple)}
    for reason in sorted(reasons):
        terminalreporter.write_line(f"SKIPPED the browser tests: {reason.removeprefix('Skipped: ')}", yellow=True)
