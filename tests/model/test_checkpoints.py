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

from helpers.official_files import (
    DEEPLAB_CLASS,
    HRNET_CLASS,
    IMAGENET,
    assert_same_weights,
    official_hrnet_params,
    perturbed,
    record,
    write_official,
)
from helpers.paths import SHARED_DOCS
from napari_fcfi.cli import main as fcfi_main
from napari_fcfi.model import official
from napari_fcfi.model.device import DeviceError
from napari_fcfi.model.errors import (
    CheckpointError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
)
from napari_fcfi.model.loading import load_model
from napari_fcfi.model.safetensors_format import read_metadata, save_model

FACT_SHEETS = SHARED_DOCS / "official_checkpoints"


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
    assert_same_weights(net, tiny_hrnet)
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
    assert_same_weights(load_model(output, device="cpu"), tiny_hrnet)

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
    net = perturbed(FCFIDeepLab(backbone="resnet18", deeplab_ch=8, mid_ch=4, base_width=8))
    params = {
        name: record(value)
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
    params["norm_layer"] = record("torch.nn.modules.batchnorm.BatchNorm2d", False, "class")
    path = write_official(tmp_path / "r.pth", net.state_dict(), params, DEEPLAB_CLASS)
    loaded = load_model(path, device="cpu")
    assert type(loaded).__name__ == "FCFIDeepLab"
    assert loaded.config == net.config
    assert_same_weights(loaded, net)


def test_list_of_checkpoints_uses_first_with_warning(tmp_path, tiny_hrnet):
    entry = {
        "state_dict": tiny_hrnet.state_dict(),
        "config": {"class": HRNET_CLASS, "params": official_hrnet_params()},
    }
    path = tmp_path / "schedule.pth"
    torch.save([entry, entry], path)
    with pytest.warns(UserWarning, match="list of 2 checkpoints"):
        net = load_model(path, device="cpu")
    assert_same_weights(net, tiny_hrnet)


def test_module_prefix_all_or_nothing(tmp_path, tiny_hrnet):
    state = tiny_hrnet.state_dict()
    wrapped = write_official(
        tmp_path / "wrapped.pth", {f"module.{k}": v for k, v in state.items()}, official_hrnet_params()
    )
    with pytest.warns(UserWarning, match="module."):
        assert_same_weights(load_model(wrapped, device="cpu"), tiny_hrnet)

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
        ("norm_layer", record("torch.nn.modules.normalization.GroupNorm", False, "class")),
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
    assert_same_weights(net, tiny_hrnet)
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
    assert_same_weights(net, tiny_hrnet)
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
