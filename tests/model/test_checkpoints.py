"""Checkpoints, our safetensors format, the model registry and device selection.

Official-format checkpoints are built here from our own tiny networks: the official file layout
(``{"state_dict", "config": {"class", "params": {name: {type, value, specified}}}}``) around our
state dict, whose keys equal the official ones. Nothing here downloads anything.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.paths import SHARED_DOCS
from napari_fcfi.cli import main as fcfi_main
from napari_fcfi.model import device as device_module
from napari_fcfi.model import official, registry
from napari_fcfi.model.architectures import build_network
from napari_fcfi.model.device import DeviceError, resolve_device, resolve_dtype
from napari_fcfi.model.errors import (
    CheckpointError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
)
from napari_fcfi.model.loading import load_model
from napari_fcfi.model.registry import ModelDownloadError, ModelEntry
from napari_fcfi.model.safetensors_format import read_metadata, save_model

HRNET_CLASS = "isegm.model.is_hrnet_model.HRNetModel"
DEEPLAB_CLASS = "isegm.model.is_deeplab_model.DeeplabModel"
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
FACT_SHEETS = SHARED_DOCS / "official_checkpoints"

TINY_HRNET = dict(width=4, ocr_width=4, small=True, mid_ch=4)


def _record(value, specified=True, kind="builtin"):
    return {"type": kind, "value": value, "specified": specified}


def official_hrnet_params(**overrides) -> dict:
    """HRNetModel params as the official trainer records them (explicit args, then defaults)."""
    values = dict(
        width=4,
        ocr_width=4,
        mid_ch=4,
        with_aux_output=True,
        use_leaky_relu=True,
        update_num=1,
        expansion_ratio=0.3,
        use_rgb_conv=False,
        use_disks=True,
        norm_radius=5,
        with_prev_mask=True,
    )
    defaults = dict(
        small=True,
        num_classes=1,
        backbone_lr_mult=0.1,
        cpu_dist_maps=False,
        clicks_groups=None,
        binary_prev_mask=False,
        conv_extend=False,
        norm_mean_std=(list(IMAGENET[0]), list(IMAGENET[1])),
    )
    params = {name: _record(value) for name, value in values.items()}
    params.update({name: _record(value, specified=False) for name, value in defaults.items()})
    params["norm_layer"] = _record("torch.nn.modules.batchnorm.BatchNorm2d", False, "class")
    for name, value in overrides.items():
        if value is _DROP:
            params.pop(name)
        else:
            params[name] = value if isinstance(value, dict) and "type" in value else _record(value)
    return params


_DROP = object()


def _perturbed(net: torch.nn.Module) -> torch.nn.Module:
    """Give BatchNorm statistics non-default values so that a lost buffer would show."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
            elif name.endswith("num_batches_tracked"):
                buffer.fill_(7)
    return net.eval()


@pytest.fixture(scope="module")
def tiny_hrnet():
    from napari_fcfi.model.networks import FCFIHRNet

    torch.manual_seed(0)
    return _perturbed(FCFIHRNet(**TINY_HRNET))


def write_official(path: Path, state_dict, params=None, cls=HRNET_CLASS) -> Path:
    torch.save({"state_dict": dict(state_dict), "config": {"class": cls, "params": params}}, path)
    return path


@pytest.fixture
def official_file(tmp_path, tiny_hrnet) -> Path:
    return write_official(tmp_path / "official.pth", tiny_hrnet.state_dict(), official_hrnet_params())


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key].cpu(), sb[key].cpu()), key


def _forward(net: torch.nn.Module) -> dict:
    generator = torch.Generator().manual_seed(3)
    image = torch.rand(1, 4, 48, 64, generator=generator)
    points = torch.tensor([[[20.0, 30.0, 0.0], [-1.0, -1.0, -1.0]]])
    new_clicks = torch.tensor([[[20, 30, 1]]])
    with torch.inference_mode():
        return net(image, points, new_clicks, 0.0)


# ------------------------------------------------------------------------------------------------
# official format: happy paths


