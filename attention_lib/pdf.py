# Hand-written support module (not generated from a notebook).
"""The whole book as one PDF, printed from the built HTML book by headless Chromium.

``make pdf`` (after ``make book``) runs ``python -m attention_lib.pdf _build/html``: every
page of ``_toc.yml`` (the front page, the chapters, the appendix and the bibliography), in
reading order, is served from the built book on a local web server, opened in Chromium
(driven by Playwright, the browser tests' tool), printed once MathJax has typeset its
equations and its figures have loaded, and the pages are joined into one PDF with a
bookmark per page (pypdf). Nothing leaves the machine: MathJax comes from the built book
(``book/_ext/book_assets.py`` copies it there) or, for a book built by an older
configuration that asks a CDN for it, from the PyPI package django-static-mathjax; any
other request to the internet (a comments widget, say) is refused.

Chromium is Debian's (``apt-get install chromium``), or the binary that
``ATTENTION_LIB_CHROMIUM`` names; Playwright downloads no browser of its own.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "_build" / "pdf" / "attention-in-vision.pdf"
# MathJax 3 as Sphinx 7 asks jsDelivr for it, and as MathJax then asks for its extensions.
_MATHJAX_CDN = re.compile(r"^https://cdn\.jsdelivr\.net/npm/mathjax@3(?:\.[0-9.]+)?/es5/([^?#]+)")
_CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Wait until MathJax (if the page loads it) has typeset everything, and every image has
# loaded; then report what a reader of the PDF would miss.
_READY_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const images = [...document.images];
  for (const image of images) image.loading = 'eager';
  await Promise.all(images.map(image => image.complete ? null : new Promise(done => {
    image.addEventListener('load', done); image.addEventListener('error', done); setTimeout(done, 15000);
  })));
  await document.fonts.ready;
  return {
    title: (document.querySelector('article h1, main h1') || {}).textContent || document.title,
    math: document.querySelectorAll('.math, span.math, div.math').length,
    typeset: document.querySelectorAll('mjx-container').length,
    mathjax: !!(window.MathJax && MathJax.version),
    mathjax_errors: document.querySelectorAll('mjx-merror').length,
    broken_images: images.filter(image => !image.naturalWidth).map(image => image.getAttribute('src')),
  };
}"""

# Printed pages: no navigation or buttons, the article over the full width, code wrapped
# instead of cut at the margin. Folded cells stay folded, as on the page.
_PRINT_CSS = """
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-footer, .bd-footer-article,
.prev-next-area, .header-article, .bd-header-article, .skip-link, #pst-back-to-top,
details > summary, .toggle-button, .copybtn { display: none !important; }
.bd-main .bd-content .bd-article-container, .bd-page-width, .bd-container__inner,
.bd-article-container, .bd-article { max-width: 100% !important; width: 100% !important; }
pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }
/* A scrolling box is printed whole (Chromium cannot split it across pages): let code flow. */
pre, div.highlight, div.cell_input, div.cell_output, div.output { overflow: visible !important; max-height: none !important; }
/* pydata-sphinx-theme keeps a code block on one page (break-inside: avoid): a long cell then
   leaves an empty frame behind it. */
div.highlight, div[class*=highlight-], div.literal-block-wrapper { break-inside: auto !important; display: block !important; }
img { max-width: 100% !important; break-inside: avoid; }
div.math, figure, table { break-inside: avoid; }
"""


class PdfError(RuntimeError):
    """The PDF could not be made, and why (a missing tool names the package to install)."""


