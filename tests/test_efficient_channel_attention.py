"""Tests for attention_lib.efficient_channel_attention (chapter 02)."""

import math

import pytest
import torch
from torch import nn

from attention_lib.efficient_channel_attention import ECA, SEVar1, SEVar2, SEVar3, eca_kernel_size
from module_checks import assert_same_in_channels_last

MODULES = {
    "SEVar1": lambda c: SEVar1(c),
    "SEVar2": lambda c: SEVar2(c),
    "SEVar3": lambda c: SEVar3(c),
    "ECA": lambda c: ECA(c),
    "ECA-k5": lambda c: ECA(c, kernel_size=5),
}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def pooled(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


# --- shapes, dtypes, the gate ----------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (1, 64, 7, 5), (3, 256, 14, 14), (4, 8, 1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_output_shape_and_dtype(name, shape, dtype):
    torch.manual_seed(0)
    module = MODULES[name](shape[1]).to(dtype)
    x = torch.randn(shape, dtype=dtype)
    y = module(x)
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert module.attention(x).shape == (shape[0], shape[1], 1, 1)


@pytest.mark.parametrize("name", MODULES)
def test_output_is_input_scaled_by_weights_in_open_unit_interval(name):
    torch.manual_seed(0)
    module = MODULES[name](32)
    x = torch.randn(3, 32, 9, 11)
    a = module.attention(x)
    assert bool((a > 0).all()) and bool((a < 1).all())
    assert torch.allclose(module(x), a * x)


@pytest.mark.parametrize("name", ["SEVar2", "SEVar3", "ECA"])
def test_gradcheck_float64(name):
    torch.manual_seed(0)
    module = MODULES[name](6).double()
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


def test_gradcheck_float64_parameter_free_variant():
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SEVar1(5), (x,), eps=1e-6, atol=1e-5)


def test_gradients_reach_the_eca_kernel():
    module = ECA(16, kernel_size=3)
    module(torch.randn(2, 16, 4, 4)).sum().backward()
    assert module.conv.weight.grad is not None and module.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MODULES)
def test_channels_last_gives_same_result(name):
    torch.manual_seed(0)
    module = MODULES[name](32)
    x = torch.randn(2, 32, 10, 10)
    assert_same_in_channels_last(module, x, atol=1e-6)


@pytest.mark.parametrize("name", MODULES)
def test_batch_size_one_in_training_mode(name):
    module = MODULES[name](16).train()
    x = torch.randn(1, 16, 5, 5, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("name", ["SEVar1", "SEVar2", "SEVar3", "ECA"])
def test_torch_compile_full_graph(name):
    torch.manual_seed(0)
    module = MODULES[name](16)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 16, 6, 6)
    assert torch.allclose(compiled(x), module(x), atol=1e-6)


# --- parameter counts: equation (3.6) of the chapter ----------------------------------


@pytest.mark.parametrize("channels", [1, 8, 64, 256, 2048])
def test_parameter_counts_match_equation_3_6(channels):
    assert count(SEVar1(channels)) == 0
    assert count(SEVar2(channels)) == channels  # default bias=False, as eq. (3.2)
    assert count(SEVar2(channels, bias=True)) == 2 * channels  # the article's snippet
    assert count(SEVar3(channels)) == channels**2 + channels  # default bias=True, like eSE
    assert count(SEVar3(channels, bias=False)) == channels**2  # eq. (3.3)
    eca = ECA(channels)
    assert count(eca) == eca.kernel_size == eca_kernel_size(channels)
    assert eca.conv.bias is None


@pytest.mark.parametrize("kernel_size", [1, 3, 7, 15])
def test_eca_has_exactly_k_parameters(kernel_size):
    assert count(ECA(64, kernel_size=kernel_size)) == kernel_size


