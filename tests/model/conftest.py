"""Fixtures shared by the model tests: a tiny HRNet with non-default BatchNorm statistics and its
official-format file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.official_files import TINY_HRNET, official_hrnet_params, perturbed, write_official


@pytest.fixture(scope="module")
def tiny_hrnet():
    from napari_fcfi.model.networks import FCFIHRNet

    torch.manual_seed(0)
    return perturbed(FCFIHRNet(**TINY_HRNET))


@pytest.fixture
def official_file(tmp_path, tiny_hrnet) -> Path:
    return write_official(tmp_path / "official.pth", tiny_hrnet.state_dict(), official_hrnet_params())
