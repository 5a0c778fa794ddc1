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
    second = notebook(tmp_path / "b.ipynb", "import os\nprint(os.getcwd())")
    cache_dir, executed = tmp_path / "cache", tmp_path / "executed"
    assert execute.execute_all([first, second], cache_dir, executed, jobs=2) == []
    run = nbformat.read(str(executed / "a.ipynb"), as_version=4)
    assert run.cells[1].outputs[0]["text"] == "42\n" and run.cells[2].outputs[0]["data"]["text/plain"] == "42"
    assert nbformat.read(str(executed / "b.ipynb"), as_version=4).cells[0].outputs[0]["text"].strip() == str(tmp_path)
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
