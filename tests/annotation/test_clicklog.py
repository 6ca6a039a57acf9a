"""The click log: objects as steps (clicks, edits from a mask, propagations) through CSV and back."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fcfi.annotation.clicklog import (
    ClickLog,
    ClicksStep,
    FillStep,
    ObjectRecord,
    PropagateStep,
    read_log_metadata,
)
from napari_fcfi.engine.clicks import Click


def _log() -> ClickLog:
    edit_base = np.zeros((30, 40), bool)
    edit_base[5:12, 7:20] = True
    edit_base[8, 9] = False
    return ClickLog(
        [
            ObjectRecord(3, [ClicksStep((2,), (Click(10, 12, True), Click(11, 20, False)))]),
            ObjectRecord(3, [ClicksStep((2,), (Click(6, 9, True),), initial_mask=edit_base)], edited=True),
            ObjectRecord(
                8,
                [
                    ClicksStep((4,), (Click(20, 30, True),)),
                    PropagateStep((4,), 0, "both", 5),
                    ClicksStep((6,), (Click(21, 31, False),), from_propagation=True),
                    PropagateStep((6,), 0, "up", None, fading=False),
                ],
                overwrite=True,
            ),
        ],
        metadata={"model": "default", "settings": {"threshold": 0.4}},
    )


def test_round_trip_keeps_every_step(tmp_path):
    log = _log()
    path = log.save(tmp_path / "log")
    assert path.suffix == ".csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "# napari-fcfi click log v2" and lines[2] == "object,step,z,row,col,positive"
    assert read_log_metadata(path)["settings"] == {"threshold": 0.4}
    back = ClickLog.load(path, plane_shape=(30, 40))
    assert back.axes == ("z",) and back.metadata["model"] == "default"
    assert len(back.records) == 3
    for want, got in zip(log.records, back.records):
        assert (got.label_id, got.edited, got.overwrite) == (want.label_id, want.edited, want.overwrite)
        assert len(got.steps) == len(want.steps)
        for a, b in zip(want.steps, got.steps):
            assert type(a) is type(b) and a.slice_key == b.slice_key
            if isinstance(a, ClicksStep):
                assert a.clicks == b.clicks and a.from_propagation == b.from_propagation
                assert (a.initial_mask is None) == (b.initial_mask is None)
                if a.initial_mask is not None:
                    np.testing.assert_array_equal(a.initial_mask, b.initial_mask)
            else:
                assert (a.axis, a.direction, a.max_slices) == (b.axis, b.direction, b.max_slices)
                assert a.fading == b.fading
    with pytest.raises(ValueError, match="image shape is needed"):
        ClickLog.load(path)
    # a log written before the fading rule existed has no "fading": it replays without it, as made
    old = path.read_text().replace(', "fading": true', "").replace(', "fading": false', "")
    assert '"fading"' not in old
    (tmp_path / "old.csv").write_text(old)
    steps = ClickLog.load(tmp_path / "old.csv", plane_shape=(30, 40)).records[2].steps
    assert [s.fading for s in steps if isinstance(s, PropagateStep)] == [False, False]


def test_hand_written_logs_and_errors(tmp_path):
    path = tmp_path / "hand.csv"
    path.write_text("object,t,z,row,col,positive\n1,0,2,5.4,6,1\n1,0,2,7,8,no\ncell b,1,0,3,3,true\n")
    log = ClickLog.load(path)
    assert log.axes == ("t", "z")
    assert [r.label_id for r in log.records] == [1, 2]  # names -> 1..n in order
    assert log.records[0].steps[0].slice_key == (0, 2)
    assert log.records[0].clicks == [Click(5, 6, True), Click(7, 8, False)]
    path.write_text("object,row,col,positive\n1,2,3,maybe\n")
    with pytest.raises(ValueError, match=r"hand.csv:2"):
        ClickLog.load(path)
    path.write_text("object,row,positive\n1,2,true\n")
    with pytest.raises(ValueError, match="missing column"):
        ClickLog.load(path)
    with pytest.raises(ValueError, match="direction"):
        PropagateStep((1,), 0, "sideways")


def test_a_cancelled_fill_keeps_its_slices_through_the_file(tmp_path):
    steps = [
        ClicksStep((2,), (Click(5, 5, True),)),
        ClicksStep((6,), (Click(5, 6, True),)),
        FillStep((2,), (6,), 0, None, kept=(3, 4), passes=5),
        FillStep((6,), (9,), 0, None, fused=False),
    ]
    path = ClickLog([ObjectRecord(1, steps)]).save(tmp_path / "log")
    back = ClickLog.load(path).records[0].steps
    assert [s.kept for s in back if isinstance(s, FillStep)] == [(3, 4), None]
    assert [s.passes for s in back if isinstance(s, FillStep)] == [5, None]
    assert [s.fused for s in back if isinstance(s, FillStep)] == [True, False]
    # a log written before fused fills has no "fused": its fills replay from the nearer chain, as made
    old = path.read_text().replace(', "fused": true', "").replace(', "fused": false', "")
    assert '"fused"' not in old
    path.write_text(old)
    assert [s.fused for s in ClickLog.load(path).records[0].steps if isinstance(s, FillStep)] == [
        False,
        False,
    ]


def test_each_object_replays_with_the_channel_and_model_it_was_made_with(tmp_path):
    from helpers.standins import BrightRegionSegmenter
    from napari_fcfi.annotation.geometry import make_geometry
    from napari_fcfi.annotation.replay import replay_click_log

    class ChannelBright(BrightRegionSegmenter):
        """Bright regions of the chosen channel only."""

        def _prob(self, clicks):
            if self.channel_axis is None or not isinstance(self.channel, int):
                return super()._prob(clicks)
            image, axis = self.image, self.channel_axis
            self.image, self.channel_axis = np.take(image, self.channel, axis=axis), None
            try:
                return super()._prob(clicks)
            finally:
                self.image, self.channel_axis = image, axis

    image = np.zeros((2, 64, 64), np.float32)
    image[0, 10:30, 10:30] = image[0, 40:50, 40:50] = 1
    image[1, 5:35, 5:35] = image[1, 38:58, 38:58] = 1
    log = ClickLog(
        [
            ObjectRecord(1, [ClicksStep((), (Click(20, 20, True),))], made_with={"channel": 0, "model": "a"}),
            ObjectRecord(2, [ClicksStep((), (Click(45, 45, True),))], made_with={"channel": 1, "model": "b"}),
        ],
        metadata={"model": "b", "settings": {"channel": 1}},
    )
    loaded = ClickLog.load(log.save(tmp_path / "log.csv"), plane_shape=(64, 64))
    assert [r.made_with for r in loaded.records] == [
        {"channel": 0, "model": "a"},
        {"channel": 1, "model": "b"},
    ]
    geometry = make_geometry(image.shape, channel_axis=0)
    asked = []
    labels = replay_click_log(
        None,
        image,
        geometry,
        loaded,
        channel=1,
        segmenter=ChannelBright(None),
        model_for=lambda name: asked.append(name),  # None: the log's model (here the stand-in)
    )
    assert (labels == 1).sum() == 20 * 20 and labels[20, 20] == 1  # channel 0's square, not channel 1's
    assert (labels == 2).sum() == 20 * 20 and labels[45, 45] == 2
    assert asked == ["a"]  # only the object made with another model than the log's asks for it
