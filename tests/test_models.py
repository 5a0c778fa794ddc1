"""Tests for attention_lib.models (placement, errors), attention_lib.recorder (hooks, named maps)
and attention_lib.costs (counts against the papers)."""

import inspect

import pytest
import torch
from torch import nn

from attention_lib.bam import BAM
from attention_lib.cbam import CBAM
from attention_lib.efficient_channel_attention import ECA, SEVar2
from attention_lib.gather_excite import GatherExcite
from attention_lib.selective_kernel import SelectiveKernel
from attention_lib.squeeze_excitation import SE
from attention_lib.costs import count_flops, count_parameters, model_flops, time_forward
from attention_lib.mechanisms import mechanism
from attention_lib.models import ARCHS, ATTENTIONS, attention_arguments, create_model
from attention_lib.recorder import AttentionMap, AttentionRecorder, attention_modules, is_attention_module

TYPES = {"se": SE, "eca": ECA, "cbam": CBAM, "bam": BAM, "ge": GatherExcite, "sk": SelectiveKernel}


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_every_attention_builds_and_runs(arch, attention):
    torch.manual_seed(0)
    model = create_model(arch, attention, num_classes=7, image_size=64).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    modules = attention_modules(model)
    if attention is None:
        assert modules == []
    else:
        assert modules and all(isinstance(m, mechanism(attention).module) for _, m in modules)


@pytest.mark.parametrize("arch,attention,count", [
    ("resnet18", "se", 8), ("resnet34", "eca", 16), ("resnet50", "cbam", 16), ("resnet101", "se", 33),
    ("resnext50_32x4d", "sk", 16), ("mobilenet_v2", "se", 10), ("resnet50", "bam", 3), ("mobilenet_v2", "bam", 3),
])
def test_number_of_attention_modules(arch, attention, count):
    assert len(attention_modules(create_model(arch, attention, num_classes=10))) == count


def test_block_attention_sits_on_the_residual_branch_before_the_addition():
    model = create_model("resnet50", "se")
    block = model.layer2[0]
    assert isinstance(block.bn3, nn.Sequential) and isinstance(block.bn3.attention, SE)
    assert isinstance(block.bn3.norm, nn.BatchNorm2d)
    assert block.bn3.attention.channels == 512
    assert not any(isinstance(m, SE) for m in block.downsample.modules())  # the shortcut is untouched


def test_bam_after_stages_one_to_three_only():
    model = create_model("resnet50", "bam")
    assert [model.layer1.bam.channels, model.layer2.bam.channels, model.layer3.bam.channels] == [256, 512, 1024]
    assert not any(isinstance(m, BAM) for m in model.layer4.modules())


def test_sk_replaces_the_three_by_three_convolution():
    model = create_model("resnext50_32x4d", "sk")
    block = model.layer3[0]
    assert isinstance(block.conv2, SelectiveKernel) and isinstance(block.bn2, nn.Identity)
    assert block.conv2.stride == 2 and block.conv2.groups == 32


def test_ge_global_parameterised_gather_gets_each_stage_size():
    model = create_model("resnet50", "ge", image_size=96, param_gather=True)
    sizes = {module.spatial_size for _, module in attention_modules(model)}
    assert sizes == {(24, 24), (12, 12), (6, 6), (3, 3)}
    assert model.eval()(torch.randn(1, 3, 96, 96)).shape == (1, 1000)


@pytest.mark.parametrize("attention,paper_millions", [
    (None, 25.56),   # ResNet-50 (SE paper, table 2)
    ("se", 28.09),   # SE-ResNet-50 (SE paper, table 2)
    ("cbam", 28.09),  # ResNet-50 + CBAM (CBAM paper, table 4)
    ("bam", 25.92),  # ResNet-50 + BAM (BAM paper, table 3)
    ("eca", 25.56),  # ECA-Net50 (ECA paper, table 2)
])
def test_resnet50_parameter_counts_match_the_papers(attention, paper_millions):
    millions = count_parameters(create_model("resnet50", attention)) / 1e6
    assert millions == pytest.approx(paper_millions, abs=0.01)


def test_sknet50_parameter_count_matches_the_paper():
    assert count_parameters(create_model("resnext50_32x4d", "sk")) / 1e6 == pytest.approx(27.5, abs=0.05)


