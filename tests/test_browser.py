"""The built book in a real browser: headless Chromium, driven by Playwright.

Every page of the table of contents (and the front page's redirect) is served from the
one book build of the session (`built_book`, tests/conftest.py) on a local web server and
opened in Chromium. For each page: the equations are typeset by MathJax (no raw TeX left,
no MathJax errors), every image loads, the browser console shows no error, every link
into the book (sections, equations, citations, other pages) reaches an existing file and
anchor, and a screenshot is saved under _build/screenshots/ (the top of the page at
1280x800, and the whole page). Every interactive figure (a slider over pre-rendered frames)
is moved, and must show another frame: the figures respond without a kernel.

Offline. The pages load nothing from outside the book: MathJax 3 is served from the built
book itself (book/_ext/book_assets.py copies the es5 build that the PyPI package
django-static-mathjax ships into _static/mathjax/), the interactive figures are
pre-rendered frames behind a slider (no ipywidgets: their Python callbacks cannot run in a
static page), and any request leaving localhost is refused and fails the test.

What a reader sees is checked too: displayed equations wider than the column scroll
instead of being cut, and show one number each; tables are HTML tables, not monospace text;
no smoke-run output is visible; every chapter opens with prose.

Chromium comes from Debian (`apt-get install chromium chromium-driver`, which .ci/run does
as root); Playwright drives it (no Playwright-downloaded browser). Without Chromium these
tests are skipped, with a message that says how to enable them.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from conftest import NOTEBOOKS, ROOT

SCREENSHOTS = ROOT / "_build" / "screenshots"
# The README's picture (book/images/chapter-screenshot.png; `make screenshot` refreshes it):
# this section of this page, at the top of a 1280x800 window.
README_VIEW = ("notebooks/01_squeeze_excitation.html", "the-three-steps")
VIEWPORT = {"width": 1280, "height": 800}
# Keep Chromium from calling Google's services at start-up (there is no network to reach).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Where the built book serves MathJax from (book/_ext/book_assets.py).
MATHJAX_LOCAL = "_static/mathjax/"
# Console errors that come from upstream packages and that no setting of ours can remove;
# each with the reason. Anything else in the console fails the test.
KNOWN_UPSTREAM_ERRORS: dict[str, str] = {}


def find_chromium() -> str | None:
    candidates = [os.environ.get("ATTENTION_LIB_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def find_mathjax() -> Path | None:
    """The es5 folder of the MathJax 3 that django-static-mathjax ships, if installed."""
    try:
        import mathjax  # the PyPI package django-static-mathjax
    except ImportError:
        return None
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    package = es5.parent / "package.json"
    if not (es5 / "tex-mml-chtml.js").is_file() or not json.loads(package.read_text())["version"].startswith("3."):
        return None
    return es5


try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

CHROMIUM = find_chromium()
MATHJAX_ES5 = find_mathjax()
pytestmark = [
    pytest.mark.skipif(sync_playwright is None or MATHJAX_ES5 is None,
                       reason="browser tests need Playwright and MathJax 3 from PyPI: pip install -e '.[test]'"),
    pytest.mark.skipif(CHROMIUM is None,
                       reason="browser tests need Chromium: as root, `apt-get install -y chromium chromium-driver` "
                              "(.ci/run does this), or set ATTENTION_LIB_CHROMIUM to a Chromium/Chrome binary"),
]


def toc_pages() -> list[str]:
    """The built page of every file in _toc.yml, root first, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                yield entry["file"]
            yield from walk(entry.get("sections"))
            yield from walk(entry.get("chapters"))

    files = [toc["root"], *walk(toc.get("chapters")), *(f for part in toc.get("parts", []) for f in walk(part["chapters"]))]
    return [f"{name}.html" for name in files]


PAGES = toc_pages()


@dataclass
class Visit:
    page: str
    error: str | None = None
    console_errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    mathjax_files: list[str] = field(default_factory=list)
    math: dict = field(default_factory=dict)
    raw_tex: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    bibliography_ids: set[str] = field(default_factory=set)
    sliders: list = field(default_factory=list)
    layout: dict = field(default_factory=dict)
    seconds: float = 0.0


