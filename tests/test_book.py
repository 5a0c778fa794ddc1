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
    # the article's 24 references, the article itself, and the works Part II cites
    assert len(titles) >= 25
    assert page.count('role="doc-biblioentry"') == len(titles)
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

# Chapters with a published ImageNet network of their mechanism, and those without one.
PRETRAINED_CHAPTERS = [p.stem for p in NOTEBOOKS if "trained_attention(" in p.read_text()]
UNPUBLISHED_CHAPTERS = [p.stem for p in NOTEBOOKS if "no_published_weights(" in p.read_text()]


TRAINED_HEADING = "## Attention in a network trained on ImageNet"


def outputs_of(path, heading: str = TRAINED_HEADING) -> tuple[str, int, list]:
    """(everything shown as text, number of figures, errors) of the code cells of the section
    that starts with the markdown heading ``heading`` (up to the next ``## `` heading)."""
    import json

    nb = json.loads(path.read_text())
    cells, inside = [], False
    for cell in nb["cells"]:
        headings = [line for line in "".join(cell["source"]).splitlines() if line.startswith("## ")]
        if cell["cell_type"] == "markdown" and headings:
            inside = headings[-1].startswith(heading)
        elif inside and cell["cell_type"] == "code":
            cells.append(cell)
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
        text, figures, errors = outputs_of(executed / f"{stem}.ipynb")
        assert not errors
        if online:
            assert "Loaded " in text and figures >= 2, stem
        else:
            assert "not available here, so this section shows nothing" in text, stem
            assert figures == 0, f"{stem}: offline, the trained-attention section must draw nothing"
    assert {"03_cbam", "04_bam", "05_gather_excite"} <= set(UNPUBLISHED_CHAPTERS)
    for stem in UNPUBLISHED_CHAPTERS:
        text, figures, errors = outputs_of(executed / f"{stem}.ipynb")
        assert "No published ImageNet weights" in text and figures == 0 and not errors, stem




# ----------------------------------------------------------------------------- what the prose claims

# A sentence that points the reader at something on the page ("the curve above", "the
# table below shows") makes a claim the page must keep: the thing must be there, in the
# same section, on the side the sentence says.
POINTER = re.compile(r"\b(?:the|these|this|each|both)\s+(?:\w+\s+){0,2}?"
                     r"(curves?|figures?|plots?|maps?|tables?|bars|panels?|heat maps?)\s+(above|below)\b", re.I)
# The caption of every small real-data experiment (attention_lib.toolkit.DigitsResult.table).
DIGITS_CAPTION = re.compile(r"^Trained here on", re.I)
CHANCE = 0.1  # ten digit classes


def chapter_pages(html):
    from bs4 import BeautifulSoup

    for path in NOTEBOOKS:
        page = html / "notebooks" / f"{path.stem}.html"
        yield path.stem, BeautifulSoup(page.read_text(), "html.parser")


def _shown(element) -> bool:
    """Drawn for the reader: not inside a cell whose source or output the book removes."""
    return not element.find_parent(class_=re.compile(r"\b(tag_remove-cell|tag_remove-output)\b"))


def test_prose_points_only_at_what_the_page_shows(built_book):
    """"The curve above" needs a figure above it in the same section; "the table below" a table below."""
    _, _, html = built_book
    problems = []
    for stem, soup in chapter_pages(html):
        for section in soup.select("section"):
            if section.find("section"):  # look at the innermost sections only
                continue
            elements = section.find_all(["p", "li", "img", "table"])
            for index, element in enumerate(elements):
                if element.name not in ("p", "li") or element.find_parent(["table", "pre"]):
                    continue
                for match in POINTER.finditer(element.get_text(" ")):
                    what, side = match.group(1).lower(), match.group(2).lower()
                    wanted = ("table",) if what.startswith("table") else ("img", "table") if what == "bars" else ("img",)
                    others = elements[:index] if side == "above" else elements[index + 1:]
                    if not any(other.name in wanted and _shown(other) for other in others):
                        problems.append(f"{stem}: '{match.group(0)}' but no {wanted[0]} {side} it in section "
                                        f"'{section.get('id')}'")
    assert problems == [], "\n".join(problems)


def test_small_real_experiments_report_real_accuracy(built_book):
    """Every digits experiment the book shows was trained in full: accuracy well above chance."""
    _, _, html = built_book
    found, problems = 0, []
    for stem, soup in chapter_pages(html):
        for caption in soup.find_all("caption"):
            if not DIGITS_CAPTION.match(caption.get_text(strip=True)):
                continue
            table = caption.find_parent("table")
            headers = [th.get_text(strip=True) for th in table.select("thead th")]
            column = headers.index("held-out accuracy")
            for row in table.select("tbody tr"):
                cells = [cell.get_text(strip=True) for cell in row.find_all(["th", "td"])]
                found += 1
                if float(cells[column]) < 3 * CHANCE:
                    problems.append(f"{stem}: {cells[0]} reaches only {cells[column]} (chance {CHANCE})")
    assert found >= 6, f"only {found} digits models found in the book"
    assert problems == [], "\n".join(problems)
