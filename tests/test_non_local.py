"""Tests of the Non-local block (chapter 09): equations, identity at the start, arguments,
timm parity and the intended differences, and the placement in ResNet-50.

The shared contract (tests/test_contract.py) covers the generic checks of every variant.
"""

import math

import pytest
import torch
from torch import nn

from attention_lib.models import create_model
from attention_lib.non_local import VARIANTS, NonLocal
from attention_lib.recorder import AttentionRecorder

timm_layers = pytest.importorskip("timm.layers")


def randomised(module: NonLocal, seed: int = 0) -> NonLocal:
    """Give every parameter and BN statistic a random value (gamma too: the block is not the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*module.parameters(), module.norm.running_mean]:
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
        module.norm.running_var.copy_(torch.rand(module.norm.running_var.shape, generator=generator) + 0.5)
    return module.eval()


def reference(module: NonLocal, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. (9.1)-(9.7) written position by position, independently of the module's matrix code:
    returns the output z and the (n, hw, hw) weights."""
    n, c, h, w = x.shape
    positions = x.flatten(2).transpose(1, 2)  # (n, hw, c): x_i

    def linear(conv: nn.Module, v: torch.Tensor) -> torch.Tensor:  # a 1x1 convolution at each position
        if isinstance(conv, nn.Identity):
            return v
        return v @ conv.weight[:, :, 0, 0].T + conv.bias

    theta, phi, g = linear(module.theta, positions), linear(module.phi, positions), linear(module.g, positions)
    weights = torch.zeros(n, h * w, h * w, dtype=x.dtype)
    y = torch.zeros(n, h * w, module.width, dtype=x.dtype)
    for b in range(n):
        for i in range(h * w):
            affinity = torch.stack([theta[b, i].dot(phi[b, j]) for j in range(h * w)])
            if module.variant == "dot_product":
                f, normaliser = affinity, float(h * w)  # eq. (9.4), C(x) = N
            else:
                f = torch.exp(affinity * module.scale)  # eqs. (9.2)/(9.3) with (9.7)
                normaliser = f.sum()  # eq. (9.5)
            weights[b, i] = f / normaliser
            y[b, i] = sum(weights[b, i, j] * g[b, j] for j in range(h * w))  # eq. (9.1)
    wz = y @ module.out.weight[:, :, 0, 0].T + module.out.bias  # W_z y
    bn = module.norm
    normed = (wz - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    z = normed + positions  # eq. (9.6)
    return z.transpose(1, 2).reshape(n, c, h, w), weights


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale", [True, False, 0.3])
def test_equations_against_a_position_by_position_computation(variant, scale):
    torch.manual_seed(0)
    module = randomised(NonLocal(8, reduction=2, variant=variant, scale=scale, zero_init=False)).double()
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    z, weights = reference(module, x)
    with torch.no_grad():
        torch.testing.assert_close(module.attention(x), weights)
        torch.testing.assert_close(module(x), z)


def test_scale_is_one_over_sqrt_of_the_key_width():
    assert NonLocal(64).scale == pytest.approx(1 / math.sqrt(32))  # d = 64 / 2
    assert NonLocal(64, reduction=4).scale == pytest.approx(1 / math.sqrt(16))
    assert NonLocal(64, variant="gaussian").scale == pytest.approx(1 / 8)  # no embedding: c
    assert NonLocal(64, scale=False).scale == 1.0
    assert NonLocal(64, scale=0.25).scale == 0.25


@pytest.mark.parametrize("variant", ["embedded_gaussian", "gaussian"])
def test_softmax_rows_sum_to_one(variant):
    module = randomised(NonLocal(16, variant=variant, zero_init=False))
    weights = module.attention(torch.randn(3, 16, 5, 6))
    assert weights.shape == (3, 30, 30)
    assert bool((weights > 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 30))


def test_dot_product_divides_by_the_number_of_positions():
    module = randomised(NonLocal(16, variant="dot_product", zero_init=False))
    x = torch.randn(2, 16, 4, 5)
    theta = module.theta(x).flatten(2)
    phi = module.phi(x).flatten(2)
    torch.testing.assert_close(module.attention(x), theta.transpose(1, 2) @ phi / 20)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_init_block_is_exactly_the_identity_at_the_start(variant):
    module = NonLocal(32, variant=variant)
    assert bool((module.norm.weight == 0).all()) and bool((module.norm.bias == 0).all())
    x = torch.randn(2, 32, 7, 6)
    for mode in (module.train(), module.eval()):
        assert torch.equal(mode(x), x)
    assert not torch.equal(NonLocal(32, variant=variant, zero_init=False).eval()(x), x)


def test_zero_init_block_still_learns():
    """gamma = 0 blocks the gradient to theta, phi, g and W_z at the first step, not to gamma itself."""
    module = NonLocal(16).train()
    x = torch.randn(4, 16, 5, 5)
    module(x).square().sum().backward()
    assert module.norm.weight.grad.abs().sum() > 0


def test_subsampling_pools_the_keys():
    module = randomised(NonLocal(16, subsample=2, zero_init=False))
    x = torch.randn(2, 16, 7, 6)
    weights = module.attention(x)
    assert weights.shape == (2, 42, 4 * 3)  # ceil(7/2) * ceil(6/2) keys
    pooled = torch.nn.functional.max_pool2d(x, 2, ceil_mode=True)
    full = NonLocal(16, subsample=1, zero_init=False)
    full.load_state_dict(module.state_dict())
    # Same keys by hand: queries from x, keys and values from the pooled map.
    theta = full.theta(x).flatten(2)
    phi = full.phi(pooled).flatten(2)
    expected = (theta.transpose(1, 2) @ phi * full.scale).softmax(-1)
    torch.testing.assert_close(weights, expected)
    assert module(x).shape == x.shape


def test_parameter_count():
    """4cd + 3d + 3c: theta, phi, g (cd + d each), W_z (dc + c), BN (2c)."""
    for channels, reduction in [(256, 2), (1024, 2), (64, 4)]:
        module = NonLocal(channels, reduction=reduction)
        d = channels // reduction
        assert sum(p.numel() for p in module.parameters()) == 4 * channels * d + 3 * d + 3 * channels
    gaussian = NonLocal(64, variant="gaussian")  # no theta, phi: 2cd + d + 3c
    assert sum(p.numel() for p in gaussian.parameters()) == 2 * 64 * 32 + 32 + 3 * 64


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("kwargs,error,name", [
    ({"channels": 0}, ValueError, "channels"),
    ({"channels": 8.0}, TypeError, "channels"),
    ({"channels": 8, "reduction": 0}, ValueError, "reduction"),
    ({"channels": 8, "reduction": 16}, ValueError, "reduction"),
    ({"channels": 8, "reduction": True}, TypeError, "reduction"),
    ({"channels": 8, "variant": "concatenation"}, ValueError, "variant"),
    ({"channels": 8, "scale": 0}, ValueError, "scale"),
    ({"channels": 8, "scale": -1.0}, ValueError, "scale"),
    ({"channels": 8, "scale": float("nan")}, ValueError, "scale"),
    ({"channels": 8, "scale": "yes"}, ValueError, "scale"),
    ({"channels": 8, "zero_init": 1}, TypeError, "zero_init"),
    ({"channels": 8, "subsample": 0}, ValueError, "subsample"),
    ({"channels": 8, "subsample": 2.0}, TypeError, "subsample"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, name):
    with pytest.raises(error, match=name):
        NonLocal(**kwargs)


def test_bad_input_is_refused_by_name():
    module = NonLocal(8)
    with pytest.raises(ValueError, match="must have 8 channels"):
        module(torch.randn(1, 9, 4, 4))
    with pytest.raises(ValueError, match="must be 4-D"):
        module.attention(torch.randn(8, 4, 4))
    with pytest.raises(ValueError, match="NonLocal: batch norm"):
        module.train()(torch.randn(1, 8, 1, 1))


def test_named_maps_for_the_recorder():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), NonLocal(16, subsample=2, zero_init=False))
    with torch.no_grad(), AttentionRecorder(model) as recorder:
        model.eval()(torch.randn(2, 3, 6, 8))
    item = recorder.named["1"]
    assert item.dims == ("batch", "query", "height", "width") and item.kind == "position"
    assert tuple(item.tensor.shape) == (2, 48, 3, 4)
    assert tuple(item.spatial_map().shape) == (2, 3, 4)


# ----------------------------------------------------------------------------- timm


def timm_matching(module: NonLocal) -> nn.Module:
    """timm's NonLocalAttn with the width of `module` and `module`'s weights (t, p, g, z, norm
    are our theta, phi, g, out, norm)."""
    theirs = timm_layers.NonLocalAttn(module.channels, use_scale=True, rd_channels=module.width)
    names = {"t": "theta", "p": "phi", "g": "g", "z": "out", "norm": "norm"}
    theirs.load_state_dict({f"{t}.{key}": value for t, mine in names.items()
                            for key, value in getattr(module, mine).state_dict().items()})
    return theirs.eval()


def test_parity_with_timm_under_the_matching_configuration():
    """Same weights, timm's scale 1/sqrt(c) given explicitly: the same function."""
    torch.manual_seed(0)
    ours = randomised(NonLocal(64, reduction=2, scale=64 ** -0.5, zero_init=False))
    theirs = timm_matching(ours)
    x = torch.randn(2, 64, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_intended_difference_scale_uses_the_embedding_width_not_the_input_width():
    """timm scales by 1/sqrt(c) (in_channels); we, like the official code, by 1/sqrt(d)."""
    ours = randomised(NonLocal(64, reduction=2, zero_init=False))
    theirs = timm_matching(ours)
    assert theirs.scale == pytest.approx(64 ** -0.5) and ours.scale == pytest.approx(32 ** -0.5)
    x = torch.randn(2, 64, 5, 5)
    with torch.no_grad():
        assert not torch.allclose(ours(x), theirs(x), atol=1e-4)


def test_intended_difference_default_width_is_half_not_an_eighth():
    """The paper halves the channels; timm's default rd_ratio is 1/8 (rounded to a multiple of 8)."""
    assert NonLocal(1024).width == 512
    assert timm_layers.NonLocalAttn(1024).t.out_channels == 128


def test_both_start_as_the_identity():
    """timm also zero-initialises the BN scale (and shift): same start as the paper and ours."""
    x = torch.randn(2, 32, 5, 4)
    theirs = timm_layers.NonLocalAttn(32).eval()
    assert torch.equal(theirs(x), x)
    assert torch.equal(NonLocal(32).eval()(x), x)


# ----------------------------------------------------------------------------- placement


def test_resnet50_has_one_block_before_the_last_block_of_layer3():
    model = create_model("resnet50", "nl")
    blocks = [(name, module) for name, module in model.named_modules() if isinstance(module, NonLocal)]
    assert [name for name, _ in blocks] == ["layer3.nl"]
    names = [name for name, _ in model.layer3.named_children()]
    assert names == ["0", "1", "2", "3", "4", "nl", "5"]
    block = blocks[0][1]
    assert block.channels == 1024 and block.width == 512 and block.variant == "embedded_gaussian"
    base = create_model("resnet50")
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in base.parameters())
    assert extra == 4 * 1024 * 512 + 3 * 512 + 3 * 1024
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_resnet50_with_nl_starts_as_the_plain_network():
    """The zero-initialised block makes the network compute what the plain ResNet-50 computes."""
    torch.manual_seed(0)
    base = create_model("resnet50").eval()
    model = create_model("resnet50", "nl").eval()
    missing = model.load_state_dict(base.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("layer3.nl.") for key in missing)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), base(x))


