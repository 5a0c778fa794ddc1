"""Notebook conventions, and a papermill run with injected parameters.

nbval itself runs every notebook through pytest's `--nbval-lax` option (see
pyproject.toml); this file checks what nbval cannot.
"""

import json

import nbformat
import papermill
import pytest
import yaml

from conftest import NOTEBOOKS, ROOT

COLAB_FIRST_LINE = "# Colab: install attention_lib from the repository when it is missing"


def load(path):
    return nbformat.read(path, as_version=4)


def test_there_are_chapters():
    names = [p.name for p in NOTEBOOKS]
    for chapter in ("00_introduction", "01_squeeze_excitation", "02_efficient_channel_attention", "03_cbam",
                    "04_bam", "05_gather_excite", "06_selective_kernel"):
        assert f"{chapter}.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = load(path)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_with_smoke_switch(path):
    nb = load(path)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    source = tagged[0].source
    assert tagged[0].cell_type == "code"
    assert 'smoke = os.environ.get("ATTENTION_LIB_SMOKE", "0") == "1"' in source


def test_colab_install_cell_is_first_and_identical_everywhere():
    firsts = [load(p).cells[0] for p in NOTEBOOKS]
    assert all(c.cell_type == "code" for c in firsts)
    assert all(c.source.startswith(COLAB_FIRST_LINE) for c in firsts)
    assert len({c.source for c in firsts}) == 1
    assert "import attention_lib" in firsts[0].source


def test_every_notebook_is_in_the_table_of_contents():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [entry["file"] for part in toc["parts"] for entry in part["chapters"]]
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}" in files
    for name in files + [toc["root"]]:
        assert any((ROOT / f"{name}{ext}").exists() for ext in (".md", ".ipynb")), f"{name} is in _toc.yml but missing"


def test_papermill_run_with_injected_parameters(tmp_path):
    """Execute the SE chapter as Colab users and CI would, with parameters injected."""
    source = ROOT / "notebooks" / "01_squeeze_excitation.ipynb"
    output = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(source), str(output),
        parameters={"seed": 3, "train_epochs": 2, "photo": "astronaut"},
        kernel_name="python3", cwd=str(source.parent), progress_bar=False,
    )
    nb = json.loads(output.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    printed = "".join(
        "".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]
    )
    # smoke comes from ATTENTION_LIB_SMOKE=1 (conftest); the rest from the injection.
    assert "smoke=True, seed=3, photo='astronaut', reduction=4, train_epochs=2" in printed
    assert "held-out accuracy after 2 epochs" in printed
    assert "SE adds 2,530,992 parameters to ResNet-50" in printed
    assert not any(o.get("output_type") == "error" for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])


def test_errata_page_names_tests_that_exist():
    """Every test the errata appendix cites must exist, so the page cannot drift."""
    import re

    page = (ROOT / "book" / "errata.md").read_text()
    cited = re.findall(r"`(tests/test_\w+\.py)::(test_\w+)`", page)
    assert len(cited) >= 18
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, flags=re.M), f"{path}::{name} is cited in book/errata.md but missing"
