"""Tests of the chapter toolkit (attention_lib.toolkit): the sections every chapter calls.

Nothing here downloads: published architectures are built with random weights, and the
data are generated in their real on-disk layout.
"""

import matplotlib.pyplot as plt
import pytest
import torch

from attention_lib import toolkit as T
from attention_lib.toolkit import sections as _sections  # noqa: F401 - T.sections for monkeypatch
from attention_lib.checkpoint import load_model
from attention_lib.train import notebook_config, train
from fakes import ConstantClassifier


def test_show_attention_draws_real_models_and_not_smoke_runs(random_seresnet50, tmp_path):
    fig = T.show_attention(random_seresnet50, "coffee")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4 and titles[0].startswith("layer1.0.bn3")
    assert "RANDOM WEIGHTS" in fig._suptitle.get_text()
    plt.close(fig)
    train(notebook_config(smoke=True, attention="bam", output_dir=str(tmp_path / "run")))
    assert T.show_attention(load_model(tmp_path / "run"), "rocket") is None  # recorded, never drawn
    with pytest.raises(ValueError, match=r"no attention map of the kinds \('spatial',\)"):
        T.show_attention(random_seresnet50, kinds=("spatial",))

def test_top5_markdown_compares_with_and_without_attention(random_seresnet50):
    table = T.top5_markdown(random_seresnet50, photos=("chelsea", "rocket"))
    lines = table.splitlines()
    assert lines[0].startswith("Top-5 of seresnet50.a1_in1k architecture with RANDOM WEIGHTS")
    assert lines[2] == "| photo | attention on | attention switched off |"
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| chelsea", "| rocket"]
    assert all(line.count("<br>") == 8 for line in lines[4:])  # five classes in each of two columns

def test_imagenette_report_prints_or_explains(imagenette_tree, capsys):
    model = ConstantClassifier(0)
    assert T.imagenette_report(model, imagenette_tree / "absent", download=False) is None
    assert "not available here, so the per-class statistics are skipped" in capsys.readouterr().out
    result = T.imagenette_report(model, imagenette_tree, download=False, per_class=2, progress=False)
    assert result.images == 6
    assert "(the first 2 images of each class, 6 images): 33.3% among ImageNet's 1000 classes" in \
        capsys.readouterr().out


# ----------------------------------------------------------------------------- parameters

def test_check_parameters_names_every_bad_parameter_at_once():
    namespace = {"smoke": True, "seed": -1, "photo": "lena", "pretrained_weights": "auto", "train_epochs": 0,
                 "kernel_size": 4, "run_training": None, "run_epochs": -3, "run_arch": "resnet19",
                 "run_data_root": None}
    with pytest.raises(T.ParameterError) as info:
        T.check_parameters(namespace, train_epochs=T.positive_int, kernel_size=T.odd_int)
    problems = "\n".join(info.value.problems)
    for expected in ("seed must be an int >= 0, got -1", "photo must be one of", "train_epochs must be a positive int",
                     "kernel_size must be an odd positive int, got 4", "run_arch must be one of",
                     "run_epochs must be a positive int, got -3"):
        assert expected in problems
    assert len(info.value.problems) == 6
    with pytest.raises(T.ParameterError, match="kernel: the chapter checks a parameter that its parameters cell"):
        T.check_parameters({"seed": 0}, kernel=T.odd_int)


def test_check_parameters_accepts_the_defaults_and_typed_rules():
    T.check_parameters({"seed": 0, "photo": "chelsea", "run_training": None, "run_epochs": None,
                        "scales": [1.0, 1.5]}, scales=T.list_of(T.number(0.1, 2.6)))
    with pytest.raises(T.ParameterError, match=r"scales must be a list whose items are each a number in \[0.1, 2.6\]"):
        T.check_parameters({"scales": [1.0, 3.0]}, scales=T.list_of(T.number(0.1, 2.6)))


def test_run_options_take_the_run_parameters_and_the_chapter_seed():
    namespace = {"seed": 4, "run_epochs": 5, "run_arch": None, "run_options": T.run_options, "run_metrics": {},
                 "run_training": True}
    assert T.run_options(namespace) == {"epochs": 5, "seed": 4}
    assert T.run_options({"seed": 4, "run_seed": 7}) == {"seed": 7}


