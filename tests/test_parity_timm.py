"""Same weights, same outputs: our modules against timm's equivalents.

Each test copies the parameters of one implementation into the other and requires
identical outputs (to float tolerance). Where the two differ on purpose, the test
says how.
"""

import pytest
import torch

timm_layers = pytest.importorskip("timm.layers")


def copy_parameters(target, pairs):
    """Copy parameters: pairs of (target attribute path, source tensor)."""
    with torch.no_grad():
        for path, source in pairs:
            tensor = target.get_parameter(path)
            assert tensor.shape == source.shape, f"{path}: {tuple(tensor.shape)} vs {tuple(source.shape)}"
            tensor.copy_(source)


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