def test_official_checkpoint_loads_strictly_and_matches(official_file, tiny_hrnet):
    # NCHW weights: the loaded network must reproduce the original bit for bit
    net = load_model(official_file, device="cpu", channels_last=False)
    assert type(net).__name__ == "FCFIHRNet"
    assert not net.training
    assert all(not parameter.requires_grad for parameter in net.parameters())
    assert net.config == tiny_hrnet.config
    assert net.fcfi_metadata["official_class"] == HRNET_CLASS
    _assert_same_weights(net, tiny_hrnet)
    expected, got = _forward(tiny_hrnet), _forward(net)
    assert torch.equal(expected["instances"], got["instances"])
    # the CPU default stores weights channels_last (faster); same result up to float rounding
    fast = load_model(official_file, device="cpu")
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(_forward(fast)["instances"], expected["instances"], rtol=0, atol=1e-5)


def test_fcfi_convert_round_trip(official_file, tiny_hrnet, tmp_path, capsys):
    output = tmp_path / "converted.safetensors"
    assert fcfi_main(["convert", str(official_file), str(output), "--name", "tiny-official"]) == 0
    printed = capsys.readouterr().out
    assert "arch 'hrnet'" in printed and "round trip" in printed
    assert f"{len(tiny_hrnet.state_dict())} state-dict entries" in printed

    metadata = read_metadata(output)
    assert metadata["format"] == "napari-fcfi" and metadata["format_version"] == 1
    assert metadata["config"] == tiny_hrnet.config
    assert metadata["name"] == "tiny-official"
    assert metadata["converted_from"] == {"file": "official.pth", "class": HRNET_CLASS}
    _assert_same_weights(load_model(output, device="cpu"), tiny_hrnet)

    # An existing output is kept unless --force is given.
    before = output.read_bytes()
    assert fcfi_main(["convert", str(official_file), str(output)]) == 2
    assert "exists" in capsys.readouterr().err
    assert output.read_bytes() == before
    assert fcfi_main(["convert", str(official_file), str(output), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] == sum(
        p.numel() for p in tiny_hrnet.parameters()
    )


def test_convert_refuses_bad_input_without_writing(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(os.urandom(256))
    output = tmp_path / "out.safetensors"
    assert fcfi_main(["convert", str(bad), str(output)]) == 2
    assert "not a recognised checkpoint" in capsys.readouterr().err
    assert not output.exists()


def test_official_deeplab_round_trip(tmp_path):
    from napari_fcfi.model.deeplab import FCFIDeepLab

    torch.manual_seed(0)
    net = _perturbed(FCFIDeepLab(backbone="resnet18", deeplab_ch=8, mid_ch=4, base_width=8))
    params = {
        name: _record(value)
        for name, value in dict(
            backbone="resnet18",
            deeplab_ch=8,
            mid_ch=4,
            aspp_dropout=0.2,
            update_num=1,
            expansion_ratio=0.3,
            use_leaky_relu=True,
            use_rgb_conv=False,
            use_disks=True,
            norm_radius=5,
            with_prev_mask=True,
            backbone_norm_layer=None,
            backbone_lr_mult=0.1,
            with_aux_output=False,
            cpu_dist_maps=False,
            clicks_groups=None,
            binary_prev_mask=False,
            conv_extend=False,
            norm_mean_std=IMAGENET,
            base_width=8,  # a napari-fcfi extension our constructor takes: passed on, not refused
        ).items()
    }
    params["norm_layer"] = _record("torch.nn.modules.batchnorm.BatchNorm2d", False, "class")
    path = write_official(tmp_path / "r.pth", net.state_dict(), params, DEEPLAB_CLASS)
    loaded = load_model(path, device="cpu")
    assert type(loaded).__name__ == "FCFIDeepLab"
    assert loaded.config == net.config
    _assert_same_weights(loaded, net)


def test_list_of_checkpoints_uses_first_with_warning(tmp_path, tiny_hrnet):
    entry = {
        "state_dict": tiny_hrnet.state_dict(),
        "config": {"class": HRNET_CLASS, "params": official_hrnet_params()},
    }
    path = tmp_path / "schedule.pth"
    torch.save([entry, entry], path)
    with pytest.warns(UserWarning, match="list of 2 checkpoints"):
        net = load_model(path, device="cpu")
    _assert_same_weights(net, tiny_hrnet)


def test_module_prefix_all_or_nothing(tmp_path, tiny_hrnet):
    state = tiny_hrnet.state_dict()
    wrapped = write_official(
        tmp_path / "wrapped.pth", {f"module.{k}": v for k, v in state.items()}, official_hrnet_params()
    )
    with pytest.warns(UserWarning, match="module."):
        _assert_same_weights(load_model(wrapped, device="cpu"), tiny_hrnet)

    mixed = dict(state)
    first = next(iter(mixed))
    mixed[f"module.{first}"] = mixed.pop(first)
    path = write_official(tmp_path / "mixed.pth", mixed, official_hrnet_params())
    with pytest.raises(CheckpointError, match="some keys start with 'module.'"):
        load_model(path, device="cpu")


def test_training_only_params_are_accepted(tmp_path, tiny_hrnet):
    params = official_hrnet_params(backbone_lr_mult=0.5, cpu_dist_maps=True)
    path = write_official(tmp_path / "t.pth", tiny_hrnet.state_dict(), params)
    assert load_model(path, device="cpu").config == tiny_hrnet.config


# ------------------------------------------------------------------------------------------------
# official format: refusals


def test_random_bytes_refused(tmp_path):
    path = tmp_path / "noise.pth"
    # Seeded noise whose first byte is no pickle opcode (random bytes start with 0x80 one time in 256).
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path.write_bytes(b"\x00" + noise)
    with pytest.raises(CheckpointError, match="not a recognised checkpoint"):
        load_model(path, device="cpu")
    # Bytes that look like a pickle but are not a torch file.
    path.write_bytes(b"\x80\x02" + os.urandom(100))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(path, device="cpu")


@pytest.mark.parametrize(
    "content, message",
    [
        ([1, 2, 3], "list checkpoint must hold checkpoint dicts"),
        ("a string", "expected a dict with 'state_dict' and 'config', got str"),
        ({"weights": torch.zeros(2)}, r"missing top-level entries \['state_dict', 'config'\]"),
        ({"state_dict": {"a": torch.zeros(1)}}, r"missing top-level entry \['config'\]"),
        ({"state_dict": {}, "config": {"params": {}}}, "'config' must be a dict with 'class' and 'params'"),
        ({"state_dict": {"a": 3}, "config": {"class": HRNET_CLASS, "params": {}}}, "not tensors"),
    ],
)
def test_wrong_structure_refused(tmp_path, content, message):
    path = tmp_path / "wrong.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        load_model(path, device="cpu")


def test_plain_pickle_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"state_dict": {}, "config": {}}, protocol=2))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(path, device="cpu")


