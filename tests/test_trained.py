"""Tests of attention_lib.trained: loading, preprocessing, top-k, ablation, per-class
attention, Imagenette evaluation and its command line, and the plotting helpers.

Nothing here downloads: published architectures are built with random weights, and
Imagenette's loading code runs on a small tree generated in its real on-disk layout.
"""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision import datasets  # noqa: E402

from attention_lib import pretrained as P  # noqa: E402
from attention_lib import trained as T  # noqa: E402
from attention_lib.data import make_image_tree  # noqa: E402
from attention_lib.figures import class_spread, load_photo, plot_attention, plot_class_attention  # noqa: E402
from attention_lib.models import AttentionRecorder, attention_modules, create_model  # noqa: E402
from attention_lib.train import notebook_config, train  # noqa: E402


@pytest.fixture(scope="module")
def imagenette_tree(tmp_path_factory):
    """Imagenette's layout with its first three classes, four val images each."""
    return make_image_tree(tmp_path_factory.mktemp("imagenette"), "imagenette", classes=3, per_class=4, size=40)


@pytest.fixture(scope="module")
def random_seresnet50():
    return T.load_trained("seresnet50", weights="random")


class ConstantClassifier(nn.Module):
    """Always predicts ImageNet class ``index`` (and records nothing)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.pretrained_cfg = {"name": "constant", "source": "test", "mean": (0.5,) * 3, "std": (0.5,) * 3,
                               "input_size": (3, 32, 32), "crop_pct": 0.875, "interpolation": "bilinear"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 1000)
        logits[:, self.index] = 1.0
        return logits


# ----------------------------------------------------------------------------- class indices

def test_imagenette_wnids_map_to_the_same_imagenet_classes():
    categories = T.imagenet_categories()
    assert len(categories) == 1000
    assert set(T.IMAGENETTE_TO_IMAGENET) == set(datasets.Imagenette._WNID_TO_CLASS)
    for wnid, index in T.IMAGENETTE_TO_IMAGENET.items():
        assert categories[index] in datasets.Imagenette._WNID_TO_CLASS[wnid], (wnid, index, categories[index])


# ----------------------------------------------------------------------------- loading

def test_random_weights_are_labelled_and_never_a_result(random_seresnet50, capsys):
    model = T.load_trained("skresnet18", weights="random")
    assert "RANDOM WEIGHTS" in capsys.readouterr().out
    assert not model.training and not T.is_result(model)
    assert "RANDOM WEIGHTS" in T.weights_label(model) and "not a result" in T.weights_label(model)
    assert random_seresnet50.pretrained_cfg["name"] == "seresnet50.a1_in1k"


def test_off_and_bad_modes(capsys):
    assert T.load_trained("seresnet50", weights="off") is None
    assert "shows nothing" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"weights must be one of \('auto', 'off', 'random'\), got 'yes'"):
        T.load_trained("seresnet50", weights="yes")


def test_unavailable_weights_give_none_and_say_why(monkeypatch, capsys):
    def offline(name):
        raise RuntimeError(f"the pretrained weights of {name!r} could not be downloaded: cannot connect")
    monkeypatch.setattr(P, "fetch_published_state_dict", offline)
    assert T.load_trained("ecaresnet50d") is None
    out = capsys.readouterr().out
    assert "not available here, so this section shows nothing" in out and "'ecaresnet50d.miil_in1k'" in out


def test_downloaded_weights_are_a_result(monkeypatch, capsys):
    theirs = P.published_model("seresnet50")
    monkeypatch.setattr(P, "fetch_published_state_dict", lambda name: theirs.state_dict())
    model = T.load_trained("seresnet50")
    assert T.is_result(model) and T.weights_label(model) == "seresnet50.a1_in1k (timm, ImageNet-1k weights)"
    assert "Loaded seresnet50.a1_in1k" in capsys.readouterr().out
    assert not T.is_result(create_model("resnet18", "se"))  # no pretrained_cfg at all
    assert "not a result" in T.weights_label(create_model("resnet18", "se"))


def test_download_messages_go_to_stdout(monkeypatch, capsys):
    """What a download prints or logs must not reach stderr (a warning in the book build)."""
    import logging
    import sys
    import warnings

    def noisy_fetch(name):
        logging.getLogger("huggingface_hub").warning("Xet storage is enabled but hf_xet is missing")
        warnings.warn("a download warning")
        print("100%|##########| 97.8M/97.8M", file=sys.stderr)
        return P.published_model("seresnet50").state_dict()
    monkeypatch.setattr(P, "fetch_published_state_dict", noisy_fetch)
    handlers = logging.getLogger("huggingface_hub").handlers[:]
    assert T.load_trained("seresnet50") is not None
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "Xet storage" in captured.out and "a download warning" in captured.out and "97.8M" in captured.out
    assert logging.getLogger("huggingface_hub").handlers == handlers  # restored


# ----------------------------------------------------------------------------- predictions

def test_preprocess_follows_the_weights_config(random_seresnet50):
    photo = load_photo("chelsea")
    batch = T.preprocess(photo, random_seresnet50)
    assert batch.shape == (1, 3, 224, 224)  # a1_in1k is evaluated at 224 (timm's test size is 288)
    normalised, crops = T.photo_batch(random_seresnet50, ["chelsea"])
    torch.testing.assert_close(normalised, batch)
    assert 0 <= float(crops.min()) and float(crops.max()) <= 1 and crops.shape == batch.shape
    cfg = {"mean": (0.0,) * 3, "std": (1.0,) * 3, "input_size": (3, 64, 64), "crop_pct": 0.5,
           "interpolation": "bilinear"}
    flat = T.preprocess(torch.full((2, 3, 300, 200), 0.25), cfg)
    assert flat.shape == (2, 3, 64, 64) and torch.allclose(flat, torch.full_like(flat, 0.25), atol=1e-5)
    with pytest.raises(ValueError, match=r"images must be \(n, 3, H, W\).*got shape \(1, 1, 8, 8\)"):
        T.preprocess(torch.zeros(1, 1, 8, 8), cfg)
    with pytest.raises(ValueError, match="no pretrained_cfg"):
        T.preprocess(photo, create_model("resnet18"))


def test_predict_top_k_orders_and_names_the_classes():
    model = ConstantClassifier(index=217)
    rows = T.predict_top_k(model, torch.zeros(2, 3, 8, 8), k=3)
    assert len(rows) == 2 and [name for name, _ in rows[0]][0] == "English springer"
    probabilities = [p for _, p in rows[1]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        T.predict_top_k(model, torch.zeros(1, 3, 8, 8), k=0)
    with pytest.raises(ValueError, match="categories has 2 names but the model predicts 1000 classes"):
        T.predict_top_k(model, torch.zeros(1, 3, 8, 8), categories=["a", "b"])


# ----------------------------------------------------------------------------- ablation

@pytest.mark.parametrize("attention", ["se", "eca", "cbam", "ge"])
def test_ablation_equals_the_backbone_without_the_modules(attention):
    torch.manual_seed(0)
    model = create_model("resnet18", attention, num_classes=7).eval()
    stripped = create_model("resnet18", None, num_classes=7).eval()
    ours = model.state_dict()
    stripped.load_state_dict({k: ours[k.replace("bn2.", "bn2.norm.") if k.split(".")[0].startswith("layer")
                                      and ".bn2." in k else k] for k in stripped.state_dict()})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        with T.ablate_attention(model) as names:
            ablated = model(x)
        after = model(x)
    assert len(names) == 8
    torch.testing.assert_close(ablated, stripped(x))
    torch.testing.assert_close(after, before)  # the hooks are gone
    assert not torch.allclose(ablated, before)


def test_ablation_of_bam_and_sk():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    bam = create_model("resnet18", "bam", num_classes=5).eval()
    with torch.no_grad(), T.ablate_attention(bam):
        ablated = bam(x)
        for _, module in attention_modules(bam):
            module.forward = lambda inputs: inputs  # what "switched off" should mean
        reference = bam(x)
    torch.testing.assert_close(ablated, reference)

    sk = create_model("resnet18", "sk", num_classes=5).eval()
    with torch.no_grad(), T.ablate_attention(sk):
        ablated = sk(x)
    for _, module in attention_modules(sk):  # equal branch weights 1/m, computed by the module itself
        module._weights = lambda branches, m=module: torch.full(
            (branches[0].shape[0], m.num_branches, m.out_channels, 1, 1), 1 / m.num_branches)
    with torch.no_grad():
        torch.testing.assert_close(ablated, sk(x))
    with pytest.raises(ValueError, match="no attention_lib attention module"):
        with T.ablate_attention(create_model("resnet18")):
            pass


# ----------------------------------------------------------------------------- per-class statistics

def test_class_attention_averages_each_class():
    torch.manual_seed(0)
    model = create_model("resnet18", "cbam", num_classes=4).eval()
    images, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 2, 2, 0, 3, 2])
    hits = []
    per_class, counts = T.class_attention(model, [(images[:4], labels[:4]), (images[4:], labels[4:])], 4,
                                          on_logits=lambda logits, y: hits.append(len(y)))
    assert hits == [4, 2] and counts.tolist() == [2, 0, 3, 1]
    assert all(name.endswith(".channel") for name in per_class) and len(per_class) == 8  # spatial maps left out
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(images)
    name = "layer3.1.bn2.attention.channel"
    weights = recorder.named[name].tensor
    torch.testing.assert_close(per_class[name][2], weights[labels == 2].mean(0))
    assert torch.equal(per_class[name][1], torch.zeros(256))  # no images of class 1
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        T.class_attention(model, [(images[:1], torch.tensor([4]))], 4)


def test_class_attention_keeps_sk_branches():
    model = create_model("resnet18", "sk", num_classes=3).eval()
    per_class, _ = T.class_attention(model, [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))], 3)
    table = per_class["layer1.0.conv1"]
    assert table.shape == (3, 2, 64)
    torch.testing.assert_close(table[:2].sum(dim=1), torch.ones(2, 64))  # softmax over the branches


# ----------------------------------------------------------------------------- Imagenette

def test_imagenette_val_loads_the_real_layout(imagenette_tree, random_seresnet50):
    dataset = T.imagenette_val(imagenette_tree, random_seresnet50, download=False)
    assert len(dataset) == 12 and dataset.wnids == sorted(T.IMAGENETTE_TO_IMAGENET)[:3]
    image, label = dataset[5]
    assert image.shape == (3, 224, 224) and label == 1
    subset = T.imagenette_val(imagenette_tree, random_seresnet50, download=False, per_class=2)
    assert len(subset) == 6 and sorted(label for _, label in subset) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(FileNotFoundError, match=r"no folder .*missing/imagenette2-160/val"):
        T.imagenette_val(imagenette_tree / "missing", random_seresnet50, download=False)
    with pytest.raises(ValueError, match="per_class must be None or a positive int, got 0"):
        T.imagenette_val(imagenette_tree, random_seresnet50, download=False, per_class=0)
    with pytest.raises(ValueError, match=r"size must be one of \('160px', '320px', 'full'\)"):
        T.imagenette_val(imagenette_tree, random_seresnet50, download=False, size="64px")


@pytest.mark.parametrize("index,expected", [(0, 1 / 3), (217, 1 / 3), (482, 1 / 3), (701, 0.0)])
def test_imagenette_top1_counts_imagenet_classes(imagenette_tree, index, expected):
    """A model that always answers one ImageNet class is right on exactly that class's images."""
    result = T.evaluate_imagenette(ConstantClassifier(index), imagenette_tree, download=False, num_workers=0,
                                   progress=False)
    assert result.images == 12 and result.top1 == pytest.approx(expected)
    assert result.class_names == ["tench", "English springer", "cassette player"]
    assert result.per_class == {} and result.counts.tolist() == [4, 4, 4]
    # Among the ten Imagenette classes, an answer outside the three present ones is wrong too.
    assert result.top1_among_10 == pytest.approx(expected)


