"""Tests for attention_lib.global_context (chapter 10): equations, SE as a special case, timm parity,
intended differences, errors, placement in ResNet-50 and timm's published gcresnet50t mapped offline."""

import copy

import pytest
import torch
from torch import nn

from attention_lib.analysis import ablate_attention
from attention_lib.global_context import GlobalContext
from attention_lib.models import create_model
from attention_lib.primitives import attention_pool
from attention_lib.recorder import AttentionRecorder, attention_modules
from attention_lib.squeeze_excitation import SE

timm = pytest.importorskip("timm")
from timm.layers import GlobalContext as TimmGlobalContext  # noqa: E402


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random (LayerNorm scales around 1), so no part of the block is switched off."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
            if "norm" in name and name.endswith("weight"):
                parameter.add_(1.0)
    return module


def gc_parameters(c: int, d: int) -> int:
    """Equation (10.9)."""
    return 2 * c * d + 2 * c + 3 * d + 1


def direct(module: GlobalContext, x: torch.Tensor) -> torch.Tensor:
    """Equations (10.3)-(10.7) written out with einsum, independently of the module's code."""
    n, c, h, w = x.shape
    if module.key is not None:
        logits = torch.einsum("ncp,c->np", x.reshape(n, c, h * w), module.key.weight.flatten()) + module.key.bias
        alpha = torch.exp(logits - logits.max(1, keepdim=True).values)
        alpha = alpha / alpha.sum(1, keepdim=True)  # (10.3)
    else:
        alpha = torch.full((n, h * w), 1.0 / (h * w), dtype=x.dtype)
    context = torch.einsum("ncp,np->nc", x.reshape(n, c, h * w), alpha)  # (10.4)
    hidden = context @ module.reduce.weight.flatten(1).T + module.reduce.bias
    if isinstance(module.norm, nn.LayerNorm):
        mean, var = hidden.mean(1, keepdim=True), hidden.var(1, unbiased=False, keepdim=True)
        hidden = (hidden - mean) / torch.sqrt(var + module.norm.eps)
        hidden = hidden * module.norm.weight.flatten() + module.norm.bias.flatten()
    delta = torch.clamp(hidden, min=0) @ module.expand.weight.flatten(1).T + module.expand.bias  # (10.5)
    delta = delta[:, :, None, None]
    if module.fusion == "add":
        return x + delta  # (10.6)
    return x * (1 / (1 + torch.exp(-delta)))  # (10.7)


# ----------------------------------------------------------------------------- equations

@pytest.mark.parametrize("kwargs", [{}, {"fusion": "scale"}, {"pooling": "average"}, {"layer_norm": False},
                                    {"reduction": 4, "min_width": 2, "fusion": "scale", "pooling": "average"}])
def test_equations_against_an_independent_computation(kwargs):
    torch.manual_seed(0)
    module = randomize_(GlobalContext(32, **kwargs))
    x = torch.randn(3, 32, 7, 5, dtype=torch.float64)
    module = module.double()
    assert torch.allclose(module(x), direct(module, x), atol=1e-10)


def test_context_weights_are_a_softmax_over_positions_and_the_shift_is_the_same_everywhere():
    module = randomize_(GlobalContext(16, reduction=2))
    x = torch.randn(2, 16, 6, 9)
    alpha = module.attention(x)
    assert alpha.shape == (2, 1, 6, 9) and bool((alpha > 0).all())
    assert torch.allclose(alpha.sum(dim=(2, 3)), torch.ones(2, 1))
    shift = module(x) - x  # (10.6): one vector added at every position
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6)
    assert shift.abs().max() > 1e-3


def test_average_pooling_without_layer_norm_with_the_gate_is_se():
    """GC contains SE: pooling='average', layer_norm=False, fusion='scale' with SE's weights is SE, exactly."""
    torch.manual_seed(0)
    for c, r in [(32, 4), (64, 16), (256, 16)]:
        se = randomize_(SE(c, reduction=r))
        gc = GlobalContext(c, reduction=r, pooling="average", layer_norm=False, fusion="scale")
        gc.load_state_dict(se.state_dict())
        x = torch.randn(2, c, 5, 6)
        assert torch.equal(gc(x), se(x))
        assert sum(p.numel() for p in gc.parameters()) == sum(p.numel() for p in se.parameters())


