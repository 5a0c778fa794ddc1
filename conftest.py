"""One execution of every notebook per test session, shared by nbval and the book build.

nbval runs every notebook under ``notebooks/``, one test per code cell (``--nbval-lax``,
see pyproject.toml). The hooks here keep what each cell printed and drew; when the last
cell of a notebook has run, the executed notebook (or a note that a cell failed) is
written to a folder that every test process of the session shares. The book build
(``tests/conftest.py::built_book``) puts those notebooks into Jupyter Book's execution
cache (the jupyter-cache that ``execute_notebooks: cache`` in ``_config.yml`` reads), so it
executes none of them again. A notebook that nbval did not run in this session (a test
file run on its own) is simply executed by the build.

The session works the same with one process or several (``make test`` runs ``pytest -n 2
--dist loadscope --no-loadscope-reorder`` with pytest-xdist): every notebook is a scope that
one process runs cell after cell, scopes are handed out in the order below (the files of
tests that read the built book last, so that no process waits for a notebook queued behind
it), the build waits until every notebook of the session has finished (whichever process
ran it), and the processes share one build.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent
_SHARED = "ATTENTION_LIB_EXECUTED_DIR"  # environment variable: the shared folder of executed notebooks
_OUTPUTS = pytest.StashKey[dict]()  # notebook path -> {cell number: outputs}
_FAILED = pytest.StashKey[set]()  # notebooks with a failed or skipped cell


def _is_nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell_num")


def _reads_the_book(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return "built_book" in names or "executed_notebooks" in names or Path(str(item.fspath)).name == "test_browser.py"


def _code_cells(path: Path) -> int:
    return sum(cell.cell_type == "code" for cell in nbformat.read(str(path), as_version=4).cells)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_OUTPUTS], config.stash[_FAILED] = {}, set()
    # nbval's kernels listen on Unix sockets: over TCP, two kernels started at once by two
    # processes can be handed the same port (see attention_lib.execute._UnixSockets).
    import nbval.kernel

    from attention_lib.execute import IpcKernelManager

    nbval.kernel.KernelManager = IpcKernelManager
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: one thread each, kernels included
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
    elif _SHARED not in os.environ:
        os.environ[_SHARED] = tempfile.mkdtemp(prefix="attention-executed-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop(_SHARED), ignore_errors=True))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Unit tests, then the notebooks (nbval), then the files of tests that read the built book.

    pytest-xdist's ``--dist loadscope`` hands out whole files (a notebook's cells stay
    together, in order, in one process) in this order, so the files that read the book are
    given out last."""
    book_files = {Path(str(item.fspath)) for item in items if _reads_the_book(item)}
    rank = {id(item): 1 if _is_nbval_cell(item) else 2 if Path(str(item.fspath)) in book_files else 0
            for item in items}
    items.sort(key=lambda item: rank[id(item)])  # stable: each file keeps its order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if not _is_nbval_cell(item) or call.when not in ("setup", "call"):
        return
    report = outcome.get_result()
    notebook = Path(str(item.fspath)).resolve()
    if report.failed or report.skipped:
        item.config.stash[_FAILED].add(notebook)
    elif call.when == "call":
        item.config.stash[_OUTPUTS].setdefault(notebook, {})[item.cell_num] = list(item.test_outputs or [])
    if (call.when == "call" or report.failed or report.skipped) and item.cell_num == _code_cells(notebook) - 1:
        _finish(item.config, notebook)


def _finish(config: pytest.Config, notebook: Path) -> None:
    """Write the executed notebook (every cell passed) or a note that it did not, for the build."""
    shared = Path(os.environ[_SHARED])
    outputs = config.stash[_OUTPUTS].get(notebook, {})
    executed = nbformat.read(str(notebook), as_version=4)
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    if notebook in config.stash[_FAILED] or set(outputs) != set(range(len(code))):
        (shared / f"{notebook.stem}.failed").write_text("a cell failed, was skipped or did not run\n")
        return
    for number, cell in enumerate(code):
        cell.outputs = [nbformat.from_dict(dict(output)) for output in outputs[number]]
        cell.execution_count = number + 1
        for output in cell.outputs:
            if output.get("output_type") == "execute_result":
                output["execution_count"] = number + 1
    temporary = shared / f"{notebook.stem}.ipynb.tmp"
    nbformat.write(executed, str(temporary))
    temporary.replace(shared / f"{notebook.stem}.ipynb")


@pytest.fixture(scope="session")
def executed_notebooks(request: pytest.FixtureRequest):
    """A function that waits until every notebook nbval runs in this session has finished (in
    any process) and returns {notebook path: executed notebook} of those that passed."""

    def wait_and_collect() -> dict[Path, nbformat.NotebookNode]:
        import time

        shared = Path(os.environ[_SHARED])
        cells: dict[Path, set[int]] = {}
        for item in request.session.items:
            if _is_nbval_cell(item):
                cells.setdefault(Path(str(item.fspath)).resolve(), set()).add(item.cell_num)
        # Only notebooks whose every cell is in this session will finish.
        expected = [path for path, numbers in cells.items() if numbers == set(range(_code_cells(path)))]
        while not all((shared / f"{p.stem}.ipynb").exists() or (shared / f"{p.stem}.failed").exists()
                      for p in expected):
            time.sleep(1)
        return {path: nbformat.read(str(shared / f"{path.stem}.ipynb"), as_version=4) for path in expected
                if (shared / f"{path.stem}.ipynb").exists()}

    return wait_and_collect