def test_imagenette_evaluation_records_attention(imagenette_tree, random_seresnet50):
    result = T.evaluate_imagenette(random_seresnet50, imagenette_tree, download=False, per_class=2,
                                   batch_size=3, num_workers=0, progress=False)
    assert result.images == 6 and 0.0 <= result.top1 <= 1.0
    assert len(result.per_class) == 16 and result.per_class["layer4.2.bn3.attention"].shape == (3, 2048)


def test_command_line_writes_the_measurement(imagenette_tree, tmp_path, capsys):
    output = tmp_path / "top1.json"
    argv = ["seresnet50", "--weights", "random", "--data-root", str(imagenette_tree), "--no-download",
            "--per-class", "1", "--num-workers", "0", "--output", str(output)]
    assert T.main(argv) == 0
    record = json.loads(output.read_text())
    assert record["images"] == 3 and record["result"] is False and "RANDOM WEIGHTS" in record["weights"]
    assert record["command"][-len(argv):] == argv and record["date"] and record["hardware"]["cpu_count"] >= 1
    assert "first 1 images per class" in record["dataset"]
    assert "top-1" in capsys.readouterr().out


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoint_of_a_training_run(tmp_path, capsys):
    config = notebook_config(smoke=True, attention="cbam", output_dir=str(tmp_path / "run"))
    train(config)
    model = T.load_checkpoint_model(tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())
    assert model.run_info["smoke"] and model.run_info["epochs"] == 2 and not T.is_result(model)
    assert "SMOKE RUN, not a result" in T.weights_label(model)
    assert T.preprocess(load_photo("coffee"), model).shape == (1, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match=r"checkpoint: no file at .*nowhere; expected the checkpoint\.pt"):
        T.load_checkpoint_model(tmp_path / "nowhere")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a checkpoint of attention_lib.train"):
        T.load_checkpoint_model(tmp_path / "other.pt")