def test_a_zero_key_makes_attention_pooling_average_pooling():
    flat = randomize_(GlobalContext(32))
    with torch.no_grad():
        flat.key.weight.zero_()
    average = GlobalContext(32, pooling="average")
    average.load_state_dict({k: v for k, v in flat.state_dict().items() if not k.startswith("key.")})
    x = torch.randn(2, 32, 4, 7)
    assert torch.allclose(flat(x), average(x), atol=1e-6)
    assert torch.allclose(average.attention(x), torch.full((2, 1, 4, 7), 1 / 28))


def test_key_bias_does_not_change_the_map():
    module = randomize_(GlobalContext(32))
    x = torch.randn(2, 32, 5, 5)
    before, out = module.attention(x), module(x)
    with torch.no_grad():
        module.key.bias.add_(7.0)
    assert torch.allclose(module.attention(x), before, atol=1e-6)
    assert torch.allclose(module(x), out, atol=1e-5)


@pytest.mark.parametrize("c", [64, 256, 512, 1024, 2048])
def test_parameter_count_is_equation_10_9(c):
    module = GlobalContext(c)
    assert module.width == max(8, c // 16)
    assert sum(p.numel() for p in module.parameters()) == gc_parameters(c, module.width)
    no_key = GlobalContext(c, pooling="average", layer_norm=False)
    assert sum(p.numel() for p in no_key.parameters()) == 2 * c * module.width + c + module.width  # SE's count


# ----------------------------------------------------------------------------- timm parity

def load_from_timm(ours: GlobalContext, theirs: TimmGlobalContext) -> None:
    mlp = theirs.mlp_add if theirs.mlp_add is not None else theirs.mlp_scale
    state = {"reduce.weight": mlp.fc1.weight, "reduce.bias": mlp.fc1.bias,
             "norm.weight": mlp.norm.weight.view(-1, 1, 1), "norm.bias": mlp.norm.bias.view(-1, 1, 1),
             "expand.weight": mlp.fc2.weight, "expand.bias": mlp.fc2.bias}
    if theirs.conv_attn is not None:
        state |= {"key.weight": theirs.conv_attn.weight, "key.bias": theirs.conv_attn.bias}
    ours.load_state_dict(state)


@pytest.mark.parametrize("c,d", [(64, 8), (256, 16), (512, 64)])
def test_timm_parity_add(c, d):
    theirs = randomize_(TimmGlobalContext(c, fuse_add=True, fuse_scale=False, rd_channels=d)).eval()
    ours = GlobalContext(c, reduction=c // d, eps=1e-6).eval()  # timm's LayerNorm2d eps
    load_from_timm(ours, theirs)
    x = torch.randn(2, c, 7, 9)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_timm_parity_scale():
    theirs = randomize_(TimmGlobalContext(128, fuse_add=False, fuse_scale=True, rd_channels=16)).eval()
    ours = GlobalContext(128, reduction=8, fusion="scale", eps=1e-6).eval()
    load_from_timm(ours, theirs)
    x = torch.randn(2, 128, 6, 6)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_timm_parity_average_pooling():
    theirs = randomize_(TimmGlobalContext(64, use_attn=False, fuse_add=True, fuse_scale=False, rd_channels=8))
    ours = GlobalContext(64, reduction=8, pooling="average", eps=1e-6)
    load_from_timm(ours, theirs)
    x = torch.randn(3, 64, 5, 4)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_timm_defaults_are_an_intended_difference():
    """timm's GlobalContext defaults to the sigmoid product and d = c/8; ours (the paper) to addition and c/16."""
    theirs, ours = TimmGlobalContext(256), GlobalContext(256)
    assert theirs.mlp_scale is not None and theirs.mlp_add is None and ours.fusion == "add"
    assert theirs.mlp_scale.fc1.out_channels == 32 and ours.width == 16


def test_width_follows_reduction_with_the_se_floor():
    assert GlobalContext(512).width == 32 and GlobalContext(2048).width == 128  # the paper's c/16
    assert GlobalContext(64).width == 8 and GlobalContext(64, min_width=1).width == 4  # SE's floor of 8
    assert GlobalContext(64, reduction=8).width == 8  # timm's rd_ratio=1/8
    with pytest.raises(ValueError, match="reduction"):
        GlobalContext(8, reduction=16)


def test_layer_norm_matches_the_equation_and_eps_is_an_argument():
    """Official code: nn.LayerNorm([d, 1, 1]) with eps 1e-5; timm: LayerNorm2d over d, eps 1e-6. Same function."""
    ours = GlobalContext(64, reduction=8)
    assert ours.norm.normalized_shape == (8, 1, 1) and ours.norm.eps == 1e-5
    assert GlobalContext(64, eps=1e-6).norm.eps == 1e-6
    theirs = TimmGlobalContext(64, fuse_add=True, fuse_scale=False)
    assert theirs.mlp_add.norm.weight.shape == (8,) and theirs.mlp_add.norm.eps == 1e-6
    # The eps is the only difference: with eps 1e-5 vs 1e-6 the outputs differ, but only slightly.
    randomize_(theirs)
    loose = GlobalContext(64, reduction=8)
    load_from_timm(loose, theirs)
    x = torch.randn(2, 64, 5, 5)
    difference = (loose(x) - theirs(x)).abs().max()
    assert 0 < difference < 1e-3


def test_zero_init_starts_as_the_identity():
    """Official: last layer weight and bias zero; timm: weight only (its networks zero conv biases separately)."""
    x = torch.randn(2, 32, 5, 5)
    ours = GlobalContext(32)
    assert torch.equal(ours(x), x)
    assert not torch.equal(GlobalContext(32, zero_init=False)(x), x)
    theirs = TimmGlobalContext(32, fuse_add=True, fuse_scale=False)
    assert bool((theirs.mlp_add.fc2.weight == 0).all()) and bool((theirs.mlp_add.fc2.bias != 0).any())
    # With add fusion a zero W_v2 leaves only its bias: timm's standalone block is x + bias at init.
    assert torch.allclose(theirs(x) - x, theirs.mlp_add.fc2.bias.view(1, -1, 1, 1).expand_as(x), atol=1e-6)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs,name", [
    ({"fusion": "multiply"}, "fusion"), ({"fusion": None}, "fusion"), ({"pooling": "max"}, "pooling"),
    ({"layer_norm": 1}, "layer_norm"), ({"zero_init": "yes"}, "zero_init"), ({"eps": 0.0}, "eps"),
    ({"eps": float("nan")}, "eps"), ({"eps": True}, "eps"), ({"reduction": 0}, "reduction"),
    ({"reduction": 2.0}, "reduction"), ({"reduction": 128}, "reduction"), ({"min_width": 0}, "min_width"),
    ({"colour": "red"}, "colour")])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        GlobalContext(64, **kwargs)


