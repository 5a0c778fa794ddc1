"""The book builds with no Sphinx warnings, and the built pages have what readers need."""

import os
import re
import subprocess

import pytest

from conftest import NOTEBOOKS, ROOT


@pytest.fixture(scope="module")
def built_book(tmp_path_factory, venv_bin):
    out = tmp_path_factory.mktemp("book")
    env = dict(os.environ, ATTENTION_LIB_SMOKE="1")
    result = subprocess.run(
        [str(venv_bin / "jupyter-book"), "build", str(ROOT), "--path-output", str(out),
         "--warningiserror", "--keep-going"],
        capture_output=True, text=True, env=env, timeout=1200,
    )
    log = result.stdout + result.stderr
    return result.returncode, log, out / "_build" / "html"


def test_book_builds_without_warnings(built_book):
    returncode, log, html = built_book
    # Sphinx reports "path:line: WARNING: message" (or "ERROR:"). ipykernel's own log line
    # "[IPKernelApp] WARNING | Kernel is running over TCP ..." is about the local kernel
    # transport, not the book, and is not a Sphinx warning.
    warnings = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL):", line)]
    assert returncode == 0, log[-3000:]
    assert warnings == []
    assert "build succeeded" in log


def test_every_chapter_page_is_built_with_colab_button(built_book):
    _, _, html = built_book
    for path in NOTEBOOKS:
        page = (html / "notebooks" / f"{path.stem}.html").read_text()
        colab = ("https://colab.research.google.com/github/attention-in-vision/attention-in-vision/"
                 f"blob/main/notebooks/{path.name}")
        assert colab in page, f"no Colab launch button for {path.name}"


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
