"""Tests for attention_lib.selective_kernel (chapter 06)."""

import pytest
import torch
from torch import nn

from attention_lib.selective_kernel import SelectiveKernel, SKBranch, same_padding
from module_checks import assert_same_in_channels_last


def sk_parameters(in_channels, out_channels, width, num_branches=2, kernel_size=3, groups=32):
    """Equation (7.10) of chapter 06."""
    c, m = out_channels, num_branches
    return m * (c * in_channels * kernel_size**2 // groups + 2 * c) + c * width + 2 * width + m * c * width


def article_padding(kernel_size, dilation):
    """The source article's branch padding (erratum 5)."""
    return kernel_size // 2 + (dilation - 1)


# --- shapes and the select step ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,in_shape,out_shape",
    [
        ({"in_channels": 64}, (2, 64, 14, 14), (2, 64, 14, 14)),
        ({"in_channels": 64, "stride": 2}, (2, 64, 15, 15), (2, 64, 8, 8)),
        ({"in_channels": 64, "out_channels": 128, "stride": 2}, (2, 64, 14, 9), (2, 128, 7, 5)),
        ({"in_channels": 32, "num_branches": 3, "groups": 8}, (3, 32, 10, 10), (3, 32, 10, 10)),
        ({"in_channels": 32, "kernel_size": 5, "groups": 4, "min_width": 8}, (2, 32, 9, 7), (2, 32, 9, 7)),
        ({"in_channels": 32, "num_branches": 3, "kernel_size": 7, "stride": 2, "groups": 1, "min_width": 4},
         (2, 32, 11, 11), (2, 32, 6, 6)),
    ],
)
def test_output_shape(kwargs, in_shape, out_shape):
    torch.manual_seed(0)
    module = SelectiveKernel(**kwargs)
    x = torch.randn(in_shape)
    assert module(x).shape == out_shape
    m = kwargs.get("num_branches", 2)
    assert module.attention(x).shape == (in_shape[0], m, out_shape[1], 1, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_is_kept(dtype):
    torch.manual_seed(0)
    module = SelectiveKernel(32, groups=8, min_width=8).to(dtype)
    y = module(torch.randn(2, 32, 6, 6, dtype=dtype))
    assert y.dtype == dtype


@pytest.mark.parametrize("num_branches", [2, 3, 4])
def test_weights_are_a_softmax_across_branches(num_branches):
    torch.manual_seed(0)
    module = SelectiveKernel(32, num_branches=num_branches, groups=4, min_width=8)
    a = module.attention(torch.randn(3, 32, 8, 8))
    assert bool((a > 0).all()) and bool((a < 1).all())
    assert torch.allclose(a.sum(dim=1), torch.ones(3, 32, 1, 1), atol=1e-6)


def test_output_is_weighted_sum_of_branches():
    torch.manual_seed(0)
    module = SelectiveKernel(64, 32, num_branches=3, groups=8).eval()
    x = torch.randn(2, 64, 9, 9)
    branches = torch.stack([branch(x) for branch in module.branches], dim=1)
    a = module.attention(x)
    assert torch.allclose(module(x), (a * branches).sum(dim=1), atol=1e-5)


def test_branches_have_growing_dilation_and_same_padding():
    module = SelectiveKernel(32, num_branches=3, kernel_size=5, groups=4, min_width=8)
    for i, branch in enumerate(module.branches):
        conv = branch[0]
        assert conv.dilation == (i + 1, i + 1)
        assert conv.padding == (2 * (i + 1), 2 * (i + 1))
        assert conv.groups == 4 and conv.bias is None
        assert isinstance(branch[1], nn.BatchNorm2d) and isinstance(branch[2], nn.ReLU)


def test_attention_depends_on_the_input():
    torch.manual_seed(0)
    module = SelectiveKernel(32, groups=4, min_width=8).eval()
    with torch.no_grad():
        module.bn.running_var.fill_(0.01)  # make the fuse step sensitive in eval mode
    a1 = module.attention(torch.randn(1, 32, 6, 6))
    a2 = module.attention(torch.randn(1, 32, 6, 6) * 3 + 1)
    assert not torch.allclose(a1, a2)


def test_one_branch_is_a_plain_conv_bn_relu():
    # The article says one-branch SK "is simply SE"; a softmax over one branch is 1.
    torch.manual_seed(0)
    module = SelectiveKernel(32, num_branches=1, groups=4, min_width=8).eval()
    x = torch.randn(2, 32, 7, 7)
    assert torch.allclose(module.attention(x), torch.ones(2, 1, 32, 1, 1))
    assert torch.allclose(module(x), module.branches[0](x))


def test_two_branch_softmax_is_sigmoid_of_the_difference():
    """Exercise 1 of the chapter."""
    torch.manual_seed(0)
    module = SelectiveKernel(32, groups=4, min_width=8)
    x = torch.randn(2, 32, 6, 6)
    a = module.attention(x)
    branches = [branch(x) for branch in module.branches]
    s = sum(u.mean(dim=(2, 3), keepdim=True) for u in branches)
    scores = module.select(torch.relu(module.bn(module.reduce(s)))).view(2, 2, 32, 1, 1)
    assert torch.allclose(a[:, 0], torch.sigmoid(scores[:, 0] - scores[:, 1]), atol=1e-6)


# --- parameter counts -------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_channels,out_channels,num_branches,kernel_size,groups,reduction,min_width",
    [(128, 128, 2, 3, 32, 16, 32), (256, 256, 2, 3, 32, 16, 32), (1024, 1024, 2, 3, 32, 16, 32),
     (64, 128, 3, 3, 8, 16, 32), (32, 32, 2, 5, 4, 4, 8), (48, 96, 4, 7, 1, 8, 16), (16, 16, 2, 3, 4, 16, 32)],
)
def test_parameter_count_matches_formula(in_channels, out_channels, num_branches, kernel_size, groups,
                                         reduction, min_width):
    module = SelectiveKernel(in_channels, out_channels, num_branches=num_branches, kernel_size=kernel_size,
                             groups=groups, reduction=reduction, min_width=min_width)
    counted = sum(p.numel() for p in module.parameters())
    assert counted == sk_parameters(in_channels, out_channels, module.width, num_branches, kernel_size, groups)


