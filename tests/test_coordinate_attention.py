"""Tests for attention_lib.coordinate_attention (chapter 11).

The reference computations below are written from the paper's equations (11.1)-(11.7) with
plain tensor operations (einsum, explicit batch norm), independently of the module's code.
"""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import Bottleneck

from attention_lib import AttentionRecorder, create_model
from attention_lib.analysis import ablate_attention
from attention_lib.coordinate_attention import CoordinateAttention
from attention_lib.mechanisms import ablation_of, mechanism
from attention_lib.primitives import rescale_outer
from attention_lib.weights.availability import AVAILABILITY
from module_checks import assert_same_in_channels_last

#: The widths of MobileNetV2's depthwise convolutions (its expanded widths), block by block.
MOBILENET_V2_EXPANDED = [32, 96, 144, 144, 192, 192, 192, 384, 384, 384, 384, 576, 576, 576, 960, 960, 960]
RESNET50_WIDTHS = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def ca_parameters(channels: int, width: int, bias: bool = True) -> int:
    """Equation (11.9): W_1 (no bias), the batch norm's scale and shift, two gate convolutions."""
    return channels * width + 2 * width + 2 * (width * channels + (channels if bias else 0))


def randomised(module: CoordinateAttention, seed: int = 0) -> CoordinateAttention:
    """The module with random running statistics and batch-norm affine parameters too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.norm.running_mean.copy_(torch.randn(module.width, generator=generator) * 0.2)
        module.norm.running_var.copy_(torch.rand(module.width, generator=generator) + 0.5)
        module.norm.weight.copy_(torch.rand(module.width, generator=generator) + 0.5)
        module.norm.bias.copy_(torch.randn(module.width, generator=generator) * 0.2)
    return module


def reference(module: CoordinateAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a_h (n, c, h), a_w (n, c, w), output) from eq. (11.1)-(11.7), written independently."""
    n, c, h, w = x.shape
    z_h = x.sum(dim=3) / w  # eq. (11.1)
    z_w = x.sum(dim=2) / h  # eq. (11.2)
    strip = torch.cat([z_h, z_w], dim=2)  # (n, c, h + w)
    t = torch.einsum("dc,ncp->ndp", module.reduce.weight[:, :, 0, 0], strip)
    norm = module.norm
    if module.training:  # batch statistics over the batch and the h + w strip positions (biased variance)
        mean = t.mean(dim=(0, 2), keepdim=True)
        var = ((t - mean) ** 2).mean(dim=(0, 2), keepdim=True)
    else:
        mean, var = norm.running_mean[None, :, None], norm.running_var[None, :, None]
    t = (t - mean) / torch.sqrt(var + norm.eps) * norm.weight[None, :, None] + norm.bias[None, :, None]
    f = t * torch.clamp(t + 3, 0, 6) / 6  # eq. (11.3), (11.4): h-swish
    f_h, f_w = f[..., :h], f[..., h:]

    def head(conv: nn.Conv2d, features: torch.Tensor) -> torch.Tensor:
        logits = torch.einsum("cd,ndp->ncp", conv.weight[:, :, 0, 0], features)
        if conv.bias is not None:
            logits = logits + conv.bias[None, :, None]
        return 1 / (1 + torch.exp(-logits))

    a_h, a_w = head(module.expand_h, f_h), head(module.expand_w, f_w)  # eq. (11.5), (11.6)
    out = torch.einsum("ncij,nci,ncj->ncij", x, a_h, a_w)  # eq. (11.7)
    return a_h, a_w, out


# --- the equations ---------------------------------------------------------------------


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 64, 7, 5), (3, 40, 1, 6), (1, 96, 9, 9), (2, 16, 1, 1)])
def test_equations_against_an_independent_computation(training, bias, shape):
    torch.manual_seed(0)
    module = randomised(CoordinateAttention(shape[1], reduction=4, bias=bias)).double().train(training)
    x = torch.randn(shape, dtype=torch.float64)
    a_h, a_w, out = reference(module, x)
    got_h, got_w = module.directional(x)
    assert got_h.shape == (shape[0], shape[1], shape[2], 1) and got_w.shape == (shape[0], shape[1], 1, shape[3])
    torch.testing.assert_close(got_h[..., 0], a_h)
    torch.testing.assert_close(got_w[:, :, 0], a_w)
    torch.testing.assert_close(module.attention(x), torch.einsum("nci,ncj->ncij", a_h, a_w))
    torch.testing.assert_close(module(x), out)


