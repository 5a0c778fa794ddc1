"""SimAM (chapter 13): the closed form, its derivation, the official code's choices, placement."""

import math

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from attention_lib.models import create_model
from attention_lib.simam import SimAM


def closed_form_weights(x: torch.Tensor, e_lambda: float) -> torch.Tensor:
    """sigmoid(1 / e*) with e* of eq. (13.5) and the channel statistics of eq. (13.6), written out here."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    mean = flat.sum(-1, keepdim=True) / (h * w)
    variance = ((flat - mean) ** 2).sum(-1, keepdim=True) / (h * w - 1)
    energy = 4 * (variance + e_lambda) / ((flat - mean) ** 2 + 2 * variance + 2 * e_lambda)
    return torch.sigmoid(1.0 / energy).reshape(n, c, h, w)


def energy(w, b, t, others, e_lambda):
    """Eq. (13.2): targets +1 for t and -1 for the other neurons, ridge penalty on w."""
    return (1 - (w * t + b)) ** 2 + ((-1 - (w * others + b)) ** 2).mean() + e_lambda * w**2


def closed_form_minimum(t, others, e_lambda):
    """Eq. (13.4) and (13.5) with the mean and (population) variance of the other neurons."""
    mu, var = others.mean(), others.var(unbiased=False)
    w = 2 * (t - mu) / ((t - mu) ** 2 + 2 * var + 2 * e_lambda)
    b = -w * (t + mu) / 2
    return w, b, 4 * (var + e_lambda) / ((t - mu) ** 2 + 2 * var + 2 * e_lambda)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 8, 14, 14), (3, 1, 2, 1)])
@pytest.mark.parametrize("e_lambda", [1e-4, 0.1, 3.0])
def test_attention_is_the_sigmoid_of_the_inverse_minimal_energy(shape, e_lambda):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64) * 2 + 0.5
    module = SimAM(e_lambda)
    expected = closed_form_weights(x, e_lambda)
    torch.testing.assert_close(module.attention(x), expected, rtol=1e-13, atol=0)
    torch.testing.assert_close(module(x), x * expected, rtol=1e-13, atol=0)
    # the "+ 0.5" of the official code is part of 1 / e*: eq. (13.7)
    torch.testing.assert_close(module.inverse_energy(x), torch.logit(expected), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_the_closed_form_minimum_solves_the_least_squares_problem(seed):
    """Eq. (13.2) is ridge least squares in (w, b): a generic solver finds (13.4) and (13.5)."""
    generator = torch.Generator().manual_seed(seed)
    channel = torch.randn(30, generator=generator, dtype=torch.float64).exp()
    e_lambda = 10 ** -torch.randint(1, 5, (1,), generator=generator).item()
    for index in (0, int(channel.argmax()), int(channel.argmin())):
        t, others = channel[index], torch.cat([channel[:index], channel[index + 1:]])
        m = len(others)
        rows = torch.cat([torch.stack([t, t.new_ones(())])[None],
                          torch.stack([others, torch.ones_like(others)], 1) / m**0.5,
                          torch.tensor([[e_lambda**0.5, 0.0]], dtype=torch.float64)])
        targets = torch.cat([torch.ones(1), -torch.ones(m) / m**0.5, torch.zeros(1)]).double()
        w, b = torch.linalg.lstsq(rows, targets[:, None], driver="gelsd").solution[:, 0]
        w_closed, b_closed, e_closed = closed_form_minimum(t, others, e_lambda)
        torch.testing.assert_close(w, w_closed, rtol=1e-7, atol=1e-12)
        torch.testing.assert_close(b, b_closed, rtol=1e-7, atol=1e-12)
        torch.testing.assert_close(energy(w, b, t, others, e_lambda), e_closed, rtol=1e-9, atol=1e-12)


def test_gradient_descent_on_the_energy_reaches_the_closed_form():
    torch.manual_seed(1)
    channel = torch.randn(50, dtype=torch.float64)
    t, others, e_lambda = channel[7], torch.cat([channel[:7], channel[8:]]), 1e-2
    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], lr=1, max_iter=200, tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        optimizer.zero_grad()
        loss = energy(params[0], params[1], t, others, e_lambda)
        loss.backward()
        return loss

    optimizer.step(closure)
    w_closed, b_closed, e_closed = closed_form_minimum(t, others, e_lambda)
    torch.testing.assert_close(params.detach(), torch.stack([w_closed, b_closed]), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(energy(params[0], params[1], t, others, e_lambda).detach(), e_closed,
                               rtol=1e-9, atol=1e-12)
    # the weight has the sign of t - mean: a neuron above the mean is pushed towards +1
    assert torch.sign(w_closed) == torch.sign(t - others.mean())


def test_variance_divides_by_hw_minus_one():
    """As the official code (n = h * w - 1), not by h * w."""
    torch.manual_seed(2)
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    ones = torch.ones(1, 2, 1, 1, dtype=torch.float64)
    distance = (x - x.mean(dim=(2, 3), keepdim=True)) ** 2
    unbiased = x.flatten(2).var(dim=-1, unbiased=True)[..., None, None] * ones
    biased = x.flatten(2).var(dim=-1, unbiased=False)[..., None, None] * ones
    module = SimAM(1e-4)
    torch.testing.assert_close(module.inverse_energy(x), distance / (4 * (unbiased + 1e-4)) + 0.5)
    assert not torch.allclose(module.inverse_energy(x), distance / (4 * (biased + 1e-4)) + 0.5)


def test_a_one_pixel_map_gives_sigmoid_one_half_not_nan():
    """The official code divides by h * w - 1 = 0 there and returns NaN."""
    x = torch.randn(2, 5, 1, 1)
    official_denominator = x.shape[2] * x.shape[3] - 1
    d = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
    official = x * torch.sigmoid(d / (4 * (d.sum(dim=[2, 3], keepdim=True) / official_denominator + 1e-4)) + 0.5)
    assert torch.isnan(official).all()
    weights = SimAM().attention(x)
    torch.testing.assert_close(weights, torch.full_like(x, 1 / (1 + math.exp(-0.5))))


def test_weights_lie_between_sigmoid_of_one_half_and_one():
    torch.manual_seed(3)
    x = torch.randn(4, 6, 9, 9) * 5
    weights = SimAM().attention(x)
    assert weights.min() >= torch.sigmoid(torch.tensor(0.5)) - 1e-7 and weights.max() <= 1
    # the neuron nearest to its channel's mean gets the smallest weight of that channel
    nearest = (x - x.mean(dim=(2, 3), keepdim=True)).abs().flatten(2).argmin(-1)
    assert torch.equal(weights.flatten(2).argmin(-1), nearest)


def test_shift_and_scale_invariance():
    """Adding a constant to a channel changes nothing; scaling it by s does if lambda is scaled by s^2."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    reference = SimAM(1e-2).attention(x)
    torch.testing.assert_close(SimAM(1e-2).attention(x + 7.0), reference)
    torch.testing.assert_close(SimAM(1e-2 * 9).attention(3 * x), reference)