@pytest.mark.parametrize("bad", [0, -3, 2.0, "64", True])
def test_a_bad_channel_count_is_named(bad):
    with pytest.raises((TypeError, ValueError), match="channels"):
        GlobalContext(bad)


@pytest.mark.parametrize("shape", [(2, 32, 5, 5), (64, 5, 5), (2, 64, 5)])
def test_bad_input_is_named(shape):
    with pytest.raises(ValueError, match="GlobalContext: input x"):
        GlobalContext(64)(torch.randn(*shape))


# ----------------------------------------------------------------------------- in a network

def test_create_model_places_13_blocks_after_bn3_in_stages_2_to_4():
    """The paper (c3-c5, r=16, after the last 1x1 convolution) and the official code (after norm3, before the
    residual addition: xvjiarui/GCNet mmdet/models/backbones/resnet.py) - the same place as create_model's."""
    model = create_model("resnet50", "gc")
    modules = attention_modules(model)
    assert [name for name, _ in modules] == [f"layer{s}.{b}.bn3.attention"
                                             for s, blocks in ((2, 4), (3, 6), (4, 3)) for b in range(blocks)]
    for name, module in modules:
        assert isinstance(module, GlobalContext) and module.fusion == "add" and module.pooling == "attention"
        assert module.width == module.channels // 16
    block = model.layer3[0]
    assert isinstance(block.bn3[0], nn.BatchNorm2d) and block.bn3[1] is modules[4][1]
    plain = create_model("resnet50", None)
    added = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert added == sum(gc_parameters(m.channels, m.width) for _, m in modules) == 2_521_741


def test_the_recorder_reads_one_spatial_map_per_block_and_ablation_is_the_identity():
    torch.manual_seed(0)
    model = create_model("resnet18", "gc", num_classes=10).eval()
    modules = attention_modules(model)
    for _, module in modules:
        randomize_(module)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        out = model(x)
    assert set(recorder.named) == {name for name, _ in modules}
    for item in recorder.named.values():
        assert item.dims == ("batch", "height", "width") and item.kind == "spatial"
        assert torch.allclose(item.tensor.sum(dim=(1, 2)), torch.ones(2), atol=1e-5)
    with torch.no_grad(), ablate_attention(model):
        ablated = model(x)
    identity = copy.deepcopy(model)
    for name, _ in modules:
        parent = identity.get_submodule(name.rsplit(".", 1)[0])
        setattr(parent, name.rsplit(".", 1)[1], nn.Identity())
    with torch.no_grad():
        assert torch.allclose(ablated, identity(x), atol=1e-5)
        assert not torch.allclose(out, ablated, atol=1e-3)


