"""Tests for attention_lib.gather_excite (chapter 05)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attention_lib.gather_excite import GatherExcite
from module_checks import assert_same_in_channels_last

EXTENTS = [2, 4, 8, "global"]
VARIANTS = [(False, False), (True, False), (True, True), (False, True)]  # θ-, θ, θ+, θ- with MLP


def ge_parameters(channels, extent, param_gather, param_excite, spatial_size=None, width=None):
    """Equations (6.6)-(6.8) of chapter 05."""
    count = 0
    if param_gather and extent == "global":
        count += channels * spatial_size[0] * spatial_size[1] + 2 * channels  # (6.7)
    elif param_gather:
        count += 11 * channels * int(math.log2(extent))  # (6.6)
    if param_excite:
        count += 2 * channels * width + width + channels  # (6.8)
    return count


def build(channels, extent, variant, size, **kwargs):
    param_gather, param_excite = variant
    return GatherExcite(channels, extent, param_gather, param_excite, reduction=4, spatial_size=size, **kwargs)


# --- shapes, values ---------------------------------------------------------------------


@pytest.mark.parametrize("extent", EXTENTS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [(16, 16), (15, 22), (7, 5), (1, 1)])
def test_shape_is_restored_exactly_for_divisible_and_other_sizes(extent, variant, size):
    torch.manual_seed(0)
    module = build(16, extent, variant, size)
    x = torch.randn(2, 16, *size)
    y = module(x)
    a = module.attention(x)
    assert y.shape == x.shape
    # The gate is (n, c, 1, 1) when the gathered map is 1x1 (always for a global extent).
    one_by_one = extent == "global" or (size[0] <= extent and size[1] <= extent)
    assert a.shape == ((2, 16, 1, 1) if one_by_one else x.shape)
    assert bool((a > 0).all()) and bool((a < 1).all())
    assert torch.allclose(y, x * a)


@pytest.mark.parametrize("extent", [2, 4, 8])
@pytest.mark.parametrize("size", [(16, 16), (15, 22), (9, 33)])
def test_pooled_and_learned_gathers_give_ceil_h_over_e(extent, size):
    x = torch.randn(2, 8, *size)
    pooled = F.avg_pool2d(x, 2 * extent - 1, stride=extent, padding=extent - 1, count_include_pad=False)
    learned = GatherExcite(8, extent, param_gather=True).gather(x)
    expected = (math.ceil(size[0] / extent), math.ceil(size[1] / extent))
    assert pooled.shape[-2:] == expected
    assert learned.shape[-2:] == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("extent", [4, "global"])
def test_dtypes(dtype, extent):
    module = GatherExcite(8, extent, param_gather=True, param_excite=True, reduction=2, spatial_size=(6, 10)).to(dtype)
    x = torch.randn(2, 8, 6, 10, dtype=dtype)
    y = module(x)
    assert y.shape == x.shape and y.dtype == dtype


def test_global_parameter_free_is_sigmoid_of_the_mean_times_x():
    """GE-θ- with a global extent is SE-Var-1: sigma(mean) * x."""
    x = torch.randn(3, 8, 5, 7)
    expected = torch.sigmoid(x.mean(dim=(2, 3), keepdim=True)) * x
    assert torch.allclose(GatherExcite(8)(x), expected, atol=1e-6)


def test_local_parameter_free_matches_equations_6_1_to_6_3():
    x = torch.randn(2, 4, 12, 9)
    z = F.avg_pool2d(x, 7, stride=4, padding=3, count_include_pad=False)  # (6.1), e = 4
    a = torch.sigmoid(F.interpolate(z, size=(12, 9), mode="nearest"))  # (6.2)
    assert torch.allclose(GatherExcite(4, 4)(x), x * a, atol=1e-6)  # (6.3)


def test_each_position_is_gated_by_a_window_that_contains_it():
    # A single hot pixel raises the gate at its own position for every local extent.
    for extent in (2, 4, 8):
        x = torch.zeros(1, 1, 20, 13)
        x[0, 0, 11, 6] = 10.0
        a = GatherExcite(1, extent).attention(x)
        assert a[0, 0, 11, 6] > 0.5


def test_attention_depends_on_the_input():
    module = GatherExcite(8, 2, param_gather=True, param_excite=True, reduction=2).eval()
    a1 = module.attention(torch.randn(1, 8, 8, 8))
    a2 = module.attention(torch.randn(1, 8, 8, 8) * 3 + 1)
    assert not torch.allclose(a1, a2)


# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels,reduction", [(8, 4), (24, 16), (256, 16), (2048, 16)])
@pytest.mark.parametrize("extent", EXTENTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_matches_formulas(channels, reduction, extent, variant):
    size = (7, 5)
    module = GatherExcite(channels, extent, *variant, reduction=reduction, spatial_size=size)
    counted = sum(p.numel() for p in module.parameters())
    assert counted == ge_parameters(channels, extent, *variant, size, module.width)
    if variant == (False, False):
        assert counted == 0


def test_resnet50_totals_match_chapter():
    stages = [(256, 56, 3), (512, 28, 4), (1024, 14, 6), (2048, 7, 3)]

    def total(**kwargs):
        return sum(
            blocks * sum(p.numel() for p in GatherExcite(c, spatial_size=s, **kwargs).parameters())
            for c, s, blocks in stages
        )

    assert total(extent=8, param_gather=True) == 498_432
    assert total(extent="global", param_gather=True) == 5_549_568
    assert total(extent="global", param_gather=True, param_excite=True) == 8_080_560


def test_gather_layer_order():
    module = GatherExcite(4, 8, param_gather=True)
    kinds = [type(m).__name__ for m in module.gather]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["Conv2d", "BatchNorm2d"]  # no ReLU last
    conv = module.gather[0]
    assert conv.groups == 4 and conv.stride == (2, 2) and conv.kernel_size == (3, 3) and conv.bias is None
    glob = GatherExcite(4, "global", param_gather=True, spatial_size=(7, 5))
    assert [type(m).__name__ for m in glob.gather] == ["Conv2d", "BatchNorm2d"]
    assert glob.gather[0].kernel_size == (7, 5) and glob.gather[0].groups == 4


# --- autograd, memory format, compile, batch size -------------------------------------------


@pytest.mark.parametrize("extent,variant", [
    (2, (False, False)), ("global", (False, False)),  # GE-θ-
    (4, (True, False)), ("global", (True, False)),  # GE-θ
    (4, (True, True)), ("global", (True, True)),  # GE-θ+
])
def test_gradcheck_float64(extent, variant):
    torch.manual_seed(0)
    module = GatherExcite(3, extent, *variant, reduction=1, min_width=2, spatial_size=(5, 6)).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("extent", [4, "global"])
@pytest.mark.parametrize("variant", [(False, False), (True, False), (True, True)])
def test_channels_last_gives_same_result(extent, variant):
    torch.manual_seed(0)
    module = GatherExcite(16, extent, *variant, reduction=4, spatial_size=(10, 13)).eval()
    x = torch.randn(2, 16, 10, 13)
    assert_same_in_channels_last(module, x, atol=1e-5)


@pytest.mark.parametrize("extent", [8, "global"])
def test_batch_size_one(extent):
    # Parameter-free: fine in training mode.
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    GatherExcite(8, extent).train()(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    # Learned gather with a 1x1 gathered map: refused in training mode (BN needs > 1 value
    # per channel), fine in eval mode.
    module = GatherExcite(8, extent, param_gather=True, spatial_size=6)
    with pytest.raises(ValueError, match=r"batch norm .* batch of 1 gathers to a 1x1 map.*\.eval\(\)"):
        module.train()(x)
    assert module.eval()(x).shape == x.shape


def test_batch_size_one_with_a_larger_gathered_map_trains():
    module = GatherExcite(8, 2, param_gather=True).train()
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    module(x).sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("extent", [4, "global"])
@pytest.mark.parametrize("variant", [(False, False), (True, True)])
def test_torch_compile_full_graph(extent, variant):
    torch.manual_seed(0)
    module = GatherExcite(16, extent, *variant, reduction=4, spatial_size=(9, 11)).eval()
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 16, 9, 11)
    assert torch.allclose(compiled(x), module(x), atol=1e-6)


# --- erratum 1: the undefined `extent_ratio` ----------------------------------------------


@pytest.mark.parametrize("extent", EXTENTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_erratum1_every_documented_extent_builds_and_runs(extent, variant):
    # The article's GE-θ- and GE-θ constructors test `extent_ratio`, an undefined name,
    # so building them raises NameError for every extent; ours builds and runs them all.
    module = GatherExcite(8, extent, *variant, reduction=2, spatial_size=(8, 8))
    assert module(torch.randn(2, 8, 8, 8)).shape == (2, 8, 8, 8)


@pytest.mark.parametrize("extent", [0, -2, -8, 1, 3, 6, 12])
def test_erratum1_bad_integer_extents_are_refused_naming_extent(extent):
    with pytest.raises(ValueError, match=r"extent must be 'global' or a power of two >= 2, got -?\d+"):
        GatherExcite(8, extent)


def test_extent_zero_points_to_global():
    # The article (and the paper's code) write 0 for a global extent.
    with pytest.raises(ValueError, match=r"extent='global', not 0"):
        GatherExcite(8, 0)


@pytest.mark.parametrize("extent", ["Global", "all", ""])
def test_bad_extent_strings(extent):
    with pytest.raises(ValueError, match=r"extent must be 'global'"):
        GatherExcite(8, extent)


@pytest.mark.parametrize("extent", [2.0, None, True])
def test_non_integer_extent(extent):
    with pytest.raises(TypeError, match=r"extent must be an int"):
        GatherExcite(8, extent)


# --- erratum 2: shared weights ------------------------------------------------------------


@pytest.mark.parametrize("extent", [4, 8, 16])
def test_erratum2_stages_have_their_own_weights(extent):
    # The article's `n_layers * [conv, bn, relu]` puts the same conv and BN objects in
    # every stage: this test fails on it (one distinct conv, one stage's parameter count).
    module = GatherExcite(8, extent, param_gather=True, param_excite=True, reduction=2)
    stages = int(math.log2(extent))
    convs = [m for m in module.gather if isinstance(m, nn.Conv2d)]
    norms = [m for m in module.gather if isinstance(m, nn.BatchNorm2d)]
    assert len({id(m) for m in convs}) == stages
    assert len({id(m) for m in norms}) == stages
    weights = [m.weight for m in convs]
    assert len({w.data_ptr() for w in weights}) == stages
    gather_params = sum(p.numel() for p in module.gather.parameters())
    assert gather_params == 11 * 8 * stages  # eq. (6.6); shared weights give 11 * 8
    assert len(module.state_dict()) == len({k for k in module.state_dict()})


def test_erratum2_changing_one_stage_leaves_the_others():
    module = GatherExcite(4, 8, param_gather=True)
    convs = [m for m in module.gather if isinstance(m, nn.Conv2d)]
    before = [c.weight.detach().clone() for c in convs]
    with torch.no_grad():
        convs[0].weight.add_(1.0)
    assert not torch.equal(convs[0].weight, before[0])
    assert torch.equal(convs[1].weight, before[1]) and torch.equal(convs[2].weight, before[2])


def test_erratum2_article_pattern_really_shares():
    # Documents the bug itself: list repetition copies references.
    conv = nn.Conv2d(4, 4, 3, groups=4, bias=False)
    layers = 3 * [conv, nn.BatchNorm2d(4), nn.ReLU()]
    assert layers[0] is layers[3] is layers[6]
    assert sum(p.numel() for p in nn.Sequential(*layers[:-1]).parameters()) == 11 * 4


# --- erratum 3: the global learned gather and the spatial size --------------------------------


def test_erratum3_spatial_size_is_required_for_the_global_learned_gather():
    # The article defaults spatial_dim to None and fails inside Conv2d.
    with pytest.raises(ValueError, match=r"spatial_size .* is required for a global extent with param_gather=True"):
        GatherExcite(8, "global", param_gather=True)


@pytest.mark.parametrize("size,expected", [(7, (7, 7)), ((7, 5), (7, 5)), ([3, 11], (3, 11))])
def test_erratum3_int_and_non_square_spatial_sizes(size, expected):
    module = GatherExcite(8, "global", param_gather=True, param_excite=True, reduction=2, spatial_size=size)
    assert module.spatial_size == expected
    assert module.gather[0].kernel_size == expected
    x = torch.randn(2, 8, *expected)
    assert module(x).shape == x.shape
    assert module.attention(x).shape == (2, 8, 1, 1)


@pytest.mark.parametrize("other", [(14, 10), (7, 6), (6, 5), (5, 7)])
def test_erratum3_another_input_size_is_refused(other):
    # On the article's module a larger input runs silently (the 'global' gather becomes a
    # sliding window); this test fails on it.
    module = GatherExcite(8, "global", param_gather=True, spatial_size=(7, 5))
    with pytest.raises(ValueError, match=r"built for spatial_size=\(7, 5\).*got an input of spatial size"):
        module(torch.randn(2, 8, *other))


def test_spatial_size_is_not_needed_elsewhere():
    for extent in (2, 8, "global"):
        module = GatherExcite(8, extent, param_gather=extent != "global", spatial_size=(7, 7))
        assert module(torch.randn(2, 8, 12, 9)).shape == (2, 8, 12, 9)


@pytest.mark.parametrize("size", [(7,), (7, 5, 3), 0, (0, 5), -3])
def test_bad_spatial_size(size):
    with pytest.raises(ValueError, match=r"spatial_size"):
        GatherExcite(8, "global", param_gather=True, spatial_size=size)


def test_non_integer_spatial_size():
    with pytest.raises(TypeError, match=r"spatial_size\[1\] must be an int"):
        GatherExcite(8, "global", param_gather=True, spatial_size=(7, 5.0))


# --- bad input and hyperparameters ----------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_wrong_channel_count(variant):
    with pytest.raises(ValueError, match=r"GatherExcite: input x must have 16 channels .*got 8"):
        GatherExcite(16, 4, *variant)(torch.randn(2, 8, 6, 6))


@pytest.mark.parametrize("shape", [(16,), (2, 16), (2, 16, 4), (1, 2, 16, 4, 4)])
def test_non_4d_input(shape):
    with pytest.raises(ValueError, match=r"GatherExcite: input x must be 4-D"):
        GatherExcite(16, 2)(torch.randn(shape))


def test_non_tensor_input():
    with pytest.raises(TypeError, match=r"input x must be a torch.Tensor"):
        GatherExcite(16)([[1.0]])


def test_reduction_larger_than_channels_with_the_mlp():
    with pytest.raises(ValueError, match=r"reduction must be <= channels \(8\), got 16"):
        GatherExcite(8, 4, param_gather=True, param_excite=True, reduction=16)


def test_reduction_is_unused_without_the_mlp():
    # GE-θ- and GE-θ have no MLP: the default reduction 16 must not stop narrow layers.
    assert GatherExcite(8, 4).width is None
    assert GatherExcite(8, 4, param_gather=True)(torch.randn(2, 8, 8, 8)).shape == (2, 8, 8, 8)


@pytest.mark.parametrize("reduction", [0, -4])
def test_reduction_below_one(reduction):
    with pytest.raises(ValueError, match=r"reduction must be >= 1"):
        GatherExcite(16, reduction=reduction)


def test_narrow_mlp_gets_a_minimum_width():
    # The article's GE-θ+ uses in_dim // 16, which is 1 here (and 0 below 16 channels).
    assert GatherExcite(24, 2, True, True).width == 8


@pytest.mark.parametrize("channels", [16.0, "16", True, None])
def test_non_integer_channels(channels):
    with pytest.raises(TypeError, match=r"channels must be an int"):
        GatherExcite(channels)


@pytest.mark.parametrize("name", ["param_gather", "param_excite"])
def test_flags_must_be_bool(name):
    with pytest.raises(TypeError, match=rf"{name} must be a bool"):
        GatherExcite(8, 4, **{name: 1})


def test_repr_and_variant_names():
    assert GatherExcite(8).variant == "GE-θ-"
    assert GatherExcite(8, 4, param_gather=True).variant == "GE-θ"
    assert GatherExcite(8, 4, True, True, reduction=2).variant == "GE-θ+"
    text = repr(GatherExcite(8, "global", True, True, reduction=2, spatial_size=(7, 5)))
    assert "channels=8, extent='global', variant='GE-θ+', width=8, spatial_size=(7, 5)" in text


def test_is_a_drop_in_module():
    block = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), GatherExcite(16, 4, True, True, 4), nn.ReLU())
    assert block(torch.randn(2, 3, 13, 10)).shape == (2, 16, 13, 10)


# --- the block-wise product of the forward pass -------------------------------------------


def test_nearest_block_agrees_with_f_interpolate():
    from attention_lib.primitives import _nearest_block

    for small, large, block in [(7, 56, 8), (4, 28, 7), (2, 14, 7), (1, 9, 9), (3, 15, 5)]:
        assert _nearest_block(small, large) == block
    assert _nearest_block(4, 14) is None  # 14 is not a multiple of 4
    # 82 = 2 * 41, but PyTorch's single-precision source index is not i // 41 for every i
    # (it maps output 41 to source 0), so the block shortcut must not be used.
    source = F.interpolate(torch.arange(2.0).view(1, 1, 2), size=82, mode="nearest").view(-1)
    assert not torch.equal(source, (torch.arange(82) // 41).float())
    assert _nearest_block(2, 82) is None


@pytest.mark.parametrize("size, extent", [((56, 56), 8), ((28, 28), 8), ((14, 14), 8), ((16, 24), 4),
                                          ((15, 22), 4), ((82, 82), 64), ((12, 20), 4)])
@pytest.mark.parametrize("variant", [(False, False), (True, True)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_equals_x_times_the_interpolated_gate(size, extent, variant, channels_last):
    # forward() multiplies block by block where the nearest interpolation repeats each value
    # over equal blocks, and falls back to F.interpolate otherwise (15x22, 82x82 with e=64):
    # the output is bit for bit x * attention(x); gradients agree to rounding (the gate's
    # gradient is summed over each block in another order).
    torch.manual_seed(0)
    module = build(8, extent, variant, size).double()
    x = torch.randn(3, 8, *size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    y, reference = module(x), x * module.attention(x)
    assert torch.equal(y, reference)
    grad = torch.randn_like(y)
    inputs = [x, *module.parameters()]
    for ours, theirs in zip(torch.autograd.grad(y, inputs, grad), torch.autograd.grad(reference, inputs, grad)):
        assert torch.allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_erratum15_the_articles_stage_count_mis_scales_extents_that_are_not_powers_of_two():
    """The article builds int(log2(extent)) stride-2 stages: for extent 6 that is 2 stages, a
    gather over 4x4 cells, not 6x6, with no error. We accept only powers of two, by name."""
    import math

    def article_gathered_size(size: int, extent: int) -> int:
        for _ in range(int(math.log2(extent))):  # the article's n_layers = int(log2(extent))
            size = (size + 2 * 1 - 3) // 2 + 1  # a 3x3, stride-2, padding-1 convolution
        return size

    assert article_gathered_size(24, 8) == 24 // 8  # a power of two: right
    assert article_gathered_size(24, 6) == 24 // 4 != 24 // 6  # 6 behaves as 4, silently
    assert article_gathered_size(24, 12) == 24 // 8 != 24 // 12  # 12 behaves as 8
    for extent in (6, 12):
        with pytest.raises(ValueError, match="extent"):
            GatherExcite(16, extent, param_gather=True)
