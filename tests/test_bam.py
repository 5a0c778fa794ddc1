"""Tests for attention_lib.bam (chapter 04, the Bottleneck Attention Module)."""

import pytest
import torch
from torch import nn

from attention_lib.bam import BAM, COMBINE_MODES, BAMChannelBranch, BAMSpatialBranch
from attention_lib.primitives import bottleneck_width
from module_checks import assert_same_in_channels_last


def bam_channel_parameters(channels: int, width: int) -> int:
    """P_c of equation (5.5) of chapter 04."""
    return 2 * channels * width + 2 * width + channels


def bam_spatial_parameters(channels: int, width: int) -> int:
    """P_s of equation (5.5) of chapter 04."""
    return channels * width + 18 * width**2 + 7 * width + 1


def bam_parameters(channels: int, width: int) -> int:
    """P_BAM of equation (5.5) of chapter 04."""
    return 3 * channels * width + 18 * width**2 + 9 * width + channels + 1


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These modules are tiny: one intra-op thread is faster and steadier on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- shapes, dtypes and the output formula ------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (3, 64, 7, 5), (2, 256, 14, 14), (2, 8, 1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("combine", COMBINE_MODES)
def test_output_shape_and_dtype(shape, dtype, combine):
    torch.manual_seed(0)
    module = BAM(shape[1], reduction=4 if shape[1] >= 4 else 1, combine=combine).to(dtype)
    x = torch.randn(shape, dtype=dtype)
    y = module(x)
    assert y.shape == x.shape
    assert y.dtype == dtype


def test_branch_shapes():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 9, 11)
    assert BAMChannelBranch(32, reduction=4)(x).shape == (2, 32, 1, 1)
    assert BAMSpatialBranch(32, reduction=4)(x).shape == (2, 1, 9, 11)
    assert BAM(32, reduction=4).attention(x).shape == (2, 32, 9, 11)


@pytest.mark.parametrize("dilation", [1, 2, 4, 7])
def test_spatial_branch_keeps_the_size_for_any_dilation(dilation):
    branch = BAMSpatialBranch(16, reduction=2, dilation=dilation)
    assert branch(torch.randn(2, 16, 7, 5)).shape == (2, 1, 7, 5)


@pytest.mark.parametrize("combine", COMBINE_MODES)
def test_output_is_x_plus_x_times_m_with_m_in_open_unit_interval(combine):
    torch.manual_seed(0)
    module = BAM(32, reduction=4, combine=combine)
    x = torch.randn(3, 32, 9, 11)
    m = module.attention(x)
    assert bool((m > 0).all()) and bool((m < 1).all())
    y = module(x)
    assert torch.allclose(y, x + x * m, atol=1e-6)  # eq. (5.3), the paper's F + F * M(F)
    assert torch.allclose(y, x * (1 + m), atol=1e-6)
    # Every feature is scaled by a factor between 1 and 2.
    ratio = y / x
    assert bool((ratio >= 1 - 1e-6).all()) and bool((ratio <= 2 + 1e-6).all())


def test_attention_depends_on_the_input():
    torch.manual_seed(0)
    module = BAM(16, reduction=2).eval()
    a1 = module.attention(torch.randn(1, 16, 6, 6))
    a2 = module.attention(torch.randn(1, 16, 6, 6) * 3 + 1)
    assert not torch.allclose(a1, a2)


# --- erratum 7: how the branches are combined ----------------------------------------------


def test_erratum7_default_combination_is_the_papers_sum():
    # The article's snippet computes sigmoid(M_c * M_s); this test fails on it.
    torch.manual_seed(0)
    module = BAM(32, reduction=4)
    assert module.combine == "sum"
    x = torch.randn(2, 32, 8, 8)
    m_c, m_s = module.channel(x), module.spatial(x)
    assert torch.allclose(module.attention(x), torch.sigmoid(m_c + m_s), atol=1e-6)
    assert not torch.allclose(module.attention(x), torch.sigmoid(m_c * m_s), atol=1e-3)