def _training_peaks(n: int, channels: int, size: int) -> tuple[int, int]:
    """Peak bytes of one training step of our block and of timm's (the benchmark's Non-local
    case) on an (n, channels, size, size) input, on two threads: PyTorch's allocation
    events, where oneDNN's temporaries depend on the threads."""
    from attention_lib.benchmark.modules import pass_peak, selected_cases

    case = selected_cases(["Non-local"])[0]
    torch.manual_seed(0)
    x = torch.randn(n, channels, size, size, requires_grad=True)
    ours, timm_block = case.ours(channels), case.reference(channels)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return pass_peak(ours, x), pass_peak(timm_block, x)
    finally:
        torch.set_num_threads(threads)


def test_a_training_step_holds_no_more_memory_than_timms():
    # With the values' convolution run first, autograd held the values' gradient through
    # the backward passes of theta's and phi's convolutions: at 128 x 8² on two threads
    # (fewer positions than embedding channels, like ResNet-50's 1024 x 14², where the
    # benchmark saw it on one) that was 6.25 units of the input against timm's 5.76.
    ours, timm_block = _training_peaks(4, 128, 8)
    assert ours <= timm_block


def test_a_training_step_with_more_channels_than_positions_holds_less_memory_than_timms():
    # d = 256 > n q = 98, as at ResNet-50's 7 x 7 stage: attend lays eq. (9.1)'s result out
    # channel by channel. On two threads the peak is 9.84 units of the input against timm's
    # (and the position-by-position order's) 12.45.
    ours, timm_block = _training_peaks(2, 512, 7)
    assert ours < 0.9 * timm_block