@pytest.mark.parametrize("channels,reduction,min_width,width",
                         [(128, 16, 32, 32), (1024, 16, 32, 64), (2048, 16, 32, 128), (16, 16, 32, 16), (64, 4, 8, 16)])
def test_fuse_width_is_max_of_c_over_r_and_L_capped_at_c(channels, reduction, min_width, width):
    assert SelectiveKernel(channels, groups=16, reduction=reduction, min_width=min_width).width == width


def test_sknet50_parameter_total_matches_chapter():
    # ResNeXt-50 32x4d stage widths and depths; SK adds one branch plus fuse/select per unit.
    extra = 0
    for channels, blocks in [(128, 3), (256, 4), (512, 6), (1024, 3)]:
        unit = SelectiveKernel(channels)
        replaced = channels * channels * 9 // 32 + 2 * channels  # grouped 3x3 conv + BN
        extra += blocks * (sum(p.numel() for p in unit.parameters()) - replaced)
    assert extra == 27_479_784 - 25_028_904


# --- autograd, memory format, batch of one, compile -------------------------------------


def test_gradcheck_float64():
    torch.manual_seed(0)
    module = SelectiveKernel(4, num_branches=2, groups=2, reduction=2, min_width=2).double()
    x = torch.randn(2, 4, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


def test_gradcheck_float64_eval_mode_strided_three_branches():
    torch.manual_seed(0)
    module = SelectiveKernel(4, 6, num_branches=3, stride=2, groups=2, reduction=2, min_width=2).double().eval()
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


def test_channels_last_gives_same_result():
    torch.manual_seed(0)
    module = SelectiveKernel(64, stride=2)
    x = torch.randn(2, 64, 10, 10)
    assert_same_in_channels_last(module, x, atol=1e-5)


def test_batch_size_one_in_training_mode():
    # A plain BatchNorm2d on the pooled (1, d, 1, 1) vector raises in training mode; the
    # fuse step normalises a batch of one with its running statistics instead.
    torch.manual_seed(0)
    module = SelectiveKernel(32, groups=4, min_width=8).train()
    before = (module.bn.running_mean.clone(), module.bn.running_var.clone(), module.bn.num_batches_tracked.clone())
    x = torch.randn(1, 32, 5, 5, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert module.select.weight.grad is not None and module.reduce.weight.grad is not None
    after = (module.bn.running_mean, module.bn.running_var, module.bn.num_batches_tracked)
    assert all(torch.equal(b, a) for b, a in zip(before, after))
    # The attention equals what evaluation mode gives for the fuse step.
    a_train = module.attention(x)
    module.bn.eval()
    assert torch.allclose(a_train, module.attention(x))


def test_batch_statistics_are_used_for_larger_batches():
    torch.manual_seed(0)
    module = SelectiveKernel(32, groups=4, min_width=8).train()
    module(torch.randn(4, 32, 5, 5))
    assert int(module.bn.num_batches_tracked) == 1
    assert not torch.equal(module.bn.running_mean, torch.zeros(module.width))


def test_torch_compile_full_graph():
    torch.manual_seed(0)
    module = SelectiveKernel(32, 64, stride=2, groups=8, min_width=8).eval()
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 32, 8, 8)
    assert torch.allclose(compiled(x), module(x), atol=1e-5)


# --- erratum 4: the branch constructor ---------------------------------------------------


def test_erratum4_in_and_out_channels_may_differ():
    # The article's SK cannot be built at all: its Split passes out_dim= to a Branch
    # constructor without that parameter (TypeError), and it has no out_channels.
    torch.manual_seed(0)
    module = SelectiveKernel(64, 128, stride=2)
    y = module(torch.randn(2, 64, 8, 8))
    assert y.shape == (2, 128, 4, 4)
    assert module.attention(torch.randn(2, 64, 8, 8)).shape == (2, 2, 128, 1, 1)
    assert SelectiveKernel(64).out_channels == 64


def test_erratum4_branch_takes_out_channels():
    # The call the article's Split makes, with our names: it must construct.
    branch = SKBranch(in_channels=64, out_channels=32, kernel_size=3, stride=1, groups=32, dilation=2)
    assert branch(torch.randn(2, 64, 6, 6)).shape == (2, 32, 6, 6)


# --- erratum 5: the padding --------------------------------------------------------------


def test_erratum5_padding_kernel5_dilation2():
    assert same_padding(5, 2) == 4
    x = torch.randn(1, 4, 13, 11)
    branch = SKBranch(4, 4, kernel_size=5, groups=1, dilation=2)
    assert branch(x).shape[-2:] == (13, 11)
    # The article's padding (3) shrinks the map by two pixels: this is the bug.
    assert article_padding(5, 2) == 3
    shrunk = nn.Conv2d(4, 4, 5, padding=article_padding(5, 2), dilation=2)(x)
    assert shrunk.shape[-2:] == (11, 9)


def test_erratum5_sk_unit_with_5x5_branches_keeps_size():
    # With the article's padding, branch 2 (k=5, D=2) would be 2 pixels smaller than
    # branch 1 and the sum of eq. (7.2) would fail.
    module = SelectiveKernel(16, kernel_size=5, groups=4, min_width=8)
    assert module(torch.randn(2, 16, 12, 12)).shape == (2, 16, 12, 12)


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_padding_keeps_size(kernel_size, dilation):
    assert same_padding(kernel_size, dilation) == dilation * (kernel_size - 1) // 2
    x = torch.randn(1, 2, 16, 15)
    branch = SKBranch(2, 2, kernel_size=kernel_size, groups=1, dilation=dilation)
    assert branch(x).shape[-2:] == (16, 15)
    # Strided branches of every dilation agree on ceil(h / 2) x ceil(w / 2).
    strided = SKBranch(2, 2, kernel_size=kernel_size, stride=2, groups=1, dilation=dilation)
    assert strided(x).shape[-2:] == (8, 8)


def test_article_padding_is_right_only_for_3x3_or_dilation_1():
    for kernel_size in (3, 5, 7):
        for dilation in (1, 2, 3):
            agree = article_padding(kernel_size, dilation) == same_padding(kernel_size, dilation)
            assert agree == (kernel_size == 3 or dilation == 1)


# --- bad input and bad hyperparameters ------------------------------------------------


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"SelectiveKernel: input x must have 64 channels .*got 32"):
        SelectiveKernel(64)(torch.randn(1, 32, 4, 4))
    with pytest.raises(ValueError, match=r"SelectiveKernel: input x must have 64 channels"):
        SelectiveKernel(64).attention(torch.randn(1, 32, 4, 4))


