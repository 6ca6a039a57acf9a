"""The model registry (bundled, named and downloaded models), official release configs and device selection.

Official-format checkpoints are built here from our own tiny networks: the official file layout
(``{"state_dict", "config": {"class", "params": {name: {type, value, specified}}}}``) around our
state dict, whose keys equal the official ones. Nothing here downloads anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers.official_files import assert_same_weights
from helpers.paths import SHARED_DOCS
from napari_fcfi.cli import main as fcfi_main
from napari_fcfi.model import device as device_module
from napari_fcfi.model import official, registry
from napari_fcfi.model.architectures import build_network
from napari_fcfi.model.device import DeviceError, resolve_device, resolve_dtype
from napari_fcfi.model.loading import load_model
from napari_fcfi.model.registry import ModelDownloadError, ModelEntry
from napari_fcfi.model.safetensors_format import save_model

FACT_SHEETS = SHARED_DOCS / "official_checkpoints"


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
    assert_same_weights(net, tiny_hrnet)
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
    assert_same_weights(load_model("tiny-official", device="cpu"), tiny_hrnet)
    assert_same_weights(load_model("tiny-official", device="cpu"), tiny_hrnet)  # second time: cache
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
    assert_same_weights(load_model("tiny-unhashed", device="cpu"), tiny_hrnet)
    cached.write_bytes(data[: len(data) // 2])  # truncated download: refused
    with pytest.raises(ModelDownloadError, match="expected about"):
        load_model("tiny-unhashed", device="cpu")
