"""Fixtures shared by the engine tests: a stand-in network and a tiny real FCFI network."""

from __future__ import annotations

import pytest
import torch

from helpers.standins import BlobNet


@pytest.fixture
def blob_net():
    return BlobNet().eval()


@pytest.fixture(scope="module")
def tiny_fcfi():
    from napari_fcfi.model import networks

    torch.manual_seed(0)
    return networks.FCFIHRNet(width=8, ocr_width=16, small=True, mid_ch=16).eval()
