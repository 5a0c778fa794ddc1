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


# ----------------------------------------------------------------------------- trained attention

PRETRAINED_CHAPTERS = ["01_squeeze_excitation", "02_efficient_channel_attention", "06_selective_kernel"]


def section_notebook(stem: str, prefix: str, path) -> None:
    """The chapter's parameters cell and its cells whose ids start with ``prefix``, as a
    notebook of their own (the real cells, so the test runs what the book runs)."""
    nb = load(ROOT / "notebooks" / f"{stem}.ipynb")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    section = [c for c in nb.cells if c.get("id", "").startswith(f"{stem[:2]}-{prefix}")]
    assert section, f"{stem} has no cells with ids {stem[:2]}-{prefix}*"
    nb.cells = params + [nbformat.v4.new_code_cell("import torch")] + section
    nbformat.write(nb, str(path))


def outputs_of(path, prefix: str) -> tuple[str, int, list]:
    """(printed text, number of figures, errors) of the cells with ids starting ``prefix``."""
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("id", "").startswith(prefix)]
    outputs = [o for c in cells for o in c["outputs"]]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    text += "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, figures, [o for o in outputs if o.get("output_type") == "error"]


@pytest.fixture(scope="module")
def imagenette_tree(tmp_path_factory):
    from attention_lib.data import make_image_tree

    return make_image_tree(tmp_path_factory.mktemp("imagenette"), "imagenette", classes=3, per_class=2, size=40)


@pytest.mark.parametrize("stem", PRETRAINED_CHAPTERS)
def test_trained_attention_section_runs_end_to_end_with_random_weights(stem, tmp_path, imagenette_tree, monkeypatch):
    """Offline, the section's code path runs on the published architecture with random
    weights and a generated Imagenette tree; every output says it is not a result."""
    monkeypatch.delenv("MPLBACKEND", raising=False)  # under Agg, plt.show() would draw nothing
    source, output = tmp_path / "section.ipynb", tmp_path / "out.ipynb"
    section_notebook(stem, "t", source)
    papermill.execute_notebook(
        str(source), str(output), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        parameters={"pretrained_weights": "random", "imagenette_root": str(imagenette_tree),
                    "imagenette_download": False})
    text, figures, errors = outputs_of(output, f"{stem[:2]}-t")
    assert not errors
    assert "RANDOM WEIGHTS" in text and "not a result" in text
    assert "top-1 on Imagenette's validation split" in text and "6 images" in text
    assert figures >= 2
    if stem != "06_selective_kernel":
        assert text.count("not a result") >= 3  # the loader's banner, the top-5 table, the top-1 line


def test_trained_attention_sections_of_the_book_build(built_book):
    """In the book build the sections either show real weights (online) or say why not."""
    from attention_lib.pretrained import _host_reachable

    _, _, html = built_book
    executed = html.parent / "jupyter_execute" / "notebooks"
    if not executed.is_dir():
        pytest.skip(f"no executed notebooks next to {html}")
    online = _host_reachable("huggingface.co")
    for stem in PRETRAINED_CHAPTERS:
        text, figures, errors = outputs_of(executed / f"{stem}.ipynb", f"{stem[:2]}-t")
        assert not errors
        if online:
            assert "Loaded " in text and figures >= 2, stem
        else:
            assert "not available here, so this section shows nothing" in text, stem
            assert figures == 0, f"{stem}: offline, the trained-attention section must draw nothing"
    for stem, attention in [("03_cbam", "cbam"), ("04_bam", "bam"), ("05_gather_excite", "ge")]:
        text, figures, errors = outputs_of(executed / f"{stem}.ipynb", f"{stem[:2]}-t")
        assert "ImageNet weights" in text and figures == 0 and not errors, stem


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem[:2] in {"01", "02", "03", "04", "05", "06"}],
                         ids=lambda p: p.name)
def test_every_chapter_has_a_mini_imagenet_run(path):
    """The parameters cell describes a real Imagenette run and the chapter trains it with
    attention_lib.train, with its own attention."""
    nb = load(path)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", [])).source
    for line in ('run_dataset = "imagenette"', "run_training = None", "run_epochs = 20"):
        assert line in params, f"{path.name}: parameters cell lacks {line!r}"
    run = "".join(c.source for c in nb.cells if c.get("id", "").startswith(f"{path.stem[:2]}-r"))
    attention = {"01": "se", "02": "eca", "03": "cbam", "04": "bam", "05": "ge", "06": "sk"}[path.stem[:2]]
    assert f'attention="{attention}"' in run and "should_train(run_config, run_training)" in run
    assert "load_checkpoint_model(run_config.output_dir)" in run
