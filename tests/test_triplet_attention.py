"""Triplet attention (chapter 14): the gates, the rotations, the official code's choices, placement, cost."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from attention_lib.costs import count_flops
from attention_lib.models import create_model
from attention_lib.primitives import rescale_mean
from attention_lib.triplet_attention import TripletAttention, TripletGate, z_pool


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and batch-norm buffer values far from their defaults."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype)
                tensor.copy_(values + 0.5 if "running_var" in name else values * 2 - 1)
    return module


def official_style(module: TripletAttention, x: torch.Tensor) -> torch.Tensor:
    """The authors' formulation written out here with functional ops (eval-mode batch norm):
    permute the whole map so the pooled dimension comes first, Z-pool (max, then mean), convolve,
    normalise, sigmoid, rescale the permuted map, permute back, and average the branches."""

    def gate(branch: TripletGate, u: torch.Tensor) -> torch.Tensor:
        z = torch.cat([u.max(dim=1, keepdim=True)[0], u.mean(dim=1, keepdim=True)], dim=1)
        y = F.conv2d(z, branch.conv.weight, padding=branch.conv.weight.shape[-1] // 2)
        norm = branch.norm
        y = (y - norm.running_mean.view(1, -1, 1, 1)) / torch.sqrt(norm.running_var.view(1, -1, 1, 1) + norm.eps)
        return u * torch.sigmoid(y * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1))

    outputs = [gate(module.cw, x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3),
               gate(module.hc, x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)]
    if module.hw is not None:
        outputs.append(gate(module.hw, x))
    return sum(outputs) / len(outputs)


@pytest.mark.parametrize("kernel_size", [3, 7])
@pytest.mark.parametrize("no_spatial", [False, True])
@pytest.mark.parametrize("shape", [(2, 16, 12, 9), (1, 3, 5, 8), (2, 40, 7, 7)])
def test_output_is_the_mean_of_the_gated_maps(kernel_size, no_spatial, shape):
    torch.manual_seed(0)
    module = randomise(TripletAttention(kernel_size, no_spatial=no_spatial)).double().eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(module(x), official_style(module, x), rtol=1e-12, atol=1e-12)


def test_gates_equal_the_rotate_whole_map_computation():
    torch.manual_seed(1)
    module = randomise(TripletAttention(5)).double().eval()
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    gate_cw, gate_hc, gate_hw = module.gates(x)
    assert gate_cw.shape == (2, 6, 1, 11) and gate_hc.shape == (2, 6, 9, 1) and gate_hw.shape == (2, 1, 9, 11)
    for branch, gate, order in ((module.cw, gate_cw, (0, 2, 1, 3)), (module.hc, gate_hc, (0, 3, 2, 1)),
                                (module.hw, gate_hw, (0, 1, 2, 3))):
        u = x.permute(order)
        z = torch.cat([u.amax(dim=1, keepdim=True), u.mean(dim=1, keepdim=True)], dim=1)
        torch.testing.assert_close(branch(z).permute(order), gate, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(module.attention(x), (gate_cw + gate_hc + gate_hw) / 3)


def test_each_gate_ignores_the_order_along_its_pooled_dimension():
    """Eq. (14.4): g1 does not depend on the order of the rows, g2 on that of the columns, g3 on that
    of the channels; each does depend on the order along its plane."""
    torch.manual_seed(2)
    module = randomise(TripletAttention(3)).double().eval()
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    rows, columns, channels = torch.randperm(6), torch.randperm(7), torch.randperm(5)
    reference = module.gates(x)
    torch.testing.assert_close(module.gates(x[:, :, rows])[0], reference[0])
    torch.testing.assert_close(module.gates(x[:, :, :, columns])[1], reference[1])
    torch.testing.assert_close(module.gates(x[:, channels])[2], reference[2])
    assert not torch.allclose(module.gates(x[:, :, :, columns])[0], reference[0])
    assert not torch.allclose(module.gates(x[:, :, rows])[1], reference[1])


def test_the_second_branch_convolves_the_plane_as_height_by_channel():
    """The authors rotate to (w, h, c): the kernel's rows run along the height. A kernel that is not
    symmetric tells (h, c) from (c, h)."""
    module = TripletAttention(3, no_spatial=True).double().eval()
    with torch.no_grad():
        module.hc.conv.weight.zero_()
        module.hc.conv.weight[0, 1, 0, 1] = 1.0  # mean map, one row up: reads the row above (h - 1)
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    gate = module.gates(x)[1][0, :, :, 0]  # (c, h)
    mean = x.mean(dim=3)[0]  # (c, h)
    expected = torch.zeros_like(mean)
    expected[:, 1:] = mean[:, :-1]  # shifted along the height, not along the channels
    torch.testing.assert_close(gate, torch.sigmoid(expected / (1 + 1e-5) ** 0.5))


def test_z_pool_stacks_max_then_mean():
    x = torch.randn(2, 3, 4, 5)
    for dim in (1, 2, 3):
        z = z_pool(x, dim)
        assert z.shape[dim] == 2
        torch.testing.assert_close(z.narrow(dim, 0, 1), x.amax(dim=dim, keepdim=True))
        torch.testing.assert_close(z.narrow(dim, 1, 1), x.mean(dim=dim, keepdim=True))


def test_gate_layers_match_the_official_code():
    gate = TripletGate(7)
    assert gate.conv.bias is None and gate.conv.weight.shape == (1, 2, 7, 7) and gate.conv.padding == (3, 3)
    assert gate.norm.affine and gate.norm.num_features == 1 and gate.norm.eps == 1e-5 and gate.norm.momentum == 0.01
    assert [type(m) for m in gate.children()] == [nn.Conv2d, nn.BatchNorm2d]  # no ReLU
    z = torch.randn(2, 2, 5, 6)
    with torch.no_grad():  # then the sigmoid, eq. (14.2)
        torch.testing.assert_close(gate.eval()(z), torch.sigmoid(gate.norm(gate.conv(z))))


@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7, 9])
def test_kernel_size_sets_every_gate(kernel_size):
    module = TripletAttention(kernel_size)
    assert all(g.conv.kernel_size == (kernel_size, kernel_size) for g in (module.cw, module.hc, module.hw))


@pytest.mark.parametrize("kernel_size,no_spatial", [(7, False), (7, True), (3, False), (3, True), (5, False)])
def test_parameters_follow_eq_14_6(kernel_size, no_spatial):
    module = TripletAttention(kernel_size, no_spatial=no_spatial)
    gates = 2 if no_spatial else 3
    assert sum(p.numel() for p in module.parameters()) == gates * (2 * kernel_size**2 + 2)
    assert (module.hw is None) == no_spatial


@pytest.mark.parametrize("channels,size", [(256, 56), (2048, 7), (5, 9)])
def test_flops_follow_eq_14_7(channels, size):
    for no_spatial, planes in ((False, 2 * channels * size + size * size), (True, 2 * channels * size)):
        assert count_flops(TripletAttention(7, no_spatial=no_spatial), (1, channels, size, size)) == 4 * 49 * planes


def test_initialisation_is_pytorchs_default():
    """The official ResNet zeroes the spatial gate's batch-norm scale at initialisation; we do not."""
    module = TripletAttention()
    for gate in (module.cw, module.hc, module.hw):
        assert torch.equal(gate.norm.weight, torch.ones(1)) and torch.equal(gate.norm.bias, torch.zeros(1))