@pytest.mark.parametrize("shape", [(64,), (2, 64), (2, 64, 4), (1, 2, 64, 4, 4)])
def test_non_4d_input(shape):
    with pytest.raises(ValueError, match=r"SelectiveKernel: input x must be 4-D"):
        SelectiveKernel(64)(torch.randn(shape))


def test_non_tensor_input():
    with pytest.raises(TypeError, match=r"input x must be a torch.Tensor"):
        SelectiveKernel(64)([[1.0]])


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match=r"groups \(32\) must divide in_channels \(48\)"):
        SelectiveKernel(48)
    with pytest.raises(ValueError, match=r"groups \(32\) must divide out_channels \(80\)"):
        SelectiveKernel(64, 80)
    with pytest.raises(ValueError, match=r"groups must be >= 1"):
        SelectiveKernel(64, groups=0)


@pytest.mark.parametrize("num_branches", [0, -1])
def test_num_branches_below_one(num_branches):
    with pytest.raises(ValueError, match=r"num_branches must be >= 1"):
        SelectiveKernel(64, num_branches=num_branches)


@pytest.mark.parametrize("kernel_size", [2, 4])
def test_even_kernel_size(kernel_size):
    with pytest.raises(ValueError, match=rf"kernel_size must be odd .*got {kernel_size}"):
        SelectiveKernel(64, kernel_size=kernel_size)


