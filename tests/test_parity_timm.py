"""Same weights, same outputs: our modules against timm's equivalents.

Each test copies the parameters (and batch-norm statistics) of timm's module into ours,
with timm configured as in the benchmark (attention_lib.benchmark), and requires the
same outputs and the same input gradients to float tolerance. Modules with batch norm
are compared in eval mode (running statistics, made non-trivial first) and in training
mode (batch statistics). Where the two differ on purpose, a test says how by asserting
the difference.
"""

import pytest
import torch
from torch import nn

timm_layers = pytest.importorskip("timm.layers")


def copy_parameters(target, pairs):
    """Copy parameters: pairs of (target attribute path, source tensor)."""
    with torch.no_grad():
        for path, source in pairs:
            tensor = target.get_parameter(path)
            assert tensor.shape == source.shape, f"{path}: {tuple(tensor.shape)} vs {tuple(source.shape)}"
            tensor.copy_(source)


def randomize_batch_norms(module):
    """Give every batch norm non-trivial affine parameters and running statistics."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.5, 0.5)
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)


def load_renamed(target, source, renames):
    """Load ``source``'s state into ``target``; ``renames`` maps our key prefixes to timm's.

    Every key of ``target`` must be covered, with the same shape.
    """
    state = source.state_dict()
    loaded = {}
    for key in target.state_dict():
        prefix = next((p for p in renames if key.startswith(p)), None)
        assert prefix is not None, f"no source for {key}"
        source_key = renames[prefix] + key[len(prefix):]
        assert state[source_key].shape == target.state_dict()[key].shape, key
        loaded[key] = state[source_key]
    target.load_state_dict(loaded)


def assert_same_outputs_and_gradients(ours, theirs, x, train, atol=1e-5):
    ours.train(train)
    theirs.train(train)
    x_ours = x.clone().requires_grad_(True)
    x_theirs = x.clone().requires_grad_(True)
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    assert y_ours.shape == y_theirs.shape
    assert torch.allclose(y_ours, y_theirs, atol=atol), (y_ours - y_theirs).abs().max()
    grad = torch.randn_like(y_ours)
    y_ours.backward(grad)
    y_theirs.backward(grad)
    assert torch.allclose(x_ours.grad, x_theirs.grad, atol=atol), (x_ours.grad - x_theirs.grad).abs().max()


# --- SE ------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [64, 256, 24])
def test_se_matches_timm_semodule(channels):
    from attention_lib import SE

    torch.manual_seed(0)
    ours = SE(channels, reduction=16)
    theirs = timm_layers.SEModule(channels, rd_ratio=1 / 16, rd_divisor=8)
    # Same hidden width: c // 16 with a floor of 8 (timm rounds to a multiple of 8).
    assert ours.width == theirs.fc1.out_channels
    copy_parameters(ours, [
        ("reduce.weight", theirs.fc1.weight), ("reduce.bias", theirs.fc1.bias),
        ("expand.weight", theirs.fc2.weight), ("expand.bias", theirs.fc2.bias),
    ])
    x = torch.randn(2, channels, 9, 7)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    assert_same_outputs_and_gradients(ours, theirs, x, train=True, atol=1e-6)


# --- ECA -----------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [16, 64, 256, 2048])
def test_eca_matches_timm_ecamodule(channels):
    from attention_lib import ECA

    torch.manual_seed(0)
    ours, theirs = ECA(channels), timm_layers.EcaModule(channels)
    # Same adaptive kernel size (eq. 3.5): 3 for 16 and 64 channels, 5 for 256, 7 for 2048.
    assert (ours.kernel_size,) == theirs.conv.kernel_size
    copy_parameters(ours, [("conv.weight", theirs.conv.weight)])
    assert_same_outputs_and_gradients(ours, theirs, torch.randn(3, channels, 7, 5), train=True, atol=1e-6)


def test_eca_difference_timm_never_uses_a_kernel_below_3():
    from attention_lib import ECA

    # Documented difference: for c < 8 the rule gives k = 1 (each channel gated by its own
    # mean, SE-Var-2); timm clamps the size to at least 3, so neighbours interact.
    for channels in (2, 4, 7):
        assert ECA(channels).kernel_size == 1
        assert timm_layers.EcaModule(channels).conv.kernel_size == (3,)
    assert ECA(8).kernel_size == timm_layers.EcaModule(8).conv.kernel_size[0] == 3


# --- CBAM ----------------------------------------------------------------------------


def _timm_cbam(channels, **kwargs):
    from timm.layers.cbam import CbamModule  # not re-exported by timm.layers

    return CbamModule(channels, **kwargs)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("channels", [64, 256])
def test_cbam_matches_timm_cbammodule(channels, train):
    from attention_lib import CBAM

    torch.manual_seed(0)
    # timm's channel MLP has no biases unless mlp_bias=True; ours has them (as SE's).
    # Its spatial convolution is ConvNormAct: bias-free conv + BN, i.e. ours with batch_norm=True.
    # The hidden width is c/16 in both from 128 channels on; below, ours has a floor of 8
    # (erratum 6) and timm none, so timm gets ours explicitly.
    ours = CBAM(channels, reduction=16, batch_norm=True)
    theirs = _timm_cbam(channels, rd_channels=ours.channel.width, mlp_bias=True)
    assert channels < 128 or ours.channel.width == _timm_cbam(channels).channel.fc1.out_channels
    randomize_batch_norms(theirs)
    load_renamed(ours, theirs, {
        "channel.reduce.": "channel.fc1.", "channel.expand.": "channel.fc2.",
        "spatial.conv.": "spatial.conv.conv.", "spatial.norm.": "spatial.conv.bn.",
    })
    assert_same_outputs_and_gradients(ours, theirs, torch.randn(4, channels, 9, 11), train)


def test_cbam_difference_timm_mlp_has_no_bias_by_default():
    from attention_lib import CBAM

    # Documented difference: timm's default CbamModule drops the channel MLP's biases
    # (mlp_bias=False); ours keeps them, as the CBAM paper's MLP and SE do.
    theirs = _timm_cbam(64)
    assert theirs.channel.fc1.bias is None and theirs.channel.fc2.bias is None
    ours = CBAM(64)
    assert ours.channel.reduce.bias is not None and ours.channel.expand.bias is not None
    assert ours.spatial.conv.bias is None  # batch_norm=True: the BN's shift replaces the bias


# --- Gather-Excite ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(7, 7), (14, 14), (9, 13)])
def test_ge_theta_minus_global_matches_timm(size):
    from attention_lib import GatherExcite

    ours = GatherExcite(32, "global")
    theirs = timm_layers.GatherExcite(32, extent=0, use_mlp=False)  # no parameters at all
    assert_same_outputs_and_gradients(ours, theirs, torch.randn(3, 32, *size), train=True, atol=1e-6)


@pytest.mark.parametrize("extent", [2, 4, 8])
@pytest.mark.parametrize("size", [(56, 56), (14, 14), (15, 22)])
def test_ge_theta_minus_local_extent_matches_timm(extent, size):
    from attention_lib import GatherExcite

    # Same pooling (kernel 2e-1, stride e, padding e-1, padded positions excluded) and
    # nearest interpolation; ours takes the sigmoid before interpolating, timm after.
    ours = GatherExcite(16, extent)
    theirs = timm_layers.GatherExcite(16, extent=extent, use_mlp=False)
    assert_same_outputs_and_gradients(ours, theirs, torch.randn(2, 16, *size), train=True, atol=1e-6)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("size", [(56, 56), (28, 28), (14, 14), (7, 7), (15, 22)])
def test_ge_theta_plus_local_extent_matches_timm(size, train):
    from attention_lib import GatherExcite
    from attention_lib.benchmark import timm_gather_excite_theta_plus

    torch.manual_seed(0)
    ours = GatherExcite(64, 8, param_gather=True, param_excite=True, reduction=16)
    theirs = timm_gather_excite_theta_plus(64, 8, ours.width)
    randomize_batch_norms(theirs)
    load_renamed(ours, theirs, {"gather.": "gather.", "excite.reduce.": "mlp.fc1.", "excite.expand.": "mlp.fc2."})
    assert_same_outputs_and_gradients(ours, theirs, torch.randn(4, 64, *size), train)


def test_ge_difference_timm_constructor_and_global_learned_gather():
    # Documented differences, as of timm 1.0.31:
    # 1. GatherExcite(extra_params=True) and GatherExcite(use_mlp=True) (its default) raise
    #    TypeError: the constructor passes `*dd` where `**dd` is meant. The benchmark and the
    #    test above build the layers it means to build instead.
    for kwargs in ({"extent": 8, "extra_params": True, "use_mlp": False}, {"extent": 0, "use_mlp": True}):
        try:
            timm_layers.GatherExcite(16, **kwargs)
        except TypeError as error:  # the known bug (a later timm may have fixed it)
            assert "multiple values" in str(error)
    # 2. timm's global learned gather is a depthwise conv with the map's size but "same"
    #    padding, so it keeps the map's size: a local 7x7 filter, not a global gather.
    #    Ours has no padding and gathers the whole map into one value per channel.
    from attention_lib import GatherExcite

    x = torch.randn(2, 16, 7, 7)
    timm_gather = timm_layers.create_conv2d(16, 16, kernel_size=(7, 7), stride=1, depthwise=True)
    assert timm_gather(x).shape[-2:] == (7, 7)
    ours = GatherExcite(16, "global", param_gather=True, spatial_size=7)
    assert ours.gather(x).shape[-2:] == (1, 1)


# --- Selective Kernel -------------------------------------------------------------------


def _timm_sk(channels, **kwargs):
    # kernel_size=[3, 5] with keep_3x3=True: two 3x3 branches with dilations 1 and 2, as ours.
    return timm_layers.SelectiveKernel(channels, channels, kernel_size=[3, 5], keep_3x3=True, **kwargs)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("channels", [64, 256])
def test_sk_matches_timm_selectivekernel(channels, train):
    from attention_lib import SelectiveKernel

    torch.manual_seed(0)
    ours = SelectiveKernel(channels, channels, num_branches=2, groups=32, reduction=16, min_width=32)
    # split_input=False: every branch sees all input channels (paper and ours); the fuse
    # width set to ours (d = max(c/16, 32), the paper's L = 32).
    theirs = _timm_sk(channels, split_input=False, groups=32, rd_channels=ours.width)
    randomize_batch_norms(theirs)
    load_renamed(ours, theirs, {
        "branches.0.0.": "paths.0.conv.", "branches.0.1.": "paths.0.bn.",
        "branches.1.0.": "paths.1.conv.", "branches.1.1.": "paths.1.bn.",
        "reduce.": "attn.fc_reduce.", "bn.": "attn.bn.", "select.": "attn.fc_select.",
    })
    assert [branch[0].dilation for branch in ours.branches] == [path.conv.dilation for path in theirs.paths]
    assert_same_outputs_and_gradients(ours, theirs, torch.randn(4, channels, 10, 9), train, atol=1e-4)


def test_sk_difference_timm_defaults():
    from attention_lib import SelectiveKernel

    # Documented differences of timm's defaults (so the benchmark sets them explicitly):
    theirs, ours = timm_layers.SelectiveKernel(64, 64), SelectiveKernel(64)
    # split_input=True: each branch convolves half of the input channels (timm's own
    # modification), where the paper and ours give every branch all of them;
    assert theirs.paths[0].conv.in_channels == 32 and ours.branches[0][0].in_channels == 64
    # groups=1 (dense branches), where SKNet and ours use 32 groups;
    assert theirs.paths[0].conv.groups == 1 and ours.branches[0][0].groups == 32
    # fuse width c/16 rounded to a multiple of 8, without the paper's floor L = 32.
    assert theirs.attn.fc_reduce.out_channels == 8 and ours.width == 32
    # keep_3x3 with the default kernel sizes [3, 5]: the 5x5 branch becomes a dilated 3x3.
    assert [p.conv.kernel_size for p in theirs.paths] == [(3, 3), (3, 3)]
    assert [p.conv.dilation for p in theirs.paths] == [(1, 1), (2, 2)]
