"""Tests for attention_lib.cbam (chapter 03)."""

import pytest
import torch
from torch import nn

from attention_lib import SE
from attention_lib.cbam import CBAM, POOLS, ChannelAttention, SpatialAttention
from module_checks import assert_same_in_channels_last


def channel_attention_parameters(channels: int, width: int) -> int:
    """Equation (4.10) of chapter 03, channel half."""
    return 2 * channels * width + width + channels


def spatial_attention_parameters(kernel_size: int, batch_norm: bool = True) -> int:
    """Equation (4.10) of chapter 03, spatial half."""
    return 2 * kernel_size**2 + (2 if batch_norm else 1)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def modules(channels: int):
    return [ChannelAttention(channels, reduction=4), SpatialAttention(), CBAM(channels, reduction=4)]


# --- shapes, dtypes, values -----------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (1, 64, 7, 5), (3, 32, 14, 14), (2, 8, 3, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_output_shape_and_dtype(shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype)
    for module in modules(shape[1]):
        y = module.to(dtype)(x)
        assert y.shape == x.shape
        assert y.dtype == dtype


def test_channel_attention_weights_shape_and_range():
    torch.manual_seed(0)
    module = ChannelAttention(32, reduction=4)
    x = torch.randn(3, 32, 9, 11)
    a = module.attention(x)
    assert a.shape == (3, 32, 1, 1)
    assert bool((a > 0).all()) and bool((a < 1).all())
    assert torch.allclose(module(x), a * x)


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("channels", [1, 3, 40])
def test_spatial_map_shape_and_range(batch_norm, channels):
    torch.manual_seed(0)
    module = SpatialAttention(7, batch_norm=batch_norm)
    x = torch.randn(2, channels, 10, 13)
    for mode in (module.train(), module.eval()):
        a = mode.attention(x)
        assert a.shape == (2, 1, 10, 13)
        assert bool((a > 0).all()) and bool((a < 1).all())
        assert torch.allclose(mode(x), a * x)


def test_spatial_map_is_the_same_for_every_channel():
    torch.manual_seed(0)
    module = SpatialAttention().eval()
    x = torch.rand(2, 6, 8, 8) + 0.1  # positive, so y / x is defined
    ratio = module(x) / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-6)


def test_spatial_attention_matches_equations_4_6_to_4_8():
    torch.manual_seed(0)
    module = SpatialAttention(5, batch_norm=False)
    x = torch.randn(2, 7, 9, 9)
    z = torch.stack([x.mean(dim=1), x.max(dim=1).values], dim=1)  # avg first, as in the paper
    expected = torch.sigmoid(nn.functional.conv2d(z, module.conv.weight, module.conv.bias, padding=2))
    assert torch.allclose(module.attention(x), expected, atol=1e-6)


def test_channel_attention_matches_equations_4_1_to_4_5():
    torch.manual_seed(0)
    module = ChannelAttention(12, reduction=2, min_width=2)
    x = torch.randn(3, 12, 5, 6)
    w1, b1 = module.reduce.weight[:, :, 0, 0], module.reduce.bias
    w2, b2 = module.expand.weight[:, :, 0, 0], module.expand.bias

    def mlp(z):
        return torch.relu(z @ w1.T + b1) @ w2.T + b2

    expected = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))
    assert torch.allclose(module.attention(x)[:, :, 0, 0], expected, atol=1e-6)


def test_cbam_equals_spatial_of_channel():
    torch.manual_seed(0)
    module = CBAM(32, reduction=4)
    for mode in (module.train(), module.eval()):
        x = torch.randn(2, 32, 7, 7)
        assert torch.equal(mode(x), mode.spatial(mode.channel(x)))
        a, spatial_map = mode.channel.attention(x), mode.attention(x)
        assert a.shape == (2, 32, 1, 1) and spatial_map.shape == (2, 1, 7, 7)
        assert bool((spatial_map > 0).all()) and bool((spatial_map < 1).all())
        assert torch.equal(spatial_map, mode.spatial.attention(x * a))
        assert torch.allclose(mode(x), x * a * spatial_map, atol=1e-6)


