# Hand-written support module (not generated from a notebook).
"""Block diagrams of the mechanisms, and the introduction's sentence figures.

The source article illustrates its sections with figures taken from the papers; the book
draws its own, from matplotlib patches and text, so that they need nothing beyond
matplotlib and cost a few milliseconds each. Every function returns a
:class:`matplotlib.figure.Figure` (show it with ``plt.show()``, or save it).

The pieces of a diagram carry a ``gid`` saying what they are, so that tests (and readers)
can count them: :data:`BOX` (a labelled box: data or an operation), :data:`ARROW` (the flow
of data), :data:`OPERATOR` (a circle holding a sum, a product or a concatenation),
:data:`WORD` and :data:`HIGHLIGHT` (the words of a sentence figure, and those among them that
are highlighted); :func:`count_elements` returns these counts. An arrow also keeps its route,
the points it joins in data units, as ``diagram_points``.

* :func:`sentence` -- a sentence with the words that matter highlighted (chapter 00);
* :func:`se_block` and :func:`se_residual_block` -- Squeeze-and-Excitation and where it
  sits in a residual block (chapter 01);
* :func:`se_var1` -- the excitation of SE-Var-1, one sigmoid per channel (chapter 02);
* :func:`cbam_channel_attention` -- CBAM's channel attention (chapter 03);
* :func:`bam_block` -- BAM's two branches and their merge (chapter 04);
* :func:`inception_block` -- GoogLeNet's Inception block (chapter 06);
* :func:`sk_unit` -- Selective Kernel's split, fuse and select (chapter 06).

matplotlib belongs to the ``notebooks`` extra: only the chapters import this module.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import pairwise

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.path import Path

__all__ = ["ARROW", "BOX", "HIGHLIGHT", "OPERATOR", "WORD", "bam_block", "cbam_channel_attention",
           "count_elements", "inception_block", "labels", "se_block", "se_residual_block", "se_var1",
           "sentence", "sk_unit"]

#: ``gid`` of a labelled box (a tensor or an operation).
BOX = "diagram-box"
#: ``gid`` of an arrow (data flowing from one element to the next).
ARROW = "diagram-arrow"
#: ``gid`` of a circled operator (sum, product, concatenation).
OPERATOR = "diagram-operator"
#: ``gid`` of a word of a sentence figure.
WORD = "diagram-word"
#: ``gid`` of a highlighted word of a sentence figure (it is also counted as a word).
HIGHLIGHT = "diagram-highlight"

# Colours by role, the same in every diagram.
DATA = "#f2f2f2"  # a tensor
LAYER = "#9ecae1"  # a layer with weights
POOL = "#c7e9c0"  # a parameter-free operation (pooling, ReLU)
GATE = "#fdae6b"  # the gate: a sigmoid or a softmax
ATTENTION = "#fdd0a2"  # attention values


def count_elements(figure: Figure) -> dict[str, int]:
    """How many boxes, arrows, operators, words and highlighted words ``figure`` holds."""
    counts = {BOX: 0, ARROW: 0, OPERATOR: 0, WORD: 0, HIGHLIGHT: 0}
    for ax in figure.axes:
        for artist in [*ax.patches, *ax.texts]:
            gid = artist.get_gid()
            if gid in counts:
                counts[gid] += 1
            if gid == HIGHLIGHT:
                counts[WORD] += 1
    return counts


def labels(figure: Figure) -> list[str]:
    """Every piece of text drawn in ``figure`` (box labels, shapes, notes, words, titles)."""
    return [text.get_text() for ax in figure.axes for text in ax.texts] + [ax.get_title() for ax in figure.axes]


class _Diagram:
    """An empty axes in data units, with helpers that draw boxes, operators and arrows."""

    def __init__(self, width: float, height: float, scale: float = 0.62, title: str = "") -> None:
        self.figure, self.ax = plt.subplots(figsize=(width * scale, height * scale))
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(0, height)
        self.ax.set_aspect("equal")
        self.ax.axis("off")
        if title:
            self.ax.set_title(title, fontsize=11)
        self.figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92 if title else 0.99)

    def box(self, x: float, y: float, text: str, colour: str = DATA, width: float = 2.0, height: float = 0.9,
            shape: str = "", fontsize: float = 9) -> tuple[float, float, float, float]:
        """A rounded box centred on ``(x, y)``; ``shape`` is written under it in grey."""
        patch = FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.02,rounding_size=0.12",
                               facecolor=colour, edgecolor="#333333", linewidth=1.0, gid=BOX, zorder=2)
        self.ax.add_patch(patch)
        self.ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, zorder=3)
        if shape:
            self.ax.text(x, y - height / 2 - 0.08, shape, ha="center", va="top", fontsize=7.5, color="#555555", zorder=3)
        return (x, y, width, height)

    def operator(self, x: float, y: float, symbol: str, radius: float = 0.3) -> tuple[float, float, float, float]:
        """A circle holding ``symbol`` (``+`` sum, ``×`` product, ``C`` concatenation)."""
        self.ax.add_patch(Circle((x, y), radius, facecolor="white", edgecolor="#333333", linewidth=1.0,
                                 gid=OPERATOR, zorder=2))
        self.ax.text(x, y, symbol, ha="center", va="center", fontsize=12, zorder=3)
        return (x, y, 2 * radius, 2 * radius)

    def arrow(self, *points: tuple[float, float], text: str = "", dashed: bool = False) -> FancyArrowPatch:
        """An arrow along the straight segments joining ``points``, with its head at the last."""
        if len(points) < 2:
            raise ValueError("an arrow needs at least two points")
        path = Path(list(points), [Path.MOVETO] + [Path.LINETO] * (len(points) - 1))
        patch = FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=11, color="#333333", linewidth=1.0,
                                linestyle="--" if dashed else "-", shrinkA=0, shrinkB=0, gid=ARROW, zorder=1,
                                joinstyle="miter")
        patch.diagram_points = tuple(points)  # the route, in data units (for tests and readers)
        self.ax.add_patch(patch)
        if text:
            (x0, y0), (x1, y1) = points[-2], points[-1]
            self.ax.text((x0 + x1) / 2 + 0.12, (y0 + y1) / 2, text, ha="left", va="center", fontsize=9,
                         color="#333333")
        return patch

    def band(self, x0: float, x1: float, y0: float, y1: float, text: str, colour: str) -> None:
        """A shaded background region with a name at its top (a step of a mechanism)."""
        self.ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=colour, edgecolor="none", alpha=0.35,
                                    zorder=0))
        self.ax.text((x0 + x1) / 2, y1 - 0.12, text, ha="center", va="top", fontsize=10, fontweight="bold",
                     color="#444444", zorder=1)

    def note(self, x: float, y: float, text: str, **kwargs) -> None:
        """Free text (an equation number, an explanation)."""
        options = {"ha": "center", "va": "center", "fontsize": 8, **kwargs}
        self.ax.text(x, y, text, **options)


def _right(b: tuple[float, float, float, float]) -> tuple[float, float]:
    return (b[0] + b[2] / 2, b[1])


def _left(b: tuple[float, float, float, float]) -> tuple[float, float]:
    return (b[0] - b[2] / 2, b[1])


def _top(b: tuple[float, float, float, float]) -> tuple[float, float]:
    return (b[0], b[1] + b[3] / 2)


def _bottom(b: tuple[float, float, float, float]) -> tuple[float, float]:
    return (b[0], b[1] - b[3] / 2)


def _chain(d: _Diagram, boxes: Sequence[tuple[float, float, float, float]]) -> None:
    """Arrows from each box to the next, left to right."""
    for a, b in pairwise(boxes):
        d.arrow(_right(a), _left(b))


def sentence(words: Sequence[str], highlight: Collection[int], question: str = "", width: int = 48,
             title: str = "") -> Figure:
    """A sentence with the words at the indices ``highlight`` highlighted.

    Args:
        words: the sentence, one entry per word (punctuation attached to its word).
        highlight: indices into ``words`` of the words to highlight.
        question: an optional question printed above the sentence (the highlighted words
            are then the ones that answer it).
        width: line length in characters before the sentence wraps.
        title: an optional title.

    Draws one :data:`WORD` text per word, of which ``len(highlight)`` are
    :data:`HIGHLIGHT` (bold, on a coloured box); everything else is grey.
    """
    if not words:
        raise ValueError("words is empty: a sentence figure needs at least one word")
    wrong = [i for i in highlight if not 0 <= i < len(words)]
    if wrong:
        raise ValueError(f"highlight: index {wrong[0]} is outside the sentence of {len(words)} words")
    inner = 0.18 * width  # line length in data units (about one unit per 5.5 characters)
    rows = max(1, -(-sum(len(word) + 1 for word in words) * 11 // (10 * width)))  # lines, with a margin
    top = 0.9 if question else 0.3
    height = top + 0.75 * rows + 0.2
    d = _Diagram(inner + 0.6, height, scale=0.72, title=title)
    if question:
        d.note(0.3, height - 0.35, question, fontsize=12, ha="left", style="italic", color="#1f4e79")
    renderer = d.figure.canvas.get_renderer()
    to_data = d.ax.transData.inverted()
    chosen = set(highlight)
    x, row, space = 0.4, 0, 0.25
    for i, word in enumerate(words):
        marked = i in chosen
        text = d.ax.text(x, 0, word, ha="left", va="center", fontsize=13, gid=HIGHLIGHT if marked else WORD,
                         color="#b30000" if marked else "#8c8c8c", fontweight="bold" if marked else "normal",
                         bbox={"boxstyle": "round,pad=0.18", "facecolor": "#fee0d2", "edgecolor": "#b30000"}
                         if marked else None)
        box = text.get_window_extent(renderer)
        (left, _), (right, _) = to_data.transform([(box.x0, box.y0), (box.x1, box.y1)])
        if right > inner + 0.3 and x > 0.4:  # wrap: move the word to the next line
            row += 1
            x = 0.4
            text.set_x(x)
            right = x + (right - left)
        text.set_y(height - top - 0.45 - 0.75 * row)
        x = right + space
    return d.figure


def se_block(reduction: str = "r") -> Figure:
    """Squeeze-and-Excitation, eqs. (2.1)-(2.3): squeeze, excitation, scale.

    Eight boxes (input, pooling, the two fully connected layers, ReLU, sigmoid, the weights,
    the output), one product operator and nine arrows (seven along the path, the input's
    skip to the product, and the product to the output).

    Args:
        reduction: how the reduction ratio is written in the labels.
    """
    d = _Diagram(21.5, 5.2, title="Squeeze-and-Excitation")
    y = 2.3
    x_in = d.box(1.2, y, "X", DATA, 1.6, shape="c × h × w")
    pool = d.box(3.9, y, "global\naverage pool", POOL, 2.2, 1.1, shape="z: c × 1 × 1")
    fc1 = d.box(6.7, y, f"FC\nc → c/{reduction}", LAYER, 1.9, 1.1, shape=f"c/{reduction}")
    relu = d.box(9.0, y, "ReLU", POOL, 1.4, shape=f"c/{reduction}")
    fc2 = d.box(11.3, y, f"FC\nc/{reduction} → c", LAYER, 1.9, 1.1, shape="c")
    gate = d.box(13.6, y, "sigmoid", GATE, 1.6, shape="c")
    weights = d.box(15.9, y, "a", ATTENTION, 1.3, shape="c × 1 × 1")
    _chain(d, [x_in, pool, fc1, relu, fc2, gate, weights])
    product = d.operator(17.9, y, "×")
    d.arrow(_right(weights), _left(product))
    out = d.box(20.1, y, "X̃ = a ⊙ X", DATA, 2.2, shape="c × h × w")
    d.arrow(_right(product), _left(out))
    skip = y + 1.2
    d.arrow(_top(x_in), (x_in[0], skip), (product[0], skip), _top(product))
    d.note(3.9, 4.2, "squeeze (2.1)", fontsize=9, fontweight="bold")
    d.note(9.0, 4.2, "excitation (2.2)", fontsize=9, fontweight="bold")
    d.note(17.9, 4.2, "scale (2.3)", fontsize=9, fontweight="bold")
    return d.figure


def se_residual_block() -> Figure:
    """Where SE sits in a residual block: on the residual branch, before the addition.

    Five boxes (input, the block's convolutions, SE, the final ReLU, the output), one sum
    operator and six arrows (five along the path and the identity shortcut).
    """
    d = _Diagram(17, 5.0, title="SE in a residual block")
    y = 1.6
    x_in = d.box(1.2, y, "X", DATA, 1.6, shape="c × h × w")
    convs = d.box(4.6, y, "residual branch F\n(conv, BN, ReLU, ...)", LAYER, 3.6, 1.1)
    se = d.box(8.4, y, "SE", GATE, 1.6, 1.1, shape="rescales F(X)")
    add = d.operator(10.8, y, "+")
    relu = d.box(12.8, y, "ReLU", POOL, 1.4)
    out = d.box(15.4, y, "Y", DATA, 1.6, shape="c × h × w")
    _chain(d, [x_in, convs, se])
    d.arrow(_right(se), _left(add))
    d.arrow(_right(add), _left(relu))
    d.arrow(_right(relu), _left(out))
    d.arrow(_top(x_in), (x_in[0], 3.7), (add[0], 3.7), _top(add))
    d.note(6.0, 4.0, "identity shortcut (untouched by SE)", fontsize=8.5, color="#555555")
    return d.figure


def se_var1(channels: int = 6) -> Figure:
    """SE-Var-1's excitation, eq. (3.1): each channel's mean through its own sigmoid.

    ``2 * channels`` boxes (the pooled values ``z_k`` and the weights ``a_k``) and
    ``channels`` arrows, one per channel: no weights, and no arrow between channels.

    Args:
        channels: how many channels to draw (at least 2).
    """
    if not isinstance(channels, int) or channels < 2:
        raise ValueError(f"channels must be an integer >= 2, got {channels!r}")
    width = 2.0 + 1.6 * channels
    d = _Diagram(width, 5.0, title="SE-Var-1: a = σ(z), no parameters")
    for k in range(channels):
        x = 2.2 + 1.6 * k
        name = f"{k + 1}" if k < channels - 1 else "c"
        z = d.box(x, 3.6, f"z$_{{{name}}}$", POOL, 1.1, 0.8)
        a = d.box(x, 1.2, f"a$_{{{name}}}$", ATTENTION, 1.1, 0.8)
        d.arrow(_bottom(z), _top(a), text="σ")
    d.note(0.75, 3.6, "pooled\n(2.1)", fontsize=8)
    d.note(0.75, 1.2, "weights\n(3.1)", fontsize=8)
    return d.figure


def cbam_channel_attention() -> Figure:
    """CBAM's channel attention, eqs. (4.1)-(4.5): two poolings, one shared MLP, a sum, a sigmoid.

    Nine boxes (input, average pool, max pool, the MLP drawn once per descriptor, the two
    MLP outputs, the sigmoid, the weights), one sum operator, and eleven arrows, one of them
    dashed: it joins the two drawings of the MLP, which share their weights.
    """
    d = _Diagram(20, 6.4, title="CBAM: channel attention")
    top, bottom = 4.4, 1.6
    x_in = d.box(1.2, 3.0, "X", DATA, 1.6, shape="c × h × w")
    avg = d.box(4.4, top, "average pool\n(4.1)", POOL, 2.3, 1.0, shape="z₁: c × 1 × 1")
    mx = d.box(4.4, bottom, "max pool\n(4.2)", POOL, 2.3, 1.0, shape="z₂: c × 1 × 1")
    for pool in (avg, mx):
        d.arrow(_right(x_in), (2.5, 3.0), (2.5, pool[1]), _left(pool))
    mlp_top = d.box(8.4, top, "MLP\nW₂ δ(W₁ ·)", LAYER, 2.4, 1.0, shape="c → c/r → c")
    mlp_bottom = d.box(8.4, bottom, "MLP\nW₂ δ(W₁ ·)", LAYER, 2.4, 1.0, shape="c → c/r → c")
    d.arrow(_right(avg), _left(mlp_top))
    d.arrow(_right(mx), _left(mlp_bottom))
    d.arrow(_bottom(mlp_top), (8.4, bottom + 0.75), dashed=True)
    d.note(9.9, 3.0, "shared\nweights", fontsize=8, color="#555555")
    out_top = d.box(11.8, top, "a′₁ (4.3)", DATA, 1.7, 0.8)
    out_bottom = d.box(11.8, bottom, "a′₂ (4.4)", DATA, 1.7, 0.8)
    d.arrow(_right(mlp_top), _left(out_top))
    d.arrow(_right(mlp_bottom), _left(out_bottom))
    add = d.operator(13.9, 3.0, "+")
    d.arrow(_right(out_top), (add[0], top), _top(add))
    d.arrow(_right(out_bottom), (add[0], bottom), _bottom(add))
    gate = d.box(15.9, 3.0, "sigmoid", GATE, 1.7)
    d.arrow(_right(add), _left(gate))
    weights = d.box(18.5, 3.0, "a (4.5)", ATTENTION, 1.8, shape="c × 1 × 1")
    d.arrow(_right(gate), _left(weights))
    return d.figure


def bam_block(combine: str = "sum") -> Figure:
    """BAM, eqs. (5.1)-(5.4): a channel and a dilated spatial branch, merged, applied residually.

    Thirteen boxes (input; channel branch: pooling, two fully connected layers, its scores
    M_c; spatial branch: four convolutions, its scores M_s; the sigmoid, the map M and the
    output), three operators (the merge, the product and the residual sum) and eighteen
    arrows.

    Args:
        combine: ``"sum"`` (the paper, eq. 5.2) or ``"product"`` (the released code, eq. 5.2p):
            the operator that merges the two branches.
    """
    if combine not in ("sum", "product"):
        raise ValueError(f"combine must be 'sum' or 'product', got {combine!r}")
    d = _Diagram(27, 7.6, title=f"BAM ({'sum of the branches, eq. 5.2' if combine == 'sum' else 'product, eq. 5.2p'})")
    top, bottom, middle = 5.5, 2.1, 3.8
    x_in = d.box(1.2, middle, "X", DATA, 1.6, shape="c × h × w")
    pool = d.box(4.4, top, "global\naverage pool", POOL, 2.2, 1.1)
    fc1 = d.box(7.2, top, "FC c → c/r\nBN, ReLU", LAYER, 2.3, 1.1)
    fc2 = d.box(10.0, top, "FC\nc/r → c", LAYER, 1.9, 1.1)
    m_c = d.box(14.6, top, "M_c (5.1)", DATA, 2.0, 0.9, shape="c × 1 × 1")
    reduce = d.box(4.4, bottom, "1×1 conv\nc → c/r", LAYER, 2.2, 1.1)
    dil1 = d.box(7.2, bottom, "3×3 conv\ndilation ρ", LAYER, 2.3, 1.1)
    dil2 = d.box(10.0, bottom, "3×3 conv\ndilation ρ", LAYER, 2.3, 1.1)
    last = d.box(12.6, bottom, "1×1 conv\nc/r → 1", LAYER, 2.0, 1.1)
    m_s = d.box(14.9, bottom, "M_s (5.4)", DATA, 1.9, 0.9, shape="1 × h × w")
    for first in (pool, reduce):
        d.arrow(_right(x_in), (2.6, middle), (2.6, first[1]), _left(first))
    _chain(d, [pool, fc1, fc2, m_c])
    _chain(d, [reduce, dil1, dil2, last, m_s])
    d.note(8.6, bottom - 1.15, "each conv but the last: BN, ReLU", fontsize=7.5, color="#555555")
    merge = d.operator(17.0, middle, "+" if combine == "sum" else "×")
    d.arrow(_right(m_c), (merge[0], top), _top(merge))
    d.arrow(_right(m_s), (merge[0], bottom), _bottom(merge))
    d.note(17.0, middle + 0.75, "broadcast", fontsize=7.5, color="#555555")
    gate = d.box(18.9, middle, "sigmoid", GATE, 1.6)
    d.arrow(_right(merge), _left(gate))
    m = d.box(20.9, middle, "M", ATTENTION, 1.2, shape="c × h × w")
    d.arrow(_right(gate), _left(m))
    product = d.operator(22.6, middle, "×")
    d.arrow(_right(m), _left(product))
    residual = d.operator(24.0, middle, "+")
    d.arrow(_right(product), _left(residual))
    out = d.box(25.9, middle, "X̃ (5.3)", DATA, 1.8, shape="X + X ⊙ M")
    d.arrow(_right(residual), _left(out))
    d.arrow(_bottom(x_in), (x_in[0], 0.45), (product[0], 0.45), _bottom(product))
    d.arrow((product[0], 0.45), (residual[0], 0.45), _bottom(residual))
    d.note(3.0, top + 1.15, "channel branch", fontsize=9, fontweight="bold")
    d.note(3.0, bottom - 1.15, "spatial branch", fontsize=9, fontweight="bold")
    return d.figure


def inception_block() -> Figure:
    """GoogLeNet's Inception block with dimension reductions (Szegedy et al., 2015).

    Nine boxes (the input, the seven layers of the four parallel branches: a 1×1
    convolution; 1×1 then 3×3; 1×1 then 5×5; 3×3 max pooling then 1×1; and the filter
    concatenation) and eleven arrows.
    """
    d = _Diagram(15, 8.0, title="An Inception block: four branches, concatenated")
    x_in = d.box(7.5, 7.0, "previous layer", DATA, 3.0, 0.8)
    concat = d.box(7.5, 0.8, "filter concatenation", DATA, 4.5, 0.8)
    columns = [(1.8, ["1×1 conv"]), (5.6, ["1×1 conv", "3×3 conv"]), (9.4, ["1×1 conv", "5×5 conv"]),
               (13.2, ["3×3 max pool", "1×1 conv"])]
    for x, layers in columns:
        ys = [4.9, 2.9] if len(layers) == 2 else [3.9]
        boxes = [d.box(x, y, name, POOL if "pool" in name else LAYER, 2.6, 0.9) for y, name in zip(ys, layers)]
        d.arrow(_bottom(x_in), (7.5, 6.0), (x, 6.0), _top(boxes[0]))
        for a, b in pairwise(boxes):
            d.arrow(_bottom(a), _top(b))
        d.arrow(_bottom(boxes[-1]), (x, 1.75), (7.5, 1.75), _top(concat))
    return d.figure


def sk_unit() -> Figure:
    """Selective Kernel with two branches, eqs. (7.1)-(7.7): split, fuse, select.

    Ten boxes (the input; per branch its convolution and its output U_i; the pooling, the
    fuse layer, the select layers, the softmax and the output), four operators (the fuse
    sum, one product per branch, the final sum) and seventeen arrows. Three shaded bands
    name the steps.
    """
    height = 7.6
    d = _Diagram(29, height, title="Selective Kernel: split, fuse, select")
    d.band(2.0, 9.5, 0.05, height - 0.05, "split (7.1)", "#deebf7")
    d.band(9.5, 17.4, 0.05, height - 0.05, "fuse (7.2)-(7.4)", "#e5f5e0")
    d.band(17.4, 28.95, 0.05, height - 0.05, "select (7.5)-(7.7)", "#fee6ce")
    rows = [5.3, 2.5]
    middle = sum(rows) / 2
    x_in = d.box(1.0, middle, "X", DATA, 1.3, shape="c′ × h × w")
    outputs = []
    for i, y in enumerate(rows):
        span = 2 * (i + 1) + 1  # eq. (7.8) with k = 3
        conv = d.box(5.0, y, f"3×3 conv, dilation {i + 1}\n(grouped), BN, ReLU", LAYER, 3.7, 1.0,
                     shape=f"covers {span}×{span} pixels")
        d.arrow(_right(x_in), (2.4, middle), (2.4, y), _left(conv))
        u = d.box(8.4, y, f"U$_{i + 1}$", DATA, 1.2, shape="c × h × w")
        d.arrow(_right(conv), _left(u))
        outputs.append(u)
    fuse_sum = d.operator(10.6, middle, "+")
    d.arrow(_right(outputs[0]), (fuse_sum[0], rows[0]), _top(fuse_sum))
    d.arrow(_right(outputs[1]), (fuse_sum[0], rows[1]), _bottom(fuse_sum))
    d.note(11.3, middle + 0.55, "U", fontsize=9)
    pool = d.box(12.6, middle, "global\naverage pool", POOL, 2.0, 1.1, shape="s: c")
    d.arrow(_right(fuse_sum), _left(pool))
    fuse = d.box(15.6, middle, "FC c → d\nBN, ReLU", LAYER, 2.2, 1.1, shape="z: d")
    d.arrow(_right(pool), _left(fuse))
    select = d.box(19.1, middle, "one FC per\nbranch, d → c", LAYER, 2.4, 1.1, shape="scores a′₁, a′₂")
    d.arrow(_right(fuse), _left(select))
    softmax = d.box(22.2, middle, "softmax\nacross\nbranches", GATE, 1.9, 1.4)
    d.arrow(_right(select), _left(softmax))
    total = d.operator(26.6, middle, "+")
    buses = [rows[0] + 1.0, rows[1] - 1.0]
    for i, (u, y, bus) in enumerate(zip(outputs, rows, buses)):
        product = d.operator(25.0, y, "×")
        edge, end = (_top, _top) if i == 0 else (_bottom, _bottom)
        d.arrow(edge(u), (u[0], bus), (product[0], bus), end(product))
        d.arrow(_right(softmax), (23.8, middle), (23.8, y), _left(product), text="")
        d.note(23.45, (middle + y) / 2, f"a$_{i + 1}$", fontsize=9)
        d.arrow(_right(product), (total[0], y), (_top if i == 0 else _bottom)(total))
    out = d.box(28.1, middle, "X̃ (7.7)", DATA, 1.5, shape="c × h × w")
    d.arrow(_right(total), _left(out))
    return d.figure
