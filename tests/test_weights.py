"""Published weights in our models (attention_lib.weights), proven offline.

Every supported name: the published architecture is built with RANDOM weights (no
download), its state dict is mapped onto our model, and both must give the same logits.
Nothing here touches the network: the download paths are tested with the fetch
functions monkeypatched to fail, and sockets are disabled in those tests.
"""

import copy
import functools
import itertools
import socket
import time
import urllib.error

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")

import torchvision  # noqa: E402

from attention_lib import weights as P  # noqa: E402
from attention_lib.models import ARCHS, ATTENTIONS, create_model  # noqa: E402
from attention_lib.recorder import attention_modules  # noqa: E402
from attention_lib.provenance import is_result, weights_label  # noqa: E402
from attention_lib.weights import download as D  # noqa: E402
from attention_lib.weights import load as L  # noqa: E402
from attention_lib.weights import registry as R  # noqa: E402


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine parameters (timm zero-inits the last BN of each block, which would
    switch the attention off) and running statistics calibrated on a random batch, so
    every weight, attention included, shapes the logits."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5, generator=generator)
            norm.bias.normal_(0.0, 0.1, generator=generator)
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the calibration batch
        model.train()
        model(torch.randn(4, 3, 64, 64, generator=generator))
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


@functools.lru_cache(maxsize=None)
def published(name: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize_(P.published_model(name))


@functools.lru_cache(maxsize=None)
def mapped_pair(name: str):
    """(published model, our model with its weights, input, published logits, our logits)."""
    theirs = published(name)
    ours = P.load_published_state_dict(P.build_model(name), name, theirs.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    return theirs, ours, x, expected, actual


def assert_same_logits(expected: torch.Tensor, actual: torch.Tensor) -> None:
    scale = max(expected.abs().max().item(), 1.0)
    error = (expected - actual).abs().max().item()
    assert error <= 1e-4 * scale, f"logits differ by {error:.3g} (scale {scale:.3g})"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails (the tests must never download)."""
    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in the tests")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ----------------------------------------------------------------------------- the mappings

@pytest.mark.parametrize("name", list(P.PRETRAINED))
def test_mapping_gives_the_published_logits(name):
    _, ours, _, expected, actual = mapped_pair(name)
    entry = P.PRETRAINED[name]
    assert expected.shape == actual.shape == (2, 1000)
    assert expected.std() > 0.1  # a real signal, not a constant
    assert_same_logits(expected, actual)
    if entry.attention is not None:  # our own modules carry the weights
        assert attention_modules(ours)


@pytest.mark.parametrize("name", ["seresnet50", "legacy_seresnet101", "ecaresnet50d", "skresnet18",
                                  "skresnext50_32x4d"])
def test_attention_weights_shape_the_logits(name):
    """Perturbing only our attention modules' parameters changes the logits: the mapped
    attention weights are on the path, not bypassed."""
    _, ours, x, expected, _ = mapped_pair(name)
    model = copy.deepcopy(ours)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, module in attention_modules(model):
            for parameter in module.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
        changed = model(x)
    assert (changed - expected).abs().max() > 1e-2 * expected.abs().max()


def test_split_input_sk_is_embedded_with_zero_blocks():
    _, ours, _, _, _ = mapped_pair("skresnet18")
    sk = ours.layer2[0].conv1
    first, second = (branch[0].weight for branch in sk.branches)
    half = sk.in_channels // 2
    assert first.shape == second.shape == (128, 64, 3, 3)
    assert torch.all(first[:, half:] == 0) and torch.all(second[:, :half] == 0)
    assert first[:, :half].abs().sum() > 0 and second[:, half:].abs().sum() > 0


def test_backbone_variant_is_needed_for_legacy_senet():
    """Caffe's stem pool and stride placement rename nothing: the weights load into the
    plain create_model('resnet50', 'se') too, but that computes another function."""
    theirs, _, x, expected, _ = mapped_pair("legacy_seresnet50")
    plain = create_model("resnet50", "se")
    plain.load_state_dict(P.map_state_dict("legacy_seresnet50", theirs.state_dict()))
    with torch.no_grad():
        other = plain.eval()(x)
    assert (other - expected).abs().max() > 1e-2 * expected.abs().max()


@pytest.mark.parametrize("name", [n for n, e in P.PRETRAINED.items() if e.fidelity == "exact" and e.source == "timm"])
def test_exact_entries_are_create_model_unchanged(name):
    entry = P.PRETRAINED[name]
    _, ours, _, _, _ = mapped_pair(name)
    assert str(ours) == str(create_model(entry.arch, entry.attention, **entry.kwargs))


# ----------------------------------------------------------------------------- errors naming keys

def test_plain_stem_eca_resnet_rejects_resnet_d_weights_naming_the_keys():
    theirs = published("ecaresnet50d")
    with pytest.raises(P.WeightMappingError) as info:
        P.load_published_state_dict(create_model("resnet50", "eca"), "ecaresnet50d", theirs.state_dict())
    message = str(info.value)
    assert "'conv1.weight'" in message  # ours, missing
    assert "'conv1.0.weight'" in message  # published, unexpected
    assert "conv1.weight" in info.value.missing
    assert ("conv1.0.weight", "conv1.0.weight") in info.value.unexpected


def test_shape_mismatch_names_the_key_and_both_shapes():
    state = dict(published("seresnet50").state_dict())
    state["layer1.0.se.fc1.weight"] = torch.zeros(8, 256, 1, 1)
    with pytest.raises(P.WeightMappingError, match=r"'layer1\.0\.bn3\.attention\.reduce\.weight': "
                                                   r"published \(8, 256, 1, 1\) vs ours \(16, 256, 1, 1\)"):
        P.load_published_state_dict(P.build_model("seresnet50"), "seresnet50", state)


def test_unexpected_and_missing_keys_are_named():
    state = dict(published("seresnet50").state_dict())
    state["layer1.0.se.fc3.weight"] = torch.zeros(1)
    del state["fc.bias"]
    with pytest.raises(P.WeightMappingError) as info:
        P.load_published_state_dict(P.build_model("seresnet50"), "seresnet50", state)
    message = str(info.value)
    assert "'layer1.0.se.fc3.weight'" in message and "'fc.bias'" in message
    assert info.value.missing == ["fc.bias"]


def test_a_failed_mapping_leaves_the_model_untouched():
    model = P.build_model("resnet18")
    before = copy.deepcopy(model.state_dict())
    state = dict(published("resnet18").state_dict())
    state["fc.weight"] = torch.zeros(10, 512)
    with pytest.raises(P.WeightMappingError, match="'fc.weight'"):
        P.load_published_state_dict(model, "resnet18", state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- downloads (never real)

@pytest.fixture
def host_seems_up(monkeypatch):
    """Pretend the download host answers, so that the download functions themselves run
    (and fail, or are stubbed); no weights are cached in the tests."""
    monkeypatch.setattr(D, "host_reachable", lambda host, timeout=5.0: True)
    monkeypatch.setattr(D, "_cached_file", lambda entry, tag: None)


def test_unreachable_host_fails_fast_with_a_clear_error(monkeypatch, no_network):
    monkeypatch.setattr(D, "_cached_file", lambda entry, tag: None)
    called = []
    monkeypatch.setattr(D, "_fetch_timm", lambda *args, **kwargs: called.append(args))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"'seresnet50\.a1_in1k' \(timm\) could not be downloaded from "
                                           r"huggingface\.co \(through timm\): cannot connect to huggingface\.co"):
        P.fetch_published_state_dict("seresnet50")
    assert time.perf_counter() - started < 1.0 and not called


def test_cached_weights_are_read_without_the_network(monkeypatch, no_network, tmp_path):
    """A cached copy is handed to timm as a local file; no connection is attempted."""
    monkeypatch.setattr(D, "_cached_file", lambda entry, tag: str(tmp_path / "model.safetensors"))
    seen = {}

    def fetch(model_name, file=None):
        seen.update(name=model_name, file=file)
        return {"x": torch.zeros(1)}
    monkeypatch.setattr(D, "_fetch_timm", fetch)
    assert P.fetch_published_state_dict("seresnet50")["x"].shape == (1,)
    assert seen == {"name": "seresnet50.a1_in1k", "file": str(tmp_path / "model.safetensors")}


def test_torchvision_cache_path_is_torch_hubs(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    entry = P.PRETRAINED["resnet18"]
    assert D._cached_file(entry, "IMAGENET1K_V1") is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"")
    assert D._cached_file(entry, "IMAGENET1K_V1") == str(tmp_path / "checkpoints" / "resnet18-f37072fd.pth")


def test_offline_timm_fetch_raises_a_clear_error(monkeypatch, no_network, host_seems_up):
    def offline(model_name, file=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(D, "_fetch_timm", offline)
    with pytest.raises(RuntimeError, match=r"'seresnet50\.ra2_in1k'.*could not be downloaded") as info:
        P.pretrained_model("seresnet50.ra2_in1k")
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert "build_model('seresnet50')" in str(info.value)


def test_offline_timm_create_model_error_is_caught(monkeypatch, no_network, host_seems_up):
    """The real _fetch_timm, with timm.create_model failing as huggingface_hub does offline
    (its LocalEntryNotFoundError is an OSError)."""
    real = timm.create_model

    def create_model_offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("cannot find the requested files in the local cache")
        return real(name, pretrained=False, **kwargs)
    monkeypatch.setattr(timm, "create_model", create_model_offline)
    with pytest.raises(RuntimeError, match=r"'skresnet18\.ra_in1k' \(timm\) could not be downloaded"):
        P.fetch_published_state_dict("skresnet18")


def test_offline_torchvision_fetch_raises_a_clear_error(monkeypatch, no_network, host_seems_up):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"'resnet18\.IMAGENET1K_V1' \(torchvision\) could not be downloaded"):
        P.pretrained_model("resnet18")


def test_pretrained_model_end_to_end_with_a_stubbed_download(monkeypatch, no_network, host_seems_up):
    theirs = published("seresnet50")
    monkeypatch.setattr(D, "_fetch_timm", lambda model_name, file=None: theirs.state_dict())
    model = P.pretrained_model("seresnet50")
    assert not model.training
    assert model.pretrained_cfg["name"] == "seresnet50.a1_in1k"
    assert model.pretrained_cfg["fidelity"] == "exact"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert_same_logits(theirs(x), model(x))


# ----------------------------------------------------------------------------- names, tags, table

def test_unknown_unsupported_and_mistagged_names():
    with pytest.raises(ValueError, match="supported names: .*seresnet50"):
        P.build_model("cbamresnet50")
    with pytest.raises(ValueError, match="ReLU"):
        P.pretrained_model("legacy_seresnet18")
    with pytest.raises(ValueError, match="hard-sigmoid"):
        P.pretrained_model("mobilenet_v3_large")
    with pytest.raises(ValueError, match="no weights tagged 'in21k'"):
        P.pretrained_model("seresnet50.in21k")


def test_tags_match_the_published_metadata():
    for name, entry in P.PRETRAINED.items():
        if entry.source == "timm":
            published_tags = {n.split(".", 1)[1] for n in timm.list_pretrained(f"{name}.*")
                              if n.split(".", 1)[0] == name}
            assert set(entry.tags) == published_tags, name
            assert entry.tags[0] == timm.models.get_pretrained_cfg(name).tag, name
        else:
            enum = getattr(torchvision.models, R._TV_WEIGHTS[name][0])
            assert entry.tags[0] == enum.DEFAULT.name and all(tag in enum.__members__ for tag in entry.tags)


def test_untrained_claims_hold():
    for name, reason in P.NOT_SUPPORTED.items():
        if "untrained" in reason:
            assert name in timm.list_models(name) and not timm.list_pretrained(name), name


def test_data_config_needs_no_download():
    timm_cfg = P.data_config("ecaresnet50t")
    assert timm_cfg["input_size"] == (3, 256, 256) and len(timm_cfg["mean"]) == 3
    tv_cfg = P.data_config("resnet50")
    assert tv_cfg["name"] == "resnet50.IMAGENET1K_V2" and tv_cfg["input_size"] == (3, 224, 224)


def test_availability_covers_every_arch_and_attention():
    table = P.availability()
    assert set(table) == set(itertools.product(ARCHS, ATTENTIONS))
    for (arch, attention), row in table.items():
        assert row["reason"].strip(), (arch, attention)
        assert row["status"] in {"exact", "backbone variant", "embedded", "none", "undefined"}
        assert (row["status"] in {"none", "undefined"}) == (not row["names"])
        for name in row["names"]:
            assert (P.PRETRAINED[name].arch, P.PRETRAINED[name].attention) == (arch, attention)
    for name, entry in P.PRETRAINED.items():
        assert name in table[(entry.arch, entry.attention)]["names"]
    table[("resnet50", "se")]["status"] = "changed"
    assert P.AVAILABILITY[("resnet50", "se")]["status"] == "exact"  # a copy
    assert len(P.availability_markdown().splitlines()) == 2 + len(ARCHS) * len(ATTENTIONS)


# ----------------------------------------------------------------------------- bad input, old names

def test_defect9_a_non_mapping_or_non_tensor_state_dict_is_named():
    """The loader raised AttributeError for these; now it says what it expected."""
    model = P.build_model("resnet18")
    with pytest.raises(TypeError, match=r"state_dict must be a mapping of parameter names to tensors.*got list"):
        P.load_published_state_dict(model, "resnet18", [("conv1.weight", torch.zeros(1))])
    state = dict(model.state_dict())
    state["fc.bias"] = [0.0] * 1000
    with pytest.raises(TypeError, match=r"state_dict\['fc.bias'\] must be a torch.Tensor .*got list"):
        P.load_published_state_dict(model, "resnet18", state)


def test_the_old_module_name_warns_and_still_works():
    import importlib
    import sys

    sys.modules.pop("attention_lib.pretrained", None)
    with pytest.warns(DeprecationWarning, match="attention_lib.pretrained is deprecated.*use attention_lib.weights"):
        old = importlib.import_module("attention_lib.pretrained")
    assert old.pretrained_model is P.pretrained_model and old.PRETRAINED is P.PRETRAINED


def test_importing_attention_lib_does_not_load_the_weights_registry():
    """`import attention_lib` stays light: torchvision and the registry load on first use."""
    import subprocess
    import sys

    code = ("import sys, attention_lib; heavy = [m for m in ('torchvision', 'attention_lib.weights', "
            "'attention_lib.models') if m in sys.modules]; print(heavy); attention_lib.create_model; "
            "print('attention_lib.models' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True"


# ----------------------------------------------------------------------------- load_trained, for the chapters

def test_random_weights_are_labelled_and_never_a_result(random_seresnet50, capsys):
    model = P.load_trained("skresnet18", weights="random")
    assert "RANDOM WEIGHTS" in capsys.readouterr().out
    assert not model.training and not is_result(model)
    assert "RANDOM WEIGHTS" in weights_label(model) and "not a result" in weights_label(model)
    assert random_seresnet50.pretrained_cfg["name"] == "seresnet50.a1_in1k"

def test_off_and_bad_modes(capsys):
    assert P.load_trained("seresnet50", weights="off") is None
    assert "shows nothing" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"weights must be one of \('auto', 'off', 'random'\), got 'yes'"):
        P.load_trained("seresnet50", weights="yes")

def test_unavailable_weights_give_none_and_say_why(monkeypatch, capsys):
    def offline(name):
        raise RuntimeError(f"the pretrained weights of {name!r} could not be downloaded: cannot connect")
    monkeypatch.setattr(L, "fetch_published_state_dict", offline)
    assert P.load_trained("ecaresnet50d") is None
    out = capsys.readouterr().out
    assert "not available here, so this section shows nothing" in out and "'ecaresnet50d.miil_in1k'" in out

def test_downloaded_weights_are_a_result(monkeypatch, capsys):
    theirs = P.published_model("seresnet50")
    monkeypatch.setattr(L, "fetch_published_state_dict", lambda name: theirs.state_dict())
    model = P.load_trained("seresnet50")
    assert is_result(model) and weights_label(model) == "seresnet50.a1_in1k (timm, ImageNet-1k weights)"
    assert "Loaded seresnet50.a1_in1k" in capsys.readouterr().out
    assert not is_result(create_model("resnet18", "se"))  # no pretrained_cfg at all
    assert "not a result" in weights_label(create_model("resnet18", "se"))

def test_download_messages_go_to_stdout(monkeypatch, capsys):
    """What a download prints or logs must not reach stderr (a warning in the book build)."""
    import logging
    import sys
    import warnings

    def noisy_fetch(name):
        logging.getLogger("huggingface_hub").warning("Xet storage is enabled but hf_xet is missing")
        warnings.warn("a download warning")
        print("100%|##########| 97.8M/97.8M", file=sys.stderr)
        return P.published_model("seresnet50").state_dict()
    monkeypatch.setattr(L, "fetch_published_state_dict", noisy_fetch)
    handlers = logging.getLogger("huggingface_hub").handlers[:]
    assert P.load_trained("seresnet50") is not None
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "Xet storage" in captured.out and "a download warning" in captured.out and "97.8M" in captured.out
    assert logging.getLogger("huggingface_hub").handlers == handlers  # restored