def find_chromium() -> str | None:
    """Debian's Chromium, a Chromium/Chrome on PATH, or ATTENTION_LIB_CHROMIUM; None when there is none."""
    candidates = [os.environ.get("ATTENTION_LIB_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def missing_tools() -> list[str]:
    """What `make pdf` lacks here, one line each naming what to install (empty: nothing)."""
    missing = []
    if find_chromium() is None:
        missing.append("Chromium: as root, `apt-get install -y chromium` (Debian's package), or set "
                       "ATTENTION_LIB_CHROMIUM to a Chromium/Chrome binary")
    for module, package in (("playwright", "playwright"), ("pypdf", "pypdf")):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {package}: pip install -e '.[test]' (make venv)")
    return missing


def toc_pages(toc: Path) -> list[str]:
    """The file of every entry of a Jupyter Book 1 _toc.yml, the root first, in reading order."""
    import yaml

    data = yaml.safe_load(toc.read_text())

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                yield entry["file"]
            yield from walk(entry.get("sections"))
            yield from walk(entry.get("chapters"))

    return [data["root"], *walk(data.get("chapters")),
            *(name for part in data.get("parts", []) for name in walk(part.get("chapters")))]


def _mathjax_es5() -> Path | None:
    try:
        import mathjax  # the PyPI package django-static-mathjax
    except ImportError:
        return None
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    return es5 if (es5 / "tex-mml-chtml.js").is_file() else None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def build_pdf(html: Path, output: Path = DEFAULT_OUTPUT, toc: Path = ROOT / "_toc.yml",
              chromium: str | None = None, log=print) -> dict:
    """Print every page of ``toc`` from the built book ``html`` into one PDF at ``output``.

    Returns {"output", "pages" (PDF pages), "chapters": [{"file", "title", "first_page", "pages",
    "equations", "images"}]}. Raises PdfError when a tool is missing, a page is not in the build,
    or MathJax did not typeset a page's equations (a PDF with raw TeX is no PDF of the book)."""
    missing = missing_tools() if chromium is None else []
    if missing:
        raise PdfError("make pdf needs " + "; ".join(missing))
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader, PdfWriter

    html = Path(html).resolve()
    files = toc_pages(toc)
    absent = [name for name in files if not (html / f"{name}.html").is_file()]
    if absent:
        raise PdfError(f"{html} is not a complete build of the book (run `make book` first): "
                       f"no {', '.join(name + '.html' for name in absent)}")
    chromium = chromium or find_chromium()
    mathjax = _mathjax_es5()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    chapters, refused = [], []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(base):
            return request_route.continue_()
        match = _MATHJAX_CDN.match(url)
        if match and mathjax is not None and (mathjax / match.group(1)).is_file():
            return request_route.fulfill(path=str(mathjax / match.group(1)))
        refused.append(url)
        return request_route.abort()

    writer = PdfWriter()
    try:
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as scratch:
            browser = playwright.chromium.launch(executable_path=chromium, args=_CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1100, "height": 1400})
            context.route("**/*", route)
            page = context.new_page()
            for number, name in enumerate(files):
                page.goto(base + f"{name}.html", wait_until="load", timeout=120_000)
                page.add_style_tag(content=_PRINT_CSS)
                state = page.evaluate(_READY_JS)
                if state["math"] and not state["typeset"]:
                    raise PdfError(f"{name}.html: MathJax typeset none of its {state['math']} equations "
                                   f"(MathJax loaded: {state['mathjax']}; refused requests: {refused[-3:]})")
                if state["mathjax_errors"]:
                    raise PdfError(f"{name}.html: MathJax reports {state['mathjax_errors']} TeX errors")
                if state["broken_images"]:
                    raise PdfError(f"{name}.html: images that did not load: {state['broken_images'][:5]}")
                page.emulate_media(media="print")
                part = Path(scratch) / f"{number:03d}.pdf"
                page.pdf(path=str(part), format="A4", print_background=True,
                         margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"})
                page.emulate_media(media="screen")
                title = " ".join(state["title"].replace("#", "").split())
                reader = PdfReader(str(part))
                first = len(writer.pages)
                writer.append(reader, outline_item=title)
                images = sum(len(p.images) for p in reader.pages)
                chapters.append({"file": name, "title": title, "first_page": first + 1, "pages": len(reader.pages),
                                 "equations": state["typeset"], "images": images})
                log(f"  {name}: {len(reader.pages)} pages, {state['typeset']} equations, {images} images")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    writer.add_metadata({"/Title": "Attention in Vision", "/Author": "The Attention in Vision authors"})
    writer.page_mode = "/UseOutlines"
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as stream:
        writer.write(stream)
    return {"output": str(output), "pages": len(writer.pages), "chapters": chapters}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attention_lib.pdf", description=__doc__.split("\n")[0])
    parser.add_argument("html", type=Path, nargs="?", default=ROOT / "_build" / "html",
                        help="the built HTML book (default: _build/html, what `make book` writes)")
    parser.add_argument("--output", "-o", type=Path, default=DEFAULT_OUTPUT, help="the PDF to write")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml", help="the table of contents (reading order)")
    args = parser.parse_args(argv)
    try:
        result = build_pdf(args.html, args.output, args.toc)
    except PdfError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {result['output']}: {result['pages']} pages, {len(result['chapters'])} parts of the book")
    (Path(args.output).with_suffix(".json")).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