# ----------------------------------------------------------------------------- timm's gcresnet50t

@pytest.fixture(scope="module")
def gcresnet50t_pair():
    from attention_lib import weights as P

    torch.manual_seed(0)
    theirs = P.published_model("gcresnet50t")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random BN affine and GC weights (timm zero-inits the GC's last layer)
        for name, parameter in theirs.named_parameters():
            if ".attn." in name or ".bn." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
                if name.endswith(("bn.weight", "norm.weight")):
                    parameter.add_(1.0)
        for module in theirs.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None
        theirs.train()
        theirs(torch.randn(4, 3, 64, 64, generator=generator))
    theirs.eval()
    ours = P.load_published_state_dict(P.build_model("gcresnet50t"), "gcresnet50t", theirs.state_dict()).eval()
    return theirs, ours


def test_gcresnet50t_mapping_gives_timms_logits(gcresnet50t_pair):
    theirs, ours = gcresnet50t_pair
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
        assert expected.std() > 0.1
        # float32 rounding accumulates over 50 layers with random GC shifts (about 3e-4 relative here);
        # in float64 the two networks agree to rounding, which proves the mapping exact.
        assert (expected - actual).abs().max() <= 1e-3 * max(expected.abs().max().item(), 1.0)
        exact_theirs, exact_ours = copy.deepcopy(theirs).double(), copy.deepcopy(ours).double()
        expected64, actual64 = exact_theirs(x.double()), exact_ours(x.double())
        assert (expected64 - actual64).abs().max() <= 1e-9 * expected64.abs().max()
    # The GC weights are on the path: perturbing only our GC modules changes the logits.
    perturbed = copy.deepcopy(ours)
    with torch.no_grad():
        for _, module in attention_modules(perturbed):
            randomize_(module, seed=3)
        assert (perturbed(x) - expected).abs().max() > 1e-2 * expected.abs().max()


def test_gcresnet50t_places_gc_after_the_3x3_convolution_of_all_16_bottlenecks(gcresnet50t_pair):
    theirs, ours = gcresnet50t_pair
    modules = attention_modules(ours)
    assert len(modules) == 16 and all(name.endswith(".conv3.attention") for name, _ in modules)
    for (name, module), stage_width in zip(modules, [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3):
        assert module.channels == stage_width and module.width == stage_width // 8 and module.norm.eps == 1e-6
    timm_blocks = [m for m in theirs.modules() if isinstance(m, TimmGlobalContext)]
    assert len(timm_blocks) == 16 and all(b.mlp_add is not None and b.mlp_scale is None for b in timm_blocks)
    assert isinstance(ours.maxpool, nn.Identity) and ours.conv1[6].stride == (2, 2)


def test_paper_placement_does_not_take_gcresnet50t_weights(gcresnet50t_pair):
    from attention_lib import weights as P

    theirs, _ = gcresnet50t_pair
    with pytest.raises(P.WeightMappingError, match="missing"):
        P.load_published_state_dict(create_model("resnet50", "gc"), "gcresnet50t", theirs.state_dict())
    assert P.PRETRAINED["gcresnet50t"].fidelity == "backbone variant"
    assert "after the 3x3" in P.reason("gc")
    with pytest.raises(ValueError, match="SiLU"):
        P.parse("gcresnext50ts")


# --- the speed-layer helper of eq. (10.4) ------------------------------------------------


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
def test_attention_pool_is_the_weighted_sum_over_positions(channels_last):
    torch.manual_seed(5)
    x = torch.randn(3, 8, 5, 6)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    weights = torch.rand(3, 1, 5, 6).requires_grad_()
    plain_x, plain_w = x.detach().clone().requires_grad_(), weights.detach().clone().requires_grad_()
    pooled = attention_pool(x, weights)
    expected = (plain_x * plain_w).sum(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(pooled, expected)
    grad = torch.randn_like(expected)
    for mine, reference in zip(torch.autograd.grad(pooled, (x, weights), grad),
                               torch.autograd.grad(expected, (plain_x, plain_w), grad)):
        torch.testing.assert_close(mine, reference)


def test_attention_pool_names_the_expected_weights_shape():
    with pytest.raises(ValueError, match=r"weights must have shape \(n, 1, h, w\) = \(2, 1, 4, 4\)"):
        attention_pool(torch.randn(2, 3, 4, 4), torch.rand(2, 3, 4, 4))