def test_resnet50_total_matches_chapter():
    blocks = [(256, 3), (512, 4), (1024, 6), (2048, 3)]
    assert sum(n * count(ECA(c)) for c, n in blocks) == 86
    # The released eca_resnet50_k3557 (k = 3, 5, 5, 7 per stage) gives the paper's 80.
    released = zip(blocks, [3, 5, 5, 7])
    assert sum(n * count(ECA(c, kernel_size=k)) for (c, n), k in released) == 80


# --- equivalences of the chapter -------------------------------------------------------


def test_se_var1_is_sigmoid_of_the_pooled_input():
    x = torch.randn(3, 12, 5, 4)
    assert torch.allclose(SEVar1(12).attention(x).flatten(1), torch.sigmoid(pooled(x)))


def test_se_var2_is_a_per_channel_scale_inside_the_sigmoid():
    torch.manual_seed(0)
    module = SEVar2(12)
    x = torch.randn(3, 12, 5, 4)
    w = module.excite.weight.flatten()
    assert torch.allclose(module.attention(x).flatten(1), torch.sigmoid(w * pooled(x)), atol=1e-6)


def test_se_var2_with_bias():
    torch.manual_seed(0)
    module = SEVar2(12, bias=True)
    x = torch.randn(3, 12, 5, 4)
    w, b = module.excite.weight.flatten(), module.excite.bias
    assert torch.allclose(module.attention(x).flatten(1), torch.sigmoid(w * pooled(x) + b), atol=1e-6)


def test_se_var3_is_a_full_linear_layer():
    torch.manual_seed(0)
    module = SEVar3(12)
    x = torch.randn(3, 12, 5, 4)
    W, b = module.excite.weight[:, :, 0, 0], module.excite.bias
    assert torch.allclose(module.attention(x).flatten(1), torch.sigmoid(pooled(x) @ W.T + b), atol=1e-6)


def test_eca_with_kernel_one_is_se_var2_with_one_shared_weight():
    torch.manual_seed(0)
    eca, var2 = ECA(20, kernel_size=1), SEVar2(20)
    with torch.no_grad():
        var2.excite.weight.fill_(eca.conv.weight.item())
    x = torch.randn(2, 20, 6, 6)
    assert torch.allclose(eca.attention(x), var2.attention(x), atol=1e-6)


