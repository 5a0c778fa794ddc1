"""`make pdf`: the book as one PDF, printed by headless Chromium (attention_lib/pdf.py).

The printing test reads the session's one book build (`built_book`, tests/conftest.py) and,
to stay cheap, prints three of its pages (the front page, the Squeeze-and-Excitation
chapter and the bibliography) through the same code that `make pdf` runs over every page;
the PDF must hold their typeset equations (the label of equation (2.1) next to its sum
sign, no TeX left), their figures and the bibliography's entries, with a bookmark per page.
That `make pdf` prints every chapter is checked without a browser: it prints the pages of
_toc.yml, which lists every notebook and the bibliography. Without Chromium, Playwright or
pypdf the printing test is skipped with the package to install.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import yaml

from attention_lib import pdf
from conftest import ROOT

MISSING = pdf.missing_tools()


def test_make_pdf_prints_every_page_of_the_table_of_contents_in_reading_order():
    """Every chapter is in _toc.yml (tests/test_notebooks.py), so `make pdf` prints every chapter."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = [entry["file"] for part in toc["parts"] for entry in part["chapters"]]
    pages = pdf.toc_pages(ROOT / "_toc.yml")
    assert pages == [toc["root"], *listed]
    assert pages[-1] == "book/bibliography"


def test_a_missing_tool_is_named_with_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(pdf, "find_chromium", lambda: None)
    with pytest.raises(pdf.PdfError, match=r"apt-get install -y chromium"):
        pdf.build_pdf(tmp_path, tmp_path / "book.pdf")


def test_an_incomplete_build_is_refused(tmp_path):
    if MISSING:
        pytest.skip("make pdf needs " + "; ".join(MISSING))
    (tmp_path / "index.html").write_text("<html></html>")
    with pytest.raises(pdf.PdfError, match=r"not a complete build of the book .*make book.*notebooks/01_squeeze"):
        pdf.build_pdf(tmp_path, tmp_path / "book.pdf")


class _Figures(HTMLParser):
    """The figures of a built page: images of the book's own _images/ folder."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img" and "/_images/" in (dict(attrs).get("src") or ""):
            self.count += 1


@pytest.mark.skipif(bool(MISSING), reason="make pdf needs " + "; ".join(MISSING))
def test_the_pdf_holds_typeset_equations_figures_and_the_bibliography(built_book, tmp_path):
    from pypdf import PdfReader

    returncode, log, html = built_book
    assert returncode == 0 and (html / "index.html").is_file(), "the book did not build:\n" + log[-3000:]
    chosen = ["notebooks/01_squeeze_excitation", "book/bibliography"]
    root = yaml.safe_load((ROOT / "_toc.yml").read_text())["root"]
    toc = tmp_path / "_toc.yml"
    toc.write_text(yaml.safe_dump({"format": "jb-book", "root": root, "chapters": [{"file": f} for f in chosen]}))

    result = pdf.build_pdf(html, tmp_path / "book.pdf", toc, log=lambda line: None)

    reader = PdfReader(result["output"])
    chapters = {c["file"]: c for c in result["chapters"]}
    assert list(chapters) == [root, *chosen]
    assert len(reader.pages) == result["pages"] == sum(c["pages"] for c in result["chapters"])
    # One bookmark per page of the book, at its first page, titled as the page.
    outline = [(item.title, reader.get_destination_page_number(item) + 1) for item in reader.outline]
    assert outline == [(c["title"], c["first_page"]) for c in result["chapters"]]
    assert outline[1][0].startswith("Squeeze-and-Excitation") and outline[2][0] == "Bibliography"

    def text(name):
        chapter = chapters[name]
        first = chapter["first_page"] - 1
        return "\n".join(reader.pages[i].extract_text() for i in range(first, first + chapter["pages"]))

    se = text("notebooks/01_squeeze_excitation")
    # Equation (2.1), typeset: MathJax's sum signs on the line that ends with its label.
    assert re.search(r"∑[^\n]*\(2\.1\)", se), "equation (2.1) is not typeset in the PDF"
    assert chapters["notebooks/01_squeeze_excitation"]["equations"] > 10
    assert not re.search(r"\\(tag|frac|sum|begin)\b|\$\$", se), "raw TeX in the PDF"
    # Every figure of the chapter's page is an image of the PDF.
    figures = _Figures()
    figures.feed((html / "notebooks/01_squeeze_excitation.html").read_text())
    assert figures.count >= 1
    assert chapters["notebooks/01_squeeze_excitation"]["images"] >= figures.count
    assert "squeeze-and-excitation networks" in text("book/bibliography").lower()  # hu2018squeeze