# ----------------------------------------------------------------------------- costs

def test_cost_table_counts_parameters_and_flops_per_image():
    from torch import nn

    from attention_lib import SE

    frame = T.cost_frame({"SE": lambda c, s: SE(c), "conv": lambda c, s: nn.Conv2d(c, c, 3, padding=1, bias=False)},
                         shapes=[(64, 8), (128, 4)])
    assert list(frame["module"]) == ["SE", "conv", "SE", "conv"]
    se = frame.iloc[0]
    assert se["parameters"] == 2 * 64 * 8 + 8 + 64 and se["FLOPs per image"] == 2 * 2 * 64 * 8
    assert frame.iloc[1]["FLOPs per image"] == 2 * 64 * 64 * 9 * 8 * 8
    timed = T.cost_frame({"SE": lambda c, s: SE(c)}, shapes=[(64, 8)], time=True, repeats=3)
    assert timed["ms (batch 8, median)"].iloc[0] > 0 and timed["ms IQR"].iloc[0] >= 0
    html = T.cost_table({"SE": lambda c, s: SE(c)}, shapes=[(64, 8)])._repr_html_()
    assert "<table" in html and "<caption>" in html and "FLOP counter" in html
    assert "ms (batch" not in html  # no timing unless asked


# ----------------------------------------------------------------------------- digits

def test_digits_split_and_canvas():
    digits = T.load_digits(seed=3, size=14, canvas=24)
    assert digits.images.shape == (1797, 1, 24, 24) and len(digits.test_idx) == T.HELD_OUT
    assert set(digits.train_idx.tolist()).isdisjoint(digits.test_idx.tolist())
    assert digits.boxes.shape == (1797, 24, 24) and int(digits.boxes[0].sum()) == 14 * 14
    inside = digits.images[digits.boxes[:, None]]
    assert float(digits.images.sum()) == pytest.approx(float(inside.sum()))  # nothing pasted outside its box
    again = T.load_digits(seed=3)
    assert again.images.shape == (1797, 1, 8, 8) and torch.equal(again.test_idx, digits.test_idx)
    with pytest.raises(ValueError, match="size must be between 1 and canvas"):
        T.paste(digits.glyphs[:2], 30, 24)


def test_digits_experiment_trains_every_network_from_the_same_start():
    from attention_lib import SE

    digits = T.load_digits(seed=0)
    train_x, train_y = digits.train
    subset = (train_x[:256], train_y[:256])
    builders = {"SE": lambda: T.digits_network(lambda c: SE(c, reduction=4, min_width=4), width=8),
                "plain": lambda: T.digits_network(lambda c: torch.nn.Identity(), width=8)}
    result = T.digits_experiment(builders, subset, digits.test, epochs=2, seed=1)
    assert list(result) == ["SE", "plain"] and result["SE"].attention_parameters > 0
    assert result["plain"].attention_parameters == 0 and len(result["SE"].history) == 2
    assert 0.0 <= result["SE"].accuracy <= 1.0 and not result["SE"].model.training
    again = T.digits_experiment({"SE": builders["SE"]}, subset, digits.test, epochs=2, seed=1)
    assert again["SE"].history == result["SE"].history  # deterministic for a seed
    html = result.table()._repr_html_()
    assert "held-out accuracy" in html and "one-cycle schedule peaking at 0.003" in html and "2 epochs, seed 1" in html
    with pytest.raises(ValueError, match="schedule must be"):
        T.digits_experiment(builders, subset, digits.test, epochs=1, schedule="cosine")


# ----------------------------------------------------------------------------- display