def test_the_gate_is_an_outer_product_of_rank_one_per_channel():
    torch.manual_seed(1)
    module = randomised(CoordinateAttention(48, reduction=4)).eval()
    x = torch.randn(2, 48, 12, 9)
    a_h, a_w = module.directional(x)
    gate = module.attention(x)
    assert torch.equal(gate, a_h * a_w)
    assert bool((gate > 0).all() and (gate < 1).all())
    singular = torch.linalg.svdvals(gate.double())
    assert (singular[..., 1] / singular[..., 0]).max() < 1e-6  # rank one
    # and not a constant: the gate varies along both axes
    assert gate.std(dim=2).min() > 0 and gate.std(dim=3).min() > 0


def test_a_one_by_one_map_gives_an_se_like_channel_gate_eq_11_8():
    torch.manual_seed(2)
    module = randomised(CoordinateAttention(32, reduction=4)).eval()
    z = torch.randn(4, 32, 1, 1)
    with torch.no_grad():
        f = module.act(module.norm(module.reduce(z)))
        expected = torch.sigmoid(module.expand_h(f)) * torch.sigmoid(module.expand_w(f))
        torch.testing.assert_close(module.attention(z), expected)
        # constant channels on a larger map: the same gate, one weight per channel
        gate = module.attention(z.expand(4, 32, 6, 11))
        torch.testing.assert_close(gate, expected.expand(4, 32, 6, 11))
        # the second head switched off: an SE excitation (its hidden layer with BN and h-swish)
        module.expand_w.weight.zero_()
        module.expand_w.bias.fill_(30.0)
        torch.testing.assert_close(module.attention(z), torch.sigmoid(module.expand_h(f)))


def test_the_non_linearity_is_h_swish():
    module = CoordinateAttention(16, reduction=2)
    assert isinstance(module.act, nn.Hardswish) and isinstance(module.gate, nn.Sigmoid)
    t = torch.linspace(-6, 6, 241)
    torch.testing.assert_close(module.act(t), t * F.relu6(t + 3) / 6)  # eq. (11.4), MobileNetV3's h-swish


def test_output_keeps_shape_dtype_and_layout():
    torch.manual_seed(3)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        module = CoordinateAttention(32, reduction=4).to(dtype).eval()
        x = torch.randn(2, 32, 7, 4, dtype=dtype)
        y = module(x)
        assert y.shape == x.shape and y.dtype == dtype
    assert_same_in_channels_last(CoordinateAttention(32, reduction=4).eval(), torch.randn(2, 32, 6, 5), atol=1e-6)


def test_gradients_reach_both_gates_and_the_input():
    torch.manual_seed(4)
    module = CoordinateAttention(24, reduction=3).train()
    x = torch.randn(3, 24, 5, 7, requires_grad=True)
    module(x).square().sum().backward()
    for conv in (module.reduce, module.expand_h, module.expand_w):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert x.grad is not None and 0 not in x.grad.stride()
    small = CoordinateAttention(8, reduction=2, min_width=4).double().train()
    assert torch.autograd.gradcheck(small, (torch.randn(2, 8, 4, 3, dtype=torch.float64, requires_grad=True),),
                                    fast_mode=True)


# --- width and parameters ----------------------------------------------------------------