@pytest.mark.parametrize("kernel_size", [1, 3, 5, 9])
def test_eca_with_a_centre_only_kernel_is_sigmoid_of_w_z(kernel_size):
    eca = ECA(20, kernel_size=kernel_size)
    with torch.no_grad():
        eca.conv.weight.zero_()
        eca.conv.weight[0, 0, kernel_size // 2] = -1.3
    x = torch.randn(2, 20, 6, 6)
    assert torch.allclose(eca.attention(x).flatten(1), torch.sigmoid(-1.3 * pooled(x)), atol=1e-6)


@pytest.mark.parametrize("kernel_size", [1, 3, 5, 9, 39])
def test_eca_equals_bias_free_se_var3_with_its_band_matrix(kernel_size):
    torch.manual_seed(0)
    eca, var3 = ECA(20, kernel_size=kernel_size), SEVar3(20, bias=False)
    with torch.no_grad():
        var3.excite.weight.copy_(eca.interaction_matrix()[:, :, None, None])
    x = torch.randn(2, 20, 6, 6)
    assert torch.allclose(eca.attention(x), var3.attention(x), atol=1e-6)


def test_interaction_matrix_is_a_band_toeplitz_matrix_of_the_kernel():
    torch.manual_seed(0)
    c, k = 10, 5
    eca = ECA(c, kernel_size=k)
    T = eca.interaction_matrix().detach()
    w = eca.conv.weight.flatten().detach()
    p = (k - 1) // 2
    for i in range(c):
        for j in range(c):
            expected = w[j - i + p] if abs(j - i) <= p else 0.0
            assert float(T[i, j]) == pytest.approx(float(expected), abs=1e-7)


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_eca_weight_of_channel_i_depends_only_on_its_window(kernel_size):
    torch.manual_seed(0)
    c = 24
    eca = ECA(c, kernel_size=kernel_size)
    half = (kernel_size - 1) // 2
    x = torch.randn(2, c, 5, 5)
    base = eca.attention(x)
    for j in range(c):
        perturbed = x.clone()
        perturbed[:, j] += 5.0
        changed = (eca.attention(perturbed) != base).any(dim=0).flatten()
        inside = [i for i in range(c) if abs(i - j) <= half]
        assert changed[inside].all(), f"channel {j} should move the weights of channels {inside}"
        outside = [i for i in range(c) if abs(i - j) > half]
        assert not changed[outside].any(), f"channel {j} moved a weight outside its window"


def test_eca_jacobian_is_banded_and_se_var3_jacobian_is_dense():
    torch.manual_seed(0)
    c, k = 16, 5
    z = torch.randn(c)

    def jacobian(module):
        return torch.autograd.functional.jacobian(lambda v: module.attention(v.view(1, c, 1, 1)).flatten(), z)

    rows, cols = torch.meshgrid(torch.arange(c), torch.arange(c), indexing="ij")
    band = (rows - cols).abs() <= (k - 1) // 2
    assert torch.equal(jacobian(ECA(c, kernel_size=k)) != 0, band)
    assert bool((jacobian(SEVar3(c)) != 0).all())
    assert torch.equal(jacobian(SEVar2(c)) != 0, torch.eye(c, dtype=torch.bool))


def test_largest_kernel_connects_every_pair_of_channels():
    c = 6
    eca = ECA(c, kernel_size=2 * c - 1)
    with torch.no_grad():
        eca.conv.weight.fill_(1.0)
    assert bool((eca.interaction_matrix() == 1.0).all())


# --- erratum 8: the adaptive kernel size -------------------------------------------------


def test_erratum8_adaptive_kernel_size_by_default():
    # The article's ECA has a fixed kernel_size=3 whatever the width; the ECA paper derives
    # k from c (k = |log2(c)/gamma + b/gamma|_odd), so a 256-channel layer gets 5 and a
    # 2048-channel layer 7. This fails on the article's version.
    assert ECA(256).kernel_size == 5
    assert ECA(2048).kernel_size == 7
    assert ECA(2048).adaptive and not ECA(2048, kernel_size=3).adaptive
    assert ECA(2048, kernel_size=3).kernel_size == 3


@pytest.mark.parametrize(
    "channels,expected",
    [(1, 1), (2, 1), (8, 3), (16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7),
     (4096, 7)],
)
def test_erratum8_adaptive_kernel_size_table(channels, expected):
    assert eca_kernel_size(channels) == expected
    assert ECA(channels).kernel_size == expected


def test_adaptive_kernel_size_follows_the_formula_everywhere():
    for c in range(1, 5000):
        t = (math.log2(c) + 1) / 2
        k = eca_kernel_size(c)
        assert k % 2 == 1
        assert abs(k - t) <= 1 + 1e-12  # an odd number next to t
        assert k == (int(t) if int(t) % 2 else int(t) + 1)


@pytest.mark.parametrize("gamma,b,expected", [(1, 0, 9), (3, 1, 3), (2, 3, 5), (2.5, 1, 3), (2, -20, 7)])
def test_adaptive_kernel_size_with_other_gamma_and_b(gamma, b, expected):
    # c = 256: (8 + b) / gamma -> 8, 3, 5.5, 3.6, |-6|; the absolute value is the paper's.
    assert eca_kernel_size(256, gamma=gamma, b=b) == expected
    assert ECA(256, gamma=gamma, b=b).kernel_size == expected


def test_extra_repr_says_how_the_kernel_was_chosen():
    assert "channels=256, kernel_size=5, adaptive (gamma=2, b=1)" in repr(ECA(256))
    assert ECA(256, kernel_size=3).extra_repr() == "channels=256, kernel_size=3"
    assert "channels=8, bias=False" in repr(SEVar2(8))
    assert "channels=8, bias=True" in repr(SEVar3(8))
    assert "channels=8" in repr(SEVar1(8))


# --- bad input ------------------------------------------------------------------------


def test_even_kernel_size_is_refused():
    # The article pads by kernel_size // 2, so an even kernel returns c + 1 weights and the
    # module fails later with a broadcasting error. This test fails on the article's version.
    with pytest.raises(ValueError, match=r"kernel_size must be odd .*got 4"):
        ECA(64, kernel_size=4)


@pytest.mark.parametrize("kernel_size", [0, -3])
def test_non_positive_kernel_size(kernel_size):
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1"):
        ECA(64, kernel_size=kernel_size)


def test_kernel_size_larger_than_twice_the_channels():
    assert ECA(8, kernel_size=15).kernel_size == 15
    with pytest.raises(ValueError, match=r"kernel_size must be <= 2 \* channels - 1 = 15 .*got 17"):
        ECA(8, kernel_size=17)


@pytest.mark.parametrize("kernel_size", [3.0, "3", True])
def test_non_integer_kernel_size(kernel_size):
    with pytest.raises(TypeError, match=r"kernel_size must be an int"):
        ECA(64, kernel_size=kernel_size)


@pytest.mark.parametrize("gamma", [0, -2, 0.0])
def test_non_positive_gamma(gamma):
    with pytest.raises(ValueError, match=r"gamma must be > 0"):
        ECA(64, gamma=gamma)
    with pytest.raises(ValueError, match=r"gamma must be > 0"):
        eca_kernel_size(64, gamma=gamma)


@pytest.mark.parametrize("name", ["gamma", "b"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_gamma_or_b(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be finite"):
        ECA(64, **{name: value})


@pytest.mark.parametrize("name", ["gamma", "b"])
@pytest.mark.parametrize("value", ["2", None, True, 1j])
def test_non_real_gamma_or_b(name, value):
    with pytest.raises(TypeError, match=rf"{name} must be a real number"):
        ECA(64, **{name: value})


def test_adaptive_kernel_too_large_for_the_channels():
    with pytest.raises(ValueError, match=r"adaptive kernel size for channels=2, gamma=0.1, b=1 is 21"):
        ECA(2, gamma=0.1)


@pytest.mark.parametrize("factory", [SEVar1, SEVar2, SEVar3, ECA, eca_kernel_size])
@pytest.mark.parametrize("channels", [16.0, "16", True, None])
def test_non_integer_channels(factory, channels):
    with pytest.raises(TypeError, match=r"channels must be an int"):
        factory(channels)


@pytest.mark.parametrize("factory", [SEVar1, SEVar2, SEVar3, ECA, eca_kernel_size])
def test_channels_below_one(factory):
    with pytest.raises(ValueError, match=r"channels must be >= 1"):
        factory(0)


@pytest.mark.parametrize("factory", [SEVar2, SEVar3])
def test_non_bool_bias(factory):
    with pytest.raises(TypeError, match=r"bias must be a bool"):
        factory(8, bias=1)


@pytest.mark.parametrize("name", MODULES)
def test_wrong_channel_count(name):
    label = name.split("-")[0]
    with pytest.raises(ValueError, match=rf"{label}: input x must have 16 channels .*got 8"):
        MODULES[name](16)(torch.randn(1, 8, 4, 4))


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("shape", [(16,), (2, 16), (2, 16, 4), (1, 2, 16, 4, 4)])
def test_non_4d_input(name, shape):
    with pytest.raises(ValueError, match=r"input x must be 4-D"):
        MODULES[name](16)(torch.randn(shape))


def test_non_tensor_input():
    with pytest.raises(TypeError, match=r"ECA: input x must be a torch.Tensor"):
        ECA(16)([[1.0]])


def test_is_a_drop_in_module():
    block = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), ECA(16), nn.ReLU())
    assert block(torch.randn(2, 3, 8, 8)).shape == (2, 16, 8, 8)