def test_order_matters():
    torch.manual_seed(0)
    module = CBAM(16, reduction=4).eval()
    x = torch.randn(2, 16, 8, 8)
    assert not torch.allclose(module(x), module.channel(module.spatial(x)))


def test_attention_depends_on_the_input():
    torch.manual_seed(0)
    module = CBAM(16, reduction=2).eval()
    x1, x2 = torch.randn(1, 16, 6, 6), torch.randn(1, 16, 6, 6) * 3 + 1
    assert not torch.allclose(module.channel.attention(x1), module.channel.attention(x2))
    assert not torch.allclose(module.attention(x1), module.attention(x2))


# --- SE equivalence ----------------------------------------------------------------------


@pytest.mark.parametrize("channels,reduction", [(64, 16), (24, 16), (10, 2)])
def test_average_pooling_only_is_exactly_se(channels, reduction):
    torch.manual_seed(0)
    se = SE(channels, reduction=reduction)
    module = ChannelAttention(channels, reduction=reduction, pools=("avg",))
    module.load_state_dict(se.state_dict())  # same parameter names and shapes
    x = torch.randn(4, channels, 9, 7)
    assert torch.equal(module(x), se(x))
    assert torch.equal(module.attention(x), se.attention(x))


def test_max_pooling_changes_the_output_with_the_same_weights():
    torch.manual_seed(0)
    se = SE(32, reduction=4)
    for pools in (("max",), ("avg", "max"), ("max", "avg")):
        module = ChannelAttention(32, reduction=4, pools=pools)
        module.load_state_dict(se.state_dict())
        x = torch.randn(2, 32, 6, 6)
        assert not torch.allclose(module(x), se(x))


def test_pool_order_does_not_matter():
    torch.manual_seed(0)
    first = ChannelAttention(16, reduction=4)
    second = ChannelAttention(16, reduction=4, pools=("max", "avg"))
    second.load_state_dict(first.state_dict())
    x = torch.randn(3, 16, 5, 5)
    assert torch.allclose(first(x), second(x), atol=1e-6)


# --- parameter counts ------------------------------------------------------------------


@pytest.mark.parametrize("channels,reduction", [(256, 16), (512, 16), (2048, 16), (64, 4), (24, 16), (10, 10)])
@pytest.mark.parametrize("pools", [("avg",), ("max",), POOLS])
def test_channel_parameter_count_matches_formula(channels, reduction, pools):
    module = ChannelAttention(channels, reduction=reduction, pools=pools)
    assert count(module) == channel_attention_parameters(channels, module.width)
    assert count(module) == count(SE(channels, reduction=reduction))


@pytest.mark.parametrize("kernel_size", [1, 3, 7, 9])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_spatial_parameter_count_matches_formula(kernel_size, batch_norm):
    module = SpatialAttention(kernel_size, batch_norm=batch_norm)
    assert count(module) == spatial_attention_parameters(kernel_size, batch_norm)
    assert (module.conv.bias is None) == batch_norm


def test_cbam_resnet50_total_matches_chapter():
    stages = [(256, 3), (512, 4), (1024, 6), (2048, 3)]
    total = 0
    for channels, blocks in stages:
        module = CBAM(channels)
        expected = channel_attention_parameters(channels, module.channel.width) + spatial_attention_parameters(7)
        assert count(module) == expected
        total += blocks * count(module)
    assert total == 2_532_592  # SE's 2,530,992 plus 16 x 100


# --- autograd, memory formats, compile ---------------------------------------------------