@pytest.mark.parametrize("channels", [1, 3, 64, 257])
def test_works_for_any_channel_count(channels):
    module = TripletAttention().eval()
    x = torch.randn(2, channels, 6, 5)
    assert module(x).shape == x.shape and module.attention(x).shape == x.shape


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-3, ValueError), (4, ValueError), (2.0, TypeError),
                                       ("7", TypeError), (True, TypeError)])
def test_a_bad_kernel_size_is_refused_by_name(bad, error):
    with pytest.raises(error, match="kernel_size"):
        TripletAttention(bad)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_a_bad_no_spatial_is_refused_by_name(bad):
    with pytest.raises(TypeError, match="no_spatial"):
        TripletAttention(no_spatial=bad)


def test_bad_input_is_named():
    module = TripletAttention()
    with pytest.raises(ValueError, match="TripletAttention: input x must be 4-D"):
        module(torch.randn(3, 4, 5))
    with pytest.raises(TypeError, match="TripletAttention: input x must be a torch.Tensor"):
        module([1.0])
    with pytest.raises(TypeError, match="channels"):
        TripletAttention(channels=8)


def test_one_value_per_plane_in_training_is_refused_in_the_librarys_words():
    with pytest.raises(ValueError, match="TripletAttention: batch norm in training mode"):
        TripletAttention().train()(torch.randn(1, 8, 1, 1))
    no_spatial = TripletAttention(no_spatial=True).train()  # its planes are (c, 1) and (1, c): 8 values each
    assert no_spatial(torch.randn(1, 8, 1, 1)).shape == (1, 8, 1, 1)


def test_gradients_in_float64_in_training_mode():
    torch.manual_seed(3)
    module = randomise(TripletAttention(3)).double().train()
    x = torch.randn(2, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


def test_create_model_places_triplet_in_every_block():
    for arch, block_type, norm, count in (("resnet50", Bottleneck, "bn3", 16), ("resnet18", BasicBlock, "bn2", 8)):
        model = create_model(arch, "triplet")
        blocks = [m for m in model.modules() if isinstance(m, block_type)]
        assert len(blocks) == count and all(isinstance(getattr(b, norm).attention, TripletAttention) for b in blocks)
        added = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in create_model(arch).parameters())
        assert added == count * 300
    mobile = create_model("mobilenet_v2", "triplet")  # the official code puts one in all 17 blocks
    with_shortcut = [m for m in mobile.modules() if isinstance(m, InvertedResidual) and m.use_res_connect]
    assert sum(isinstance(m, TripletAttention) for m in mobile.modules()) == len(with_shortcut) == 10


