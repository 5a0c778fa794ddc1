# Hand-written support module (not generated from a notebook).
"""Sphinx extension of the book: its version, the release its Colab links open, and comments.

* **The version** of ``pyproject.toml`` (the one place it is written) is the MyST
  substitution ``{{ version }}``, which the front page shows.
* **The release a build belongs to.** With ``ATTENTION_LIB_BOOK_REF`` set (the release
  workflow sets the tag, e.g. ``v0.2.0``), the launch buttons (Colab, Binder) and the
  repository links open the notebooks of that tag instead of ``repository: branch:`` of
  ``_config.yml``, so a released book runs the notebooks it was built from.
* **Comments.** ``_config.yml`` configures Jupyter Book 1's comments (``html: comments:
  utterances:``, one GitHub issue per page, found by its path). They are switched on only
  for the published book (``ATTENTION_LIB_BOOK_ONLINE=1``, set by the Pages and release
  workflows); every other build (``make book``, the tests, offline readers) loads no comment
  script. sphinx-comments 0.0.3, which Jupyter Book 1 uses, puts the widget into the last
  ``div.section``, which Sphinx 7 no longer writes (it writes ``<section>``): the widget never
  appears and the console logs a TypeError (executablebooks/sphinx-comments#23, fixed in no
  release). Its script is replaced here by one that appends the widget to the article.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

ONLINE_ENV = "ATTENTION_LIB_BOOK_ONLINE"
REF_ENV = "ATTENTION_LIB_BOOK_REF"

_UTTERANCES_JS = """
document.addEventListener('DOMContentLoaded', () => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  if (!article) return;
  const script = document.createElement('script');
  script.src = 'https://utteranc.es/client.js';
  script.async = true;
  const settings = %s;
  for (const [name, value] of Object.entries(settings)) script.setAttribute(name, value);
  const box = document.createElement('section');
  box.className = 'book-comments';
  box.appendChild(script);
  article.appendChild(box);
});
"""


def project_version(root: Path) -> str:
    """The version in pyproject.toml's [project] table."""
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def utterances_settings(comments: dict) -> dict | None:
    """The utterances widget's attributes from Jupyter Book's ``html: comments:`` (None: not configured)."""
    config = (comments or {}).get("utterances")
    if not config:
        return None
    if "repo" not in config:
        raise ValueError("_config.yml: html: comments: utterances: needs `repo: owner/name`")
    return {"repo": config["repo"], "issue-term": config.get("issue-term", "pathname"),
            "theme": config.get("theme", "github-light"), "label": config.get("label", "comment"),
            "crossorigin": config.get("crossorigin", "anonymous")}


def _configure(app, config) -> None:
    root = Path(app.srcdir)
    config.myst_substitutions = {**config.myst_substitutions, "version": project_version(root)}
    reference = os.environ.get(REF_ENV)
    if reference:
        config.html_theme_options = {**config.html_theme_options, "repository_branch": reference}
    # sphinx-comments registered its own (broken) utterances script at config-inited: drop it.
    app.registry.js_files = [(name, attributes) for name, attributes in app.registry.js_files
                             if attributes.get("kind") != "utterances"]
    settings = utterances_settings(config.comments_config)
    if settings and os.environ.get(ONLINE_ENV) == "1":
        app.add_js_file(None, body=_UTTERANCES_JS % json.dumps(settings), kind="book-comments")


def setup(app):
    # After sphinx-comments' own config-inited handler (priority 500).
    app.connect("config-inited", _configure, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