@pytest.mark.parametrize("batch_norm", [True, False])
def test_gradcheck_float64(batch_norm):
    torch.manual_seed(0)
    module = CBAM(4, reduction=2, kernel_size=3, min_width=2, batch_norm=batch_norm).double().train()
    x = torch.randn(2, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


def test_gradcheck_parts_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    channel = ChannelAttention(5, reduction=1, min_width=3).double()
    spatial = SpatialAttention(5).double().eval()
    assert torch.autograd.gradcheck(channel, (x,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(spatial, (x,), eps=1e-6, atol=1e-5)


def test_channels_last_gives_same_result():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 10, 10)
    for module in modules(32):
        module.eval()
        assert_same_in_channels_last(module, x, atol=1e-6)


def test_batch_size_one_in_training_mode():
    for module in modules(16):
        module.train()
        x = torch.randn(1, 16, 5, 5, requires_grad=True)
        module(x).sum().backward()
        assert x.grad is not None and x.grad.shape == x.shape
        assert all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize("train", [False, True])
def test_torch_compile_full_graph(train):
    torch.manual_seed(0)
    module = CBAM(16, reduction=4).train(train)
    reference = CBAM(16, reduction=4).train(train)
    reference.load_state_dict(module.state_dict())
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 16, 6, 6)
    assert torch.allclose(compiled(x), reference(x), atol=1e-6)


# --- errata --------------------------------------------------------------------------


def test_w2_maps_hidden_units_back_to_channels():
    # The article's text gives W2 the shape (c/r x c), like W1; it must be (c x c/r).
    module = ChannelAttention(64, reduction=16)
    assert module.reduce.weight.shape == (8, 64, 1, 1)  # W1: d x c
    assert module.expand.weight.shape == (64, 8, 1, 1)  # W2: c x d


def test_erratum6_reduction_larger_than_channels_is_refused():
    # The article's CBAMChannelAttention builds in_dim // reduction_factor == 0 hidden
    # units here, a layer that fails at its first forward pass.
    with pytest.raises(ValueError, match=r"reduction must be <= channels \(8\), got 16"):
        ChannelAttention(8, reduction=16)
    with pytest.raises(ValueError, match=r"reduction must be <= channels \(8\), got 16"):
        CBAM(8)


def test_erratum6_narrow_layers_get_a_minimum_width():
    # The article's formula gives 24 // 16 == 1 hidden unit.
    assert ChannelAttention(24, reduction=16).width == 8
    assert CBAM(24).channel.width == 8
    assert ChannelAttention(256, reduction=16).width == 16  # the paper's c / r where wide enough


def test_spatial_batch_norm_keeps_pytorch_default_momentum():
    # The authors' released code (Jongchan/attention-module) builds this batch norm with
    # momentum 0.01; we keep PyTorch's 0.1 (timm's too), so that its running statistics
    # settle within a short training run.
    assert SpatialAttention().norm.momentum == 0.1
    assert CBAM(64).spatial.norm.momentum == 0.1


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("module,name", [(ChannelAttention(16), "ChannelAttention"), (CBAM(16), "ChannelAttention")])
def test_wrong_channel_count(module, name):
    with pytest.raises(ValueError, match=rf"{name}: input x must have 16 channels .*got 8"):
        module(torch.randn(1, 8, 4, 4))


@pytest.mark.parametrize("shape", [(16,), (2, 16), (2, 16, 4), (1, 2, 16, 4, 4)])
def test_non_4d_input(shape):
    x = torch.randn(shape)
    with pytest.raises(ValueError, match=r"ChannelAttention: input x must be 4-D"):
        ChannelAttention(16)(x)
    with pytest.raises(ValueError, match=r"SpatialAttention: input x must be 4-D"):
        SpatialAttention()(x)
    with pytest.raises(ValueError, match=r"input x must be 4-D"):
        CBAM(16)(x)


def test_non_tensor_input():
    with pytest.raises(TypeError, match=r"SpatialAttention: input x must be a torch.Tensor"):
        SpatialAttention()([[1.0]])
    with pytest.raises(TypeError, match=r"ChannelAttention: input x must be a torch.Tensor"):
        CBAM(16)([[1.0]])


@pytest.mark.parametrize("kernel_size", [2, 4, 8])
def test_even_kernel_size(kernel_size):
    with pytest.raises(ValueError, match=rf"kernel_size must be odd, got {kernel_size}"):
        SpatialAttention(kernel_size)
    with pytest.raises(ValueError, match=r"kernel_size must be odd"):
        CBAM(16, kernel_size=kernel_size)


@pytest.mark.parametrize("kernel_size", [0, -1, -7])
def test_non_positive_kernel_size(kernel_size):
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1"):
        SpatialAttention(kernel_size)


@pytest.mark.parametrize("kernel_size", [7.0, "7", True, None])
def test_non_integer_kernel_size(kernel_size):
    with pytest.raises(TypeError, match=r"kernel_size must be an int"):
        SpatialAttention(kernel_size)


def test_batch_norm_must_be_a_bool():
    with pytest.raises(TypeError, match=r"batch_norm must be a bool"):
        SpatialAttention(7, batch_norm=1)


@pytest.mark.parametrize("reduction", [0, -4])
def test_reduction_below_one(reduction):
    with pytest.raises(ValueError, match=r"reduction must be >= 1"):
        CBAM(16, reduction=reduction)


@pytest.mark.parametrize("channels", [16.0, "16", True, None])
def test_non_integer_channels(channels):
    with pytest.raises(TypeError, match=r"channels must be an int"):
        CBAM(channels)


@pytest.mark.parametrize("pools", [("avg", "mean"), ("lse",), ("Avg",)])
def test_unknown_pool_name(pools):
    with pytest.raises(ValueError, match=r"pools: unknown pool name .* expected names from \('avg', 'max'\)"):
        ChannelAttention(16, pools=pools)


def test_bad_pools_argument():
    with pytest.raises(TypeError, match=r"pools must be a tuple of names"):
        ChannelAttention(16, pools="avg")  # a bare string is not a tuple of names
    with pytest.raises(TypeError, match=r"pools must be a tuple of names"):
        ChannelAttention(16, pools=None)
    with pytest.raises(ValueError, match=r"pools must name at least one"):
        ChannelAttention(16, pools=())
    with pytest.raises(ValueError, match=r"pools must not repeat a name"):
        CBAM(16, pools=("avg", "avg"))


def test_is_a_drop_in_module_and_parts_work_alone():
    block = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), CBAM(16, reduction=4), nn.ReLU())
    assert block(torch.randn(2, 3, 8, 8)).shape == (2, 16, 8, 8)
    assert "channels=16, width=8, pools=('avg', 'max')" in repr(block[1])
    assert "kernel_size=7, batch_norm=True" in repr(block[1])
    alone = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), SpatialAttention(3, batch_norm=False))
    assert alone(torch.randn(2, 3, 8, 8)).shape == (2, 16, 8, 8)