@pytest.mark.parametrize("channels", sorted(set(MOBILENET_V2_EXPANDED + RESNET50_WIDTHS)))
def test_width_is_the_official_max_8_c_over_32(channels):
    """The authors' coordatt.py and mbv2_ca.py: mip = max(8, inp // 32)."""
    assert CoordinateAttention(channels).width == max(8, channels // 32)


def test_width_floor_and_reduction_argument():
    assert CoordinateAttention(64, reduction=4).width == 16
    assert CoordinateAttention(64, reduction=16, min_width=2).width == 4
    assert CoordinateAttention(4, reduction=1).width == 4  # never wider than the input
    with pytest.raises(ValueError, match="reduction"):
        CoordinateAttention(16)  # r = 32 > c = 16: the bottleneck would have c // r = 0 units


@pytest.mark.parametrize("channels,bias", [(32, True), (96, True), (960, True), (2048, True), (256, False)])
def test_parameter_count_eq_11_9(channels, bias):
    module = CoordinateAttention(channels, bias=bias)
    assert count(module) == ca_parameters(channels, module.width, bias)
    assert module.reduce.bias is None  # batch norm follows: a bias would cancel


def test_parameters_added_to_mobilenet_v2_and_resnet50():
    assert sum(ca_parameters(c, max(8, c // 32)) for c in MOBILENET_V2_EXPANDED) == 446_384
    assert sum(ca_parameters(c, max(8, c // 32)) for c in RESNET50_WIDTHS) == 1_917_360


# --- the authors' code and timm ----------------------------------------------------------


def test_official_shared_bias_folds_into_the_running_mean():
    """The authors' code gives the shared 1x1 convolution a bias before the batch norm. In
    training the batch mean removes it exactly; in evaluation it is the same function as ours
    with the bias subtracted from the running mean. So no parameter of theirs is lost."""
    torch.manual_seed(5)
    ours = randomised(CoordinateAttention(64, reduction=8))
    theirs_conv = nn.Conv2d(64, ours.width, 1, bias=True)  # the official shared convolution
    with torch.no_grad():
        theirs_conv.weight.copy_(ours.reduce.weight)
        theirs_conv.bias.normal_()
    strip = torch.randn(3, 64, 11, 1)
    official_norm = nn.BatchNorm2d(ours.width)
    official_norm.load_state_dict(ours.norm.state_dict())
    # training: batch statistics; the bias cancels
    ours.norm.train(), official_norm.train()
    torch.testing.assert_close(official_norm(theirs_conv(strip)), ours.norm(ours.reduce(strip)))
    # evaluation: fold the bias into the running mean
    ours.norm.eval(), official_norm.eval()
    with torch.no_grad():
        ours.norm.running_mean.copy_(official_norm.running_mean - theirs_conv.bias)
    torch.testing.assert_close(official_norm(theirs_conv(strip)), ours.norm(ours.reduce(strip)))


@pytest.fixture(scope="module")
def timm_coord():
    return pytest.importorskip("timm.layers.coord_attn")


TIMM_NAMES = {"reduce.weight": "conv1.weight", "expand_h.weight": "conv_h.weight", "expand_w.weight": "conv_w.weight",
              "expand_h.bias": "conv_h.bias", "expand_w.bias": "conv_w.bias"}


def to_timm(state: dict) -> dict:
    return {TIMM_NAMES.get(name, name.replace("norm.", "bn1.")): value for name, value in state.items()}


@pytest.mark.parametrize("bias", [False, True], ids=["timm default (no biases)", "gate biases"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_same_outputs_as_timm_with_the_same_weights(timm_coord, bias, training):
    """timm's CoordAttn with rd_channels set to our width: the same function and gradients.
    Intended differences, named: with bias=True timm also biases the shared convolution (we
    set that bias to 0: batch norm cancels it, see the folding test); timm multiplies
    x * a_w * a_h, we (x * a_h) * a_w, equal to float rounding."""
    torch.manual_seed(6)
    ours = randomised(CoordinateAttention(96, reduction=8, bias=bias))
    theirs = timm_coord.CoordAttn(96, rd_channels=ours.width, bias=bias)
    state = to_timm(ours.state_dict())
    if bias:
        state["conv1.bias"] = torch.zeros(ours.width)
    theirs.load_state_dict(state)
    ours.train(training), theirs.train(training)
    x = torch.randn(2, 96, 9, 6, requires_grad=True)
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(y_ours)
    (g_ours,) = torch.autograd.grad(y_ours, x, grad)
    (g_theirs,) = torch.autograd.grad(y_theirs, x, grad)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6)
    if training:  # the running statistics were updated alike
        torch.testing.assert_close(ours.norm.running_mean, theirs.bn1.running_mean)
        torch.testing.assert_close(ours.norm.running_var, theirs.bn1.running_var)


def test_timm_default_width_differs_and_is_named(timm_coord):
    """timm's default width is make_divisible(c / 16 * 2 / 3, 8), about c / 24 rounded to a
    multiple of 8; ours (and the authors') is max(8, c // 32). Equal only for narrow layers."""
    timm_widths = {c: timm_coord.CoordAttn(c).conv1.out_channels for c in set(MOBILENET_V2_EXPANDED)}
    assert timm_widths[960] == 40 and CoordinateAttention(960).width == 30
    assert timm_widths[576] == 24 and CoordinateAttention(576).width == 18
    assert timm_widths[96] == CoordinateAttention(96).width == 8
    assert isinstance(timm_coord.CoordAttn(64).act, nn.Hardswish)  # the same non-linearity as ours
    assert timm_coord.CoordAttn(64).conv_h.bias is None  # timm: no biases by default; ours: gate biases
    assert CoordinateAttention(64, reduction=8).expand_h.bias is not None


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,error,match", [
    ({"channels": 0}, ValueError, "channels"),
    ({"channels": 2.5}, TypeError, "channels"),
    ({"channels": 64, "reduction": 0}, ValueError, "reduction"),
    ({"channels": 64, "reduction": 4.0}, TypeError, "reduction"),
    ({"channels": 64, "reduction": 65}, ValueError, "reduction"),
    ({"channels": 64, "min_width": 0}, ValueError, "min_width"),
    ({"channels": 64, "bias": "yes"}, TypeError, "bias"),
    ({"channels": 64, "bias": 1}, TypeError, "bias"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        CoordinateAttention(**kwargs)


def test_unknown_keyword_is_refused():
    with pytest.raises(TypeError, match="groups"):
        CoordinateAttention(64, groups=32)  # the authors' mbv2_ca.py calls the reduction "groups"


def test_bad_input_is_named():
    module = CoordinateAttention(64)
    with pytest.raises(ValueError, match="CoordinateAttention: input x must have 64 channels"):
        module(torch.randn(2, 32, 5, 5))
    with pytest.raises(ValueError, match="CoordinateAttention: input x must be 4-D"):
        module(torch.randn(64, 5, 5))
    with pytest.raises(TypeError, match="CoordinateAttention: input x must be a torch.Tensor"):
        module.attention([[1.0]])


def test_one_image_of_one_pixel_in_training_is_refused_by_name():
    """On a 1x1 map the strip holds the same value twice: with one image, batch norm in training
    would normalise it to a constant and the gate would not depend on the input."""
    module = CoordinateAttention(64).train()
    with pytest.raises(ValueError, match=r"CoordinateAttention: batch norm in training mode needs more than one"):
        module(torch.randn(1, 64, 1, 1))
    assert module(torch.randn(2, 64, 1, 1)).shape == (2, 64, 1, 1)  # two images: two values
    assert module(torch.randn(1, 64, 1, 3)).shape == (1, 64, 1, 3)  # one image, 1 + 3 distinct positions
    assert module.eval()(torch.randn(1, 64, 1, 1)).shape == (1, 64, 1, 1)  # running statistics


# --- placement, recorder, ablation, weights -----------------------------------------------


def test_mobilenet_v2_gets_ca_after_every_depthwise_convolution():
    """After the depthwise convolution's BN and ReLU6, before the projection, on the expanded
    width, in all 17 inverted residual blocks. The authors' mbv2_ca.py skips the first block
    (expansion 1): that block's CA (32 channels, 848 parameters) is the one difference."""
    model = create_model("mobilenet_v2", "ca", num_classes=10)
    blocks = [m for m in model.features if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    for block, width in zip(blocks, MOBILENET_V2_EXPANDED):
        wrapped = block.conv[-3]
        assert list(dict(wrapped.named_children())) == ["depthwise", "attention"]
        depthwise, attention = wrapped.depthwise, wrapped.attention
        assert isinstance(attention, CoordinateAttention) and attention.channels == width
        assert depthwise[0].groups == depthwise[0].out_channels == width  # depthwise, expanded width
        assert isinstance(depthwise[2], nn.ReLU6)  # after the activation
        assert isinstance(block.conv[-2], nn.Conv2d) and block.conv[-2].kernel_size == (1, 1)  # then the projection
    assert blocks[0].conv[-3].attention.channels == 32 and count(blocks[0].conv[-3].attention) == 848
    plain = create_model("mobilenet_v2", None, num_classes=10)
    assert count(model) - count(plain) == 446_384
    assert round(count(create_model("mobilenet_v2", "ca")) / 1e6, 2) == 3.95  # the paper's 3.95 M
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_resnet50_gets_one_ca_per_bottleneck_at_the_end_of_the_residual_branch():
    model = create_model("resnet50", "ca", num_classes=10)
    bottlenecks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(bottlenecks) == 16
    assert [b.bn3.attention.channels for b in bottlenecks] == RESNET50_WIDTHS
    assert all(isinstance(b.bn3.norm, nn.BatchNorm2d) for b in bottlenecks)  # after the last BN, before the addition
    plain = create_model("resnet50", None, num_classes=10)
    assert count(model) - count(plain) == 1_917_360


def test_create_model_passes_arguments_and_refuses_unknown_ones():
    model = create_model("resnet18", "ca", reduction=8, bias=False)
    modules = [m for m in model.modules() if isinstance(m, CoordinateAttention)]
    assert len(modules) == 8 and all(m.expand_h.bias is None for m in modules)
    assert [m.width for m in modules[:2]] == [8, 8] and modules[-1].width == 64
    with pytest.raises(ValueError, match="groups"):
        create_model("mobilenet_v2", "ca", groups=32)


def test_recorder_reads_the_effective_gate_as_a_channel_spatial_map():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), CoordinateAttention(32, reduction=4)).eval()
    x = torch.randn(2, 3, 10, 8)
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(x)
    item = recorder.named["1"]
    assert item.dims == ("batch", "channel", "height", "width") and item.kind == "channel-spatial"
    assert item.tensor.shape == (2, 32, 10, 8)
    a_h, a_w = model[1].directional(model[0](x))
    torch.testing.assert_close(item.tensor, a_h * a_w)
    assert item.channel_weights().shape == (2, 32) and item.spatial_map().shape == (2, 10, 8)


def test_ablation_switches_ca_off_to_the_identity():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), CoordinateAttention(32, reduction=4)).eval()
    x = torch.randn(2, 3, 6, 6)
    assert ablation_of(model[1]) == "identity" == mechanism("ca").ablation
    with torch.no_grad(), ablate_attention(model):
        torch.testing.assert_close(model(x), model[0](x))


def test_the_registry_entry():
    entry = mechanism("ca")
    assert entry.module is CoordinateAttention and entry.placement == "block"
    assert entry.inverted_residual == "after depthwise" and entry.chapter == "11_coordinate_attention"


def test_no_published_weights_and_why():
    for arch in ("mobilenet_v2", "resnet50"):
        row = AVAILABILITY[(arch, "ca")]
        assert row["status"] == "none" and row["names"] == ()
        assert "timm" in row["reason"] and "mbv2_ca.pth" in row["reason"]
    timm = pytest.importorskip("timm")
    assert not [name for name in timm.list_models() if "coord" in name]
    assert not [name for name in torchvision.models.list_models() if "coord" in name]


# --- the speed-layer helper of eq. (11.7) ------------------------------------------------


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
@pytest.mark.parametrize("needs", [(True, True, True), (True, False, False), (False, True, True), (False, True, False)])
def test_rescale_outer_is_x_times_both_gates(channels_last, needs):
    torch.manual_seed(9)
    x = torch.randn(2, 6, 5, 4)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    a_h, a_w = torch.rand(2, 6, 5, 1), torch.rand(2, 6, 1, 4)
    leaves = [t.clone().requires_grad_(need) for t, need in zip((x, a_h, a_w), needs)]
    plain = [t.clone().requires_grad_(need) for t, need in zip((x, a_h, a_w), needs)]
    y = rescale_outer(*leaves)
    expected = plain[0] * plain[1] * plain[2]
    assert torch.equal(y, expected)  # the same operations in the same order: bit for bit
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    grad = torch.randn_like(expected)
    wanted = [t for t in leaves if t.requires_grad]
    ours = torch.autograd.grad(y, wanted, grad)
    theirs = torch.autograd.grad(expected, [t for t in plain if t.requires_grad], grad)
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference)
        assert mine.shape == reference.shape and 0 not in mine.stride()


def test_rescale_outer_gradcheck_double_backward_and_mixed_precision():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    a_h = torch.rand(2, 3, 4, 1, dtype=torch.float64, requires_grad=True)
    a_w = torch.rand(2, 3, 1, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rescale_outer, (x, a_h, a_w))
    assert torch.autograd.gradgradcheck(rescale_outer, (x, a_h, a_w))
    # float32 features with bfloat16 gates (as under CPU autocast): gradients in each input's dtype
    x32 = torch.randn(2, 3, 4, 5, requires_grad=True)
    h16 = torch.rand(2, 3, 4, 1, dtype=torch.bfloat16, requires_grad=True)
    w16 = torch.rand(2, 3, 1, 5, dtype=torch.bfloat16, requires_grad=True)
    rescale_outer(x32, h16, w16).sum().backward()
    assert x32.grad.dtype == torch.float32 and h16.grad.dtype == w16.grad.dtype == torch.bfloat16
    torch.testing.assert_close(h16.grad.float(), (x32 * w16.float()).sum(3, keepdim=True).detach(), rtol=2e-2, atol=2e-2)


def test_rescale_outer_keeps_nothing_full_size_but_the_input():
    """What the module keeps for the backward pass: x (the caller's) and the small gates; autograd's
    x * a_h * a_w would also keep the intermediate x * a_h, as large as x."""
    x = torch.randn(4, 16, 12, 10, requires_grad=True)
    a_h = torch.rand(4, 16, 12, 1, requires_grad=True)
    a_w = torch.rand(4, 16, 1, 10, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        rescale_outer(x, a_h, a_w)
    full = [t for t in saved if t.numel() == x.numel() and t.data_ptr() != x.data_ptr()]
    assert full == []
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        x * a_h * a_w
    assert any(t.numel() == x.numel() and t.data_ptr() != x.data_ptr() for t in saved)