def test_flops_are_counted_by_pytorch():
    model = create_model("resnet50")
    flops = model_flops(model, image_size=224)
    assert 4.0e9 < flops / 2 < 4.2e9  # ResNet-50: about 4.1 G multiply-adds
    assert next(model.parameters()).device.type == "cpu"  # counted on a meta copy; the model is untouched
    assert count_flops(nn.Conv2d(8, 16, 3, bias=False), (2, 8, 10, 10)) == 2 * 2 * 16 * 8 * 9 * 8 * 8
    assert count_flops(nn.Conv2d(8, 16, 1), (1, 8, 4, 4), device="cpu") == 2 * 16 * 8 * 16
    # a depthwise 1x1 layer counts its multiply-adds on any device, though it runs as a product
    for device in ("meta", "cpu"):
        assert count_flops(SEVar2(8), (2, 8, 4, 4), device=device) == 2 * 2 * 8


def test_time_forward_reports_median_and_spread_per_callable():
    calls = []
    timings = time_forward({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert set(timings) == {"a", "b"} and all(median >= 0 and spread >= 0 for median, spread in timings.values())
    assert calls == ["a", "b"] + ["a", "b"] * 3  # one warm-up each, then the callables take turns
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_forward({"a": lambda: None}, repeats=0)


def test_attention_recorder_reads_maps_through_hooks():
    model = create_model("resnet18", "se", num_classes=5).eval()
    with AttentionRecorder(model) as recorder:
        model(torch.randn(2, 3, 64, 64))
    assert len(recorder.maps) == 8
    weights = recorder.maps["layer4.1.bn2.attention"]
    assert weights.shape == (2, 512, 1, 1) and bool((weights > 0).all() and (weights < 1).all())
    model(torch.randn(1, 3, 64, 64))  # hooks are gone after the block
    assert recorder.maps["layer4.1.bn2.attention"].shape[0] == 2


@pytest.mark.parametrize("attention,kwargs,name,dims,shape", [
    ("se", {}, "layer2.0.bn2.attention", ("batch", "channel"), (2, 128)),
    ("eca", {}, "layer2.0.bn2.attention", ("batch", "channel"), (2, 128)),
    ("cbam", {}, "layer2.0.bn2.attention.channel", ("batch", "channel"), (2, 128)),
    ("cbam", {}, "layer2.0.bn2.attention.spatial", ("batch", "height", "width"), (2, 8, 8)),
    ("bam", {}, "layer2.bam", ("batch", "channel", "height", "width"), (2, 128, 8, 8)),
    ("ge", {}, "layer2.0.bn2.attention", ("batch", "channel"), (2, 128)),
    ("ge", {"extent": 2}, "layer2.0.bn2.attention", ("batch", "channel", "height", "width"), (2, 128, 8, 8)),
    ("sk", {}, "layer2.0.conv1", ("batch", "branch", "channel"), (2, 2, 128)),
])
def test_recorder_names_the_dimensions(attention, kwargs, name, dims, shape):
    torch.manual_seed(0)
    model = create_model("resnet18", attention, num_classes=3, image_size=64, **kwargs).eval()
    with AttentionRecorder(model) as recorder:
        model(torch.randn(2, 3, 64, 64))
    item = recorder.named[name]
    assert item.dims == dims and item.tensor.shape == shape
    assert item.module == {"se": "SE", "eca": "ECA", "cbam": "CBAM", "bam": "BAM", "ge": "GatherExcite",
                           "sk": "SelectiveKernel"}[attention]
    assert item.size("batch") == 2
    if "channel" in dims:
        assert item.channel_weights().shape == ((2, 2, 128) if item.kind == "branch" else (2, 128))
    if "height" in dims:
        assert item.spatial_map().shape == (2, 8, 8)


def test_recorded_cbam_maps_are_the_ones_its_forward_pass_uses():
    torch.manual_seed(0)
    model = create_model("resnet18", "cbam", num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with AttentionRecorder(model) as recorder:
        model(x)
    cbam = model.layer1[0].bn2.attention
    inner = {}
    cbam.register_forward_hook(lambda module, inputs, output: inner.update(x=inputs[0]))
    model(x)
    channel = recorder.named["layer1.0.bn2.attention.channel"].tensor
    spatial = recorder.named["layer1.0.bn2.attention.spatial"].tensor
    expected = inner["x"] * channel[:, :, None, None] * spatial[:, None]
    torch.testing.assert_close(cbam(inner["x"]), expected)
    torch.testing.assert_close(recorder.maps["layer1.0.bn2.attention"][:, 0], spatial)


def test_attention_map_errors_name_the_problem():
    channel = AttentionMap("a", "SE", torch.zeros(2, 4), ("batch", "channel"))
    spatial = AttentionMap("b", "CBAM", torch.zeros(2, 3, 3), ("batch", "height", "width"))
    with pytest.raises(ValueError, match=r"dims \('batch',\) name 1 dimensions, but the tensor has 2"):
        AttentionMap("c", "SE", torch.zeros(2, 4), ("batch",))
    with pytest.raises(ValueError, match="a has no dimension 'height'"):
        channel.size("height")
    with pytest.raises(ValueError, match="a \\(SE\\) has one weight per channel: it has no spatial map"):
        channel.spatial_map()
    with pytest.raises(ValueError, match="b \\(CBAM\\) is a spatial map: it has no per-channel weights"):
        spatial.channel_weights()


def test_recorder_reads_the_chapters_own_classes():
    """A chapter defines SE in a notebook cell (the code `make export` copies): the
    recorder finds that class too, by its name and its attention method."""
    from attention_lib import squeeze_excitation

    namespace = {}
    exec(compile(inspect.getsource(squeeze_excitation), "<notebook cell>", "exec"), namespace)
    notebook_se = namespace["SE"]
    assert notebook_se is not squeeze_excitation.SE
    model = nn.Sequential(nn.Conv2d(3, 16, 3), notebook_se(16, reduction=4), nn.Conv2d(16, 16, 1))
    with AttentionRecorder(model) as recorder:
        model(torch.randn(2, 3, 10, 10))
    assert list(recorder.named) == ["1"] and recorder.named["1"].dims == ("batch", "channel")
    assert not is_attention_module(nn.Conv2d(3, 3, 1))


def test_recorder_needs_attention():
    with pytest.raises(ValueError, match="no attention_lib attention module"):
        AttentionRecorder(create_model("resnet18"))


@pytest.mark.parametrize("kwargs,message", [
    ({"arch": "resnet9000"}, r"arch must be one of resnet18, resnet34.*mobilenet_v2; got 'resnet9000'"),
    ({"arch": "resnet18", "attention": "transformer"}, r"attention must be one of None, 'se'.*'sk'.*; got 'transformer'"),
    ({"arch": "resnet18", "reduction": 8}, r"were given but attention is None"),
    ({"arch": "mobilenet_v2", "attention": "sk"}, r"not defined for mobilenet_v2"),
    ({"arch": "resnet18", "num_classes": 0}, r"num_classes must be a positive int"),
    ({"arch": "resnet18", "image_size": 16}, r"image_size must be an int >= 32"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model(**kwargs)


def test_unknown_attention_argument_is_refused_before_anything_is_built(monkeypatch):
    """create_model("resnet50", "eca", reduction=8) used to build the backbone and then fail
    with Python's own TypeError; now the message lists what ECA accepts, and nothing is built."""
    import torchvision

    built = []
    monkeypatch.setattr(torchvision.models, "resnet50", lambda **kw: built.append(kw))
    with pytest.raises(ValueError, match=r"attention_kwargs \['reduction'\] are not arguments of ECA "
                                         r"\(attention='eca'\); it accepts: kernel_size, gamma, b"):
        create_model("resnet50", "eca", reduction=8)
    assert built == []


@pytest.mark.parametrize("attention,accepted", [
    ("se", ("reduction", "min_width")), ("eca", ("kernel_size", "gamma", "b")),
    ("bam", ("reduction", "dilation", "combine", "min_width")),
    ("sk", ("num_branches", "kernel_size", "groups", "reduction", "min_width")),
])
def test_attention_arguments_are_the_modules_own_minus_what_create_model_sets(attention, accepted):
    assert attention_arguments(attention) == accepted


def test_attention_kwargs_reach_the_modules():
    model = create_model("resnet18", "eca", kernel_size=5)
    assert {m.kernel_size for _, m in attention_modules(model)} == {5}
    with pytest.raises(ValueError, match="reduction"):
        create_model("resnet18", "se", reduction=0)


def test_archs_are_the_documented_ones():
    assert ARCHS == ("resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "mobilenet_v2")


# --- The placements Part II uses, exercised with small stand-in mechanisms --------------

class _Gate(nn.Module):
    """A stand-in mechanism that records the width it was built for."""

    def __init__(self, channels: int, scale: float = 1.0) -> None:
        super().__init__()
        self.channels, self.scale = channels, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == self.channels, (x.shape, self.channels)
        return x * self.scale

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :, :1, :1], self.scale)


class _AnyWidth(nn.Module):
    """A stand-in with no channels argument (like SimAM)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


def _register(monkeypatch, entry):
    import attention_lib.mechanisms as mechanisms
    import attention_lib.models as models
    monkeypatch.setattr(mechanisms, "_BY_NAME", {**mechanisms._BY_NAME, entry.name: entry})
    monkeypatch.setattr(models, "ATTENTIONS", (*models.ATTENTIONS, entry.name))


def _count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


def test_block_placement_can_be_limited_to_some_stages(monkeypatch):
    from attention_lib.mechanisms import Mechanism
    _register(monkeypatch, Mechanism("gate34", _Gate, "test", "test", stages=(3, 4), defaults={"scale": 0.5}))
    model = create_model("resnet50", "gate34", num_classes=10)
    assert _count(model, _Gate) == 6 + 3
    assert all(isinstance(b.bn3.attention, _Gate) for b in [*model.layer3, *model.layer4])
    assert not any(isinstance(m, _Gate) for m in [*model.layer1.modules(), *model.layer2.modules()])
    assert model.layer3[0].bn3.attention.scale == 0.5  # the mechanism's default
    assert create_model("resnet50", "gate34", scale=2.0).layer4[0].bn3.attention.scale == 2.0  # the caller wins
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_before_last_block_inserts_a_block_of_its_own(monkeypatch):
    from attention_lib.mechanisms import Mechanism
    _register(monkeypatch, Mechanism("inserted", _Gate, "test", "test", placement="before last block", stages=(3,)))
    model = create_model("resnet50", "inserted", num_classes=10)
    names = [name for name, _ in model.layer3.named_children()]
    assert names == ["0", "1", "2", "3", "4", "inserted", "5"]
    assert model.layer3.inserted.channels == 1024 and _count(model, _Gate) == 1
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    with pytest.raises(ValueError, match="not defined for mobilenet_v2"):
        create_model("mobilenet_v2", "inserted")


def test_after_depthwise_goes_into_every_inverted_residual_block(monkeypatch):
    from attention_lib.mechanisms import Mechanism
    from torchvision.models.mobilenetv2 import InvertedResidual
    _register(monkeypatch, Mechanism("dw", _Gate, "test", "test", inverted_residual="after depthwise"))
    model = create_model("mobilenet_v2", "dw", num_classes=10)
    blocks = [m for m in model.features if isinstance(m, InvertedResidual)]
    assert _count(model, _Gate) == len(blocks) == 17  # with or without a shortcut
    for block in blocks:
        depthwise = block.conv[len(block.conv) - 3]
        assert depthwise.attention.channels == depthwise.depthwise[0].out_channels == depthwise.depthwise[0].groups
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_a_mechanism_without_a_channels_argument_is_built_without_one(monkeypatch):
    from attention_lib.mechanisms import Mechanism
    entry = Mechanism("anywidth", _AnyWidth, "test", "test")
    _register(monkeypatch, entry)
    assert _count(create_model("resnet18", "anywidth"), _AnyWidth) == 8
    assert attention_arguments("anywidth") == ()
    assert isinstance(entry.variants["_AnyWidth"](8, (4, 4)), _AnyWidth)


def test_a_mechanism_entry_refuses_bad_placement_fields():
    from attention_lib.mechanisms import Mechanism
    with pytest.raises(ValueError, match="stages"):
        Mechanism("x", _Gate, "test", "test", stages=(0, 5))
    with pytest.raises(ValueError, match="inverted_residual"):
        Mechanism("x", _Gate, "test", "test", inverted_residual="somewhere")
    with pytest.raises(ValueError, match="placement"):
        Mechanism("x", _Gate, "test", "test", placement="everywhere")


def test_modules_can_name_their_own_maps():
    from attention_lib.recorder import _named_maps

    class Positions(nn.Module):
        def attention(self, x):
            n, _, h, w = x.shape
            return torch.softmax(torch.randn(n, h * w, h * w), dim=-1)

        def named_maps(self, x, weights):
            n, _, h, w = x.shape
            return [("", weights.view(n, h * w, h, w), ("batch", "query", "height", "width"))]

    x = torch.randn(2, 3, 4, 5)
    module = Positions()
    (item,) = _named_maps("layer3.nl", module, x, module.attention(x))
    assert item.name == "layer3.nl" and item.kind == "position"
    assert item.spatial_map().shape == (2, 4, 5)
    torch.testing.assert_close(item.spatial_map().sum(dim=(1, 2)), torch.ones(2))  # each query's map sums to 1
    with pytest.raises(ValueError, match="position map"):
        item.channel_weights()