def test_unknown_class_refused(tmp_path, tiny_hrnet):
    path = write_official(
        tmp_path / "u.pth", tiny_hrnet.state_dict(), official_hrnet_params(), "isegm.model.Other"
    )
    with pytest.raises(UnsupportedCheckpointError, match="unknown model class 'isegm.model.Other'"):
        load_model(path, device="cpu")


class _RunsCodeWhenUnpickled:
    """Unpickling this calls open(marker, 'w'): proof of code execution if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_never_run(tmp_path, tiny_hrnet):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save(
        {
            "state_dict": tiny_hrnet.state_dict(),
            "config": {"class": HRNET_CLASS, "params": _RunsCodeWhenUnpickled(marker)},
        },
        path,
    )
    with pytest.raises(UnsafeCheckpointError, match="never runs code"):
        load_model(path, device="cpu")
    with pytest.raises(UnsafeCheckpointError):
        official.convert_official_checkpoint(path, tmp_path / "out.safetensors")
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize(
    "param, value",
    [
        ("use_rgb_conv", True),
        ("clicks_groups", [[1, 2]]),
        ("binary_prev_mask", True),
        ("conv_extend", True),
        ("use_disks", False),
        ("norm_layer", _record("torch.nn.modules.normalization.GroupNorm", False, "class")),
        ("num_classes", 2),
        ("some_future_option", 1),
    ],
)
def test_unsupported_option_refused_by_name(tmp_path, tiny_hrnet, param, value):
    path = write_official(
        tmp_path / "o.pth", tiny_hrnet.state_dict(), official_hrnet_params(**{param: value})
    )
    with pytest.raises(UnsupportedCheckpointError, match=param) as info:
        load_model(path, device="cpu")
    assert info.value.param == param


def test_malformed_param_record_refused(tmp_path, tiny_hrnet):
    params = official_hrnet_params(width={"type": "pickle", "value": 4})
    path = write_official(tmp_path / "m.pth", tiny_hrnet.state_dict(), params)
    with pytest.raises(CheckpointError, match="config param 'width' is not a"):
        load_model(path, device="cpu")


def test_missing_unexpected_and_mismatched_keys_listed(tmp_path, tiny_hrnet):
    state = dict(tiny_hrnet.state_dict())
    missing_key = "maps_transform.0.bias"
    del state[missing_key]
    state["feature_extractor.not_a_module.weight"] = torch.zeros(3)
    shape_key = "maps_transform.0.weight"
    state[shape_key] = torch.zeros(5, 3, 1, 1)
    path = write_official(tmp_path / "k.pth", state, official_hrnet_params())
    with pytest.raises(StateDictMismatchError) as info:
        load_model(path, device="cpu")
    error = info.value
    assert error.missing == [missing_key]
    assert error.unexpected == ["feature_extractor.not_a_module.weight"]
    assert error.mismatched == [(shape_key, (5, 3, 1, 1), tuple(tiny_hrnet.state_dict()[shape_key].shape))]
    text = str(error)
    assert "1 missing key(s)" in text and "1 unexpected key(s)" in text and "1 shape mismatch(es)" in text


def test_architecture_mismatch_counts_keys(tmp_path, tiny_hrnet):
    # The weights of a tiny net under a config describing a wider one: every conv mismatches.
    path = write_official(tmp_path / "w.pth", tiny_hrnet.state_dict(), official_hrnet_params(width=6))
    with pytest.raises(StateDictMismatchError, match=r"shape mismatch\(es\) \[.*more\)\]") as info:
        load_model(path, device="cpu")
    assert len(info.value.mismatched) > 5


# ------------------------------------------------------------------------------------------------
# our safetensors format


def test_save_model_round_trip_and_metadata(tmp_path, tiny_hrnet):
    path = save_model(
        tiny_hrnet,
        tmp_path / "sub" / "m.safetensors",
        metadata={"name": "tiny", "description": "test", "input_size": [320, 480], "training": {"epochs": 1}},
    )
    metadata = read_metadata(path)
    assert metadata["config"] == tiny_hrnet.config
    assert metadata["input_size"] == [320, 480] and metadata["training"] == {"epochs": 1}
    net = load_model(path, device="cpu")
    _assert_same_weights(net, tiny_hrnet)
    assert net.fcfi_metadata["name"] == "tiny"
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("low_byte", [0x80, 0x50])
def test_safetensors_header_length_starting_with_0x80_is_not_taken_for_a_pickle(
    tmp_path, tiny_hrnet, low_byte
):
    """The 8-byte header length is little-endian: 128 + 256 k starts with the pickle opcode byte 0x80."""
    path = tmp_path / "m.safetensors"
    for pad in range(300):
        save_model(tiny_hrnet, path, metadata={"name": "x" * pad, "adaptation": {"steps": 1}})
        if path.read_bytes()[0] == low_byte:
            break
    else:  # pragma: no cover
        pytest.fail("no padding gave the wanted header length")
    net = load_model(path, device="cpu")
    _assert_same_weights(net, tiny_hrnet)
    assert net.fcfi_metadata["adaptation"] == {"steps": 1}  # decoded JSON


def test_save_model_refuses_bad_metadata_and_keeps_existing_file(tmp_path, tiny_hrnet):
    path = save_model(tiny_hrnet, tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="'config' is written by save_model"):
        save_model(tiny_hrnet, path, metadata={"config": "{}"})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        save_model(tiny_hrnet, path, metadata={"training": {"x": object()}})
    with pytest.raises(ValueError, match="no .config dict"):
        save_model(torch.nn.Conv2d(1, 1, 1), path)
    assert path.read_bytes() == before


def test_safetensors_without_our_metadata_refused(tmp_path, tiny_hrnet):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_hrnet.state_dict().items()}
    bare = tmp_path / "bare.safetensors"
    save_file(state, bare)
    with pytest.raises(CheckpointError, match="without napari-fcfi metadata"):
        load_model(bare, device="cpu")
    foreign = tmp_path / "foreign.safetensors"
    save_file(state, foreign, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="without napari-fcfi metadata"):
        load_model(foreign, device="cpu")
    future = tmp_path / "future.safetensors"
    save_file(state, future, metadata={"format": "napari-fcfi", "format_version": "99", "config": "{}"})
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        load_model(future, device="cpu")


def test_safetensors_weights_must_match_config(tmp_path, tiny_hrnet):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_hrnet.state_dict().items()}
    del state["maps_transform.0.bias"]
    path = tmp_path / "partial.safetensors"
    metadata = {"format": "napari-fcfi", "format_version": "1", "config": json.dumps(tiny_hrnet.config)}
    save_file(state, path, metadata=metadata)
    with pytest.raises(StateDictMismatchError, match="maps_transform.0.bias"):
        load_model(path, device="cpu")


def test_dtype_conversion_on_load(tmp_path, tiny_hrnet):
    path = save_model(tiny_hrnet, tmp_path / "m.safetensors")
    net = load_model(path, device="cpu", dtype="bfloat16")
    assert {p.dtype for p in net.parameters()} == {torch.bfloat16}
    with pytest.raises(DeviceError, match="float16 is only supported on CUDA or MPS"):
        load_model(path, device="cpu", dtype="float16")


# ------------------------------------------------------------------------------------------------
# sources and registry


def test_missing_sources(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="neither a registered model name"):
        load_model(tmp_path / "nothing.safetensors", device="cpu")
    monkeypatch.setattr(registry, "BUNDLED_WEIGHTS", tmp_path / "absent" / "fcfi_default.safetensors")
    with pytest.raises(FileNotFoundError, match="bundled weights are missing"):
        load_model("default", device="cpu")


def test_default_source_is_the_bundled_file(tmp_path, monkeypatch, tiny_hrnet):
    bundled = save_model(tiny_hrnet, tmp_path / "fcfi_default.safetensors", metadata={"name": "fcfi-default"})
    monkeypatch.setattr(registry, "BUNDLED_WEIGHTS", bundled)
    net = load_model(device="cpu")
    _assert_same_weights(net, tiny_hrnet)
    assert net.fcfi_metadata["registry_name"] == "default"
    rows = {row["name"]: row for row in registry.list_models()}
    assert rows["default"]["available"] and rows["default"]["path"] == str(bundled)


def test_lazy_package_exports():
    import napari_fcfi

    assert napari_fcfi.load_model is load_model
    assert napari_fcfi.save_model is save_model
    assert napari_fcfi.list_models is registry.list_models


def test_registry_entries():
    for name in ("default", "fcfi-hrnet18s-cocolvis", "fcfi-resnet101-sbd"):
        entry = registry.get_entry(name)
        assert entry.name == name and entry.arch in ("hrnet", "deeplab")
    assert registry.get_entry("fcfi-hrnet18s-cocolvis").size_bytes == 41_490_790
    assert registry.get_entry("fcfi-resnet101-sbd").url.startswith("https://drive.google.com/")
    with pytest.raises(KeyError, match="known: default"):
        registry.get_entry("nope")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_FCFI_CACHE", str(cache))
    monkeypatch.delenv("NAPARI_FCFI_OFFLINE", raising=False)
    return cache


def test_download_failure_explains_manual_route(isolated_cache, monkeypatch):
    import pooch
    import requests

    calls = []

    def offline(**kwargs):
        calls.append(kwargs)
        raise requests.exceptions.ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(ModelDownloadError) as info:
        load_model("fcfi-hrnet18s-cocolvis", device="cpu")
    message = str(info.value)
    assert "offline" in message and "by hand" in message
    assert str(isolated_cache / "fcfi_hrnet18s_cocolvis.pth") in message
    assert calls and calls[0]["url"] == registry.get_entry("fcfi-hrnet18s-cocolvis").url
    assert Path(calls[0]["path"]) == isolated_cache


def test_offline_switch_never_calls_pooch(isolated_cache, monkeypatch):
    import pooch

    monkeypatch.setenv("NAPARI_FCFI_OFFLINE", "1")
    monkeypatch.setattr(pooch, "retrieve", lambda **kwargs: pytest.fail("download attempted"))
    with pytest.raises(ModelDownloadError, match="downloads are disabled"):
        registry.fetch("fcfi-resnet101-sbd")


def test_google_drive_html_page_is_rejected_and_removed(isolated_cache, monkeypatch):
    import pooch

    def html_page(url, known_hash, fname, path, progressbar):
        target = Path(path) / fname
        target.write_text("<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title></html>")
        return str(target)

    monkeypatch.setattr(pooch, "retrieve", html_page)
    with pytest.raises(ModelDownloadError, match="HTML page"):
        registry.fetch("fcfi-resnet101-sbd")
    assert not (isolated_cache / "fcfi_resnet101_sbd.pth").exists()


def test_registry_download_path_end_to_end(isolated_cache, monkeypatch, official_file, tiny_hrnet):
    """A registered official model goes through pooch into the cache and loads (pooch stubbed)."""
    import hashlib
    import shutil

    import pooch

    data = official_file.read_bytes()
    entry = ModelEntry(
        name="tiny-official",
        description="test",
        arch="hrnet",
        kind="official",
        filename="tiny.pth",
        url="https://example.invalid/tiny.pth",
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    downloads = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        downloads.append((url, known_hash))
        target = Path(path) / fname
        shutil.copy(official_file, target)
        return str(target)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    _assert_same_weights(load_model("tiny-official", device="cpu"), tiny_hrnet)
    _assert_same_weights(load_model("tiny-official", device="cpu"), tiny_hrnet)  # second time: cache
    assert downloads == [(entry.url, f"sha256:{entry.sha256}")]

    # A corrupted cached file is reported, not trusted.
    cached = isolated_cache / "tiny.pth"
    cached.write_bytes(b"\x00" + data[1:])
    with pytest.raises(ModelDownloadError, match="does not match the registered"):
        load_model("tiny-official", device="cpu")


def test_fcfi_models_lists_cache_status(isolated_cache, capsys):
    assert fcfi_main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["cache_dir"] == str(isolated_cache)
    names = [model["name"] for model in listing["models"]]
    assert names == ["default", "default-v2", "fcfi-hrnet18s-cocolvis", "fcfi-resnet101-sbd"]
    assert all(model["available"] for model in listing["models"][:2])  # bundled
    assert not any(model["available"] for model in listing["models"][2:])
    assert fcfi_main(["models"]) == 0
    assert "not downloaded" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# the real official configurations (fact sheets), without their weights


@pytest.mark.parametrize("sheet", ["hrnet18s_cocolvis.json", "r101_sbd.json"])
def test_official_release_configs_map_onto_our_networks(sheet):
    path = FACT_SHEETS / sheet
    if not path.is_file():
        pytest.skip("official checkpoint fact sheets not present")
    facts = json.loads(path.read_text())
    arch = official.OFFICIAL_CLASSES[facts["config"]["class"]]
    params = {name: record["value"] for name, record in facts["config"]["params"].items()}
    config = official.official_config_to_network_config(arch, params, sheet)
    with torch.device("meta"):  # shapes only: no memory for 10 M / 58 M parameters
        net = build_network(config)
    ours = [(key, list(value.shape)) for key, value in net.state_dict().items()]
    assert ours == [(entry["key"], entry["shape"]) for entry in facts["state_dict"]]


# ------------------------------------------------------------------------------------------------
# devices


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


def test_auto_device_order(monkeypatch, no_accelerators):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_explicit_devices(monkeypatch, no_accelerators):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(DeviceError, match="torch cannot use CUDA"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match="only 1 CUDA device"):
        resolve_device("cuda:1")


def test_dtype_policy(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype(torch.float32, cpu) == torch.float32
    with pytest.raises(DeviceError, match="float16 is only supported"):
        resolve_dtype("fp16", cpu)
    with pytest.raises(DeviceError, match="unknown dtype"):
        resolve_dtype("int8", cpu)
    with pytest.raises(DeviceError, match="not supported"):
        resolve_dtype(torch.float64, cpu)
    assert resolve_dtype("half", cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    with pytest.raises(DeviceError, match="does not support bfloat16"):
        resolve_dtype("bfloat16", cuda)


def test_size_check_without_sha256(isolated_cache, monkeypatch, official_file, tiny_hrnet):
    """Without a published checksum, a cached file must have about the registered size."""
    data = official_file.read_bytes()
    entry = ModelEntry(
        name="tiny-unhashed",
        description="test",
        arch="hrnet",
        kind="official",
        filename="tiny.pth",
        url="https://example.invalid/tiny.pth",
        sha256=None,
        size_bytes=len(data) + 300,
    )
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    isolated_cache.mkdir(parents=True)
    cached = isolated_cache / "tiny.pth"
    cached.write_bytes(data)  # a few hundred bytes off (e.g. saved under another name): accepted
    _assert_same_weights(load_model("tiny-unhashed", device="cpu"), tiny_hrnet)
    cached.write_bytes(data[: len(data) // 2])  # truncated download: refused
    with pytest.raises(ModelDownloadError, match="expected about"):
        load_model("tiny-unhashed", device="cpu")