def test_cbam_gradients_equal_the_plain_formulation():
    # CBAM with the lean helpers gives bit for bit the gradients of eqs. (4.1)-(4.9)
    # written with x.mean, x.amax and plain products.
    torch.manual_seed(0)
    module = CBAM(32, reduction=4).train()
    channel, spatial = module.channel, module.spatial
    x = torch.randn(4, 32, 9, 9, requires_grad=True)

    def plain(x):
        mlp = lambda z: channel.expand(torch.relu(channel.reduce(z)))  # noqa: E731
        a = torch.sigmoid(mlp(x.mean(dim=(2, 3), keepdim=True)) + mlp(x.amax(dim=(2, 3), keepdim=True)))
        x = x * a
        z = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(spatial.norm(spatial.conv(z)))

    grad = torch.randn(4, 32, 9, 9)
    inputs = [x, *module.parameters()]
    ours = torch.autograd.grad(module(x), inputs, grad)
    reference = torch.autograd.grad(plain(x), inputs, grad)
    assert torch.allclose(module(x), plain(x), atol=1e-6)
    # pointwise runs the MLP as a matrix product, not the convolution kernel: float32 rounding
    # of a different summation order, far below the gradients' scale
    assert all((a - b).abs().max() <= 1e-5 * (1 + b.abs().max()) for a, b in zip(ours, reference))