def test_callout_table_and_slider_render_as_html():
    import pandas as pd

    plt.close("all")  # figures another test of this process left open

    box = T.callout("tip", "Run it on a GPU", "First paragraph with `code`.\n\nSecond <b>paragraph</b>.")
    html = box._repr_html_()
    assert html.startswith('<div class="admonition tip">') and "<code>code</code>" in html
    assert "&lt;b&gt;" in html and html.count("<p>") == 2  # text is escaped, paragraphs kept
    with pytest.raises(ValueError, match="kind must be one of"):
        T.callout("danger-zone", "t", "b")
    styled = T.table(pd.DataFrame({"a": [1234567], "b": [0.123456]}), "Source: a test.")._repr_html_()
    assert "1,234,567" in styled and "0.123" in styled and "Source: a test." in styled

    def draw(k):
        figure, axes = plt.subplots(figsize=(2, 2))
        axes.plot(range(k))
        return figure

    slider = T.slider(draw, [2, 3, 4], "points", caption="A test.", names=["two", "three", "four"])
    html = slider._repr_html_()
    assert html.count("<img ") == 3 and html.count("display:none") == 2 and 'type="range"' in html
    assert 'max="2"' in html and "two" in html and "oninput=" in html
    assert plt.get_fignums() == []  # the frames are closed, not shown twice
    with pytest.raises(ValueError, match="names has 2 entries for 3 values"):
        T.slider(draw, [2, 3, 4], "points", names=["a", "b"])


# ----------------------------------------------------------------------------- trained attention

def test_trained_attention_without_weights_does_nothing_and_says_why(monkeypatch):
    from attention_lib.weights import load as L

    def offline(name):
        raise RuntimeError(f"the pretrained weights of {name!r} could not be downloaded: cannot connect")
    monkeypatch.setattr(L, "fetch_published_state_dict", offline)
    section = T.trained_attention("seresnet50")
    assert not section.available and "not available here" in section.message
    assert section.show() is None and section.top5() is None and section.per_class() is None
    assert 'class="admonition note"' in section._repr_html_()
    box = T.no_published_weights("cbam")._repr_html_()
    assert "No CBAM network has ImageNet weights" in box and "digits networks" in box
    assert "the run below" in T.no_published_weights("ge", trained_here="the run below")._repr_html_()


def test_trained_attention_with_random_weights_draws_and_tabulates(imagenette_tree):
    section = T.trained_attention("seresnet50", weights="random")
    assert section.available and "RANDOM WEIGHTS" in section.message
    plt.close("all")
    assert section.show("coffee") is None and len(plt.get_fignums()) == 1  # drawn once, not returned again
    plt.close("all")
    html = section.top5(("chelsea",))._repr_html_()
    assert "attention switched off" in html and "not a result" in html
    result = section.per_class(imagenette_tree, download=False, per_class=1, progress=False)
    assert result.images == 3 and len(result.per_class) == 16


# ----------------------------------------------------------------------------- the mini-ImageNet section

def test_should_train(monkeypatch):
    from attention_lib.train import TrainConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert T.should_train(TrainConfig(), None) is False
    assert T.should_train(TrainConfig(smoke=True)) is True
    assert T.should_train(TrainConfig(), True) is True
    assert T.should_train(TrainConfig(smoke=True), False) is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert T.should_train(TrainConfig()) is True


def test_the_section_in_smoke_mode_trains_quietly_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shown = []
    monkeypatch.setattr(T.sections, "display", shown.append)
    assert T.mini_imagenet_section("se", smoke=True, results_dir=tmp_path / "none") is None
    assert capsys.readouterr().out == ""  # no smoke output on the page
    assert [type(item).__name__ for item in shown] == ["Callout"]
    box = shown[0]._repr_html_()
    assert "No mini-ImageNet run of resnet50 with se is recorded" in box
    assert "python -m attention_lib.train --arch resnet50 --attention se" in box and "floating-point" in box
    assert list(tmp_path.iterdir()) == []  # the smoke run's data and checkpoint are gone
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        T.mini_imagenet_section("se", smoke=True, epochs=0)


