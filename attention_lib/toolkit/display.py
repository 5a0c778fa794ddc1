# Hand-written support module (not generated from a notebook).
"""How the chapters show results: tables as HTML tables, messages as call-out boxes.

A :func:`table` is a :class:`Table`: the rendered book and Jupyter show it as an HTML
``<table>`` with a caption (its source and units), and its numbers keep their formats;
as text (a terminal, the tests) it is the same rows, aligned.
A :func:`callout` is a box in the book's admonition style (note, tip, warning) that says
what a section would show and how to produce it, instead of printing plumbing. A
:func:`slider` is an interactive figure that works in the static page: frames drawn
in advance, switched by a range input.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["Callout", "callout", "Table", "table", "Slider", "slider", "figure_png"]

_KINDS = ("note", "tip", "warning", "important")


class Callout:
    """A titled message box; renders as HTML (the book's admonition classes) and as text."""

    def __init__(self, kind: str, title: str, body: str) -> None:
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind, self.title, self.body = kind, title, body

    def _repr_html_(self) -> str:
        paragraphs = "".join(f"<p>{_inline(part)}</p>" for part in self.body.split("\n\n") if part.strip())
        return (f'<div class="admonition {self.kind}"><p class="admonition-title">{html.escape(self.title)}</p>'
                f"{paragraphs}</div>")

    def __repr__(self) -> str:
        return f"{self.title}\n{self.body}"


def _inline(text: str) -> str:
    """HTML for a paragraph: escaped, with `code` spans kept as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts))


def callout(kind: str, title: str, body: str) -> Callout:
    """A call-out box: ``kind`` is "note", "tip", "warning" or "important"; ``body`` is
    plain text (paragraphs separated by blank lines, `code` in backticks)."""
    return Callout(kind, title, body)


class Table:
    """A table for the page: an HTML ``<table>`` with a caption in the book and in Jupyter,
    the same rows as plain text elsewhere (and in the text the tests compare).

    Attributes:
        frame: the numbers (a pandas DataFrame).
        caption: where they come from, with units.
        styler: the pandas ``Styler`` that renders the HTML.
    """

    def __init__(self, frame: pd.DataFrame, caption: str, styler: pd.io.formats.style.Styler, index: bool) -> None:
        self.frame, self.caption, self.styler, self.index = frame, caption, styler, index

    def _repr_html_(self) -> str:
        return self.styler.to_html()

    def __repr__(self) -> str:
        return f"{self.caption}\n{self.styler.to_string(delimiter='  ')}".rstrip()


def table(frame: pd.DataFrame, caption: str, formats: Mapping[str, str] | None = None,
          index: bool = False) -> Table:
    """``frame`` as an HTML table with ``caption`` (say where the numbers come from, with units).

    Args:
        frame: the table.
        caption: shown above the table.
        formats: column -> format spec (``"{:,}"``, ``"{:.2f}"``) or function; numbers
            without one get thousands separators (integers) or three significant digits.
        index: show the index column.
    """
    formats = dict(formats or {})
    for column in frame.columns:
        if column in formats:
            continue
        kind = frame[column].dtype.kind
        if kind in "iu":
            formats[column] = "{:,}"
        elif kind == "f":
            formats[column] = "{:.3g}"
    # A fixed id (from the caption) keeps the HTML the same from one build to the next.
    ident = "t" + hashlib.sha1(caption.encode()).hexdigest()[:10]
    styler = frame.style.format(formats, na_rep="–").set_caption(caption).set_uuid(ident)
    styler = styler.set_table_attributes('class="dataframe attention-table"')
    if not index:
        styler = styler.hide(axis="index")
    return Table(frame, caption, styler, index)


class Slider:
    """Pre-rendered frames switched by a range input: an interactive figure without a kernel.

    The frames are PNG images embedded in the page, and a few lines of inline JavaScript
    show the one the slider points at, so the figure responds in the static book as in
    Jupyter or Colab.
    """

    _count = 0

    def __init__(self, frames: Mapping[str, bytes], label: str, caption: str = "") -> None:
        if not frames:
            raise ValueError("frames is empty: a slider needs at least one frame")
        self.frames, self.label, self.caption = dict(frames), label, caption
        Slider._count += 1
        self.ident = f"attention-slider-{Slider._count}"

    def _repr_html_(self) -> str:
        labels = list(self.frames)
        images = "".join(
            f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{html.escape(self.label)} '
            f'{html.escape(name)}" data-frame="{index}" '
            f'style="max-width:100%;display:{"block" if index == 0 else "none"}">'
            for index, (name, png) in enumerate(self.frames.items()))
        handler = ("const box=this.closest('.attention-slider');"
                   "box.querySelectorAll('img[data-frame]').forEach(i=>i.style.display="
                   "(i.dataset.frame==this.value)?'block':'none');"
                   "box.querySelector('output').textContent=JSON.parse(this.dataset.labels)[this.value];")
        caption = f'<p class="attention-slider-caption">{_inline(self.caption)}</p>' if self.caption else ""
        return (f'<div class="attention-slider" id="{self.ident}">{caption}'
                f'<label>{html.escape(self.label)}: <output>{html.escape(labels[0])}</output><br>'
                f'<input type="range" min="0" max="{len(labels) - 1}" step="1" value="0" '
                f"data-labels='{html.escape(json.dumps(labels), quote=True)}' oninput=\"{handler}\" "
                f'aria-label="{html.escape(self.label)}" style="width:min(24em,100%)"></label>{images}</div>')

    def __repr__(self) -> str:
        return f"Slider({self.label}: {', '.join(self.frames)})"


def figure_png(figure, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed (it is not shown on its own)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def slider(draw: Callable[[Any], Any], values: Sequence[Any], label: str, caption: str = "",
           names: Sequence[str] | None = None, dpi: int = 100) -> Slider:
    """An interactive figure for the static page: ``draw(value)`` for every value, behind a slider.

    Args:
        draw: returns a matplotlib figure for one value of the control.
        values: the values the slider steps through, in order.
        label: the control's name (shown next to the current value).
        caption: a sentence above the figure.
        names: how each value is shown (default ``str(value)``).
    """
    names = [str(value) for value in values] if names is None else list(names)
    if len(names) != len(values):
        raise ValueError(f"names has {len(names)} entries for {len(values)} values")
    return Slider({name: figure_png(draw(value), dpi) for name, value in zip(names, values)}, label, caption)
