# Hand-written support module (not generated from a notebook).
"""Sphinx extension of the book: MathJax served from the book itself, and clean pages.

* **MathJax from the built book.** Sphinx asks a CDN for MathJax 3 by default, so a copy of
  ``_build/html`` opened offline shows raw TeX. Here ``mathjax_path`` points at
  ``_static/mathjax/tex-mml-chtml.js`` and the MathJax 3 that the PyPI package
  ``django-static-mathjax`` ships (a dependency of the ``[book]`` extra) is copied there
  when the build finishes.
* **No duplicated inline scripts.** Sphinx 7.4 writes an inline ``<script>`` that an
  extension added after the builder started twice (sphinx-doc/sphinx#13402): for
  sphinx-thebe, ``const THEBE_JS_URL = ...`` is then declared twice and the browser logs
  an error on every page. Identical inline scripts are written once.
* **Wide equations scroll** instead of being cut (``_static/book.css``, added to every page).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MATHJAX_DIR = "mathjax"  # under _static/


def mathjax_es5() -> Path:
    """The es5 folder of MathJax 3 from django-static-mathjax; a clear error without it."""
    try:
        import mathjax  # the PyPI package django-static-mathjax
    except ImportError as error:
        raise RuntimeError("the book serves MathJax itself and needs the PyPI package django-static-mathjax "
                           "(pip install -e '.[book]')") from error
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    version = json.loads((es5.parent / "package.json").read_text())["version"]
    if not (es5 / "tex-mml-chtml.js").is_file() or not version.startswith("3."):
        raise RuntimeError(f"django-static-mathjax ships MathJax {version} without es5/tex-mml-chtml.js; "
                           "the book needs MathJax 3 (django-static-mathjax>=3.2.2,<4)")
    return es5


def _use_local_mathjax(app, config) -> None:
    mathjax_es5()  # fail early, with the package to install
    config.mathjax_path = f"{MATHJAX_DIR}/tex-mml-chtml.js"


def _copy_mathjax(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / MATHJAX_DIR
        shutil.copytree(mathjax_es5(), target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.map"))


def _write_inline_scripts_once(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        body = (getattr(script, "attributes", None) or {}).get("body")  # inline scripts have a body
        key = body
        if body is not None and key in seen:
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    app.connect("html-page-context", _write_inline_scripts_once, priority=900)  # after the other extensions
    return {"parallel_read_safe": True, "parallel_write_safe": True}
