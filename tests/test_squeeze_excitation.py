"""Tests for attention_lib.squeeze_excitation (chapter 01)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attention_lib import SE, bottleneck_width
from module_checks import assert_same_in_channels_last


def se_parameters(channels: int, width: int) -> int:
    """Equation (2.4) of chapter 01."""
    return 2 * channels * width + width + channels


@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (1, 64, 7, 5), (3, 256, 14, 14), (4, 8, 1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_output_shape_and_dtype(shape, dtype):
    torch.manual_seed(0)
    module = SE(shape[1], reduction=4).to(dtype)
    x = torch.randn(shape, dtype=dtype)
    y = module(x)
    assert y.shape == x.shape
    assert y.dtype == dtype


def test_output_is_input_scaled_per_channel_by_weights_in_open_unit_interval():
    torch.manual_seed(0)
    module = SE(32, reduction=4)
    x = torch.randn(3, 32, 9, 11)
    a = module.attention(x)
    assert a.shape == (3, 32, 1, 1)
    assert bool((a > 0).all()) and bool((a < 1).all())
    y = module(x)
    # Every channel of the output is the input channel times one number.
    ratio = y / x
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-5)
    assert torch.allclose(y, a * x)


def test_attention_depends_on_the_input():
    torch.manual_seed(0)
    module = SE(16, reduction=2)
    a1 = module.attention(torch.randn(1, 16, 6, 6))
    a2 = module.attention(torch.randn(1, 16, 6, 6) * 3 + 1)
    assert not torch.allclose(a1, a2)


@pytest.mark.parametrize("channels,reduction", [(256, 16), (512, 16), (2048, 16), (64, 4), (24, 16), (10, 10)])
def test_parameter_count_matches_formula(channels, reduction):
    module = SE(channels, reduction=reduction)
    counted = sum(p.numel() for p in module.parameters())
    assert counted == se_parameters(channels, module.width)


def test_resnet50_total_matches_chapter():
    stages = [(256, 3), (512, 4), (1024, 6), (2048, 3)]
    total = sum(blocks * sum(p.numel() for p in SE(c).parameters()) for c, blocks in stages)
    assert total == 2_530_992


def test_gradcheck_float64():
    torch.manual_seed(0)
    module = SE(6, reduction=2, min_width=2).double()
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


def test_channels_last_gives_same_result():
    torch.manual_seed(0)
    module = SE(32, reduction=8)
    x = torch.randn(2, 32, 10, 10)
    assert_same_in_channels_last(module, x, atol=1e-6)


def test_batch_size_one_in_training_mode():
    module = SE(16, reduction=4).train()
    x = torch.randn(1, 16, 5, 5, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_identity_weights_reduce_to_sigmoid_of_the_pooled_input():
    """Exercise 2 of the chapter: r = 1 and identity weights give sigma(z) * x for x >= 0."""
    module = SE(8, reduction=1, min_width=8)
    with torch.no_grad():
        for conv in (module.reduce, module.expand):
            conv.weight.copy_(torch.eye(8)[:, :, None, None])
            conv.bias.zero_()
    x = torch.rand(2, 8, 5, 5)
    expected = torch.sigmoid(x.mean(dim=(2, 3), keepdim=True)) * x
    assert torch.allclose(module(x), expected, atol=1e-6)


def test_torch_compile_full_graph():
    torch.manual_seed(0)
    module = SE(16, reduction=4)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 16, 6, 6)
    assert torch.allclose(compiled(x), module(x), atol=1e-6)


# --- erratum 6: the bottleneck width -------------------------------------------------


def test_erratum6_narrow_layers_get_a_minimum_width():
    # The article's in_dim // reduction_factor gives 1 here.
    assert SE(24, reduction=16).width == 8
    assert bottleneck_width(24, 16) == 8
    assert bottleneck_width(256, 16) == 16  # the paper's c / r where it is wide enough


def test_erratum6_reduction_larger_than_channels_is_refused():
    # The article builds a zero-width layer here (8 // 16 == 0) that fails at first use.
    with pytest.raises(ValueError, match=r"reduction must be <= channels \(8\), got 16"):
        SE(8, reduction=16)


def test_width_never_exceeds_channels():
    assert SE(4, reduction=1).width == 4
    assert bottleneck_width(6, 2, min_width=8) == 6


# --- bad input ------------------------------------------------------------------------


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"SE: input x must have 16 channels .*got 8"):
        SE(16)(torch.randn(1, 8, 4, 4))


@pytest.mark.parametrize("shape", [(16,), (2, 16), (2, 16, 4), (1, 2, 16, 4, 4)])
def test_non_4d_input(shape):
    with pytest.raises(ValueError, match=r"SE: input x must be 4-D"):
        SE(16)(torch.randn(shape))


def test_non_tensor_input():
    with pytest.raises(TypeError, match=r"input x must be a torch.Tensor"):
        SE(16)([[1.0]])


@pytest.mark.parametrize("reduction", [0, -4])
def test_reduction_below_one(reduction):
    with pytest.raises(ValueError, match=r"reduction must be >= 1"):
        SE(16, reduction=reduction)


@pytest.mark.parametrize("channels", [16.0, "16", True, None])
def test_non_integer_channels(channels):
    with pytest.raises(TypeError, match=r"channels must be an int"):
        SE(channels)


def test_non_integer_reduction_and_bad_min_width():
    with pytest.raises(TypeError, match=r"reduction must be an int"):
        SE(16, reduction=2.5)
    with pytest.raises(ValueError, match=r"min_width must be >= 1"):
        SE(16, min_width=0)


def test_is_a_drop_in_module():
    block = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), SE(16, reduction=4), nn.ReLU())
    assert block(torch.randn(2, 3, 8, 8)).shape == (2, 16, 8, 8)
    assert "channels=16, width=8" in repr(block[1])


def test_se_supports_double_backward():
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(SE(4, reduction=2, min_width=2).double(), (x,))


def test_se_gradients_equal_the_plain_formulation():
    # SE with squeeze and rescale gives bit for bit the gradients of the plain
    # x * sigmoid(W2 relu(W1 mean(x))) written with PyTorch's own operations.
    torch.manual_seed(0)
    module = SE(32, reduction=4)
    x = torch.randn(4, 32, 9, 9, requires_grad=True)

    def linear(layer, z):  # the 1x1 convolution on a 1x1 map as the matrix product it is
        return F.linear(z.flatten(1), layer.weight.flatten(1), layer.bias)[:, :, None, None]

    def plain(x, layer=linear):
        z = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(layer(module.expand, torch.relu(layer(module.reduce, z))))

    grad = torch.randn(4, 32, 9, 9)
    inputs = [x, *module.parameters()]
    assert torch.equal(module(x), plain(x))
    ours = torch.autograd.grad(module(x), inputs, grad)
    reference = torch.autograd.grad(plain(x), inputs, grad)
    assert all(map(torch.equal, ours, reference))
    # and, up to float rounding, those of the layers' own convolution kernel
    convolution = torch.autograd.grad(plain(x, lambda layer, z: layer(z)), inputs, grad)
    assert all((a - b).abs().max() <= 1e-6 * (1 + b.abs().max()) for a, b in zip(ours, convolution))
