"""The book builds with no Sphinx warnings, and the built pages have what readers need.

The build itself is the session fixture `built_book` (tests/conftest.py), shared with the
browser tests of tests/test_browser.py. Colab: the install cell itself (first, identical
everywhere) is checked in tests/test_notebooks.py; here, the links that lead to it.
"""

import os
import re

import nbformat
import pytest
import yaml

from conftest import NOTEBOOKS, PREBUILT_ENV, ROOT

COLAB = "https://colab.research.google.com/github/attention-in-vision/attention-in-vision/blob/main/notebooks/{name}"


def test_book_builds_without_warnings(built_book):
    returncode, log, html = built_book
    if os.environ.get(PREBUILT_ENV):
        pytest.skip(f"{PREBUILT_ENV} is set: the book was not built by this session")
    # Sphinx reports "path:line: WARNING: message" (or "ERROR:"). ipykernel's own log line
    # "[IPKernelApp] WARNING | Kernel is running over TCP ..." is about the local kernel
    # transport, not the book, and is not a Sphinx warning.
    warnings = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL):", line)]
    assert returncode == 0, log[-3000:]
    assert warnings == []
    assert "build succeeded" in log


def test_every_chapter_page_is_built_with_colab_button(built_book):
    """The launch menu of every chapter page opens that chapter's notebook in Colab."""
    _, _, html = built_book
    for path in NOTEBOOKS:
        page = (html / "notebooks" / f"{path.stem}.html").read_text()
        launch = re.findall(r'<a href="(https://colab\.research\.google\.com/[^"]*)"[^>]*\s+title="Launch on Colab"', page)
        assert launch == [COLAB.format(name=path.name)], f"Colab launch button of {path.name}: {launch}"


def test_colab_urls_match_the_book_configuration():
    """The Colab URLs name the repository and branch that _config.yml and the install cell use."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository = config["repository"]["url"].removeprefix("https://github.com/")
    assert COLAB.startswith(f"https://colab.research.google.com/github/{repository}/blob/{config['repository']['branch']}/")
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    for path in NOTEBOOKS:
        install = nbformat.read(path, as_version=4).cells[0]
        assert f"git+https://github.com/{repository}" in install.source, path.name
        # Readers of the book do not see the install cell; Colab users run it.
        assert "remove-cell" in install.metadata.get("tags", []), f"{path.name}: tag the install cell remove-cell"


def test_readme_has_a_colab_badge_for_every_notebook():
    readme = (ROOT / "README.md").read_text()
    badges = re.findall(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\(([^)]+)\)",
                        readme)
    assert set(badges) == {COLAB.format(name=path.name) for path in NOTEBOOKS}


def test_chapter_figures_reach_the_pages(built_book):
    """Every top-level `plt.show()` of a chapter puts a figure on its page."""
    _, _, html = built_book
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        shown = sum(len(re.findall(r"^plt\.show\(\)", cell.source, flags=re.M))
                    for cell in notebook.cells if cell.cell_type == "code")
        page = (html / "notebooks" / f"{path.stem}.html").read_text()
        figures = len(re.findall(r'<img[^>]+src="\.\./_images/', page))
        assert figures >= shown, f"{path.name}: {shown} figures shown, {figures} on the page"


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower())


def test_bibliography_lists_every_reference(built_book):
    _, _, html = built_book
    page = (html / "book" / "bibliography.html").read_text()
    bib = (ROOT / "book" / "references.bib").read_text()
    titles = re.findall(r"^\s*title\s*=\s*\{(.+)\},?$", bib, flags=re.M)
    assert len(titles) == 25  # the article's 24 references and the article itself
    assert page.count('role="doc-biblioentry"') == 25
    text = normalise(re.sub(r"<[^>]+>", " ", page))
    for title in titles:
        assert normalise(title) in text, title


def test_citations_resolve_to_bibliography_entries(built_book):
    _, _, html = built_book
    anchors = set(re.findall(r'id="(id\d+)" role="doc-biblioentry"', (html / "book" / "bibliography.html").read_text()))
    for path in NOTEBOOKS:
        page = (html / "notebooks" / f"{path.stem}.html").read_text()
        cited = re.findall(r'href="../book/bibliography.html#(id\d+)"', page)
        assert cited, f"{path.name} cites nothing"
        assert set(cited) <= anchors


def test_equations_and_macros_reach_the_page(built_book):
    _, _, html = built_book
    page = (html / "notebooks" / "01_squeeze_excitation.html").read_text()
    assert r"\tag{2.1}" in page and r"\tag{2.3}" in page
    assert "mathjax" in page.lower()
    assert "reals" in page  # the macro is defined in the page's MathJax configuration


# ----------------------------------------------------------------------------- what the chapters executed

PRETRAINED_CHAPTERS = ["01_squeeze_excitation", "02_efficient_channel_attention", "06_selective_kernel"]


def outputs_of(path, prefix: str) -> tuple[str, int, list]:
    """(everything shown as text, number of figures, errors) of the cells whose ids start ``prefix``."""
    import json

    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("id", "").startswith(prefix)]
    outputs = [o for c in cells for o in c["outputs"]]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    for mime in ("text/markdown", "text/html", "text/plain"):
        text += "".join("".join(o.get("data", {}).get(mime, "")) for o in outputs)
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, figures, [o for o in outputs if o.get("output_type") == "error"]


def test_each_notebook_is_executed_once_per_session(built_book, executed_notebooks):
    """The build renders what nbval executed: it executes no notebook that nbval ran."""
    _, log, _ = built_book
    if os.environ.get(PREBUILT_ENV):
        pytest.skip(f"{PREBUILT_ENV} is set: the book was not built by this session")
    reused = executed_notebooks()
    for path in reused:
        assert f"{path}: Using cached notebook" in log, f"{path.name} was not taken from nbval's execution"
        assert f"{path}: Executing notebook" not in log, f"{path.name} was executed twice"


def test_trained_attention_sections_of_the_book_build(built_book):
    """In the book build the sections either show real weights (online) or say why not."""
    from attention_lib.weights import host_reachable

    _, _, html = built_book
    executed = html.parent / "executed"
    if not executed.is_dir():
        pytest.skip(f"no executed notebooks next to {html}")
    online = host_reachable("huggingface.co")
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
        assert "No published ImageNet weights" in text and figures == 0 and not errors, stem


