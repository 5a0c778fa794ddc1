"""The primitives every module shares (attention_lib.primitives, the speed layer).

Each primitive must give the same values and gradients as the plain PyTorch expression it
replaces, bit for bit where the arithmetic is the same.
"""

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attention_lib import SE, CBAM, ECA, BAM, GatherExcite, NonLocal, SelectiveKernel, SplitAttention
from attention_lib import primitives
from attention_lib.primitives import (
    _kernels, _Squeeze, add_residual, amax_pool, attend, as_declared, bottleneck_width, conv_across_channels, conv_norm, depthwise_conv, gate_conv, mean_pool, pointwise, reduce_keepdim,
    rescale, rescale_nearest, squeeze,
)


# --- mean_pool and rescale: same values and gradients as x.mean and x * a ------------------


def _grads(output, inputs, grad):
    return torch.autograd.grad(output, inputs, grad, allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("pool", [squeeze, mean_pool], ids=["squeeze", "mean_pool"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("dim", [(2, 3), 1, (1, 3)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pooling_is_bitwise_x_mean(pool, dtype, dim, channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, 16, 9, 7, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    dims = (dim,) if isinstance(dim, int) else dim
    lean, plain = pool(x, dim), x.mean(dim=dims, keepdim=True)
    if dims == (2, 3) and pool is squeeze:
        # squeeze's forward runs without autograd: average pooling for channels last, a
        # matrix-vector product for a short contiguous float32 map on one thread; both add
        # the same numbers in another order (see the inference tests below)
        torch.testing.assert_close(lean, plain)
    else:
        assert torch.equal(lean, plain)
    grad = torch.randn_like(plain)
    assert torch.equal(_grads(lean, x, grad)[0], _grads(plain, x, grad)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("pool", [squeeze, mean_pool], ids=["squeeze", "mean_pool"])
def test_global_mean_of_a_channels_last_map_without_gradients_is_average_pooling(pool, dtype):
    torch.manual_seed(1)
    x = torch.randn(3, 16, 9, 7, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fast = pool(x)
    assert torch.equal(fast, F.avg_pool2d(x, (9, 7)))  # the pooling kernel ran
    torch.testing.assert_close(fast, x.mean(dim=(2, 3), keepdim=True))
    assert fast.shape == (3, 16, 1, 1)
    # a mean that autograd differentiates stays x.mean itself
    assert torch.equal(mean_pool(x.requires_grad_()), x.mean(dim=(2, 3), keepdim=True))


@pytest.mark.parametrize("pool", [squeeze, mean_pool], ids=["squeeze", "mean_pool"])
def test_average_pooling_takes_small_maps_and_large_tensors_only(pool):
    """Between maps of 32 x 32 pixels and tensors of 16 MB, x.mean is faster: it is kept."""
    torch.manual_seed(6)
    layout = torch.channels_last
    edge = torch.randn(1, 8, 32, 32).contiguous(memory_format=layout)  # 1024 pixels: pooled
    wide = torch.randn(1, 8, 40, 40).contiguous(memory_format=layout)  # 1600 pixels, 51 kB: x.mean
    large = torch.randn(4, 64, 128, 128).contiguous(memory_format=layout)  # 16 MB: pooled
    with torch.no_grad():
        assert torch.equal(pool(edge), F.avg_pool2d(edge, (32, 32)))
        assert torch.equal(pool(wide), wide.mean(dim=(2, 3), keepdim=True))
        assert large.numel() * large.element_size() == 2**24
        assert torch.equal(pool(large), F.avg_pool2d(large, (128, 128)))
        torch.testing.assert_close(pool(large), large.mean(dim=(2, 3), keepdim=True))


def _mv_mean(x: torch.Tensor, row: int) -> torch.Tensor:
    return torch.mv(x.reshape(-1, row), torch.full((row,), 1 / row, dtype=x.dtype))


@pytest.mark.parametrize("pool", [squeeze, mean_pool], ids=["squeeze", "mean_pool"])
def test_short_contiguous_rows_are_averaged_by_a_matrix_vector_product(pool):
    torch.manual_seed(4)
    x = torch.randn(3, 16, 9, 7)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            width, both = pool(x, 3), pool(x)
        assert torch.equal(width, _mv_mean(x, 7).view(3, 16, 9, 1))  # the product ran
        assert torch.equal(both, _mv_mean(x, 63).view(3, 16, 1, 1))
        torch.testing.assert_close(width, x.mean(3, keepdim=True))
        torch.testing.assert_close(both, x.mean((2, 3), keepdim=True))
        torch.set_num_threads(2)  # x.mean splits its rows across threads: the global mean stays
        with torch.no_grad():
            assert torch.equal(pool(x), x.mean((2, 3), keepdim=True))
            assert torch.equal(pool(x, 3), _mv_mean(x, 7).view(3, 16, 9, 1))
        torch.set_num_threads(1)
        with torch.no_grad():  # long rows, another dtype, the height: x.mean itself
            wide = torch.randn(2, 4, 3, 17)
            assert torch.equal(pool(wide, 3), wide.mean(3, keepdim=True))
            big = torch.randn(2, 4, 8, 8)
            assert torch.equal(pool(big), big.mean((2, 3), keepdim=True))
            double = x.double()
            assert torch.equal(pool(double), double.mean((2, 3), keepdim=True))
            assert torch.equal(pool(wide, 2), wide.mean(2, keepdim=True))  # rows 17 wide: x.mean
            assert pool(x[:0]).shape == (0, 16, 1, 1) and pool(x[:0], 3).shape == (0, 16, 9, 1)
    finally:
        torch.set_num_threads(threads)


def _halves_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum over the height, top half plus bottom half until one row is left (by hand)."""
    rows = list(x.unbind(2))
    while len(rows) > 1:
        half = len(rows) // 2
        summed = [rows[i] + rows[len(rows) - half + i] for i in range(half)]
        if len(rows) % 2:
            summed[0] = summed[0] + rows[half]
        rows = summed
    return rows[0].unsqueeze(2)


@pytest.mark.parametrize("height", [2, 7, 9, 14])
@pytest.mark.parametrize("pool", [squeeze, mean_pool], ids=["squeeze", "mean_pool"])
def test_the_height_of_a_narrow_map_is_summed_by_halves(pool, height):
    torch.manual_seed(5)
    x = torch.randn(3, 16, height, 7)
    with torch.no_grad():
        fast = pool(x, 2)
        total = reduce_keepdim(torch.sum, x, (2,))
    assert torch.equal(total, _halves_sum(x))  # the tree ran, for sums too
    assert torch.equal(fast, _halves_sum(x) / height)
    torch.testing.assert_close(fast, x.mean(2, keepdim=True))
    torch.testing.assert_close(total, x.sum(2, keepdim=True))
    assert fast.shape == (3, 16, 1, 7)
    with torch.no_grad():  # maps 10 or more wide, one row high, other dtypes, strided maps: x.mean
        for other in (torch.randn(3, 16, height, 10), torch.randn(3, 16, 1, 7), x.double(), x.bfloat16(),
                      x.transpose(2, 3).contiguous().transpose(2, 3)):
            assert torch.equal(pool(other, 2), other.mean(2, keepdim=True))
    one_row = torch.randn(2, 4, 1, 7)
    kept = one_row.clone()
    with torch.no_grad():  # one row: nothing to add, and the input is not divided in place
        assert torch.equal(pool(one_row, 2), kept) and torch.equal(one_row, kept)
    # with a gradient to record, mean_pool stays x.mean (squeeze's own backward makes it safe there)
    xg = x.clone().requires_grad_()
    assert torch.equal(mean_pool(xg, 2), x.mean(2, keepdim=True))
    assert torch.equal(_grads(squeeze(xg, 2), xg, torch.ones(3, 16, 1, 7))[0], torch.full_like(x, 1 / height))


def test_the_averaging_vector_made_in_inference_mode_serves_training():
    from attention_lib.primitives import _averaging_vector
    _averaging_vector.cache_clear()
    x = torch.randn(2, 8, 5, 5)
    with torch.inference_mode():
        squeeze(x, 3)  # builds and caches the vector of 1/5
    xg = x.clone().requires_grad_()
    (squeeze(xg, 3) * xg).sum().backward()  # the cached vector inside autograd's forward
    expected = x.clone().requires_grad_()
    (expected.mean(3, keepdim=True) * expected).sum().backward()
    torch.testing.assert_close(xg.grad, expected.grad)
    assert not _averaging_vector(5, torch.float32).is_inference()


def test_squeeze_backward_is_a_broadcast_view():
    x = torch.randn(2, 4, 5, 5)
    grad = torch.randn(2, 4, 1, 1)

    class Ctx:
        pass

    ctx = Ctx()
    _Squeeze.forward(ctx, x, (2, 3))
    grad_x, _ = _Squeeze.backward(ctx, grad)
    assert grad_x.shape == x.shape and grad_x.stride()[2:] == (0, 0)  # expanded: no full-size copy


@pytest.mark.parametrize("x_shape, a_shape", [
    ((3, 8, 5, 5), (3, 8, 1, 1)),   # one weight per channel (SE, ECA, CBAM's channel half)
    ((3, 8, 5, 5), (3, 1, 5, 5)),   # one weight per pixel (CBAM's spatial half)
    ((3, 8, 5, 5), (3, 8, 5, 5)),   # a full-size gate (GE with a local extent)
    ((3, 8, 5, 5), (8, 1, 1)),      # fewer dimensions
    ((3, 8, 1, 1), (3, 8, 5, 5)),   # a broadcasts x to a larger shape
    ((3, 2, 2, 3, 10), (3, 2, 2, 1, 10)),  # 5-D blocks (GE's block-wise product)
])
@pytest.mark.parametrize("needs", ["both", "x", "a"])
def test_rescale_is_bitwise_x_times_a(x_shape, a_shape, needs):
    torch.manual_seed(0)
    x = torch.randn(x_shape, requires_grad=needs in ("both", "x"))
    a = torch.rand(a_shape, requires_grad=needs in ("both", "a"))
    lean, plain = rescale(x, a), x * a
    assert torch.equal(lean, plain)
    inputs = [t for t in (x, a) if t.requires_grad]
    grad = torch.randn_like(plain)
    assert all(map(torch.equal, _grads(lean, inputs, grad), _grads(plain, inputs, grad)))


def test_rescale_mixed_precision_and_channels_last():
    torch.manual_seed(0)
    for x, a in [
        (torch.randn(2, 8, 6, 6, dtype=torch.bfloat16), torch.rand(2, 8, 1, 1)),  # autocast-like mix
        (torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last), torch.rand(2, 8, 1, 1)),
    ]:
        x.requires_grad_(True)
        a.requires_grad_(True)
        lean, plain = rescale(x, a), x * a
        assert torch.equal(lean, plain) and lean.dtype == plain.dtype
        grad = torch.randn_like(plain)
        lean_grads, plain_grads = _grads(lean, (x, a), grad), _grads(plain, (x, a), grad)
        assert all(map(torch.equal, lean_grads, plain_grads))
        assert [g.dtype for g in lean_grads] == [x.dtype, a.dtype]


def test_helpers_support_double_backward():
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    a = torch.rand(2, 4, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(rescale, (x, a))
    assert torch.autograd.gradgradcheck(lambda t: squeeze(t, (1, 2)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: mean_pool(t, (1, 2)), (x,))


# --- amax_pool: same values and gradients as x.amax ---------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("dim", [(2, 3), 1, 2, 3, -1])
@pytest.mark.parametrize("channels_last", [False, True])
def test_amax_pool_is_bitwise_x_amax_with_ties(dtype, dim, channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, 16, 7, 5, dtype=dtype)
    x[0, 0] = 1.0  # a channel whose every pixel is a maximum: 35-way tie
    x[1, :4, 2, 2] = 9.0  # a pixel where four channels tie
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    dims = (dim,) if isinstance(dim, int) else dim
    lean, plain = amax_pool(x, dim), x.amax(dim=dims, keepdim=True)
    assert torch.equal(lean, plain)
    grad = torch.randn_like(plain)
    lean_grad = torch.autograd.grad(lean, x, grad)[0]
    plain_grad = torch.autograd.grad(plain, x, grad)[0]
    assert torch.equal(lean_grad, plain_grad)
    assert torch.equal(lean_grad.signbit(), plain_grad.signbit())  # even the signs of zeros


@pytest.mark.parametrize("size", [(1, 9), (2, 3), (5, 8), (13, 56)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
def test_amax_pool_over_one_spatial_dim_matches_amax_at_any_length(size, layout):
    """The halving kernel (height or width alone): odd lengths, length 1, NaNs, any strides."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, *size)
    x[0, 1, 0, 0] = float("nan")
    x[1, 2] = 4.0  # a whole map of ties
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = x.transpose(2, 3)  # a view whose last dimension is not the innermost in memory
    for dim in (2, 3):
        with torch.no_grad():
            lean = amax_pool(x, dim)
        assert torch.equal(lean.nan_to_num(-99.0), x.amax(dim, keepdim=True).nan_to_num(-99.0))
        assert lean.isnan().sum() == 1  # the NaN propagates to exactly its row or column
        assert lean.data_ptr() != x.data_ptr()  # a new tensor even where the length is 1


def test_amax_pool_gradcheck_and_double_backward():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    for dim in ((2, 3), 1, 2, 3):
        assert torch.autograd.gradcheck(lambda t: amax_pool(t, dim), (x,))
        assert torch.autograd.gradgradcheck(lambda t: amax_pool(t, dim), (x,))


def test_defect8_mean_pool_gradients_are_ordinary_tensors():
    """mean_pool's gradient can be edited in place, as x.mean's can (it was a broadcast view)."""
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(mean_pool(x).sum(), x)
    assert grad.stride() == x.stride()
    grad.add_(1.0)  # raised "unsupported operation: more than one element ... refers to a single memory location"
    assert torch.equal(grad, torch.full_like(x, 1 / 25 + 1.0))


@pytest.mark.parametrize("module", [SE(16, reduction=4), ECA(16), CBAM(16, reduction=4), BAM(16, reduction=4),
                                    GatherExcite(16), SelectiveKernel(32, groups=4)],
                         ids=lambda m: type(m).__name__)
def test_defect8_modules_give_ordinary_input_gradients(module):
    """Inside the modules squeeze's view is summed into the product's gradient: what leaves is a
    plain tensor that may be edited in place."""
    channels = 32 if isinstance(module, SelectiveKernel) else 16
    x = torch.randn(3, channels, 6, 6, requires_grad=True)
    (grad,) = torch.autograd.grad(module(x).square().sum(), x)
    assert 0 not in grad.stride()
    grad.mul_(2.0)


def test_bottleneck_width_has_a_floor_and_a_ceiling():
    assert bottleneck_width(24, 16) == 8
    assert bottleneck_width(256, 16) == 16
    assert bottleneck_width(6, 2, min_width=8) == 6
    with pytest.raises(ValueError, match=r"reduction must be <= channels \(8\), got 16"):
        bottleneck_width(8, 16)


# --- inference: without gradients the helpers are the plain kernels ---------------------------

def test_without_gradients_the_helpers_record_nothing():
    x = torch.randn(2, 8, 5, 5)
    a = torch.rand(2, 8, 1, 1)
    with torch.no_grad():
        xg = x.clone().requires_grad_()
        outs = [squeeze(xg), rescale(xg, a), amax_pool(xg)]
    assert all(out.grad_fn is None for out in outs)
    torch.testing.assert_close(outs[0], x.mean((2, 3), keepdim=True))  # a short row: see above
    assert torch.equal(outs[1], x * a)
    assert torch.equal(outs[2], x.amax((2, 3), keepdim=True))


# --- pointwise: a 1x1 convolution applied as the matrix product it is ---------------------------

@pytest.mark.parametrize("groups,bias", [(1, True), (1, False), (16, False), (16, True)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_equals_the_layer_on_pooled_descriptors(groups, bias, channels_last):
    torch.manual_seed(0)
    layer = nn.Conv2d(16, 16 if groups > 1 else 4, 1, groups=groups, bias=bias)
    x = torch.randn(3, 16, 6, 6)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    z = x.mean((2, 3), keepdim=True).requires_grad_()
    ours, plain = pointwise(layer, z), layer(z)
    assert ours.shape == plain.shape and torch.allclose(ours, plain, atol=1e-6)
    grad = torch.randn_like(plain)
    inputs = [z, *layer.parameters()]
    for a, b in zip(torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(plain, inputs, grad)):
        assert torch.allclose(a, b, atol=1e-5)


def test_pointwise_on_maps_and_other_layers():
    torch.manual_seed(0)
    layer = nn.Conv2d(8, 4, 1)
    x = torch.randn(2, 8, 5, 7)
    assert torch.equal(pointwise(layer, x), layer(x))  # contiguous map: the layer itself
    xl = x.to(memory_format=torch.channels_last)
    out = pointwise(layer, xl)  # channels-last map: a product over the pixels, still channels-last
    assert torch.allclose(out, layer(x), atol=1e-6) and out.is_contiguous(memory_format=torch.channels_last)
    for other in (nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(8, 4, 1, stride=2), nn.Conv2d(8, 4, 1, groups=2)):
        z = torch.randn(2, 8, 1, 1)
        assert torch.equal(pointwise(other, z), other(z))
    empty = torch.randn(0, 8, 1, 1)  # an empty batch keeps the layer's output shape
    assert pointwise(layer, empty).shape == layer(empty).shape == (0, 4, 1, 1)


def test_pointwise_applies_a_depthwise_layer_as_a_product_and_counts_it_as_declared():
    torch.manual_seed(0)
    layer = nn.Conv2d(16, 16, 1, groups=16, bias=True)
    z = torch.randn(3, 16, 1, 1)
    with FlopCounterMode(display=False) as counter:
        out = pointwise(layer, z)
    assert counter.get_total_flops() == 0  # an element-wise product: invisible to the counter
    torch.testing.assert_close(out, layer(z))
    with as_declared(), FlopCounterMode(display=False) as counter:
        declared = pointwise(layer, z)
    assert torch.equal(declared, layer(z))  # the layer itself
    assert counter.get_total_flops() == 2 * 3 * 16
    with pytest.raises(RuntimeError, match="inside"), as_declared():
        raise RuntimeError("inside")
    assert not _kernels.declared  # restored, even after an error
    seen = []
    with as_declared():
        other = threading.Thread(target=lambda: seen.append(_kernels.declared))
        other.start()
        other.join()
    assert seen == [False]  # another thread keeps the fast kernels


@pytest.mark.parametrize("layer", [nn.Conv2d(2048, 128, 1), nn.Conv2d(2048, 2048, 1, groups=2048, bias=False)],
                         ids=["dense", "depthwise"])
def test_pointwise_is_faster_than_the_convolution_kernel(layer):
    # The reason it exists, measured in alternation (robust to load): forward + backward of
    # SE's first layer (dense) and SE-Var-2's layer (depthwise) at 2048 channels, batch 16,
    # one thread.
    import time

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        z = torch.randn(16, 2048, 1, 1, requires_grad=True)
        times = {"ours": [], "plain": []}
        for _ in range(30):
            for label, f in (("ours", lambda: pointwise(layer, z)), ("plain", lambda: layer(z))):
                start = time.perf_counter()
                f().sum().backward()
                times[label].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    ratios = sorted(a / b for a, b in zip(times["ours"], times["plain"]))
    assert ratios[len(ratios) // 2] < 1.0


# --- gate_conv: the small convolution of CBAM's and triplet attention's gates ----------------


@pytest.mark.parametrize("kernel_size,padding,dilation,bias", [
    (7, 3, 1, False), (3, 1, 1, True), (5, 4, 2, False), (3, 0, 1, True), ((3, 5), (1, 2), (2, 1), True),
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gate_conv_gives_the_layers_values_and_gradients(kernel_size, padding, dilation, bias, channels_last):
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 1, kernel_size, padding=padding, dilation=dilation, bias=bias).double()
    z = torch.randn(3, 2, 11, 9, dtype=torch.float64)
    if channels_last:  # a network converted to channels-last: its kernels are channels-last too
        z = z.contiguous(memory_format=torch.channels_last)
        layer = layer.to(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(gate_conv(layer, z), layer(z), rtol=0, atol=1e-12)  # the inference path
    z.requires_grad_(True)
    ours, plain = gate_conv(layer, z), layer(z)
    assert torch.allclose(ours, plain, rtol=0, atol=1e-12)
    grad = torch.randn_like(plain)
    inputs = [z, layer.weight] + ([layer.bias] if bias else [])
    for a, b in zip(torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(plain, inputs, grad)):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gate_conv_gradcheck_and_double_backward(channels_last):
    layout = torch.channels_last if channels_last else torch.contiguous_format
    layer = nn.Conv2d(2, 1, 3, padding=2, dilation=2, bias=True).double()
    z = torch.randn(2, 2, 6, 5, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)

    def f(t, weight, bias):
        layer.weight, layer.bias = weight, bias
        return gate_conv(layer, t)

    # A channels-last kernel is copied to the contiguous layout: double backward must still reach it.
    weight = nn.Parameter(layer.weight.detach().clone().contiguous(memory_format=layout))
    bias = nn.Parameter(layer.bias.detach().clone())
    assert torch.autograd.gradcheck(f, (z, weight, bias))
    assert torch.autograd.gradgradcheck(f, (z, weight, bias))


def test_gate_conv_leaves_other_convolutions_to_pytorch():
    """Strides, groups, padding modes, string padding, autocast and inference run ``layer(z)``."""
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    layers = [nn.Conv2d(4, 1, 3, stride=2, padding=1), nn.Conv2d(4, 2, 3, padding=1, groups=2),
              nn.Conv2d(4, 1, 3, padding=1, padding_mode="reflect"), nn.Conv2d(4, 1, 3, padding="same"),
              nn.Conv2d(4, 1, 3, padding=3)]
    for layer in layers:
        ours = gate_conv(layer, z)
        assert ours.grad_fn.name() == layer(z).grad_fn.name() == "ConvolutionBackward0"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gate_conv(layers[0], z).dtype == torch.bfloat16
        assert gate_conv(nn.Conv2d(4, 1, 3, padding=1), z).grad_fn.name() == "ConvolutionBackward0"
    with torch.no_grad():
        assert gate_conv(nn.Conv2d(4, 1, 3, padding=1), z).grad_fn is None
    assert gate_conv(nn.Conv2d(4, 1, 3, padding=1), z).grad_fn.name() == "_GateConvBackward"


def test_gate_conv_backward_is_faster_than_pytorchs():
    # The reason it exists, measured in alternation (robust to load): forward + backward of
    # triplet attention's 7x7 gate on four 256 x 28 planes, one thread (measured 15-20x).
    import time

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        layer = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        z = torch.randn(4, 2, 256, 28, requires_grad=True)
        times = {"ours": [], "plain": []}
        for _ in range(10):
            for label, f in (("ours", lambda: gate_conv(layer, z)), ("plain", lambda: layer(z))):
                start = time.perf_counter()
                f().sum().backward()
                times[label].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    ratios = sorted(a / b for a, b in zip(times["ours"], times["plain"]))
    assert ratios[len(ratios) // 2] < 0.5


# --- conv_across_channels: ECA's 1-D convolution ------------------------------------------------

def _conv_kernels(step) -> set[str]:
    """Names of the ATen convolution kernels that ``step()`` runs."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    return {event.key for event in prof.key_averages() if "conv" in event.key}


def _eca_layer(kernel_size, bias=False, **options):
    layer = nn.Conv1d(1, 1, kernel_size, padding=options.pop("padding", kernel_size // 2), bias=bias, **options)
    if bias:
        nn.init.normal_(layer.bias)
    return layer


@pytest.mark.parametrize("kernel_size,bias", [(3, False), (7, False), (5, True)])
@pytest.mark.parametrize("batch,channels", [(2, 64), (4, 512), (16, 2048), (11, 2048), (1, 256)])
def test_conv_across_channels_equals_the_layer(kernel_size, bias, batch, channels):
    # (16, 2048) and (11, 2048) need two blocks of at most _IM2COL_LIMIT entries; (1, 256) is the layer
    torch.manual_seed(0)
    layer = _eca_layer(kernel_size, bias)
    z = torch.randn(batch, 1, channels, requires_grad=True)
    ours, plain = conv_across_channels(layer, z), layer(z)
    assert ours.shape == plain.shape and torch.allclose(ours, plain, atol=1e-6)
    grad = torch.randn_like(plain)
    inputs = [z, *layer.parameters()]
    for a, b in zip(torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(plain, inputs, grad)):
        assert torch.allclose(a, b, atol=1e-3)  # the weight's gradient sums n * c float32 products


@pytest.mark.parametrize("options", [dict(stride=2), dict(dilation=2, padding=2), dict(padding="same"),
                                     dict(padding=0)], ids=["stride", "dilation", "same", "valid"])
def test_conv_across_channels_keeps_the_layers_stride_dilation_and_padding(options):
    torch.manual_seed(0)
    layer = _eca_layer(3, **options)
    z = torch.randn(6, 1, 40)
    ours, plain = conv_across_channels(layer, z), layer(z)
    assert ours.shape == plain.shape and torch.allclose(ours, plain, atol=1e-6)


def test_conv_across_channels_uses_im2col_blocks_where_the_layer_uses_onednn():
    """The speed comes from PyTorch's choice of kernel: if a PyTorch release moves the
    limit, this fails and `_IM2COL_LIMIT` needs measuring again."""
    from attention_lib.primitives import _IM2COL_LIMIT
    layer = _eca_layer(7)
    with torch.no_grad():
        for batch, channels in [(4, 256), (16, 1024), (16, 2048)]:
            z = torch.randn(batch, 1, channels)
            assert "aten::mkldnn_convolution" in _conv_kernels(lambda: layer(z))  # the slow kernel
            ours = _conv_kernels(lambda: conv_across_channels(layer, z))
            assert "aten::_slow_conv2d_forward" in ours and "aten::mkldnn_convolution" not in ours
        wide = torch.randn(2, 1, _IM2COL_LIMIT + 1)  # no row fits a block: the batch folded into groups
        assert torch.allclose(conv_across_channels(layer, wide), layer(wide), atol=1e-6)


def test_conv_across_channels_passes_other_shapes_to_the_layer():
    layer = _eca_layer(3)
    wide = nn.Conv1d(2, 2, 3, padding=1)
    signal = torch.randn(4, 2, 16)
    assert torch.equal(conv_across_channels(wide, signal), wide(signal))  # not ECA's shape: the layer
    empty = torch.randn(0, 1, 64)
    assert conv_across_channels(layer, empty).shape == layer(empty).shape == (0, 1, 64)
    single = torch.randn(1, 1, 64)
    assert torch.equal(conv_across_channels(layer, single), layer(single))
    batch = torch.randn(4, 1, 64)
    plain = layer(batch)
    with as_declared(), FlopCounterMode(display=False) as counter:
        assert torch.equal(conv_across_channels(layer, batch), plain)
    assert counter.get_total_flops() == 2 * 4 * 64 * 3  # the layer's multiply-adds, counted as declared


# --- depthwise_conv: a depthwise convolution with a one-pixel output -------------------------

def _depthwise(channels, kernel, stride=1, padding=0, bias=False):
    torch.manual_seed(1)
    layer = nn.Conv2d(channels, channels, kernel, stride=stride, padding=padding, groups=channels, bias=bias)
    if bias:
        nn.init.normal_(layer.bias)
    return layer


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel,stride,padding,size,bias", [
    (7, 1, 0, (7, 7), False),   # GE-θ's global gather: a kernel the size of the map
    (3, 2, 1, (2, 2), False),   # the last stage of an extent-8 gather on a 7x7 map
    (3, 2, 1, (1, 1), True),    # a 1x1 map: only the centre tap meets it
    (3, 2, 1, (2, 1), False),   # a window cut differently in height and width
    ((5, 3), 1, (1, 0), (3, 3), True),  # a window smaller than the padded map
])
def test_depthwise_conv_with_one_output_pixel_equals_the_layer(kernel, stride, padding, size, bias, channels_last):
    layer = _depthwise(8, kernel, stride, padding, bias)
    x = torch.randn(3, 8, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ours, plain = depthwise_conv(layer, x), layer(x)
    assert ours.shape == plain.shape and ours.shape[-2:] == (1, 1)
    assert torch.allclose(ours, plain, atol=1e-5)
    grad = torch.randn_like(plain)
    inputs = [x, *layer.parameters()]
    ours_grads = torch.autograd.grad(ours, inputs, grad, create_graph=True)
    plain_grads = torch.autograd.grad(plain, inputs, grad, create_graph=True)
    for a, b in zip(ours_grads, plain_grads):
        assert torch.allclose(a, b, atol=1e-5)
    # second derivatives too: the weight's gradient is linear in x, and x's in the weight
    assert torch.allclose(torch.autograd.grad(ours_grads[1].sum(), x, retain_graph=True)[0],
                          torch.autograd.grad(plain_grads[1].sum(), x, retain_graph=True)[0], atol=1e-5)


def test_depthwise_conv_takes_the_product_only_where_it_is_faster():
    layer = _depthwise(8, 3, stride=2, padding=1)
    small = torch.randn(2, 8, 2, 2)
    with torch.no_grad():  # inference on a map under 32 pixels: the layer's own kernel, bit for bit
        assert torch.equal(depthwise_conv(layer, small), layer(small))
    glob = _depthwise(8, 7)
    big = torch.randn(2, 8, 7, 7)
    with torch.no_grad():  # 49 pixels: the product and sum, same values
        assert torch.allclose(depthwise_conv(glob, big), glob(big), atol=1e-5)
    many = torch.randn(2, 8, 9, 9)  # several output pixels: the layer
    assert torch.equal(depthwise_conv(layer, many), layer(many))
    dilated = nn.Conv2d(8, 8, 3, dilation=2, groups=8)
    five = torch.randn(2, 8, 5, 5)
    assert torch.equal(depthwise_conv(dilated, five), dilated(five))
    dense = nn.Conv2d(8, 8, 7)  # not depthwise
    assert torch.equal(depthwise_conv(dense, big), dense(big))
    with pytest.raises(RuntimeError):  # a kernel larger than the padded map: the layer's own error
        depthwise_conv(glob, torch.randn(2, 8, 3, 3))


def _forward_calls(modules):
    """A list that grows by one entry (the module's ``training`` flag) each time one of
    ``modules`` runs, and the hooks' handles."""
    calls = []
    handles = [module.register_forward_hook(lambda module, inputs, output: calls.append(module.training))
               for module in modules]
    return calls, handles


def test_depthwise_conv_calls_the_layer_or_uses_the_weights_it_is_given():
    layer = _depthwise(8, 3, stride=2, padding=1)
    calls, (handle,) = _forward_calls([layer])
    many = torch.randn(2, 8, 9, 9)  # several output pixels: the convolution kernel
    try:
        assert torch.equal(depthwise_conv(layer, many), F.conv2d(many, layer.weight, None, 2, 1, 1, 8))
        assert calls == [True]  # the layer itself ran: its hooks (and per-module FLOP counts) see it
        doubled = 2 * layer.weight
        bias = torch.randn(8)
        assert torch.equal(depthwise_conv(layer, many, doubled, bias), F.conv2d(many, doubled, bias, 2, 1, 1, 8))
        one = torch.randn(2, 8, 7, 7)
        glob = _depthwise(8, 7)
        with torch.no_grad():  # one output pixel from 49: the weighted sum, with the given weights
            assert torch.allclose(depthwise_conv(glob, one, 2 * glob.weight, bias),
                                  F.conv2d(one, 2 * glob.weight, bias, groups=8), atol=1e-5)
        assert calls == [True]
    finally:
        handle.remove()


def test_depthwise_conv_counts_as_declared():
    layer = _depthwise(8, 7)
    x = torch.randn(2, 8, 7, 7, requires_grad=True)
    plain = layer(x)
    with as_declared(), FlopCounterMode(display=False) as counter:
        assert torch.equal(depthwise_conv(layer, x), plain)
    assert counter.get_total_flops() == 2 * 2 * 8 * 49
    with FlopCounterMode(display=False) as counter:  # outside: the product and sum ran, no convolution
        assert torch.allclose(depthwise_conv(layer, x), plain, atol=1e-5)
    assert counter.get_total_flops() == 0


# --- conv_norm: a convolution and its batch norm, folded into one convolution in eval mode ------

def _conv_and_norm(conv_args, conv_kwargs, affine=True, dtype=torch.float64):
    """A convolution and a batch norm with random parameters and running statistics."""
    torch.manual_seed(2)
    conv = nn.Conv2d(*conv_args, **conv_kwargs).to(dtype)
    norm = nn.BatchNorm2d(conv.out_channels, affine=affine).to(dtype)
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.2, 3.0)
        if affine:
            norm.weight.normal_()
            norm.bias.normal_()
        if conv.bias is not None:
            conv.bias.normal_()
    return conv, norm


@pytest.fixture
def fold_any_size(monkeypatch):
    """conv_norm folds on maps of any size (its threshold is measured for full-size maps)."""
    monkeypatch.setattr(primitives, "_FOLD_MIN_ENTRIES", 0)


_CONV_NORM_CASES = {  # name: (Conv2d args, kwargs, input spatial size)
    "dense 3x3 with bias": ((6, 10, 3), {"padding": 1}, (9, 9)),
    "grouped, no bias": ((8, 12, 3), {"padding": 1, "groups": 2, "bias": False}, (7, 7)),  # Split-Attention's
    "1x1": ((8, 16, 1), {}, (5, 5)),  # Non-local's W_z
    "depthwise stride 2": ((8, 8, 3), {"stride": 2, "padding": 1, "groups": 8, "bias": False}, (7, 7)),  # GE-θ stage
    "depthwise, one pixel": ((8, 8, 7), {"groups": 8, "bias": False}, (7, 7)),  # GE-θ's global gather
}


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("case", list(_CONV_NORM_CASES))
def test_conv_norm_in_eval_mode_equals_the_pair_with_gradients(case, affine, channels_last, fold_any_size):
    args, kwargs, size = _CONV_NORM_CASES[case]
    conv, norm = _conv_and_norm(args, kwargs, affine)
    norm.eval()
    x = torch.randn(8, conv.in_channels, *size, dtype=torch.float64)  # 8: every weight here is under x's quarter
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    calls, handles = _forward_calls([norm])
    try:
        ours = conv_norm(conv, norm, x)
    finally:
        handles[0].remove()
    assert calls == ([] if channels_last else [False])  # folded on channels-last maps only
    pair = norm(conv(x))
    assert ours.shape == pair.shape
    assert torch.allclose(ours, pair, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(pair)
    inputs = [x, *conv.parameters(), *norm.parameters()]  # a frozen norm can still be fine-tuned through the fold
    for a, b in zip(torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(pair, inputs, grad)):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        assert torch.allclose(conv_norm(conv, norm, x), pair, rtol=1e-10, atol=1e-10)


def test_conv_norm_folds_the_norm_only_where_it_uses_running_statistics_and_costs_little(monkeypatch):
    conv, norm = _conv_and_norm((6, 10, 3), {"padding": 1}, dtype=torch.float32)
    calls, handles = _forward_calls([norm])
    x = torch.randn(8, 6, 8, 8).contiguous(memory_format=torch.channels_last)
    try:
        norm.eval()
        with torch.no_grad():
            # a map under _FOLD_MIN_ENTRIES: folding would cost more than the norm's pass
            assert x.numel() < primitives._FOLD_MIN_ENTRIES
            unfolded = conv_norm(conv, norm, x)
            assert calls == [False]  # the batch norm ran
            assert torch.equal(unfolded, norm(conv(x)))
            calls.clear()
            monkeypatch.setattr(primitives, "_FOLD_MIN_ENTRIES", x.numel())  # from x's size on: folded
            folded = conv_norm(conv, norm, x)
            assert calls == []  # eval mode: no batch norm ran, one convolution did
            assert torch.allclose(folded, norm(conv(x)), atol=1e-5)
            calls.clear()
            with as_declared():  # the FLOP count sees the modules as declared: the pair runs
                assert torch.equal(conv_norm(conv, norm, x), norm(conv(x)))
            assert calls == [False, False]
            calls.clear()
            # a contiguous map (oneDNN copies it first), or a weight over a quarter of x: the pair
            for other in (x.contiguous(), x[:2]):
                assert torch.equal(conv_norm(conv, norm, other), norm(conv(other)))
            assert calls == [False, False, False, False]
        calls.clear()
        norm.train()  # training: the batch's statistics, and the running ones move
        reference = nn.BatchNorm2d(10).train()
        reference.load_state_dict(norm.state_dict())
        before = norm.running_mean.clone()
        out = conv_norm(conv, norm, x)
        assert calls == [True]
        assert torch.equal(out, reference(conv(x)))
        assert not torch.equal(norm.running_mean, before)
        assert torch.equal(norm.running_mean, reference.running_mean)
    finally:
        handles[0].remove()
    batch_stats = nn.BatchNorm2d(10, track_running_stats=False).eval()  # no running statistics: nothing to fold
    with torch.no_grad():
        assert torch.equal(conv_norm(conv, batch_stats, x), batch_stats(conv(x)))
    with pytest.raises(RuntimeError, match="running_mean should contain 10 elements not 7"):
        conv_norm(conv, nn.BatchNorm2d(7).eval(), x)  # a norm of another width: its own error


@pytest.mark.parametrize("make,folded", [
    (lambda: GatherExcite(16, 8, param_gather=True), 3),  # three stages on a 7x7 map: 7, 4, 2, 1
    (lambda: GatherExcite(16, "global", param_gather=True, param_excite=True, spatial_size=7), 1),
    (lambda: NonLocal(16), 1),  # BN(W_z y), eq. (9.6)
    (lambda: SplitAttention(16, 16, radix=2), 1),  # eq. (12.1); the bottleneck's norm (12.4) acts on pooled vectors
], ids=["GE-θ e=8", "GE-θ+ global", "Non-local", "Split-Attention"])
def test_modules_fold_their_batch_norms_in_eval_mode(make, folded, fold_any_size):
    torch.manual_seed(3)
    module = make().double()
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.2, 3.0)
            norm.weight.normal_()
            norm.bias.normal_()
    module.eval()
    calls, handles = _forward_calls(norms)
    x = torch.randn(12, 16, 7, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            ours = module(x)
            ran = len(calls)
            with as_declared():
                declared = module(x)  # every layer as declared: each convolution, then its batch norm
    finally:
        for handle in handles:
            handle.remove()
    assert torch.allclose(ours, declared, rtol=1e-10, atol=1e-10)
    assert len(calls) - ran == len(norms)  # as declared, every norm ran
    assert ran == len(norms) - folded  # in eval mode, the folded ones did not


# --- rescale_nearest: x times the nearest-interpolated gate ---------------------------------------

@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size,gathered", [((14, 14), (2, 2)), ((56, 28), (7, 4)), ((16, 16), (1, 1)),
                                           ((15, 22), (2, 3))])
def test_rescale_nearest_equals_x_times_the_interpolated_gate(channels_last, size, gathered):
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 8, *size, dtype=torch.float64).to(memory_format=layout).requires_grad_()
    a = torch.rand(3, 8, *gathered, dtype=torch.float64).to(memory_format=layout).requires_grad_()
    ours, plain = rescale_nearest(x, a), x * F.interpolate(a, size=size, mode="nearest")
    assert torch.equal(ours, plain)
    assert ours.is_contiguous(memory_format=layout)  # the layout is kept: no copy into the other one
    grad = torch.randn_like(plain)
    (gx, ga), (px, pa) = torch.autograd.grad(ours, (x, a), grad), torch.autograd.grad(plain, (x, a), grad)
    assert torch.equal(gx, px)
    if channels_last and gathered != (1, 1):
        assert torch.equal(ga, pa)  # summed by the interpolation's own backward kernel
    assert torch.allclose(ga, pa, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        assert torch.equal(rescale_nearest(x, a), plain)


def test_rescale_nearest_gradcheck_channels_last():
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    a = torch.rand(2, 3, 2, 3, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(rescale_nearest, (x, a))
    assert torch.autograd.gradgradcheck(rescale_nearest, (x, a))


@pytest.mark.parametrize("dim", [(2,), (3,), (1,), (2, 3), (-1,), (1, 2, 3)])
@pytest.mark.parametrize("reduction", [torch.mean, torch.amax, torch.sum], ids=["mean", "amax", "sum"])
def test_reduce_keepdim_of_a_channels_last_map_is_the_plain_reduction(dim, reduction):
    """The (n, h, w, c) view route gives the plain reduction's shape and values, and its gradient."""
    torch.manual_seed(3)
    x = torch.randn(3, 8, 7, 5).to(memory_format=torch.channels_last).requires_grad_()
    plain = x.detach().clone().requires_grad_()
    y, expected = reduce_keepdim(reduction, x, dim), reduction(plain, dim=dim, keepdim=True)
    assert y.shape == expected.shape
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    grad = torch.randn_like(expected)
    y.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, plain.grad)
    contiguous = x.detach().contiguous()
    lean, plain = reduce_keepdim(reduction, contiguous, dim), reduction(contiguous, dim=dim, keepdim=True)
    if reduction is not torch.amax:  # short rows: a matrix-vector product; narrow maps' heights: halves (above)
        torch.testing.assert_close(lean, plain)
    else:  # any other layout takes the plain call
        assert torch.equal(lean, plain)


# --- attend: eq. (9.1)'s weighted sums of values, in the order that suits the layout ---------------


@pytest.mark.parametrize("n,width,queries,keys", [(2, 16, 3, 5), (2, 4, 9, 9), (3, 8, 6, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_attend_has_the_values_and_gradients_of_the_plain_product(n, width, queries, keys, channels_last):
    torch.manual_seed(0)
    weights = torch.randn(n, queries, keys, dtype=torch.float64).softmax(-1).requires_grad_()
    values = torch.randn(n, width, keys, dtype=torch.float64)
    if channels_last:  # (n, d, N) as flatten(2) gives it from a channels-last map
        values = values.transpose(1, 2).contiguous().transpose(1, 2)
    values.requires_grad_()
    out = attend(weights, values)
    expected = values @ weights.transpose(1, 2)
    assert out.shape == (n, width, queries) and torch.allclose(out, expected)
    grad = torch.randn_like(expected)
    for ours, plain in zip(torch.autograd.grad(out, (weights, values), grad),
                           torch.autograd.grad(expected, (weights, values), grad)):
        assert torch.allclose(ours, plain)
    assert torch.autograd.gradcheck(attend, (weights, values))
    with torch.no_grad():
        assert torch.allclose(attend(weights, values), expected)


def test_attend_lays_its_result_out_channel_by_channel_only_in_training_with_d_above_n_q():
    weights, values = torch.rand(2, 3, 5), torch.randn(2, 16, 5)  # d = 16 > n q = 6
    with torch.no_grad():  # inference: position by position, the channels-last layout
        assert attend(weights, values).transpose(1, 2).is_contiguous()
    values.requires_grad_()
    assert attend(weights, values).is_contiguous()  # training, d > n q: channel by channel
    assert attend(weights, torch.randn(2, 4, 5, requires_grad=True)).transpose(1, 2).is_contiguous()  # d <= n q
    last = torch.randn(2, 5, 16).transpose(1, 2).requires_grad_()  # from a channels-last map
    assert attend(weights, last).transpose(1, 2).is_contiguous()


def test_attend_names_both_shapes_when_they_do_not_fit():
    with pytest.raises(ValueError, match=r"weights of shape \(n, q, N\).*got weights \(2, 3, 5\) and values \(2, 4, 6\)"):
        attend(torch.rand(2, 3, 5), torch.rand(2, 4, 6))
    with pytest.raises(ValueError, match="got weights"):
        attend(torch.rand(3, 5), torch.rand(4, 5))


# --- add_residual: a residual sum in the branch's memory -----------------------------------------


def test_add_residual_writes_into_the_branch_with_the_sums_values_and_gradients():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 1).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    branch = conv(x)
    address = branch.data_ptr()
    out = add_residual(branch, x)
    assert out.data_ptr() == address  # no new tensor
    expected = conv(x) + x
    assert torch.equal(out, expected)
    grad = torch.randn_like(expected)
    inputs = (x, *conv.parameters())
    for ours, plain in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(expected, inputs, grad)):
        assert torch.equal(ours, plain)
    assert torch.autograd.gradcheck(lambda t: add_residual(conv(t), t), (x,))


def test_add_residual_falls_back_to_a_new_tensor_and_refuses_a_branch_autograd_needs():
    x = torch.randn(2, 4, 5, 5)
    low = torch.randn(2, 4, 5, 5, dtype=torch.bfloat16)
    mixed = add_residual(low, x)  # the sum is float32: a new tensor, as branch + x
    assert mixed.dtype == torch.float32 and torch.equal(mixed, low + x) and low.dtype == torch.bfloat16
    small = torch.randn(2, 4, 1, 1)
    wide = add_residual(small, x)  # the sum is larger than the branch
    assert wide.shape == x.shape and small.shape == (2, 4, 1, 1) and torch.equal(wide, small + x)
    leaf = torch.randn(2, 4, 5, 5, requires_grad=True)
    gated = torch.sigmoid(leaf)  # sigmoid's backward needs its output: autograd must refuse
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        add_residual(gated, x).sum().backward()