MATH_JS = """async () => {
  const out = {version: null, containers: 0, math: 0, unrendered: [], errors: []};
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
    out.version = MathJax.version;
  }
  out.containers = document.querySelectorAll('mjx-container').length;
  const maths = document.querySelectorAll('.math');
  out.math = maths.length;
  for (const m of maths) if (!m.querySelector('mjx-container')) out.unrendered.push(m.textContent.slice(0, 100));
  for (const e of document.querySelectorAll('mjx-merror'))
    out.errors.push(e.getAttribute('data-mjx-error') || e.textContent.slice(0, 100));
  return out;
}"""

# Visible text outside code that still looks like TeX: MathJax did not typeset it.
RAW_TEX_JS = r"""() => {
  const pattern = /\$\$|\\(?:tag|begin|end|frac|mathbf|bold|sum|partial|sigma|delta|odot|left|right)\b|\\[()\[\]]|\$[^$\s][^$\n]{0,80}\$/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const found = [];
  while (walker.nextNode()) {
    const node = walker.currentNode, element = node.parentElement;
    if (!element || element.closest('pre, code, script, style, textarea, mjx-container')) continue;
    if (!element.checkVisibility()) continue;
    if (pattern.test(node.textContent)) found.push(node.textContent.trim().slice(0, 120));
  }
  return found;
}"""

IMAGES_JS = """async () => {
  const images = [...document.images];
  for (const image of images) image.loading = 'eager';
  await Promise.all(images.map(image => image.complete ? null : new Promise(done => {
    image.addEventListener('load', done); image.addEventListener('error', done); setTimeout(done, 10000);
  })));
  return images.map(image => ({
    src: (image.getAttribute('src') || '').slice(0, 100), alt: image.alt,
    width: image.naturalWidth, height: image.naturalHeight,
    shown: image.checkVisibility() && image.getBoundingClientRect().width > 0,
  }));
}"""

PAGE_JS = """() => ({
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id)
       .concat([...document.querySelectorAll('a[name]')].map(a => a.name)),
  bibliography: [...document.querySelectorAll('[role="doc-biblioentry"][id]')].map(e => e.id),
})"""

# Every interactive figure of the static page (attention_lib.toolkit.slider): which frame
# and label are shown, then the same after the slider is moved to its last position.
SLIDERS_JS = """async () => {
  const shown = box => {
    const image = [...box.querySelectorAll('img[data-frame]')].find(i => i.checkVisibility());
    return image ? {frame: image.dataset.frame, tail: image.src.slice(-64), width: image.naturalWidth} : null;
  };
  const found = [];
  for (const box of document.querySelectorAll('.attention-slider')) {
    const input = box.querySelector('input[type=range]');
    const before = {image: shown(box), label: box.querySelector('output').textContent};
    input.value = input.max;
    input.dispatchEvent(new Event('input', {bubbles: true}));
    await new Promise(done => setTimeout(done, 50));
    const after = {image: shown(box), label: box.querySelector('output').textContent};
    found.push({id: box.id, frames: box.querySelectorAll('img[data-frame]').length, max: input.max, before, after});
  }
  return found;
}"""


