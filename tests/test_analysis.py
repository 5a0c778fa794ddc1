"""Tests of attention_lib.analysis: preprocessing, top-k, ablation, per-class attention.

Nothing here downloads: published architectures are built with random weights.
"""

import pytest
import torch

from attention_lib import analysis as A
from attention_lib.models import create_model
from attention_lib.photos import load_photo
from attention_lib.recorder import AttentionRecorder, attention_modules
from fakes import ConstantClassifier


def test_preprocess_follows_the_weights_config(random_seresnet50):
    photo = load_photo("chelsea")
    batch = A.preprocess(photo, random_seresnet50)
    assert batch.shape == (1, 3, 224, 224)  # a1_in1k is evaluated at 224 (timm's test size is 288)
    normalised, crops = A.photo_batch(random_seresnet50, ["chelsea"])
    torch.testing.assert_close(normalised, batch)
    assert 0 <= float(crops.min()) and float(crops.max()) <= 1 and crops.shape == batch.shape
    cfg = {"mean": (0.0,) * 3, "std": (1.0,) * 3, "input_size": (3, 64, 64), "crop_pct": 0.5,
           "interpolation": "bilinear"}
    flat = A.preprocess(torch.full((2, 3, 300, 200), 0.25), cfg)
    assert flat.shape == (2, 3, 64, 64) and torch.allclose(flat, torch.full_like(flat, 0.25), atol=1e-5)
    with pytest.raises(ValueError, match=r"images must be \(n, 3, H, W\).*got shape \(1, 1, 8, 8\)"):
        A.preprocess(torch.zeros(1, 1, 8, 8), cfg)
    with pytest.raises(ValueError, match="no pretrained_cfg"):
        A.preprocess(photo, create_model("resnet18"))

def test_predict_top_k_orders_and_names_the_classes():
    model = ConstantClassifier(index=217)
    rows = A.predict_top_k(model, torch.zeros(2, 3, 8, 8), k=3)
    assert len(rows) == 2 and [name for name, _ in rows[0]][0] == "English springer"
    probabilities = [p for _, p in rows[1]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        A.predict_top_k(model, torch.zeros(1, 3, 8, 8), k=0)
    with pytest.raises(ValueError, match="categories has 2 names but the model predicts 1000 classes"):
        A.predict_top_k(model, torch.zeros(1, 3, 8, 8), categories=["a", "b"])

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
        with A.ablate_attention(model) as names:
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
    with torch.no_grad(), A.ablate_attention(bam):
        ablated = bam(x)
        for _, module in attention_modules(bam):
            module.forward = lambda inputs: inputs  # what "switched off" should mean
        reference = bam(x)
    torch.testing.assert_close(ablated, reference)

    sk = create_model("resnet18", "sk", num_classes=5).eval()
    with torch.no_grad(), A.ablate_attention(sk):
        ablated = sk(x)
    for _, module in attention_modules(sk):  # equal branch weights 1/m, computed by the module itself
        module._weights = lambda branches, m=module: torch.full(
            (branches[0].shape[0], m.num_branches, m.out_channels, 1, 1), 1 / m.num_branches)
    with torch.no_grad():
        torch.testing.assert_close(ablated, sk(x))
    with pytest.raises(ValueError, match="no attention_lib attention module"):
        with A.ablate_attention(create_model("resnet18")):
            pass

def test_class_attention_averages_each_class():
    torch.manual_seed(0)
    model = create_model("resnet18", "cbam", num_classes=4).eval()
    images, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 2, 2, 0, 3, 2])
    hits = []
    per_class, counts = A.class_attention(model, [(images[:4], labels[:4]), (images[4:], labels[4:])], 4,
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
        A.class_attention(model, [(images[:1], torch.tensor([4]))], 4)

def test_class_attention_keeps_sk_branches():
    model = create_model("resnet18", "sk", num_classes=3).eval()
    per_class, _ = A.class_attention(model, [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))], 3)
    table = per_class["layer1.0.conv1"]
    assert table.shape == (3, 2, 64)
    torch.testing.assert_close(table[:2].sum(dim=1), torch.ones(2, 64))  # softmax over the branches

def test_pick_layers_spreads_over_the_depth():
    layers = {f"l{i}": i for i in range(16)}
    assert A.pick_layers(layers) == {"l0": 0, "l5": 5, "l10": 10, "l15": 15}
    assert A.pick_layers({"a": 1, "b": 2}) == {"a": 1, "b": 2}
