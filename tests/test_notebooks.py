"""Notebook conventions, and a papermill run with injected parameters.

nbval itself runs every notebook through pytest's `--nbval-lax` option (see
pyproject.toml); this file checks what nbval cannot.
"""

import json
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

from conftest import NOTEBOOKS, ROOT
from attention_lib.execute import AsyncIpcKernelManager
from attention_lib.mechanisms import MECHANISMS

COLAB_FIRST_LINE = "# Colab: install attention_lib from the repository when it is missing"


def load(path):
    return nbformat.read(path, as_version=4)


def test_there_are_chapters():
    names = [p.name for p in NOTEBOOKS]
    for chapter in ("00_introduction", "01_squeeze_excitation", "02_efficient_channel_attention", "03_cbam",
                    "04_bam", "05_gather_excite", "06_selective_kernel", "07_comparison", "08_training",
                    "09_non_local", "10_global_context", "11_coordinate_attention", "12_split_attention",
                    "13_simam", "14_triplet_attention"):
        assert f"{chapter}.ipynb" in names
    for mechanism in MECHANISMS:  # every mechanism is derived in a chapter of the book
        assert f"{mechanism.chapter}.ipynb" in names, mechanism.name


# The chapter that derives each mechanism create_model can place, and that mechanism's name.
MECHANISM_CHAPTERS = {m.chapter: m.name for m in MECHANISMS if m.placement is not None}


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
    # Plumbing stays off the reader's page: folded behind a toggle.
    assert "hide-cell" in tagged[0].metadata["tags"], f"{path.name}: fold the parameters cell (hide-cell)"


def parameters_and_check(path) -> tuple[str, str | None]:
    """The source of a chapter's parameters cell and of the cell that checks them (if any)."""
    cells = load(path).cells
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    check = next((c.source for c in cells[index + 1:]
                  if c.cell_type == "code" and "check_parameters(" in c.source), None)
    return cells[index].source, check


