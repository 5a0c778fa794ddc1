# Hand-written support module (not generated from a notebook).
"""Execute the chapters into Jupyter Book's execution cache, several at a time.

``make book`` runs this before ``jupyter-book build``: every notebook that the cache does
not hold yet (a new or changed chapter) is executed with nbclient, in its own folder, with
``jobs`` kernels at a time, and stored in the jupyter-cache that ``execute_notebooks:
cache`` in ``_config.yml`` reads, so the build itself executes nothing. On a machine with
two cores this halves the wall time of a book build, since the chapters' work is mostly
single-threaded. Each executed notebook is also written, with its outputs, to
``--executed`` (``_build/executed/``), where the expected-output checks read them.

    python -m attention_lib.execute                 # every chapter, two at a time
    python -m attention_lib.execute --jobs 1 notebooks/01_squeeze_excitation.ipynb

A notebook that raises stops nothing else; the command ends with exit code 1 and names it.

The kernels talk to nbclient over Unix sockets (:class:`AsyncIpcKernelManager`), not TCP ports,
so that kernels started at the same moment by different processes cannot be handed the
same port.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_client.manager import AsyncKernelManager, KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

__all__ = ["ROOT", "IpcKernelManager", "AsyncIpcKernelManager", "execute_notebook", "execute_all", "main"]

ROOT = Path(__file__).resolve().parent.parent


class _UnixSockets:
    """Kernel-manager defaults: the kernel listens on Unix socket files instead of TCP ports.

    Over TCP, jupyter_client finds a free port by binding a socket to port 0 and closing it;
    the kernel binds the port a moment later. Another process starting a kernel at the same
    time can be handed the same port, and one kernel dies with "Address already in use"
    (jupyter_client issue 487; it failed this project's CI once, with two notebooks
    executed side by side). Socket files named after a fresh random prefix cannot collide,
    and jupyter_client removes them when it shuts the kernel down.
    """

    def _transport_default(self) -> str:
        return "tcp" if os.name == "nt" else "ipc"  # Windows: TCP, as jupyter_client's default

    def _ip_default(self) -> str:
        if self.transport != "ipc":
            return super()._ip_default()
        # The socket files' prefix: short, as a socket path holds at most 107 bytes.
        return os.path.join(tempfile.gettempdir(), f"kernel-{uuid.uuid4().hex[:16]}")


class IpcKernelManager(_UnixSockets, KernelManager):
    """jupyter_client's KernelManager, over Unix sockets (see ``_UnixSockets``); nbval's kernels use it."""


class AsyncIpcKernelManager(_UnixSockets, AsyncKernelManager):
    """jupyter_client's AsyncKernelManager, over Unix sockets (see ``_UnixSockets``); nbclient's kernels use it."""


def execute_notebook(path: str | os.PathLike, kernel: str = "python3") -> tuple[nbformat.NotebookNode, float]:
    """Execute one notebook in its own folder, without a timeout; return it with its outputs and the seconds taken.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised (the message shows the cell).
    """
    path = Path(path).resolve()
    notebook = nbformat.read(str(path), as_version=4)
    started = time.perf_counter()
    NotebookClient(notebook, kernel_manager_class=AsyncIpcKernelManager, timeout=None, kernel_name=kernel,
                   allow_errors=False, record_timing=False, resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook, time.perf_counter() - started


def _run(path: Path) -> tuple[Path, nbformat.NotebookNode | None, float, str]:
    try:
        notebook, seconds = execute_notebook(path)
        return path, notebook, seconds, ""
    except CellExecutionError as error:
        return path, None, 0.0, str(error)


def execute_all(notebooks: list[Path], cache_dir: Path, executed_dir: Path, jobs: int = 2) -> list[str]:
    """Execute the notebooks the cache lacks, ``jobs`` at a time; return one line per failure."""
    cache = get_cache(str(cache_dir))
    executed_dir.mkdir(parents=True, exist_ok=True)
    pending = []
    for path in notebooks:
        source = nbformat.read(str(path), as_version=4)
        try:
            record = cache.match_cache_notebook(source)
        except KeyError:
            pending.append(path)
            continue
        print(f"{path.name}: cached (executed {record.created:%Y-%m-%d %H:%M})", flush=True)
        _, merged = cache.merge_match_into_notebook(source)
        nbformat.write(merged, str(executed_dir / path.name))
    if jobs > 1:
        os.environ["OMP_NUM_THREADS"] = "1"  # the kernels share the cores: one thread each
    failures = []
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(pending) or 1))) as pool:
        for path, notebook, seconds, error in pool.map(_run, pending):
            if notebook is None:
                failures.append(f"{path.name}: {error.splitlines()[0] if error else 'failed'}")
                print(f"{path.name}: FAILED\n{error}", file=sys.stderr, flush=True)
                continue
            cache.cache_notebook_bundle(CacheBundleIn(notebook, str(path), data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            nbformat.write(notebook, str(executed_dir / path.name))
            print(f"{path.name}: executed in {seconds:.0f} s", flush=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attention_lib.execute", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="kernels at a time")
    parser.add_argument("--cache", type=Path, default=ROOT / "_build" / ".jupyter_cache",
                        help="Jupyter Book's execution cache (default: _build/.jupyter_cache)")
    parser.add_argument("--executed", type=Path, default=ROOT / "_build" / "executed",
                        help="where the executed notebooks are written (default: _build/executed)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    notebooks = [path.resolve() for path in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    missing = [str(path) for path in notebooks if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    failures = execute_all(notebooks, args.cache, args.executed, args.jobs)
    if failures:
        print("notebooks that failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