def test_erratum7_product_option_is_the_articles_formula():
    torch.manual_seed(0)
    module = BAM(32, reduction=4, combine="product")
    x = torch.randn(2, 32, 8, 8)
    m_c, m_s = module.channel(x), module.spatial(x)
    assert torch.allclose(module.attention(x), torch.sigmoid(m_c * m_s), atol=1e-6)
    assert torch.allclose(module(x), x * (1 + torch.sigmoid(m_c * m_s)), atol=1e-6)


def test_sum_and_product_differ():
    torch.manual_seed(0)
    summed = BAM(32, reduction=4).eval()
    product = BAM(32, reduction=4, combine="product").eval()
    product.load_state_dict(summed.state_dict())  # same weights, only the combination differs
    x = torch.randn(2, 32, 8, 8)
    assert torch.equal(summed.channel(x), product.channel(x))
    assert (summed.attention(x) - product.attention(x)).abs().max() > 1e-2
    assert not torch.allclose(summed(x), product(x))


def test_product_inverts_the_spatial_ordering_for_negative_channel_scores():
    """The chapter's structural point: with the sum every channel ranks pixels like M_s."""
    torch.manual_seed(0)
    x = torch.randn(1, 16, 10, 10)
    for combine in COMBINE_MODES:
        module = BAM(16, reduction=2, combine=combine).eval()
        m_c = module.channel(x)[0, :, 0, 0]
        m_s = module.spatial(x)[0, 0].flatten()
        maps = module.attention(x)[0].flatten(1)
        covariance = ((maps - maps.mean(1, keepdim=True)) * (m_s - m_s.mean())).mean(1)
        if combine == "sum":
            assert bool((covariance > 0).all())
        else:
            assert torch.equal(covariance < 0, m_c < 0)


# --- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize("channels,reduction", [(256, 16), (512, 16), (1024, 16), (64, 4), (24, 16), (16, 2)])
def test_parameter_count_matches_formula(channels, reduction):
    module = BAM(channels, reduction=reduction)
    width = bottleneck_width(channels, reduction)
    assert module.channel.width == module.spatial.width == width
    assert count(module.channel) == bam_channel_parameters(channels, width)
    assert count(module.spatial) == bam_spatial_parameters(channels, width)
    assert count(module) == bam_parameters(channels, width)


def test_resnet50_total_matches_chapter():
    # One BAM after each of stages 1-3 (256, 512 and 1024 channels), r = 16.
    per_module = [count(BAM(c)) for c in (256, 512, 1024)]
    assert per_module == [17_297, 68_385, 271_937]
    assert sum(per_module) == 357_619


def test_narrow_layers_get_the_minimum_width():
    # Erratum 6 (shared with SE): the article's 24 // 16 would give a 1-unit bottleneck.
    module = BAM(24, reduction=16)
    assert module.channel.width == module.spatial.width == 8


def test_batch_norm_on_the_hidden_layers_only_and_no_bias_in_front_of_it():
    # The authors' released code (Jongchan/attention-module, MODELS/bam.py) puts a batch
    # norm after every hidden layer of both branches and none on their outputs, and keeps a
    # bias in every layer. Ours has the same layout, without the biases that a batch norm
    # follows (its shift replaces them); the output layers keep theirs.
    module = BAM(64)
    channel = module.channel
    assert channel.reduce.bias is None and isinstance(channel.bn, nn.BatchNorm2d)
    assert channel.expand.bias is not None
    body = list(module.spatial.body)
    convs = [layer for layer in body if isinstance(layer, nn.Conv2d)]
    assert len(convs) == 4 and sum(isinstance(layer, nn.BatchNorm2d) for layer in body) == 3
    for conv in convs[:3]:
        assert conv.bias is None and isinstance(body[body.index(conv) + 1], nn.BatchNorm2d)
    assert body[-1] is convs[-1] and convs[-1].bias is not None  # no batch norm on M_s


# --- the spatial branch's receptive field ---------------------------------------------------