@pytest.mark.parametrize("bad,error", [(0, ValueError), (0.0, ValueError), (-1e-4, ValueError),
                                       (float("nan"), ValueError), (float("inf"), ValueError),
                                       ("1e-4", TypeError), (True, TypeError), (None, TypeError)])
def test_a_bad_lambda_is_refused_by_name(bad, error):
    with pytest.raises(error, match="e_lambda"):
        SimAM(bad)


def test_lambda_accepts_an_int_and_keeps_it_as_a_float():
    assert SimAM(1).e_lambda == 1.0 and isinstance(SimAM(1).e_lambda, float)
    assert "e_lambda=0.0001" in repr(SimAM())


def test_there_are_no_parameters_and_no_buffers():
    module = SimAM()
    assert list(module.parameters()) == [] and list(module.buffers()) == [] and module.state_dict() == {}


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="SimAM: input x must be 4-D"):
        SimAM()(torch.randn(3, 4, 5))
    with pytest.raises(TypeError, match="SimAM: input x must be a torch.Tensor"):
        SimAM()([1.0])


@pytest.mark.parametrize("size", [(3, 3), (1, 2), (4, 1)])
def test_gradients_in_float64(size):
    torch.manual_seed(5)
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SimAM(0.1), (x,))
    assert torch.autograd.gradgradcheck(SimAM(0.1), (x,))


def test_the_gradient_matches_the_plain_formula():
    torch.manual_seed(6)
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    plain = x * closed_form_weights(x, 1e-4)
    ours = SimAM()(x)
    grad = torch.randn_like(x)
    (g_ours,) = torch.autograd.grad(ours, x, grad)
    (g_plain,) = torch.autograd.grad(plain, x, grad)
    torch.testing.assert_close(g_ours, g_plain, rtol=1e-5, atol=1e-6)


def test_create_model_places_simam_before_the_addition():
    """Where SE goes (after the last batch norm of the residual branch); the official code puts it
    after the 3x3 convolution instead, which create_model has no placement for."""
    for arch, block_type, norm in (("resnet50", Bottleneck, "bn3"), ("resnet18", BasicBlock, "bn2")):
        model = create_model(arch, "simam")
        blocks = [m for m in model.modules() if isinstance(m, block_type)]
        assert blocks and all(isinstance(getattr(b, norm).attention, SimAM) for b in blocks)
        assert sum(isinstance(m, SimAM) for m in model.modules()) == len(blocks)
        plain = create_model(arch)
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())
    mobile = create_model("mobilenet_v2", "simam")
    inverted = [m for m in mobile.modules() if isinstance(m, InvertedResidual)]
    assert sum(isinstance(m, SimAM) for m in mobile.modules()) == len(inverted) == 17  # every block


def test_create_model_passes_e_lambda():
    model = create_model("resnet18", "simam", e_lambda=0.1)
    assert {m.e_lambda for m in model.modules() if isinstance(m, SimAM)} == {0.1}
    with pytest.raises(ValueError, match="e_lambda"):
        create_model("resnet18", "simam", e_lambda=-1.0)
    with pytest.raises(ValueError, match="channels"):
        create_model("resnet18", "simam", channels=4)


def test_a_resnet50_with_simam_runs_and_keeps_the_plain_network_size():
    model = create_model("resnet50", "simam", num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in create_model("resnet50", num_classes=10).parameters())


def test_timm_has_no_simam():
    timm = pytest.importorskip("timm")
    from timm.layers.create_attn import get_attn

    assert not [name for name in dir(timm.layers) if "simam" in name.lower()]
    with pytest.raises(AssertionError):
        get_attn("simam")
    assert not timm.list_models("*simam*")
