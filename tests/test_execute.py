"""Tests of attention_lib.execute: chapters executed several at a time into Jupyter Book's cache."""

import nbformat
from jupyter_cache import get_cache

from attention_lib import execute


def notebook(path, *sources):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, str(path))
    return path


def test_notebooks_are_executed_once_into_the_cache(tmp_path, capsys):
    first = notebook(tmp_path / "a.ipynb", "x = 6 * 7", "print(x)", "x")
    second = notebook(tmp_path / "b.ipynb", "import os\nprint(os.getcwd())",
                      "from ipykernel.kernelapp import IPKernelApp\nprint(IPKernelApp.instance().transport)")
    cache_dir, executed = tmp_path / "cache", tmp_path / "executed"
    assert execute.execute_all([first, second], cache_dir, executed, jobs=2) == []
    run = nbformat.read(str(executed / "a.ipynb"), as_version=4)
    assert run.cells[1].outputs[0]["text"] == "42\n" and run.cells[2].outputs[0]["data"]["text/plain"] == "42"
    cells = nbformat.read(str(executed / "b.ipynb"), as_version=4).cells
    assert cells[0].outputs[0]["text"].strip() == str(tmp_path)
    assert cells[1].outputs[0]["text"].strip() == "ipc"  # Unix sockets: no TCP port two kernels could share
    cache = get_cache(str(cache_dir))
    assert cache.match_cache_notebook(nbformat.read(str(first), as_version=4))  # what the book build looks up
    capsys.readouterr()
    assert execute.execute_all([first, second], cache_dir, executed, jobs=2) == []
    assert capsys.readouterr().out.count("cached") == 2  # nothing executed twice


def test_a_failing_notebook_is_named_and_the_others_still_run(tmp_path, capsys):
    bad = notebook(tmp_path / "bad.ipynb", "raise ValueError('seed must be an int >= 0')")
    good = notebook(tmp_path / "good.ipynb", "print('fine')")
    failures = execute.execute_all([bad, good], tmp_path / "cache", tmp_path / "executed", jobs=1)
    assert len(failures) == 1 and failures[0].startswith("bad.ipynb:")
    assert (tmp_path / "executed" / "good.ipynb").is_file() and not (tmp_path / "executed" / "bad.ipynb").exists()
    assert "seed must be an int >= 0" in capsys.readouterr().err
    assert execute.main([str(bad), "--cache", str(tmp_path / "c2"), "--executed", str(tmp_path / "e2")]) == 1


def test_kernels_listen_on_socket_files_that_no_other_kernel_shares():
    first, second = execute.IpcKernelManager(kernel_name="python3"), execute.AsyncIpcKernelManager(kernel_name="python3")
    assert first.transport == second.transport == "ipc" and not first.cache_ports
    assert first.ip != second.ip and len(first.ip) < 90  # a Unix socket path holds at most 107 bytes


def test_nbval_starts_its_kernels_over_unix_sockets():
    import nbval.kernel

    assert nbval.kernel.KernelManager is execute.IpcKernelManager  # set by conftest.py
