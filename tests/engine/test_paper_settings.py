"""Paper preset: the official evaluation's zoom-in settings per backbone and dataset.

The official ``scripts/evaluate_model.py`` reads ZoomIn's target size and expansion ratio from
``configs/val/config_<dataset>_<backbone>.yml`` (table in shared/docs/official_checkpoints/README.md,
section 3). No official code is needed here: the table is the fact sheet's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.standins import BlobNet
from napari_fcfi.engine import InteractiveSegmenter, resolve_settings
from napari_fcfi.engine.settings import PAPER_DATASETS, PAPER_ZOOM_IN, paper_backbone_of

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")

HRNET = {"arch": "hrnet", "width": 18, "ocr_width": 48, "small": False}
R101 = {"arch": "deeplab", "backbone": "resnet101"}

#: The fact sheet's table: dataset -> (HRNet-18s target / expansion, ResNet-101 target / expansion).
FACT_SHEET = {
    "grabcut": ((700, 3.0), (600, 3.2)),
    "berkeley": ((720, 2.8), (720, 2.5)),
    "davis": ((720, 3.5), (640, 3.0)),
    "sbd": ((480, 2.3), (480, 2.3)),
}


def _net(config: dict | None) -> BlobNet:
    net = BlobNet().eval()
    if config is not None:
        net.config = dict(config)
    return net


def test_table_is_the_fact_sheets():
    assert set(PAPER_DATASETS) == set(FACT_SHEET)
    for dataset, (h18s, r101) in FACT_SHEET.items():
        assert PAPER_ZOOM_IN["h18s"][dataset] == h18s
        assert PAPER_ZOOM_IN["r101"][dataset] == r101


@pytest.mark.parametrize("dataset", sorted(FACT_SHEET))
@pytest.mark.parametrize(("config", "column"), [(HRNET, 0), (R101, 1)])
def test_paper_preset_picks_official_zoom_in_per_backbone_and_dataset(config, column, dataset):
    settings = resolve_settings(_net(config), preset="paper", paper_dataset=dataset)
    assert (settings.input_size, settings.expansion_ratio) == FACT_SHEET[dataset][column]
    assert settings.paper_dataset == dataset
    assert settings.paper_backbone == ("h18s", "r101")[column]
    # The rest of the protocol is the same for every model and dataset.
    assert (settings.min_window, settings.flip, settings.zoom_in, settings.threshold) == (
        200,
        True,
        True,
        0.49,
    )


def test_grabcut_is_the_default_dataset_and_names_are_case_insensitive():
    assert resolve_settings(_net(R101), preset="paper").paper_dataset == "grabcut"
    assert resolve_settings(_net(R101), preset="paper").input_size == 600
    settings = resolve_settings(_net(R101), preset="paper", paper_dataset="DAVIS")
    assert (settings.paper_dataset, settings.input_size, settings.expansion_ratio) == ("davis", 640, 3.0)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"arch": "deeplab", "backbone": "resnet50"}, "r101"),  # any ResNet depth: the DeepLab configs
        ({"arch": "mobile", "backbone": "mobilenet_v3_large"}, "h18s"),  # not in the table: fallback
        (None, "h18s"),  # no config at all (e.g. a wrapper): fallback
        ("not a mapping", "h18s"),
    ],
)
def test_architectures_outside_the_table_fall_back(config, expected):
    net = BlobNet().eval()
    if config is not None:
        net.config = config
    assert paper_backbone_of(net) == expected
    assert resolve_settings(net, preset="paper").paper_backbone == expected
    assert paper_backbone_of(None) == "h18s"


def test_real_networks_are_recognised():
    from napari_fcfi.model.deeplab import FCFIDeepLab
    from napari_fcfi.model.networks import FCFIHRNet

    torch.manual_seed(0)
    hrnet = FCFIHRNet(width=4, ocr_width=4, small=True, mid_ch=4).eval()
    deeplab = FCFIDeepLab(backbone="resnet18", base_width=16, deeplab_ch=32, mid_ch=8).eval()
    assert InteractiveSegmenter(hrnet, preset="paper").settings.input_size == 700
    settings = InteractiveSegmenter(deeplab, preset="paper").settings
    assert (settings.paper_backbone, settings.input_size, settings.expansion_ratio) == ("r101", 600, 3.2)


def test_explicit_overrides_win():
    net = _net(R101)
    settings = resolve_settings(
        net, preset="paper", paper_dataset="davis", input_size=512, expansion_ratio=2.0
    )
    assert (settings.input_size, settings.expansion_ratio, settings.paper_dataset) == (512, 2.0, "davis")
    assert resolve_settings(net, preset="paper", target_size=650).input_size == 650  # alias
    assert resolve_settings(net, preset="paper", expansion_ratio=2.5).input_size == 600  # only one overridden
    forced = resolve_settings(net, preset="paper", paper_backbone="h18s", paper_dataset="berkeley")
    assert (forced.paper_backbone, forced.input_size, forced.expansion_ratio) == ("h18s", 720, 2.8)
    # paper_backbone=None means "from the model", also when passed explicitly (as in a replayed state).
    assert resolve_settings(net, preset="paper", paper_backbone=None).paper_backbone == "r101"


@pytest.mark.parametrize("dataset", ["pascalvoc", "coco", "", None, 3])
def test_unknown_dataset_is_refused(dataset):
    with pytest.raises(
        ValueError, match=r"paper_dataset must be one of \('grabcut', 'berkeley', 'davis', 'sbd'\)"
    ):
        InteractiveSegmenter(_net(HRNET), preset="paper", paper_dataset=dataset)


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="paper_backbone must be None or one of"):
        resolve_settings(_net(HRNET), preset="paper", paper_backbone="resnet101")


def test_microscopy_preset_is_unchanged():
    settings = resolve_settings(_net(R101))
    assert (settings.input_size, settings.expansion_ratio, settings.paper_backbone) == (256, 2.0, None)


def test_chosen_size_reaches_the_zoom_in_and_survives_replay():
    """Click 2 of a ResNet-101 model runs on a crop whose long side is the official 600 (SBD: 480)."""
    image = np.zeros((300, 400, 3), np.uint8)
    image[100:160, 150:230] = 200
    for dataset, long_side in (("grabcut", 600), ("sbd", 480)):
        net = _net(R101)
        seg = InteractiveSegmenter(net, preset="paper", flip=False, paper_dataset=dataset)
        seg.set_image(image)
        seg.add_click(130, 190, True)
        seg.add_click(120, 170, True)
        assert net.calls[0]["shape"][-2:] == (300, 400)  # click 1: whole image, native size
        assert max(net.calls[-1]["shape"][-2:]) == long_side
        state = seg.state()
        assert state["settings"]["paper_dataset"] == dataset and state["settings"]["paper_backbone"] == "r101"
        again = InteractiveSegmenter.replay(_net(R101), image, state)
        assert again.settings == seg.settings
        np.testing.assert_array_equal(again.probability, seg.probability)