def receptive_field(branch: BAMSpatialBranch, size: int = 41) -> torch.Tensor:
    """|d M_s[centre] / d X| summed over channels and a few random inputs (as in the chapter)."""
    branch = branch.eval()
    x = torch.randn(4, branch.channels, size, size, requires_grad=True)
    out = branch(x)
    grad_out = torch.zeros_like(out)
    grad_out[:, 0, size // 2, size // 2] = 1.0
    (grad,) = torch.autograd.grad(out, x, grad_out)
    return grad.abs().sum(dim=(0, 1))


@pytest.mark.parametrize("dilation", [1, 2, 3, 4])
def test_receptive_field_is_a_5x5_grid_of_side_4d_plus_1(dilation):
    torch.manual_seed(0)
    branch = BAMSpatialBranch(32, reduction=2, dilation=dilation)
    field = receptive_field(branch)
    rows, cols = torch.nonzero(field, as_tuple=True)
    centre = field.shape[0] // 2
    expected = {(i * dilation, j * dilation) for i in range(-2, 3) for j in range(-2, 3)}
    assert {(r - centre, c - centre) for r, c in zip(rows.tolist(), cols.tolist())} == expected
    side = int(rows.max() - rows.min() + 1)
    assert side == 4 * dilation + 1 == branch.receptive_field()


# --- gradients, batch size, layouts, compilation -------------------------------------------


@pytest.mark.parametrize("combine", COMBINE_MODES)
def test_gradcheck_float64_training_mode(combine):
    torch.manual_seed(0)
    module = BAM(6, reduction=2, dilation=1, combine=combine, min_width=3).double().train()
    x = torch.randn(3, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


def test_gradcheck_float64_eval_mode():
    torch.manual_seed(0)
    module = BAM(6, reduction=2, dilation=2, min_width=3).double().eval()
    x = torch.randn(1, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


def test_batch_size_one_in_training_mode_is_refused_with_a_clear_message():
    # Batch norm on the channel branch's 1x1 map has one value per channel: PyTorch fails
    # inside batch_norm; BAM says which module and what to do.
    module = BAM(16, reduction=4).train()
    with pytest.raises(ValueError, match=r"BAMChannelBranch: batch norm in training mode .*call \.eval\(\)"):
        module(torch.randn(1, 16, 5, 5))


def test_batch_size_one_in_eval_mode():
    module = BAM(16, reduction=4).eval()
    x = torch.randn(1, 16, 5, 5, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_spatial_branch_needs_more_than_one_value_only_in_training():
    branch = BAMSpatialBranch(16, reduction=4).train()
    assert branch(torch.randn(1, 16, 5, 5)).shape == (1, 1, 5, 5)  # 25 values per channel
    assert branch(torch.randn(2, 16, 1, 1)).shape == (2, 1, 1, 1)
    with pytest.raises(ValueError, match=r"BAMSpatialBranch: batch norm in training mode"):
        branch(torch.randn(1, 16, 1, 1))
    assert branch.eval()(torch.randn(1, 16, 1, 1)).shape == (1, 1, 1, 1)


def test_training_on_one_by_one_maps_with_two_images():
    module = BAM(16, reduction=4).train()
    x = torch.randn(2, 16, 1, 1, requires_grad=True)
    module(x).sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("combine", COMBINE_MODES)
def test_channels_last_gives_same_result(combine):
    torch.manual_seed(0)
    module = BAM(32, reduction=8, combine=combine).eval()
    x = torch.randn(2, 32, 10, 10)
    assert_same_in_channels_last(module, x, atol=1e-5)


@pytest.mark.parametrize("combine", COMBINE_MODES)
def test_torch_compile_full_graph(combine):
    torch.manual_seed(0)
    module = BAM(16, reduction=4, combine=combine).eval()
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 16, 6, 6)
    assert torch.allclose(compiled(x), module(x), atol=1e-6)


def test_hooks_on_the_branches_fire():
    module = BAM(16, reduction=4).eval()
    seen = []
    module.channel.register_forward_hook(lambda m, i, o: seen.append(("channel", o.shape)))
    module.spatial.register_forward_hook(lambda m, i, o: seen.append(("spatial", o.shape)))
    module(torch.randn(1, 16, 6, 7))
    assert seen == [("channel", (1, 16, 1, 1)), ("spatial", (1, 1, 6, 7))]


def test_zero_spatial_output_layer_reduces_to_residual_channel_attention():
    """Exercise 1 of the chapter: with f3 = 0, the sum gives X * (1 + sigma(M_c))."""
    torch.manual_seed(0)
    module = BAM(16, reduction=2).eval()
    with torch.no_grad():
        module.spatial.body[-1].weight.zero_()
        module.spatial.body[-1].bias.zero_()
    x = torch.randn(2, 16, 5, 5)
    expected = x * (1 + torch.sigmoid(module.channel(x)))
    assert torch.allclose(module(x), expected, atol=1e-6)
    module.combine = "product"  # sigmoid(M_c * 0) = 1/2 everywhere
    assert torch.allclose(module(x), 1.5 * x, atol=1e-6)


# --- erratum 9: the name ---------------------------------------------------------------------


def test_erratum9_docstring_names_the_bottleneck_attention_module():
    # The article's section heading says "Block Attention Module".
    assert "Bottleneck Attention Module" in BAM.__doc__
    assert "Block Attention" not in BAM.__doc__


# --- bad input -------------------------------------------------------------------------------


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"BAM: input x must have 16 channels .*got 8"):
        BAM(16)(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"BAMChannelBranch: input x must have 16 channels"):
        BAMChannelBranch(16)(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"BAMSpatialBranch: input x must have 16 channels"):
        BAMSpatialBranch(16)(torch.randn(2, 8, 4, 4))


@pytest.mark.parametrize("shape", [(16,), (2, 16), (2, 16, 4), (1, 2, 16, 4, 4)])
def test_non_4d_input(shape):
    with pytest.raises(ValueError, match=r"BAM: input x must be 4-D"):
        BAM(16)(torch.randn(shape))


def test_non_tensor_input():
    with pytest.raises(TypeError, match=r"input x must be a torch.Tensor"):
        BAM(16)([[1.0]])


def test_reduction_larger_than_channels_is_refused():
    # The article builds zero-width layers here (8 // 16 == 0) that fail at first use.
    with pytest.raises(ValueError, match=r"reduction must be <= channels \(8\), got 16"):
        BAM(8, reduction=16)


@pytest.mark.parametrize("dilation", [0, -4])
def test_dilation_below_one(dilation):
    with pytest.raises(ValueError, match=r"dilation must be >= 1, got"):
        BAM(16, dilation=dilation)


@pytest.mark.parametrize("dilation", [2.0, "4", True])
def test_non_integer_dilation(dilation):
    with pytest.raises(TypeError, match=r"dilation must be an int"):
        BAMSpatialBranch(16, dilation=dilation)


@pytest.mark.parametrize("combine", ["add", "Sum", "mul", None, 0])
def test_unknown_combine_value(combine):
    with pytest.raises(ValueError, match=r"combine must be one of \('sum', 'product'\), got"):
        BAM(16, combine=combine)


@pytest.mark.parametrize("reduction", [0, -2])
def test_reduction_below_one(reduction):
    with pytest.raises(ValueError, match=r"reduction must be >= 1"):
        BAM(16, reduction=reduction)


@pytest.mark.parametrize("channels", [16.0, "16", True, None])
def test_non_integer_channels(channels):
    with pytest.raises(TypeError, match=r"channels must be an int"):
        BAM(channels)


def test_is_a_drop_in_module():
    block = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), BAM(16, reduction=4), nn.ReLU())
    assert block(torch.randn(2, 3, 8, 8)).shape == (2, 16, 8, 8)
    text = repr(block[1])
    assert "channels=16, combine='sum'" in text
    assert "width=8, dilation=4" in text