# ----------------------------------------------------------------------------- plots

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


# ----------------------------------------------------------------------------- chapter helpers

def test_pick_layers_spreads_over_the_depth():
    layers = {f"l{i}": i for i in range(16)}
    assert T.pick_layers(layers) == {"l0": 0, "l5": 5, "l10": 10, "l15": 15}
    assert T.pick_layers({"a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_show_attention_draws_real_models_and_not_smoke_runs(random_seresnet50, tmp_path, capsys):
    fig = T.show_attention(random_seresnet50, "coffee")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4 and titles[0].startswith("layer1.0.bn3")
    assert "RANDOM WEIGHTS" in fig._suptitle.get_text()
    plt.close(fig)
    train(notebook_config(smoke=True, attention="bam", output_dir=str(tmp_path / "run")))
    assert T.show_attention(T.load_checkpoint_model(tmp_path / "run"), "rocket") is None
    assert "Smoke run: attention recorded (layer1.bam: (1, 64, 8, 8)" in capsys.readouterr().out
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


def test_plot_spread_by_depth():
    from attention_lib.figures import plot_spread_by_depth

    tables = {"layer1.0.bn3.attention": torch.tensor([[0.0, 1.0], [1.0, 1.0]]),
              "layer4.2.bn3.attention": torch.zeros(2, 3)}
    fig = plot_spread_by_depth(tables, title="t")
    assert list(fig.axes[0].lines[0].get_ydata()) == pytest.approx([0.5 ** 0.5 / 2, 0.0])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["layer1.0", "layer4.2"]
    plt.close(fig)
    with pytest.raises(ValueError, match="per_class is empty"):
        plot_spread_by_depth({})