def test_the_section_shows_a_committed_real_run(tmp_path, monkeypatch):
    import json

    metrics = {"config": {"arch": "resnet50", "attention": "se", "dataset": "imagenette"}, "finished": True,
               "smoke": False, "hardware": {"cpu": "x", "gpu": "NVIDIA T4"}, "started": "2026-12-01T10:00:00",
               "command": ["python", "-m", "attention_lib.train", "--attention", "se"], "commit": "abc",
               "epochs": [{"epoch": 1, "train_loss": 2.0, "val_loss": 1.9, "top1": 0.5, "top5": 0.8,
                           "images_per_second": 900.0}]}
    (tmp_path / "resnet50-se.json").write_text(json.dumps(metrics))
    shown = []
    monkeypatch.setattr(T.sections, "display", shown.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    T.mini_imagenet_section("se", smoke=False, results_dir=tmp_path)
    html = shown[0]._repr_html_()
    assert "NVIDIA T4" in html and "0.5000" in html and "2026-12-01" in html
    assert T.recorded_run("resnet50", "eca", tmp_path) is None


# --- spatial attention on pasted digits: box_contrast_table and plot_digit_maps -------------


def test_box_contrast_reads_the_maps_inside_and_outside_the_boxes():
    boxes = torch.zeros(2, 8, 8, dtype=torch.bool)
    boxes[:, 2:6, 2:6] = True
    maps = torch.where(boxes, 0.9, 0.3)
    assert T.box_contrast(maps, boxes) == pytest.approx((0.9, 0.3))
    # At half the resolution each map position covers 2x2 canvas pixels: the box becomes 1:3.
    small = torch.full((2, 4, 4), 0.2)
    small[:, 1:3, 1:3] = 0.8
    assert T.box_contrast(small, boxes) == pytest.approx((0.8, 0.2))
    with pytest.raises(ValueError, match=r"maps must be \(n, h, w\)"):
        T.box_contrast(maps[None], boxes)
    with pytest.raises(ValueError, match="same n"):
        T.box_contrast(maps[:1], boxes)


def test_box_contrast_table_has_a_row_per_block_and_state():
    boxes = torch.zeros(3, 8, 8, dtype=torch.bool)
    boxes[:, :4] = True
    flat = {"stage 1": torch.full((3, 8, 8), 0.5), "stage 2": torch.full((3, 4, 4), 0.5)}
    trained = {"stage 1": torch.where(boxes, 0.8, 0.2), "stage 2": torch.where(boxes[:, ::2, ::2], 0.6, 0.3)}
    result = T.box_contrast_table(flat, trained, boxes, block="X block", quantity="A", caption="a caption")
    records = result.frame.to_dict("records")
    assert [(r["X block"], r["weights"]) for r in records] == [
        ("stage 1", "at initialisation"), ("stage 1", "trained"), ("stage 2", "at initialisation"), ("stage 2", "trained")]
    assert records[1]["mean A inside the digit's box"] == pytest.approx(0.8)
    assert records[1]["mean A outside"] == pytest.approx(0.2)
    assert records[1]["inside / outside"] == pytest.approx(4.0)
    assert records[3]["inside / outside"] == pytest.approx(2.0)
    assert records[0]["inside / outside"] == pytest.approx(1.0)
    assert "<table" in result._repr_html_() and "a caption" in result._repr_html_()


def test_plot_digit_maps_shows_digits_predictions_and_one_row_per_block():
    images = torch.rand(5, 1, 12, 12)
    labels = torch.tensor([3, 1, 4, 1, 5])
    maps = {"stage 1": torch.rand(5, 12, 12), "stage 2": torch.rand(5, 6, 6) * 3 - 1}
    model = ConstantClassifier(7)  # predicts 7 for every image
    figure = T.plot_digit_maps(model, images, labels, maps, name="A", colorbar_label="A", title="a title", count=4)
    grid = [axis for axis in figure.axes if axis.get_title()]
    assert len(grid) == 3 * 4
    titles = [axis.get_title() for axis in grid]
    assert titles[:2] == ["label 3, predicted 7", "label 1, predicted 7"] and titles.count("A, stage 2") == 4
    colorbar = figure.axes[-1]
    assert colorbar.get_ylabel() == "A" and figure._suptitle.get_text() == "a title"
    overlay = grid[4 + 4].images[1]  # the first digit's stage-2 map drawn over it
    assert overlay.get_array().shape == (12, 12) and overlay.get_clim() == (0.0, 1.0)
    shared = T.plot_digit_maps(model, images, labels, maps, name="A", colorbar_label="A", title="t", count=4, scale=None)
    low = min(m[:4].min().item() for m in maps.values())
    high = max(m[:4].max().item() for m in maps.values())
    assert [axis for axis in shared.axes if axis.get_title()][8].images[1].get_clim() == pytest.approx((low, high))
    plt.close("all")
