"""Shared test configuration.

Every notebook run from the tests (nbval, papermill, the book build) uses smoke mode:
the parameters cell of each notebook reads ATTENTION_LIB_SMOKE=1. The notebooks' kernels
keep matplotlib's inline backend (MPLBACKEND is not set), so that the outputs nbval
records carry the figures the book shows.

The book is built once per test session (`built_book`) from what nbval executed, and the
static checks of tests/test_book.py, the browser checks of tests/test_browser.py and the
expected outputs all read that one build.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

os.environ["ATTENTION_LIB_SMOKE"] = "1"

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
def built_book(venv_bin, executed_notebooks):
    """Build the book once, as `make book` does, into a temporary folder.

    Every notebook that nbval executed completely in this session (conftest.py at the
    repository's root) goes into the build's execution cache first, so the build renders
    those outputs instead of executing the notebook a second time; the others are
    executed by the build itself. No timeout: on a slow or shared machine the build takes
    longer, and CI's own limit is the only one.

    Returns (returncode, log, html folder). Next to the html folder, ``executed/`` holds
    every chapter as it was executed (what the pages show).
    """
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        html = Path(prebuilt).resolve()
        assert (html / "index.html").is_file(), f"{PREBUILT_ENV}={prebuilt} is not a built book's html folder"
        return 0, f"{PREBUILT_ENV}: using the book already built in {html}", html
    shared = Path(os.environ["ATTENTION_LIB_EXECUTED_DIR"])  # shared by the session's test processes
    with open(shared / "book.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process builds; the others wait and read its result
        summary = shared / "book.json"
        if not summary.exists():
            returncode, log = _build(shared / "book", venv_bin, executed_notebooks())
            summary.write_text(json.dumps({"returncode": returncode, "log": log}))
        result = json.loads(summary.read_text())
    return result["returncode"], result["log"], shared / "book" / "_build" / "html"


def _build(out: Path, venv_bin: Path, reused: dict) -> tuple[int, str]:
    """Put the executed notebooks into the execution cache, build, and collect every chapter as
    executed into ``_build/executed/``."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(out / "_build" / ".jupyter_cache")
    executed = out / "_build" / "executed"
    executed.mkdir(parents=True)
    for path, notebook in reused.items():
        cache.cache_notebook_bundle(CacheBundleIn(notebook, str(path), data={"executed_by": "nbval"}),
                                    check_validity=False, overwrite=True)
        nbformat.write(notebook, str(executed / path.name))
    env = dict(os.environ, ATTENTION_LIB_SMOKE="1")
    env.pop("OMP_NUM_THREADS", None)  # a notebook the build executes itself may use every core
    result = subprocess.run(
        [str(venv_bin / "jupyter-book"), "build", str(ROOT), "--path-output", str(out),
         "--warningiserror", "--keep-going"],
        capture_output=True, text=True, env=env,
    )
    # Jupyter Book writes the notebooks it executed itself (with their outputs) to jupyter_execute/.
    for path in NOTEBOOKS:
        built = out / "_build" / "jupyter_execute" / "notebooks" / path.name
        if path.resolve() not in reused and built.is_file():
            shutil.copyfile(built, executed / path.name)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="session")
def imagenette_tree(tmp_path_factory):
    """Imagenette's real on-disk layout with its first three classes, four images per split and class."""
    from attention_lib.data import make_image_tree

    return make_image_tree(tmp_path_factory.mktemp("imagenette"), "imagenette", classes=3, per_class=4, size=40)


@pytest.fixture(scope="session")
def random_seresnet50():
    """SE-ResNet-50 as timm publishes it, with random weights, mapped onto our modules (offline)."""
    from attention_lib.weights import load_trained

    return load_trained("seresnet50", weights="random")


def pytest_terminal_summary(terminalreporter):
    """Say why the browser tests were skipped, even without `-rs`: never a silent pass."""
    reasons = {report.longrepr[2] for report in terminalreporter.stats.get("skipped", [])
               if "test_browser.py" in report.nodeid and isinstance(report.longrepr, tuple)}
    for reason in sorted(reasons):
        terminalreporter.write_line(f"SKIPPED the browser tests: {reason.removeprefix('Skipped: ')}", yellow=True)