@pytest.mark.parametrize("kernel_size", [0, -3])
def test_non_positive_kernel_size(kernel_size):
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1"):
        SelectiveKernel(64, kernel_size=kernel_size)


def test_reduction_larger_than_channels():
    with pytest.raises(ValueError, match=r"reduction must be <= channels \(32\), got 64"):
        SelectiveKernel(32, reduction=64)
    with pytest.raises(ValueError, match=r"reduction must be >= 1"):
        SelectiveKernel(32, reduction=0)


@pytest.mark.parametrize("name,kwargs", [("in_channels", {"in_channels": 64.0}),
                                         ("out_channels", {"in_channels": 64, "out_channels": "64"}),
                                         ("num_branches", {"in_channels": 64, "num_branches": 2.0}),
                                         ("stride", {"in_channels": 64, "stride": True}),
                                         ("kernel_size", {"in_channels": 64, "kernel_size": 3.0})])
def test_non_integer_arguments(name, kwargs):
    with pytest.raises(TypeError, match=rf"{name} must be an int"):
        SelectiveKernel(**kwargs)


def test_bad_stride_and_dilation():
    with pytest.raises(ValueError, match=r"stride must be >= 1"):
        SelectiveKernel(64, stride=0)
    with pytest.raises(ValueError, match=r"dilation must be >= 1"):
        same_padding(3, 0)


def test_is_a_drop_in_module():
    block = nn.Sequential(nn.Conv2d(3, 64, 1), SelectiveKernel(64, 128, stride=2), nn.Conv2d(128, 8, 1))
    assert block(torch.randn(2, 3, 8, 8)).shape == (2, 8, 4, 4)
    text = repr(block[1])
    assert "in_channels=64, out_channels=128, num_branches=2, kernel_size=3, stride=2, groups=32, width=32" in text
