"""The contract every attention module of the book keeps, checked for every mechanism.

The cases come from the registry of mechanisms (attention_lib.mechanisms): every variant of
every mechanism gets every check below, so a new mechanism is covered by adding its one
line there. Each module's own tests (tests/test_<module>.py) keep what is specific to it.

The contract: bad constructor arguments and bad input raise errors that name the argument;
a batch of zero images, 1x1 and odd-sized maps work; gradients are right (float64
gradcheck) and ordinary tensors; channels-last input gives the same result in the same
layout; half precision works where PyTorch's CPU kernels allow it; a state dict round
trip gives the same module; and a batch of one image with a 1x1 map in training mode
either works or says why it cannot, in the library's words.
"""

import inspect

import pytest
import torch
from torch import nn

from attention_lib.mechanisms import MECHANISMS, Mechanism
from module_checks import assert_same_in_channels_last

CHANNELS = 32  # divisible by SK's 32 groups; above every default bottleneck floor
CASES = [pytest.param(mechanism, label, build, id=f"{mechanism.name}:{label}")
         for mechanism in MECHANISMS for label, build in mechanism.variants.items()]


def build(builder, size=(6, 5), seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return builder(CHANNELS, size).eval()


def takes_channels(mechanism: Mechanism) -> bool:
    """SpatialAttention works on any number of channels; every other module is built for one."""
    first = list(inspect.signature(mechanism.module.__init__).parameters)[1]
    return first in ("channels", "in_channels")


def first_argument(mechanism: Mechanism) -> str:
    return list(inspect.signature(mechanism.module.__init__).parameters)[1]


def out_shape(module: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)  # every mechanism keeps the shape at stride 1 (SK's default)


# ----------------------------------------------------------------------------- the registry


def test_the_registry_lists_every_mechanism_once():
    names = [m.name for m in MECHANISMS]
    assert len(names) == len(set(names))
    classes = [m.module for m in MECHANISMS]
    assert len(classes) == len(set(classes))
    for mechanism in MECHANISMS:
        assert callable(getattr(mechanism.module, "attention", None)), f"{mechanism.name}: no attention() method"
        assert mechanism.module.__module__.startswith("attention_lib."), mechanism.name


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize("mechanism,label,builder", CASES)
@pytest.mark.parametrize("bad", [0, -1, 2.5, "8", True])
def test_a_bad_channel_count_is_refused_by_name(mechanism, label, builder, bad):
    if not takes_channels(mechanism):
        pytest.skip(f"{mechanism.module.__name__} works on any number of channels")
    with pytest.raises((TypeError, ValueError), match=first_argument(mechanism)):
        mechanism.module(bad)


@pytest.mark.parametrize("mechanism", MECHANISMS, ids=lambda m: m.name)
def test_an_unknown_keyword_is_refused_by_name(mechanism):
    args = (CHANNELS,) if takes_channels(mechanism) else ()
    with pytest.raises(TypeError, match="colour"):
        mechanism.module(*args, colour="red")


# ----------------------------------------------------------------------------- input


@pytest.mark.parametrize("mechanism,label,builder", CASES)
def test_a_wrong_channel_count_is_named(mechanism, label, builder):
    if not takes_channels(mechanism):
        pytest.skip(f"{mechanism.module.__name__} works on any number of channels")
    module = build(builder)
    with pytest.raises(ValueError, match=rf"must have {CHANNELS} channels"):
        module(torch.randn(2, CHANNELS + 1, 6, 5))


@pytest.mark.parametrize("mechanism,label,builder", CASES)
@pytest.mark.parametrize("shape", [(CHANNELS, 6, 5), (2, 1, CHANNELS, 6, 5)], ids=["3-D", "5-D"])
def test_input_that_is_not_4d_is_named(mechanism, label, builder, shape):
    module = build(builder)
    with pytest.raises(ValueError, match="must be 4-D"):
        module(torch.randn(shape))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        module([[1.0]])


@pytest.mark.parametrize("mechanism,label,builder", CASES)
@pytest.mark.parametrize("size", [(6, 5), (7, 3), (1, 1)], ids=["6x5", "7x3", "1x1"])
def test_odd_and_tiny_maps_and_empty_batches(mechanism, label, builder, size):
    module = build(builder, size)
    for batch in (2, 0):
        x = torch.randn(batch, CHANNELS, *size)
        with torch.no_grad():
            y = module(x)
            weights = module.attention(x)
        assert tuple(y.shape) == out_shape(module, x) and torch.isfinite(y).all()
        assert weights.shape[0] == batch


@pytest.mark.parametrize("mechanism,label,builder", CASES)
def test_gradients_are_right_in_float64(mechanism, label, builder):
    module = build(builder, (3, 3)).double()
    x = torch.randn(1, CHANNELS, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), fast_mode=True)


@pytest.mark.parametrize("mechanism,label,builder", CASES)
def test_the_input_gradient_is_an_ordinary_tensor(mechanism, label, builder):
    """A gradient that is a broadcast view cannot be edited in place (defect 8)."""
    module = build(builder).train()
    x = torch.randn(3, CHANNELS, 6, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(module(x).square().sum(), x)
    assert 0 not in grad.stride()
    grad.mul_(2.0)


@pytest.mark.parametrize("mechanism,label,builder", CASES)
def test_channels_last_gives_the_same_result_in_the_same_layout(mechanism, label, builder):
    assert_same_in_channels_last(build(builder), torch.randn(2, CHANNELS, 6, 5), atol=1e-5)


@pytest.mark.parametrize("mechanism,label,builder", CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_where_the_cpu_kernels_allow(mechanism, label, builder, dtype):
    module = build(builder)
    x = torch.randn(2, CHANNELS, 6, 5)
    with torch.no_grad():
        reference = module(x)
        try:
            y = module.to(dtype)(x.to(dtype))
        except (RuntimeError, NotImplementedError) as error:
            if "not implemented for" in str(error):
                pytest.skip(f"PyTorch's CPU kernels lack {dtype}: {error}")
            raise
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), reference, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("mechanism,label,builder", CASES)
def test_a_state_dict_round_trip_gives_the_same_module(mechanism, label, builder):
    trained, fresh = build(builder, seed=0), build(builder, seed=1)
    with torch.no_grad():  # make every buffer and parameter differ from a fresh module's
        for tensor in [*trained.parameters(), *trained.buffers()]:
            if tensor.is_floating_point():
                tensor.add_(0.1)
    fresh.load_state_dict(trained.state_dict())
    x = torch.randn(2, CHANNELS, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained(x), rtol=0, atol=0)


@pytest.mark.parametrize("mechanism,label,builder", CASES)
def test_defect7_one_image_with_a_1x1_map_in_training_works_or_says_why(mechanism, label, builder):
    """Batch norm cannot normalise one value per channel. SpatialAttention, CBAM and SK raised
    PyTorch's raw error here while BAM and GE raised the library's; now every module that
    cannot train on it says so in the same words."""
    module = build(builder, (1, 1)).train()
    x = torch.randn(1, CHANNELS, 1, 1)
    try:
        y = module(x)
    except ValueError as error:
        message = str(error)
        assert "batch norm" in message and "needs more than one value per channel" in message, message
        assert message.split(":")[0].startswith((type(module).__name__, "SpatialAttention"))
        assert "call .eval()" in message
    else:
        assert y.shape == x.shape