# What a reader sees: wide equations (do they scroll, or are they cut?), equation numbers,
# tables printed as text, smoke-run output, and the first visible block of the article.
LAYOUT_JS = r"""() => {
  const out = {cut: [], numbers: [], text_tables: [], smoke: [], tables: 0, first: null};
  for (const box of document.querySelectorAll('div.math')) {
    const math = box.querySelector('mjx-container');
    if (!math) continue;
    const inner = math.querySelector('mjx-math') || math;
    const wide = inner.scrollWidth > box.clientWidth + 1 || inner.getBoundingClientRect().width > box.clientWidth + 1;
    let scrolls = false;
    for (let e = inner.parentElement; e && e !== box.parentElement; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (['auto', 'scroll'].includes(style.overflowX) && e.scrollWidth >= inner.getBoundingClientRect().width - 1) scrolls = true;
    }
    const left = inner.getBoundingClientRect().left < box.getBoundingClientRect().left - 1 && box.scrollLeft === 0;
    if ((wide && !scrolls) || left) out.cut.push(box.textContent.slice(0, 80));
    const labels = (box.querySelector('.eqno') ? 1 : 0) + (math.querySelector('mjx-labels, mjx-mlabeledtr') ? 1 : 0);
    if (labels > 1) out.numbers.push(box.textContent.slice(0, 80));
  }
  const columns = line => line.trim().split(/\s{2,}/).length;
  for (const pre of document.querySelectorAll('.cell_output pre, .output pre')) {
    if (!pre.checkVisibility()) continue;
    const lines = pre.textContent.split('\n').filter(line => line.trim());
    if (lines.some(line => /^\s*\[/.test(line))) continue;  // a printed tensor or array, not a table
    const rows = lines.filter(line => columns(line) >= 3);
    if (rows.length >= 3 && rows.length >= lines.length / 2) out.text_tables.push(lines.slice(0, 3).join(' | ').slice(0, 160));
  }
  out.tables = document.querySelectorAll('article table, main table').length;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    // what a smoke run prints (attention_lib.train): its banner and its per-epoch tag
    if (/SMOKE RUN|\(smoke run - not a result\)/.test(node.textContent) && node.parentElement
        && node.parentElement.checkVisibility())
      out.smoke.push(node.textContent.trim().slice(0, 120));
  }
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const heading = article && article.querySelector('h1');
  if (heading) {
    const all = [...article.querySelectorAll('h1 ~ *, section > *')];
    const after = all.filter(e => (heading.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING)
                                  && e.tagName !== 'SECTION' && !/^H[1-6]$/.test(e.tagName) && e.checkVisibility()
                                  && e.getBoundingClientRect().height > 0);
    if (after.length) out.first = {tag: after[0].tagName, cls: after[0].className, text: after[0].textContent.trim().slice(0, 80)};
  }
  return out;
}"""


# Console errors that a setting of ours removes: the hint says which.
HINTS = {
    "THEBE_JS_URL": "Sphinx 7.4 writes sphinx-thebe's inline configuration twice (sphinx-doc/sphinx#13402): "
                    "book/_ext/book_assets.py writes identical inline scripts once; is it in _config.yml?",
    "Got invalid theme mode": "pydata-sphinx-theme finds no default colour mode on a first visit: add "
                              "`html_context: {default_mode: auto}` under `sphinx: config:` in _config.yml",
}


def known_upstream(message: str) -> bool:
    return any(known in message for known in KNOWN_UPSTREAM_ERRORS)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(built_book):
    """The built book on http://127.0.0.1:<free port>/."""
    returncode, log, html = built_book
    assert returncode == 0 and (html / "index.html").is_file(), "the book did not build:\n" + log[-3000:]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", html
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(site):
    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh, empty user-data-dir of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_context(browser, base: str):
    """A fresh browser context, as for a first-time reader (empty storage), offline.

    Returns (context, log): log["mathjax"] lists the MathJax files the page loaded from the
    book itself, log["refused"] every request that tried to leave localhost.
    """
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    log = {"refused": [], "mathjax": []}

    def route(route):
        url = route.request.url
        if url.startswith(base):
            if MATHJAX_LOCAL in url:
                log["mathjax"].append(url)
            return route.continue_()
        log["refused"].append(url)
        return route.abort()

    context.route("**/*", route)
    return context, log