CHAPTERS = [p for p in NOTEBOOKS if p.stem[:2] != "00"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_defect6_every_chapter_checks_its_parameters_before_anything_runs(path):
    """A bad value of any parameter stops the chapter at once with a message naming it (notebook
    01 with train_epochs=-3 used to fail with an IndexError deep in a cell). The parameters
    cell and the check cell are run here as they are in the notebook, in order."""
    from attention_lib.toolkit import ParameterError
    from attention_lib.train import ConfigError

    params, check = parameters_and_check(path)
    namespace: dict = {}
    exec(params, namespace)
    if check is None:  # the training chapter checks its parameters through TrainConfig
        assert path.stem == "08_training"
        return
    exec(check, dict(namespace))  # the defaults pass
    bad = {"seed": -1, "photo": "lena", "train_epochs": -3, "run_epochs": 0, "run_arch": "resnet19",
           "pretrained_weights": "yes", "image_size": 0}
    tried = [name for name in bad if name in namespace]
    assert tried, f"{path.name}: no common parameter to try"
    for name in tried:
        with pytest.raises((ParameterError, ConfigError), match=name.removeprefix("run_")):
            exec(check, {**namespace, name: bad[name]})


@pytest.mark.parametrize("path", [p for p in CHAPTERS if p.stem in MECHANISM_CHAPTERS], ids=lambda p: p.name)
def test_run_defaults_are_written_once_in_the_library(path):
    """The mini-ImageNet run's settings default to None: TrainConfig holds the one copy."""
    params, _ = parameters_and_check(path)
    for line in params.splitlines():
        if line.startswith("run_") and not line.startswith(("run_training", "run_arch")):
            assert line.split("=", 1)[1].split("#")[0].strip() == "None", f"{path.name}: {line}"
    assert "20 epochs" not in params


def test_no_chapter_copies_the_shared_machinery():
    """FLOP counting, timing loops, the digits data and training loop, checkpoint parsing and
    the two sections every chapter has are toolkit calls, never code in a notebook."""
    for path in NOTEBOOKS:
        text = path.read_text()
        for marker in ("FlopCounterMode", "perf_counter", "sklearn.datasets", "checkpoint.pt", "torch.optim.",
                       "should_train(", "load_trained(", "ipywidgets"):
            assert marker not in text, f"{path.name} contains {marker!r}: use attention_lib.toolkit"


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


def section_of(stem: str, ids: list[str], path) -> None:
    """The chapter's parameters cell and the cells with the given ids, as a notebook of their own."""
    nb = load(ROOT / "notebooks" / f"{stem}.ipynb")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    chosen = [c for c in nb.cells if c.get("id") in ids]
    assert len(chosen) == len(ids), f"{stem}: cells {ids} not all found"
    nb.cells = params + chosen
    nbformat.write(nb, str(path))


def test_papermill_injects_parameters_into_a_chapter(tmp_path):
    """papermill puts Colab users' and CI's values after the parameters cell, and the chapter
    reads them (its parameters cell and its check cell, as the notebook has them)."""
    source, output = tmp_path / "section.ipynb", tmp_path / "out.ipynb"
    section_of("01_squeeze_excitation", ["01-004"], source)
    nb = nbformat.read(str(source), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('print(f"smoke={smoke}, seed={seed}, photo={photo!r}, '
                                              'train_epochs={train_epochs}, run_epochs={run_epochs}")'))
    nbformat.write(nb, str(source))
    papermill.execute_notebook(str(source), str(output), kernel_name="python3", cwd=str(tmp_path),
                               progress_bar=False, kernel_manager_class=AsyncIpcKernelManager,
                               parameters={"seed": 3, "train_epochs": 2, "photo": "astronaut", "run_epochs": 5})
    executed = json.loads(output.read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    printed = "".join("".join(o.get("text", "")) for c in executed["cells"] if c["cell_type"] == "code"
                      for o in c["outputs"])
    # smoke comes from ATTENTION_LIB_SMOKE=1 (conftest); the rest from the injection.
    assert "smoke=True, seed=3, photo='astronaut', train_epochs=2, run_epochs=5" in printed


def test_defect4_the_training_notebook_names_every_bad_parameter(tmp_path):
    """papermill notebooks/08_training.ipynb out.ipynb -p epochs -3 -p arch resnet19 -p batch_size 0
    finished with exit code 0 in smoke mode; now it stops with a message naming all three."""
    import subprocess

    result = subprocess.run([str(Path(sys.executable).parent / "papermill"), "notebooks/08_training.ipynb",
                             str(tmp_path / "out.ipynb"), "-p", "epochs", "-3", "-p", "arch", "resnet19",
                             "-p", "batch_size", "0"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    message = result.stderr + result.stdout
    for expected in ("arch must be one of", "got 'resnet19'", "epochs must be a positive int, got -3",
                     "batch_size must be a positive int, got 0"):
        assert expected in message


def test_errata_page_names_tests_that_exist():
    """Every test the errata appendix cites must exist, so the page cannot drift."""
    import re

    page = (ROOT / "book" / "errata.md").read_text()
    cited = re.findall(r"`(tests/test_\w+\.py)::(test_\w+)`", page)
    assert len(cited) >= 18
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, flags=re.M), f"{path}::{name} is cited in book/errata.md but missing"


# ----------------------------------------------------------------------------- trained attention

PRETRAINED_CHAPTERS = [p.stem for p in NOTEBOOKS if "trained_attention(" in p.read_text()]
TRAINED_HEADING = "## Attention in a network trained on ImageNet"


def section_code_cells(cells, heading: str) -> list:
    """The code cells of the section that starts with the markdown heading ``heading``."""
    found, inside = [], False
    for cell in cells:
        headings = [line for line in cell.source.splitlines() if line.startswith("## ")]
        if cell.cell_type == "markdown" and headings:
            inside = headings[-1].startswith(heading)
        elif inside and cell.cell_type == "code":
            found.append(cell)
    return found


def run_section(stem: str, heading: str, overrides: dict, monkeypatch) -> tuple[str, int]:
    """Run a chapter's parameters cell, ``overrides`` (as papermill would inject them) and the
    code cells of its section ``heading``, in this process, as the notebook runs them: the
    last expression of a cell is displayed. Returns (everything shown as text, figures drawn).

    The real cells run, without a kernel's start-up and imports."""
    import ast
    import contextlib
    import io

    import matplotlib.pyplot as plt

    from attention_lib.toolkit import sections

    nb = load(ROOT / "notebooks" / f"{stem}.ipynb")
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    section = section_code_cells(nb.cells, heading)
    assert section, f"{stem} has no section {heading!r} with code"
    shown: list = []
    figures = []

    def show(obj, *args, **kwargs) -> None:
        shown.append(obj._repr_html_() if hasattr(obj, "_repr_html_") else repr(obj))

    def plt_show(*args, **kwargs) -> None:
        figures.extend(plt.get_fignums())
        plt.close("all")

    monkeypatch.setattr(sections, "display", show)
    monkeypatch.setattr(plt, "show", plt_show)
    namespace: dict = {"__name__": "__main__"}
    exec("import torch\nfrom torch import nn", namespace)  # what every chapter imported before the section
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(params.source, namespace)
        namespace.update(overrides)
        for cell in section:
            tree = ast.parse(cell.source)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, cell.get("id"), "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), cell.get("id"), "eval"), namespace)
                if value is not None:
                    show(value)
    plt_show()
    return printed.getvalue() + "".join(shown), len(figures)


@pytest.fixture(scope="module")
def small_imagenette(tmp_path_factory):
    from attention_lib.data import make_image_tree

    return make_image_tree(tmp_path_factory.mktemp("imagenette"), "imagenette", classes=3, per_class=2, size=40)


@pytest.mark.parametrize("stem", PRETRAINED_CHAPTERS)
def test_trained_attention_section_runs_end_to_end_with_random_weights(stem, small_imagenette, monkeypatch):
    """Offline, the section's code path runs on the published architecture with random
    weights and a generated Imagenette tree; every output says it is not a result."""
    text, figures = run_section(stem, TRAINED_HEADING, {"pretrained_weights": "random", "imagenette_root": str(small_imagenette),
                                            "imagenette_download": False}, monkeypatch)
    assert "RANDOM WEIGHTS" in text and "not a result" in text
    assert "top-1 on Imagenette's validation split" in text and "6 images" in text
    assert figures >= 1  # the attention on a photo (per-class heat maps only for channel weights)
    assert text.count("not a result") >= 3  # the loader's banner, the top-5 table, the top-1 line


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem in MECHANISM_CHAPTERS], ids=lambda p: p.name)
def test_every_chapter_has_a_mini_imagenet_run(path):
    """The chapter trains its own attention on Imagenette with one toolkit call, fed by its
    run_* parameters (a real run by default; TrainConfig holds the defaults)."""
    nb = load(path)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", [])).source
    for line in ("run_training = None", "run_dataset = None", "run_epochs = None"):
        assert line in params, f"{path.name}: parameters cell lacks {line!r}"
    run = "".join(c.source for c in nb.cells if c.cell_type == "code" and "mini_imagenet_section(" in c.source)
    attention = MECHANISM_CHAPTERS[path.stem]
    assert f'mini_imagenet_section("{attention}"' in run and "run_options(globals())" in run
    assert "training=run_training" in run and "smoke=smoke" in run
