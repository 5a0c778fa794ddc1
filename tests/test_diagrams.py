"""The block diagrams and sentence figures of attention_lib.diagrams draw what they claim.

Each test counts the pieces a diagram is made of (boxes, arrows, operators, words), as
tagged by their ``gid``, and checks the labels that tie it to the chapter's equations; no
image snapshots, so a change of style does not break them but a missing step does.
"""
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from attention_lib import diagrams as D

WORDS = ["The", "small", "black", "dog", "growled", "at", "the", "stranger", "who", "opened", "the", "garden",
         "gate."]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def counts(figure: Figure) -> tuple[int, int, int]:
    found = D.count_elements(figure)
    return found[D.BOX], found[D.ARROW], found[D.OPERATOR]


def text(figure: Figure) -> str:
    return " | ".join(D.labels(figure))


def test_sentence_highlights_exactly_the_chosen_words():
    figure = D.sentence(WORDS, [3, 4, 7])
    found = D.count_elements(figure)
    assert found[D.WORD] == len(WORDS) and found[D.HIGHLIGHT] == 3
    highlighted = [t.get_text() for t in figure.axes[0].texts if t.get_gid() == D.HIGHLIGHT]
    assert highlighted == ["dog", "growled", "stranger"]
    assert counts(figure) == (0, 0, 0)


def test_sentence_wraps_long_sentences_and_keeps_words_inside_the_axes():
    figure = D.sentence(WORDS * 3, [0], width=30)
    ax = figure.axes[0]
    words = [t for t in ax.texts if t.get_gid() in (D.WORD, D.HIGHLIGHT)]
    rows = {round(t.get_position()[1], 3) for t in words}
    assert len(rows) >= 3  # 219 characters on lines of about 30
    low, high = ax.get_ylim()
    assert all(low < t.get_position()[1] < high for t in words)
    assert all(0 < t.get_position()[0] < ax.get_xlim()[1] for t in words)


def test_sentence_with_a_question_prints_it():
    figure = D.sentence(WORDS, [2, 3], question="What colour is the dog?")
    assert "What colour is the dog?" in text(figure)
    assert D.count_elements(figure)[D.HIGHLIGHT] == 2


def test_sentence_bad_input():
    with pytest.raises(ValueError, match="highlight: index 20"):
        D.sentence(WORDS, [20])
    with pytest.raises(ValueError, match="words is empty"):
        D.sentence([], [])


def test_se_block_has_squeeze_excitation_and_scale():
    figure = D.se_block()
    assert counts(figure) == (8, 9, 1)
    labels = text(figure)
    for expected in ("global\naverage pool", "FC\nc → c/r", "ReLU", "FC\nc/r → c", "sigmoid",
                     "squeeze (2.1)", "excitation (2.2)", "scale (2.3)"):
        assert expected in labels


def test_se_residual_block_puts_se_before_the_addition():
    figure = D.se_residual_block()
    assert counts(figure) == (5, 6, 1)
    boxes = [t.get_text() for t in figure.axes[0].texts]
    assert boxes.index("SE") < boxes.index("+") < boxes.index("ReLU")
    assert "identity shortcut (untouched by SE)" in boxes


@pytest.mark.parametrize("channels", [2, 6])
def test_se_var1_has_one_arrow_per_channel_and_no_cross_links(channels):
    figure = D.se_var1(channels)
    assert counts(figure) == (2 * channels, channels, 0)
    assert all(len(arrow.diagram_points) >= 2 for arrow in figure.axes[0].patches if arrow.get_gid() == D.ARROW)
    with pytest.raises(ValueError, match="channels must be an integer >= 2"):
        D.se_var1(1)


def test_se_var1_arrows_are_vertical():
    # Each weight a_k comes from its own z_k only: every arrow keeps its x coordinate.
    figure = D.se_var1(4)
    for arrow in (p for p in figure.axes[0].patches if p.get_gid() == D.ARROW):
        xs = {round(x, 6) for x, _ in arrow.diagram_points}
        assert len(xs) == 1


def test_cbam_channel_attention_has_two_poolings_a_shared_mlp_a_sum_and_a_sigmoid():
    figure = D.cbam_channel_attention()
    assert counts(figure) == (9, 11, 1)
    labels = text(figure)
    assert "average pool\n(4.1)" in labels and "max pool\n(4.2)" in labels
    assert labels.count("MLP\nW₂ δ(W₁ ·)") == 2 and "shared\nweights" in labels
    assert "sigmoid" in labels and "+" in labels
    dashed = [p for p in figure.axes[0].patches if p.get_gid() == D.ARROW and p.get_linestyle() == "--"]
    assert len(dashed) == 1  # the shared weights


@pytest.mark.parametrize("combine,symbol", [("sum", "+"), ("product", "×")])
def test_bam_block_has_both_branches_and_the_chosen_merge(combine, symbol):
    figure = D.bam_block(combine)
    assert counts(figure) == (13, 18, 3)
    labels = [t.get_text() for t in figure.axes[0].texts]
    assert labels.count("3×3 conv\ndilation ρ") == 2
    assert "M_c (5.1)" in labels and "M_s (5.4)" in labels and "X̃ (5.3)" in labels
    operators = [t.get_text() for t in figure.axes[0].texts if t.get_text() in ("+", "×")]
    assert operators == [symbol, "×", "+"]  # the merge, then X * M, then X + X * M
    with pytest.raises(ValueError, match="combine must be"):
        D.bam_block("max")


def test_inception_block_has_four_branches_into_one_concatenation():
    figure = D.inception_block()
    assert counts(figure) == (9, 11, 0)
    labels = [t.get_text() for t in figure.axes[0].texts]
    assert labels.count("1×1 conv") == 4
    assert "3×3 conv" in labels and "5×5 conv" in labels and "3×3 max pool" in labels
    into_concat = [p for p in figure.axes[0].patches
                   if p.get_gid() == D.ARROW and p.diagram_points[-1] == pytest.approx((7.5, 1.2))]
    assert len(into_concat) == 4


def test_sk_unit_has_split_fuse_and_select():
    figure = D.sk_unit()
    assert counts(figure) == (10, 17, 4)
    labels = text(figure)
    for expected in ("split (7.1)", "fuse (7.2)-(7.4)", "select (7.5)-(7.7)", "3×3 conv, dilation 1",
                     "3×3 conv, dilation 2", "softmax\nacross\nbranches", "covers 3×3 pixels", "covers 5×5 pixels"):
        assert expected in labels


@pytest.mark.parametrize("draw", [D.se_block, D.se_residual_block, D.se_var1, D.cbam_channel_attention,
                                  D.bam_block, D.inception_block, D.sk_unit])
def test_every_diagram_is_a_figure_with_one_hidden_axes(draw):
    figure = draw()
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    assert not figure.axes[0].axison
    # every arrow ends inside the drawing
    ax = figure.axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for arrow in (p for p in ax.patches if p.get_gid() == D.ARROW):
        for x, y in arrow.diagram_points:
            assert x0 <= x <= x1 and y0 <= y <= y1