def test_create_model_passes_kernel_size_and_no_spatial():
    model = create_model("resnet18", "triplet", kernel_size=3, no_spatial=True)
    modules = [m for m in model.modules() if isinstance(m, TripletAttention)]
    assert modules and all(m.kernel_size == 3 and m.no_spatial for m in modules)


def test_resnet50_flops_grow_by_eq_14_7_summed_over_the_blocks():
    stages = [(256, 56, 3), (512, 28, 4), (1024, 14, 6), (2048, 7, 3)]
    expected = sum(blocks * 4 * 49 * (2 * c * s + s * s) for c, s, blocks in stages)
    added = count_flops(create_model("resnet50", "triplet"), (1, 3, 224, 224)) - count_flops(
        create_model("resnet50"), (1, 3, 224, 224))
    assert added == expected


def test_timm_has_no_triplet_attention():
    timm = pytest.importorskip("timm")
    from timm.layers.create_attn import get_attn

    assert not [name for name in dir(timm.layers) if "triplet" in name.lower() or "zpool" in name.lower()]
    for name in ("triplet", "triplet_attention", "ta"):
        with pytest.raises(AssertionError):
            get_attn(name)
    assert not timm.list_models("*triplet*")


# --- the speed-layer helper of eq. (14.5) ------------------------------------------------


def _triplet_gates(n=2, c=6, h=5, w=4, dtype=torch.float32):
    return [torch.rand(n, c, 1, w, dtype=dtype), torch.rand(n, c, h, 1, dtype=dtype), torch.rand(n, 1, h, w, dtype=dtype)]


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
@pytest.mark.parametrize("needs", [(True, True, True, True), (True, False, False, False), (False, True, False, True)])
def test_rescale_mean_is_x_times_the_mean_gate(channels_last, needs):
    torch.manual_seed(9)
    x = torch.randn(2, 6, 5, 4)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    tensors = [x, *_triplet_gates()]
    leaves = [t.clone().requires_grad_(need) for t, need in zip(tensors, needs)]
    plain = [t.clone().requires_grad_(need) for t, need in zip(tensors, needs)]
    y = rescale_mean(leaves[0], leaves[1:])
    expected = plain[0] * ((plain[1] + plain[2] + plain[3]) / 3)
    assert torch.equal(y, expected)  # the same operations in the same order: bit for bit
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last  # x's layout, not PyTorch's choice
    grad = torch.randn_like(expected)
    ours = torch.autograd.grad(y, [t for t in leaves if t.requires_grad], grad)
    theirs = torch.autograd.grad(expected, [t for t in plain if t.requires_grad], grad)
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference)
        assert mine.shape == reference.shape


def test_rescale_mean_gradcheck_double_backward_and_mixed_precision():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    gates = [g.requires_grad_() for g in _triplet_gates(2, 3, 4, 5, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda x, *g: rescale_mean(x, g), (x, *gates))
    assert torch.autograd.gradgradcheck(lambda x, *g: rescale_mean(x, g), (x, *gates))
    x32 = torch.randn(2, 3, 4, 5, requires_grad=True)
    g16 = [g.requires_grad_() for g in _triplet_gates(2, 3, 4, 5, dtype=torch.bfloat16)]
    rescale_mean(x32, g16).sum().backward()
    assert x32.grad.dtype == torch.float32 and all(g.grad.dtype == torch.bfloat16 for g in g16)
    torch.testing.assert_close(g16[2].grad.float(), (x32 / 3).sum(1, keepdim=True).detach(), rtol=2e-2, atol=2e-2)


def test_rescale_mean_keeps_nothing_full_size_but_the_input():
    """The module keeps x (the caller's) and the small gates; autograd's x * mean would also keep the
    full-size mean."""
    x = torch.randn(4, 16, 12, 10, requires_grad=True)
    gates = [g.requires_grad_() for g in _triplet_gates(4, 16, 12, 10)]
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        rescale_mean(x, gates)
    assert [t for t in saved if t.numel() == x.numel() and t.data_ptr() != x.data_ptr()] == []


def test_rescale_mean_refuses_gates_that_do_not_broadcast_to_x():
    with pytest.raises(ValueError, match="at least one gate"):
        rescale_mean(torch.randn(1, 2, 3, 3), [])
    with pytest.raises(ValueError, match=r"must broadcast to x's shape \(1, 2, 3, 3\)"):
        rescale_mean(torch.randn(1, 2, 3, 3), [torch.rand(1, 2, 3, 4)])
    with pytest.raises(ValueError, match="must broadcast to x's shape"):  # would make the output larger than x
        rescale_mean(torch.randn(1, 2, 1, 3), [torch.rand(1, 2, 3, 1)])
