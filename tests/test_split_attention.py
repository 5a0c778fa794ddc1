"""Tests for attention_lib.split_attention (chapter 12): Split-Attention, ResNeSt's unit.

The equations are checked against computations written here with plain indexing; the
unit against timm's ``SplitAttn`` with the same weights; radix 1, the reduction to SK
for K = 1, R = 2, the intended differences from timm and the published ResNeSt-50
(``resnest50d``) mapped onto our modules offline, with random weights.
"""

import copy
import math

import pytest
import torch
from torch import nn

from attention_lib.models import create_model
from attention_lib.primitives import weighted_sum
from attention_lib.selective_kernel import SelectiveKernel
from attention_lib.split_attention import SplitAttention
from module_checks import assert_same_in_channels_last

timm = pytest.importorskip("timm")
from timm.layers import SplitAttn  # noqa: E402


def randomize_norms_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random affine parameters and running statistics in every batch norm, so each one matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.BatchNorm2d):
                norm.weight.uniform_(0.5, 1.5, generator=generator)
                norm.bias.normal_(0.0, 0.2, generator=generator)
                norm.running_mean.normal_(0.0, 0.2, generator=generator)
                norm.running_var.uniform_(0.5, 1.5, generator=generator)
    return module


def reference(unit: SplitAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (n, R, c), output) from eqs. (12.1)-(12.8), written with explicit indices."""
    R, K, c = unit.radix, unit.groups, unit.out_channels
    w = c // K
    u = torch.relu(unit.norm(unit.conv(x)))  # (12.1): conv output channel r c + k w + j (12.8)
    s = sum(u[:, r * c:(r + 1) * c] for r in range(R)).mean(dim=(2, 3))  # (12.2), (12.3)
    d = unit.width // K
    a = torch.empty(x.shape[0], R, c)
    for k in range(K):
        # (12.4): cardinal group k's fully connected layer, by hand
        w1 = unit.reduce.weight[k * d:(k + 1) * d, :, 0, 0]
        b1 = unit.reduce.bias[k * d:(k + 1) * d]
        norm = unit.reduce_norm
        h = s[:, k * w:(k + 1) * w] @ w1.T + b1
        h = (h - norm.running_mean[k * d:(k + 1) * d]) / torch.sqrt(norm.running_var[k * d:(k + 1) * d] + norm.eps)
        z = torch.relu(h * norm.weight[k * d:(k + 1) * d] + norm.bias[k * d:(k + 1) * d])
        w2 = unit.expand.weight[k * R * w:(k + 1) * R * w, :, 0, 0]
        e = z @ w2.T + unit.expand.bias[k * R * w:(k + 1) * R * w]  # (12.5): index r w + j within group k
        for j in range(w):
            scores = torch.stack([e[:, r * w + j] for r in range(R)], dim=1)
            a[:, :, k * w + j] = scores.softmax(dim=1) if R > 1 else torch.sigmoid(scores)  # (12.6)
    out = sum(a[:, r, :, None, None] * u[:, r * c:(r + 1) * c] for r in range(R))  # (12.7)
    return a, out


def timm_pair(in_channels, out_channels, groups, radix, stride=1, seed=0):
    """(ours, timm's SplitAttn) with the same weights, in eval mode."""
    torch.manual_seed(seed)
    theirs = SplitAttn(in_channels, out_channels, stride=stride, groups=groups, radix=radix, rd_ratio=0.25,
                       rd_divisor=8, norm_layer=nn.BatchNorm2d)
    randomize_norms_(theirs, seed)
    ours = SplitAttention(in_channels, out_channels, stride=stride, groups=groups, radix=radix)
    names = {"bn0": "norm", "fc1": "reduce", "bn1": "reduce_norm", "fc2": "expand"}
    state = {".".join([names.get(key.split(".")[0], key.split(".")[0]), *key.split(".")[1:]]): value
             for key, value in theirs.state_dict().items()}
    ours.load_state_dict(state)
    return ours.eval(), theirs.eval()


# --- the equations -----------------------------------------------------------------------


@pytest.mark.parametrize("in_channels,out_channels,groups,radix,stride", [
    (64, 64, 1, 2, 1), (64, 128, 4, 2, 2), (96, 48, 2, 3, 1), (32, 32, 1, 1, 1), (64, 64, 4, 4, 1)])
def test_r_softmax_order_against_an_independent_computation(in_channels, out_channels, groups, radix, stride):
    torch.manual_seed(0)
    unit = randomize_norms_(SplitAttention(in_channels, out_channels, stride=stride, groups=groups,
                                           radix=radix, min_width=8)).eval()
    with torch.no_grad():
        nn.init.normal_(unit.expand.bias, std=0.5)
        x = torch.randn(2, in_channels, 9, 7)
        a, out = reference(unit, x)
        torch.testing.assert_close(unit.attention(x)[..., 0, 0], a, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(unit(x), out, atol=1e-5, rtol=1e-5)


def test_the_order_matters_with_several_cardinal_groups():
    """Reading the scores split-major (no transpose) gives other weights when K > 1."""
    torch.manual_seed(0)
    unit = SplitAttention(64, groups=4).eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        right = unit.attention(x)[..., 0, 0]
        u = unit._splits(x)
        s = u.sum(1).mean(dim=(2, 3), keepdim=True)
        wrong = unit.expand(torch.relu(unit.reduce_norm(unit.reduce(s)))).view(2, 2, 64).softmax(1)
    assert (wrong - right).abs().max() > 1e-2


@pytest.mark.parametrize("groups,radix", [(1, 2), (2, 3), (4, 4)])
def test_weights_sum_to_one_across_the_splits_of_each_channel(groups, radix):
    torch.manual_seed(0)
    unit = SplitAttention(48, groups=groups, radix=radix, min_width=8)
    a = unit.attention(torch.randn(3, 48, 6, 6))
    assert a.shape == (3, radix, 48, 1, 1)
    assert bool((a > 0).all() and (a < 1).all())
    torch.testing.assert_close(a.sum(dim=1), torch.ones(3, 48, 1, 1))


def test_radix_one_is_a_sigmoid_gate():
    """R = 1: the unit is conv-BN-ReLU gated per channel by a sigmoid (SE on its own output)."""
    torch.manual_seed(0)
    unit = randomize_norms_(SplitAttention(32, radix=1)).eval()
    x = torch.randn(2, 32, 7, 7)
    with torch.no_grad():
        u = torch.relu(unit.norm(unit.conv(x)))
        z = torch.relu(unit.reduce_norm(unit.reduce(u.mean(dim=(2, 3), keepdim=True))))
        gate = torch.sigmoid(unit.expand(z))
        torch.testing.assert_close(unit(x), u * gate)
        torch.testing.assert_close(unit.attention(x)[:, 0], gate)
        assert not torch.allclose(unit.attention(x).sum(1), torch.ones(()))  # not a softmax: not normalised


def test_two_splits_are_a_sigmoid_of_the_score_difference():
    """Eq. (12.9)."""
    torch.manual_seed(0)
    unit = SplitAttention(32).eval()
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        s = unit._splits(x).sum(1).mean(dim=(2, 3), keepdim=True)
        e = unit.expand(torch.relu(unit.reduce_norm(unit.reduce(s))))[:, :, 0, 0]
        a = unit.attention(x)[:, :, :, 0, 0]
    torch.testing.assert_close(a[:, 0], torch.sigmoid(e[:, :32] - e[:, 32:]))


def test_reduces_to_sk_with_equal_kernels_split_inputs_and_no_select_bias():
    """K = 1, R = 2 is our chapter-6 SelectiveKernel with the same kernel in both branches
    (dilation 1), each branch kernel zero outside its half of the input, the fuse bias moved
    into the batch norm's running mean and no select bias."""
    torch.manual_seed(0)
    c = 64
    splat = randomize_norms_(SplitAttention(c)).eval()
    with torch.no_grad():
        splat.expand.bias.zero_()
    sk = SelectiveKernel(c, groups=1, reduction=c // splat.width, min_width=splat.width).eval()
    assert sk.width == splat.width
    sk.branches[1][0].dilation, sk.branches[1][0].padding = (1, 1), (1, 1)
    with torch.no_grad():
        for r, branch in enumerate(sk.branches):
            branch[0].weight.zero_()
            branch[0].weight[:, r * c // 2:(r + 1) * c // 2] = splat.conv.weight[r * c:(r + 1) * c]
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(branch[1], name).copy_(getattr(splat.norm, name)[r * c:(r + 1) * c])
        sk.reduce.weight.copy_(splat.reduce.weight)
        for name in ("weight", "bias", "running_var"):
            getattr(sk.bn, name).copy_(getattr(splat.reduce_norm, name))
        sk.bn.running_mean.copy_(splat.reduce_norm.running_mean - splat.reduce.bias)
        sk.select.weight.copy_(splat.expand.weight)
        x = torch.randn(2, c, 10, 10)
        torch.testing.assert_close(splat(x), sk(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(splat.attention(x), sk.attention(x), atol=1e-6, rtol=1e-5)
        # The select bias is the difference SK cannot express: with it, the two differ.
        nn.init.normal_(splat.expand.bias, std=1.0)
        assert (splat(x) - sk(x)).abs().max() > 1e-3


# --- timm parity and the intended differences ------------------------------------------


@pytest.mark.parametrize("in_channels,out_channels,groups,radix,stride", [
    (64, 64, 1, 2, 1), (128, 128, 1, 2, 2), (64, 128, 4, 2, 1), (96, 96, 2, 3, 2), (64, 64, 1, 1, 1),
    (256, 256, 32, 2, 1)])
def test_parity_with_timm_split_attn(in_channels, out_channels, groups, radix, stride):
    ours, theirs = timm_pair(in_channels, out_channels, groups, radix, stride)
    assert ours.width == theirs.fc1.out_channels
    x = torch.randn(2, in_channels, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    ours.double()
    theirs.double()
    with torch.no_grad():
        torch.testing.assert_close(ours(x.double()), theirs(x.double()), atol=1e-12, rtol=1e-12)


def test_parity_with_timm_in_training_mode_and_gradients():
    ours, theirs = timm_pair(64, 64, 2, 2)
    ours.train()
    theirs.train()
    x = torch.randn(4, 64, 8, 8, requires_grad=True)
    y1 = ours(x)
    (g1,) = torch.autograd.grad(y1.square().sum(), x)
    y2 = theirs(x)
    (g2,) = torch.autograd.grad(y2.square().sum(), x)
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("in_channels,radix,reduction,min_width,expected", [
    (64, 2, 4, 32, 32), (128, 2, 4, 32, 64), (256, 2, 4, 32, 128), (512, 2, 4, 32, 256), (64, 4, 4, 32, 64),
    (16, 2, 4, 32, 32), (8, 2, 4, 32, 16)])
def test_width_matches_official_and_timm(in_channels, radix, reduction, min_width, expected):
    """d = max(c' R // reduction, min_width) as the official code computes it, capped at c' R.
    timm rounds c' R / 4 to a multiple of 8: the same wherever that is already one. The cap
    is ours (an intended difference): at c' R < min_width the official code and timm widen
    the bottleneck beyond its input."""
    unit = SplitAttention(in_channels, radix=radix, reduction=reduction, min_width=min_width)
    assert unit.width == expected
    official = max(in_channels * radix // reduction, min_width)
    timm_width = timm.layers.make_divisible(in_channels * radix * 0.25, 8, min_value=32)
    if in_channels * radix >= min_width:
        assert unit.width == official == timm_width
    else:
        assert unit.width == in_channels * radix < official


def test_intended_difference_the_batch_of_one_error_is_ours():
    """timm's SplitAttn fails inside PyTorch's batch norm; ours names the module and the way out."""
    ours, theirs = timm_pair(32, 32, 1, 2)
    x = torch.randn(1, 32, 4, 4)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        theirs.train()(x)
    with pytest.raises(ValueError, match=r"^SplitAttention: batch norm .* call \.eval\(\)"):
        ours.train()(x)


def test_avd_pools_after_the_weighted_sum():
    """avd=True: a stride-1 convolution, the weighted sum, then a 3x3 average pool with the
    stride (padding 1, counting the padding), as timm's ResNestBottleneck with avd_first=False."""
    torch.manual_seed(0)
    unit = randomize_norms_(SplitAttention(32, stride=2, avd=True)).eval()
    assert unit.conv.stride == (1, 1) and isinstance(unit.pool, nn.AvgPool2d)
    plain = copy.deepcopy(unit)
    plain.pool = nn.Identity()
    x = torch.randn(2, 32, 9, 8)
    with torch.no_grad():
        expected = nn.functional.avg_pool2d(plain(x), 3, 2, padding=1)
        torch.testing.assert_close(unit(x), expected)
        torch.testing.assert_close(unit.attention(x), plain.attention(x))  # the weights are computed before it
    assert unit(x).shape == SplitAttention(32, stride=2)(x).shape == (2, 32, 5, 4)
    assert isinstance(SplitAttention(32, stride=1, avd=True).pool, nn.Identity)
    assert SplitAttention(32, stride=2).conv.stride == (2, 2)


def test_equal_branches_gives_every_split_the_same_weight():
    torch.manual_seed(0)
    unit = SplitAttention(32, groups=2, radix=4, min_width=8, stride=2, avd=True).eval()
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        expected = nn.functional.avg_pool2d(unit._splits(x).mean(1), 3, 2, padding=1)
        torch.testing.assert_close(unit.equal_branches(x), expected)
        assert (unit(x) - expected).abs().max() > 1e-4


def test_named_maps_and_recorder():
    from attention_lib.recorder import AttentionRecorder
    model = create_model("resnet50", "splat", num_classes=10).eval()
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model(torch.randn(2, 3, 64, 64))
    assert len(recorder.named) == 16
    item = recorder.named["layer1.0.conv2"]
    assert item.dims == ("batch", "branch", "channel") and item.kind == "branch"
    assert item.tensor.shape == (2, 2, 64)
    assert tuple(recorder.named["layer4.2.conv2"].tensor.shape) == (2, 2, 512)


# --- parameters, placement, errors -----------------------------------------------------


def splat_parameters(in_channels, out_channels, width, radix=2, groups=1, kernel_size=3):
    """Equation (12.10) of chapter 12."""
    c, R, K, d = out_channels, radix, groups, width
    return c * in_channels * kernel_size**2 // K + 3 * R * c + (R + 1) * c * d // K + 3 * d


@pytest.mark.parametrize("in_channels,out_channels,groups,radix,kernel_size", [
    (64, 64, 1, 2, 3), (128, 256, 4, 2, 3), (96, 96, 2, 3, 5), (64, 64, 1, 1, 3), (256, 256, 32, 2, 3)])
def test_parameter_count_matches_formula(in_channels, out_channels, groups, radix, kernel_size):
    unit = SplitAttention(in_channels, out_channels, groups=groups, radix=radix, kernel_size=kernel_size)
    assert sum(p.numel() for p in unit.parameters()) == splat_parameters(
        in_channels, out_channels, unit.width, radix, groups, kernel_size)
    # The grouped convolution has exactly the weights of the one it replaces.
    assert unit.conv.weight.numel() == out_channels * in_channels * kernel_size**2 // groups


def test_create_model_replaces_all_16_convolutions_and_runs():
    model = create_model("resnet50", "splat", num_classes=10)
    units = [m for m in model.modules() if isinstance(m, SplitAttention)]
    assert len(units) == 16
    for stage, width in zip((model.layer1, model.layer2, model.layer3, model.layer4), (64, 128, 256, 512)):
        for i, block in enumerate(stage):
            assert isinstance(block.conv2, SplitAttention) and isinstance(block.bn2, nn.Identity)
            assert block.conv2.out_channels == width and block.conv2.width == max(width // 2, 32)
            assert block.conv2.stride == (2 if i == 0 and width > 64 else 1)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.groups == 1 and m.in_channels >= 64
                   for name, m in model.named_modules() if ".conv2" not in name and "conv2." not in name)
    model.train()
    y = model(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 10)
    y.sum().backward()
    resnext = create_model("resnext50_32x4d", "splat")
    assert all(m.groups == 32 for m in resnext.modules() if isinstance(m, SplitAttention))


def test_shapes_and_channels_last():
    torch.manual_seed(0)
    unit = SplitAttention(64, 128, stride=2, groups=4).eval()
    x = torch.randn(2, 64, 15, 9)
    assert unit(x).shape == (2, 128, 8, 5)
    assert_same_in_channels_last(unit, x, atol=1e-5)


def test_gradcheck_float64_with_several_groups_and_avd():
    torch.manual_seed(0)
    unit = SplitAttention(16, groups=2, radix=2, min_width=4, stride=2, avd=True).double().eval()
    x = torch.randn(1, 16, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(unit, (x,))


@pytest.mark.parametrize("kwargs,argument", [
    ({"in_channels": 0}, "in_channels"), ({"in_channels": 32, "out_channels": 2.0}, "out_channels"),
    ({"in_channels": 32, "radix": 0}, "radix"), ({"in_channels": 32, "groups": -1}, "groups"),
    ({"in_channels": 32, "stride": 0}, "stride"), ({"in_channels": 32, "kernel_size": 4}, "kernel_size"),
    ({"in_channels": 32, "kernel_size": True}, "kernel_size"), ({"in_channels": 32, "avd": 1}, "avd"),
    ({"in_channels": 32, "reduction": 65}, "reduction"), ({"in_channels": 32, "min_width": 0}, "min_width"),
    ({"in_channels": 30, "radix": 4}, "in_channels"), ({"in_channels": 24, "groups": 4, "radix": 4}, "in_channels"),
    ({"in_channels": 32, "out_channels": 30, "groups": 4}, "out_channels"),
    ({"in_channels": 48, "groups": 3, "radix": 2, "min_width": 32}, "bottleneck width")])
def test_errors_name_the_argument(kwargs, argument):
    with pytest.raises((TypeError, ValueError), match=argument):
        SplitAttention(**kwargs)


def test_bad_input_is_named():
    unit = SplitAttention(32)
    with pytest.raises(ValueError, match="SplitAttention: input x must have 32 channels"):
        unit(torch.randn(2, 16, 4, 4))
    with pytest.raises(ValueError, match="must be 4-D"):
        unit.attention(torch.randn(32, 4, 4))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        unit.equal_branches([[1.0]])
    with pytest.raises(ValueError, match="SplitAttention: batch norm in training mode"):
        unit.train()(torch.randn(1, 32, 8, 8))
    unit.eval()(torch.randn(1, 32, 8, 8))  # evaluation mode uses the running statistics


def test_create_model_refuses_mobilenet_and_unknown_arguments():
    with pytest.raises(ValueError, match="mobilenet_v2"):
        create_model("mobilenet_v2", "splat")
    with pytest.raises(ValueError, match="colour"):
        create_model("resnet50", "splat", colour=1)


# --- the published ResNeSt-50 --------------------------------------------------------------


@pytest.fixture(scope="module")
def resnest_pair():
    from attention_lib import weights as P
    from test_weights import randomize_
    torch.manual_seed(0)
    theirs = randomize_(timm.create_model("resnest50d", pretrained=False))
    ours = P.load_published_state_dict(P.build_model("resnest50d"), "resnest50d", theirs.state_dict()).eval()
    return theirs, ours


def test_resnest50d_mapping_gives_timms_logits(resnest_pair):
    theirs, ours = resnest_pair
    # In float64: random weights give logits in the hundreds, where float32 rounding in two
    # different (equally valid) summation orders already differs by about 1e-4 relative.
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        expected = copy.deepcopy(theirs).double()(x)
        actual = copy.deepcopy(ours).double()(x)
    assert expected.std() > 0.1
    scale = max(expected.abs().max().item(), 1.0)
    assert (expected - actual).abs().max().item() <= 1e-9 * scale
    assert sum(isinstance(m, SplitAttention) for m in ours.modules()) == 16
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_resnest50d_attention_weights_shape_the_logits(resnest_pair):
    theirs, ours = resnest_pair
    model = copy.deepcopy(ours)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = model(x)
        for unit in model.modules():
            if isinstance(unit, SplitAttention):
                unit.expand.weight.add_(torch.randn_like(unit.expand.weight))
        after = model(x)
    assert (after - before).abs().max() > 1e-2 * before.abs().max()


def test_resnest50d_needs_avd_and_the_resnet_d_backbone(resnest_pair):
    """Without avd the strided units convolve at stride 2: same shapes, other logits."""
    from attention_lib import weights as P
    from attention_lib.weights.backbone import adapt_backbone
    theirs, _ = resnest_pair
    model = create_model("resnet50", "splat")
    adapt_backbone(model, P.PRETRAINED["resnest50d"].backbone)
    model.load_state_dict(P.map_state_dict("resnest50d", theirs.state_dict()))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (model.eval()(x) - theirs(x)).abs().max() > 1e-3
    with pytest.raises(P.WeightMappingError):
        P.load_published_state_dict(create_model("resnet50", "splat", avd=True), "resnest50d", theirs.state_dict())


def test_resnest50d_parameter_count_is_the_official_27_5_million(resnest_pair):
    _, ours = resnest_pair
    assert math.isclose(sum(p.numel() for p in ours.parameters()) / 1e6, 27.5, abs_tol=0.05)


# --- the speed-layer helper of eq. (12.7) ------------------------------------------------


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
@pytest.mark.parametrize("needs", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("radix", [1, 2, 4])
def test_weighted_sum_is_the_sum_of_the_weighted_splits(channels_last, needs, radix):
    torch.manual_seed(4)
    u = torch.randn(2, radix * 6, 5, 4)
    if channels_last:
        u = u.to(memory_format=torch.channels_last)
    leaves = [u.clone().requires_grad_(needs[0]), torch.rand(2, radix, 6, 1, 1).requires_grad_(needs[1])]
    plain = [t.detach().clone().requires_grad_(need) for t, need in zip(leaves, needs)]
    y = weighted_sum(leaves[0].unflatten(1, (radix, 6)), leaves[1])
    expected = (plain[0].unflatten(1, (radix, 6)) * plain[1]).sum(dim=1)
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(expected)
    ours = torch.autograd.grad(y, [t for t in leaves if t.requires_grad], grad)
    theirs = torch.autograd.grad(expected, [t for t in plain if t.requires_grad], grad)
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference)
    if needs[0]:
        assert ours[0].is_contiguous(memory_format=torch.channels_last) == channels_last  # the layout of u


def test_weighted_sum_gradcheck_double_backward_and_mixed_precision():
    x = torch.randn(2, 3, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    a = torch.rand(2, 3, 4, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(weighted_sum, (x, a))
    assert torch.autograd.gradgradcheck(weighted_sum, (x, a))
    x16 = torch.randn(2, 2, 4, 3, 3, dtype=torch.bfloat16, requires_grad=True)  # bfloat16 splits, float32 weights
    a32 = torch.rand(2, 2, 4, 1, 1, requires_grad=True)  # (as under CPU autocast)
    weighted_sum(x16, a32).sum().backward()
    assert x16.grad.dtype == torch.bfloat16 and a32.grad.dtype == torch.float32
    torch.testing.assert_close(a32.grad, x16.float().sum(dim=(3, 4), keepdim=True).detach(), rtol=2e-2, atol=2e-2)


def test_weighted_sum_writes_no_tensor_of_all_products():
    """Forward and backward peak below the plain (x * a).sum(1), which writes the (n, R, ...)
    product in the forward pass and two tensors of x's size in the backward pass."""
    from attention_lib.benchmark.common import peak_bytes

    x = torch.randn(4, 2, 16, 12, 10, requires_grad=True)
    a = torch.rand(4, 2, 16, 1, 1, requires_grad=True)
    grad = torch.randn(4, 16, 12, 10)
    size = x.numel() * x.element_size()
    ours = peak_bytes(lambda: weighted_sum(x, a).backward(grad))
    plain = peak_bytes(lambda: (x * a).sum(dim=1).backward(grad))
    x.grad = a.grad = None
    assert ours <= 1.6 * size  # the gradient of x and the output (half of x), little more
    assert plain >= ours + 0.9 * size  # the plain expression writes at least one more tensor of x's size


def test_weighted_sum_refuses_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"weighted_sum needs x of shape \(n, R, \.\.\.\)"):
        weighted_sum(torch.randn(2, 2, 3, 4, 4), torch.rand(2, 3, 3, 1, 1))
    with pytest.raises(ValueError, match="as many dimensions"):
        weighted_sum(torch.randn(2, 2, 3, 4, 4), torch.rand(2, 2, 3))
