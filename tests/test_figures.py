"""Tests of attention_lib.figures: the plotting helpers draw what they are given, and refuse bad input."""

import matplotlib.pyplot as plt
import pytest
import torch

from attention_lib.figures import (class_spread, plot_attention, plot_class_attention, plot_learning_curves,
                                   plot_spread_by_depth)
from attention_lib.models import create_model
from attention_lib.photos import load_photo
from attention_lib.recorder import AttentionRecorder


def recorded(attention: str, **kwargs) -> dict:
    torch.manual_seed(0)
    model = create_model("resnet18", attention, num_classes=3, **kwargs).eval()
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(torch.randn(2, 3, 64, 64))
    return recorder.named


@pytest.mark.parametrize("attention,kinds", [("se", {"channel"}), ("cbam", {"channel", "spatial"}),
                                             ("bam", {"channel-spatial"}), ("sk", {"branch"})])
def test_plot_attention_draws_every_kind(attention, kinds):
    maps = recorded(attention)
    assert {item.kind for item in maps.values()} == kinds
    chosen = dict(list(maps.items())[-4:])
    fig = plot_attention(chosen, image=load_photo("chelsea", size=64), index=1, title="test")
    drawn = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.has_data()]
    assert len(drawn) == len(chosen)
    plt.close(fig)

def test_plot_attention_rejects_bad_input():
    maps = recorded("se")
    with pytest.raises(ValueError, match="maps is empty"):
        plot_attention({})
    with pytest.raises(ValueError, match=r"index must be an int in \[0, 2\), got 2"):
        plot_attention(maps, index=2)
    with pytest.raises(ValueError, match=r"image must be a \(3, H, W\) tensor, got shape \(64, 64\)"):
        plot_attention(maps, image=torch.zeros(64, 64))

def test_plot_class_attention_and_spread():
    table = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    assert class_spread(table) == pytest.approx(0.5 ** 0.5 / 2)  # std of (0, 1) is 0.707; of (1, 1) is 0
    fig = plot_class_attention({"layer1": table, "layer2": table.flip(0)}, ["a", "b"], title="t")
    assert "spread across classes 0.354" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match=r"per_class\['x'\] must be \(classes=3, channels\), got shape \(2, 2\)"):
        plot_class_attention({"x": table}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="per_class must be"):
        class_spread(torch.zeros(1, 4))

def test_plot_spread_by_depth():
    tables = {"layer1.0.bn3.attention": torch.tensor([[0.0, 1.0], [1.0, 1.0]]),
              "layer4.2.bn3.attention": torch.zeros(2, 3)}
    fig = plot_spread_by_depth(tables, title="t")
    assert list(fig.axes[0].lines[0].get_ydata()) == pytest.approx([0.5 ** 0.5 / 2, 0.0])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["layer1.0", "layer4.2"]
    plt.close(fig)
    with pytest.raises(ValueError, match="per_class is empty"):
        plot_spread_by_depth({})


def test_plot_learning_curves_draws_loss_and_accuracy_per_epoch():
    metrics = {"config": {"arch": "resnet18", "attention": "se", "dataset": "folder"}, "hardware": {"cpu": "x"},
               "started": "2026-12-03T00:00:00", "smoke": True,
               "epochs": [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "top1": 0.1 * e, "top5": 0.3 * e}
                          for e in (1, 2, 3)]}
    fig = plot_learning_curves(metrics)
    loss, accuracy = fig.axes
    assert [list(line.get_xdata()) for line in loss.lines] == [[1, 2, 3]] * 2
    assert list(accuracy.lines[0].get_ydata()) == pytest.approx([0.1, 0.2, 0.3])
    assert "SMOKE RUN, not a result" in fig._suptitle.get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="no finished epoch"):
        plot_learning_curves({**metrics, "epochs": []})


def test_plot_attention_draws_position_maps_as_the_mean_over_queries():
    """A Non-local block's map (one spatial map per query) is drawn like a spatial map."""
    import torch

    from attention_lib.figures import plot_attention
    from attention_lib.recorder import AttentionMap

    weights = torch.softmax(torch.randn(2, 12, 12), dim=-1).view(2, 12, 3, 4)
    item = AttentionMap("layer3.nl", "NonLocal", weights, ("batch", "query", "height", "width"))
    fig = plot_attention([item], image=torch.rand(3, 30, 40))
    assert "mean over query positions" in fig.axes[0].get_title()
    shown = fig.axes[0].images[-1].get_array()
    plt.close(fig)
    assert shown.shape == (30, 40)  # upsampled to the photo