def visit(browser, base: str, page_name: str) -> Visit:
    record = Visit(page_name)
    start = time.perf_counter()
    context, log = new_context(browser, base)
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and record.console_errors.append(
        f"{message.text} [{message.location.get('url', '')}]"))
    page.on("pageerror", lambda error: record.console_errors.append(f"uncaught: {error}"))
    page.on("response", lambda response: response.status >= 400 and record.console_errors.append(
        f"HTTP {response.status}: {response.url}"))
    try:
        page.goto(base + page_name, wait_until="load")
        if page.locator("script[src*='mathjax']").count():
            try:
                page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                       timeout=15000)
            except Exception:
                raise AssertionError(f"MathJax did not start; requests refused: {log['refused']}") from None
        record.math = page.evaluate(MATH_JS)
        record.raw_tex = page.evaluate(RAW_TEX_JS)
        record.images = page.evaluate(IMAGES_JS)
        found = page.evaluate(PAGE_JS)
        record.links, record.ids, record.bibliography_ids = found["links"], set(found["ids"]), set(found["bibliography"])
        shot = SCREENSHOTS / page_name.replace(".html", ".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        page.screenshot(path=str(shot.with_suffix(".full.png")), full_page=True)
        if page_name == README_VIEW[0]:
            page.evaluate(f"document.getElementById('{README_VIEW[1]}').scrollIntoView()")
            page.wait_for_timeout(300)  # the header settles after scrolling
            page.screenshot(path=str(SCREENSHOTS / "chapter-screenshot.png"))
        record.layout = page.evaluate(LAYOUT_JS)
        record.sliders = page.evaluate(SLIDERS_JS)  # after the screenshots: it moves the sliders
        page.wait_for_timeout(100)  # let late console messages arrive
    except Exception as error:  # recorded, so that one broken page does not hide the others
        record.error = f"{type(error).__name__}: {error}"
    finally:
        context.close()
    record.refused = list(log["refused"])
    record.mathjax_files = list(log["mathjax"])
    record.seconds = time.perf_counter() - start
    return record


@pytest.fixture(scope="module")
def visits(site, browser) -> dict[str, Visit]:
    base, _ = site
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # no stale screenshot may pass for a new one
    records = {name: visit(browser, base, name) for name in PAGES}
    # What the browser saw, beside the screenshots, for whoever reads the artefacts.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    report = {name: {"error": r.error, "seconds": round(r.seconds, 2), "console_errors": r.console_errors,
                     "refused": r.refused, "mathjax": r.math, "raw_tex": r.raw_tex, "images": r.images,
                     "layout": r.layout,
                     "links": len(r.links)} for name, r in records.items()}
    (SCREENSHOTS / "report.json").write_text(json.dumps(report, indent=1))
    return records


def opened(visits, page_name) -> Visit:
    record = visits[page_name]
    assert record.error is None, f"{page_name} could not be checked: {record.error}"
    return record


def test_every_chapter_is_in_the_pages_checked():
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}.html" in PAGES
    for page_name in ("book/intro.html", "book/bibliography.html", "book/errata.html"):
        assert page_name in PAGES


def test_front_page_redirects_to_the_introduction(site, browser):
    base, _ = site
    context, _ = new_context(browser, base)
    try:
        page = context.new_page()
        page.goto(base + "index.html")
        page.wait_for_url(base + PAGES[0], timeout=10000)
    finally:
        context.close()


@pytest.mark.parametrize("page_name", PAGES)
def test_no_console_errors(visits, page_name):
    record = opened(visits, page_name)
    errors = [message for message in record.console_errors if not known_upstream(message)]
    hints = sorted({hint for message in errors for key, hint in HINTS.items() if key in message})
    assert errors == [], "\n".join(hints)


@pytest.mark.parametrize("page_name", PAGES)
def test_needs_nothing_else_from_the_internet(visits, page_name):
    record = opened(visits, page_name)
    assert record.refused == []


@pytest.mark.parametrize("page_name", PAGES)
def test_equations_are_typeset(visits, page_name):
    record = opened(visits, page_name)
    math = record.math
    if math["math"]:
        assert math["version"] and math["version"].startswith("3."), f"MathJax did not run: {math}"
        assert any(url.split("?")[0].endswith(MATHJAX_LOCAL + "tex-mml-chtml.js") for url in record.mathjax_files), \
            "MathJax must come from the book itself (_static/mathjax/)"
    assert math["unrendered"] == [], "math left untypeset"
    assert math["errors"] == [], "MathJax reports TeX errors"
    assert math["containers"] >= math["math"]
    assert record.raw_tex == [], "visible text still looks like TeX"


@pytest.mark.parametrize("page_name", PAGES)
def test_every_image_loads(visits, page_name):
    record = opened(visits, page_name)
    broken = [image for image in record.images if image["width"] == 0 or image["height"] == 0]
    assert broken == []


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.update(value for key, value in attrs.items() if key == "id" or (tag == "a" and key == "name"))


@functools.lru_cache(maxsize=None)
def static_ids(path: Path) -> frozenset[str]:
    parser = _Anchors()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


@pytest.mark.parametrize("page_name", PAGES)
def test_internal_links_and_citations_resolve(site, visits, page_name):
    base, html = site
    record = opened(visits, page_name)
    problems = []
    for href in record.links:
        url = urlsplit(href)
        if not href.startswith(base):
            continue  # another site (GitHub, Colab, a DOI), mailto: or javascript:
        path = unquote(url.path).lstrip("/") or "index.html"
        if path.endswith("/"):
            path += "index.html"
        target = html / path
        if not target.is_file():
            problems.append(f"{href}: no such file")
            continue
        if not url.fragment:
            continue
        anchor = unquote(url.fragment)
        ids = visits[path].ids if path in visits and visits[path].error is None else static_ids(target)
        if anchor not in ids:
            problems.append(f"{href}: no element with id {anchor!r}")
        if path == "book/bibliography.html" and path != page_name and anchor not in visits[path].bibliography_ids:
            problems.append(f"{href}: citation does not lead to a bibliography entry")
    assert problems == []


def test_interactive_figures_respond_in_the_static_page(visits):
    """Every slider of every page, moved in the browser with no kernel behind the page,
    shows another frame and says which: SE's channel, ECA's kernel size, BAM's dilation and
    SK's kernel, at least."""
    pages = {name: record.sliders for name, record in visits.items() if record.error is None and record.sliders}
    for chapter in ("01_squeeze_excitation", "02_efficient_channel_attention", "04_bam", "06_selective_kernel"):
        assert f"notebooks/{chapter}.html" in pages, f"the slider of chapter {chapter} is missing"
    for name, sliders in pages.items():
        for slider in sliders:
            before, after = slider["before"], slider["after"]
            assert slider["frames"] >= 2 and before["image"] and after["image"], f"{name}: {slider}"
            assert before["image"]["width"] > 0 and after["image"]["width"] > 0, f"{name}: a frame did not load"
            assert after["image"]["frame"] == slider["max"] != before["image"]["frame"], f"{name}: {slider}"
            assert after["image"]["tail"] != before["image"]["tail"], f"{name}: the figure did not change"
            assert after["label"] != before["label"], f"{name}: the slider's label did not change"


def test_screenshots_are_saved(visits):
    assert (SCREENSHOTS / "chapter-screenshot.png").is_file()
    for name in PAGES:
        for suffix in (".png", ".full.png"):
            shot = SCREENSHOTS / name.replace(".html", suffix)
            assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot {shot}"


@pytest.mark.parametrize("page_name", PAGES)
def test_wide_equations_scroll_and_carry_one_number(visits, page_name):
    layout = opened(visits, page_name).layout
    assert layout["cut"] == [], "displayed equations wider than the column, with no way to scroll to their ends"
    assert layout["numbers"] == [], "equations with two numbers (a \\tag and Sphinx's own)"


@pytest.mark.parametrize("page_name", PAGES)
def test_no_smoke_run_output_is_shown(visits, page_name):
    assert opened(visits, page_name).layout["smoke"] == [], "smoke-run output is visible to readers"


CHAPTER_PAGES = [name for name in PAGES if name.startswith("notebooks/") and not name.startswith("notebooks/00")]


@pytest.mark.parametrize("page_name", CHAPTER_PAGES)
def test_tables_are_tables(visits, page_name):
    layout = opened(visits, page_name).layout
    assert layout["text_tables"] == [], "tables printed as monospace text; show them with attention_lib.toolkit.table"


@pytest.mark.parametrize("page_name", [name for name in PAGES if name.startswith("notebooks/")])
def test_every_chapter_opens_with_prose(visits, page_name):
    first = opened(visits, page_name).layout["first"]
    assert first is not None and first["tag"] == "P", f"the first visible block after the title is {first}"
