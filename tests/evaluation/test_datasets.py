"""Dataset readers, deterministic object sampling and the train/validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.io
import tifffile

from napari_fcfi.evaluation.datasets import (
    BerkeleyDataset,
    CocoMValDataset,
    DavisDataset,
    GrabCutDataset,
    InstanceFolderDataset,
    SBDDataset,
    detect_dataset_type,
    open_dataset,
)
from napari_fcfi.evaluation.samples import sample_object_labels
from napari_fcfi.evaluation.splits import split_ids, split_instance_folder
from napari_fcfi.evaluation.tiff_stack import TiffStackDataset


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    skimage.io.imsave(path, array, check_contrast=False)


def _rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _grabcut_mask(h=24, w=32):
    mask = np.zeros((h, w), np.uint8)
    mask[4:16, 6:20] = 128
    mask[6:14, 8:18] = 255
    return mask


def _labels(h=24, w=32):
    labels = np.zeros((h, w), np.uint16)
    labels[2:8, 2:8] = 1  # 36 px
    labels[10:20, 10:20] = 2  # 100 px
    labels[20:22, 25:27] = 5  # 4 px
    labels[2:12, 22:30] = 7  # 80 px
    return labels


def make_instance_folder(root: Path, n: int = 5) -> Path:
    for i in range(n):
        _save(root / f"img{i:02d}_image.png", _rgb(seed=i)[..., 0])
        _save(root / f"img{i:02d}_labels.png", _labels())
    return root


# ----------------------------------------------------------------------------------------- split
def test_split_is_deterministic_disjoint_and_complete(tmp_path):
    folder = make_instance_folder(tmp_path / "inst", n=20)
    train, val = split_instance_folder(folder, val_fraction=0.15, seed=0)
    assert (train, val) == split_instance_folder(folder, val_fraction=0.15, seed=0)
    assert len(val) == 3 and len(train) == 17
    assert set(train).isdisjoint(val)
    assert sorted(train + val) == [f"img{i:02d}" for i in range(20)]
    assert train == sorted(train) and val == sorted(val)


def test_split_depends_on_ids_not_order_and_changes_with_seed():
    ids = [f"id{i}" for i in range(50)]
    a = split_ids(ids, 0.2, seed=0)
    b = split_ids(list(reversed(ids)), 0.2, seed=0)
    assert a == b
    assert split_ids(ids, 0.2, seed=1)[1] != a[1]
    # Growing the fraction only adds validation ids.
    assert set(split_ids(ids, 0.1, seed=0)[1]) <= set(a[1])


def test_split_known_values_are_stable():
    # Frozen expectation: the split must never change silently (training runs rely on it).
    _train, val = split_ids([f"x{i}" for i in range(10)], 0.3, seed=0)
    assert val == split_ids([f"x{i}" for i in range(10)], 0.3, seed=0)[1]
    assert len(val) == 3
    assert val == ["x1", "x3", "x5"]


def test_split_small_folders_and_bad_fraction():
    assert split_ids(["a", "b"], 0.01)[1] != []
    assert split_ids(["a", "b"], 0.99)[0] != []
    assert split_ids(["a"], 0.5) in ((["a"], []), ([], ["a"]))
    with pytest.raises(ValueError, match="val_fraction"):
        split_ids(["a", "b"], 1.5)


def test_split_on_shared_dsb(dsb_dir):
    train, val = split_instance_folder(dsb_dir)
    assert len(train) + len(val) == 596
    assert len(val) == round(0.15 * 596)


# ------------------------------------------------------------------------------------- sampling
def test_object_sampling_min_area_max_k_deterministic():
    labels = _labels()
    assert sample_object_labels(labels, key="a") == [1, 2, 5, 7]
    assert sample_object_labels(labels, key="a", min_area=10) == [1, 2, 7]
    chosen = sample_object_labels(labels, key="a", min_area=10, max_objects=2, seed=3)
    assert len(chosen) == 2 and set(chosen) <= {1, 2, 7}
    assert chosen == sample_object_labels(labels, key="a", min_area=10, max_objects=2, seed=3)
    # Different keys/seeds draw independently: over many keys every label gets picked.
    picked = set()
    for k in range(20):
        picked.update(sample_object_labels(labels, key=f"k{k}", min_area=10, max_objects=1))
    assert picked == {1, 2, 7}


# ---------------------------------------------------------------------------------------- readers
def test_grabcut_flat_and_ritm_layouts(tmp_path):
    flat = tmp_path / "flat"
    _save(flat / "cat_image.png", _rgb())
    _save(flat / "cat_gt.png", _grabcut_mask())
    ritm = tmp_path / "GrabCut"
    _save(ritm / "data_GT" / "cat.png", _rgb())
    _save(ritm / "boundary_GT" / "cat.png", _grabcut_mask())
    for folder in (flat, ritm):
        assert detect_dataset_type(folder) == "grabcut"
        samples = list(GrabCutDataset(folder))
        assert len(samples) == 1
        s = samples[0]
        assert s.sample_id == "cat" and s.image.shape == (24, 32, 3)
        assert s.gt_mask.dtype == bool and s.gt_mask.sum() == 8 * 10
        assert s.ignore_mask.sum() == 12 * 14 - 8 * 10
        assert not (s.gt_mask & s.ignore_mask).any()


def test_grabcut_missing_mask_is_a_clear_error(tmp_path):
    _save(tmp_path / "dog_image.png", _rgb())
    with pytest.raises(ValueError, match="dog"):
        GrabCutDataset(tmp_path)


def test_berkeley_layouts(tmp_path):
    for sub_images, sub_masks in (("images", "masks"), ("images-f-BRS/test", "masks-f-BRS/test")):
        root = tmp_path / sub_images.replace("/", "_")
        _save(root / sub_images / "12003.jpg", _rgb())
        mask = np.zeros((24, 32), np.uint8)
        mask[3:9, 3:9] = 255
        _save(root / sub_masks / "12003.png", mask)
        assert detect_dataset_type(root) == "berkeley"
        (s,) = list(BerkeleyDataset(root))
        assert s.sample_id == "12003" and s.gt_mask.sum() == 36 and s.ignore_mask is None


def test_davis_and_coco_mval(tmp_path):
    for name, cls in (("DAVIS", DavisDataset), ("COCO_MVal", CocoMValDataset)):
        root = tmp_path / name
        _save(root / "img" / "a.jpg", _rgb())
        gt = np.zeros((24, 32, 3), np.uint8)
        gt[5:10, 5:10, 1] = 200  # object in the green channel only
        _save(root / "gt" / "a.png", gt)
        assert detect_dataset_type(root) == ("coco_mval" if "COCO" in name else "davis")
        (s,) = list(cls(root))
        assert s.gt_mask.sum() == 25 and s.image.shape == (24, 32, 3)


def test_sbd_mat_instances(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "SBD" / "dataset"
    _save(root / "img" / "2008_000001.jpg", _rgb())
    (root / "inst").mkdir(parents=True)
    labels = _labels().astype(np.uint8)
    gt_inst = {"Segmentation": labels, "Boundaries": np.zeros((4, 1), object), "Categories": np.ones((4, 1))}
    savemat(root / "inst" / "2008_000001.mat", {"GTinst": gt_inst})
    (root / "val.txt").write_text("2008_000001\n")
    assert detect_dataset_type(root) == "sbd"
    samples = list(SBDDataset(root))
    assert [s.sample_id for s in samples] == [
        "2008_000001#1",
        "2008_000001#2",
        "2008_000001#5",
        "2008_000001#7",
    ]
    assert samples[1].gt_mask.sum() == 100
    assert len(list(SBDDataset(root, max_objects=2))) == 2


def test_instance_folder_reader_and_split(tmp_path):
    folder = make_instance_folder(tmp_path / "nuclei", n=6)
    assert detect_dataset_type(folder) == "instance-folder"
    ds = InstanceFolderDataset(folder, min_area=10, max_objects=2, seed=0)
    assert len(ds) == 6
    samples = list(ds)
    assert len(samples) == 12
    assert all(s.gt_mask.sum() >= 10 for s in samples)
    assert samples[0].sample_id.startswith("img00#")
    val_ds = open_dataset(folder, "auto", split="val", val_fraction=0.34)
    assert val_ds.entry_ids == split_instance_folder(folder, 0.34)[1]
    assert len(open_dataset(folder, split="train", val_fraction=0.34)) == 4
    assert len(ds.limit(2)) == 2 and len(list(ds.limit(2))) == 4


def test_split_rejected_for_benchmarks(tmp_path):
    _save(tmp_path / "cat_image.png", _rgb())
    _save(tmp_path / "cat_gt.png", _grabcut_mask())
    with pytest.raises(ValueError, match="instance folders only"):
        open_dataset(tmp_path, split="val")


def test_tiff_stack_objects_per_slice(tmp_path):
    image = np.random.default_rng(0).integers(0, 4000, (3, 24, 32), dtype=np.uint16)
    labels = np.zeros((3, 24, 32), np.uint16)
    labels[0] = _labels()
    labels[2, 5:15, 5:15] = 9  # slice 1 has no objects and is skipped
    tifffile.imwrite(tmp_path / "stack_image.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "stack_labels.tif", labels, photometric="minisblack")
    assert detect_dataset_type(tmp_path) == "tiff-stack"
    for path in (tmp_path, tmp_path / "stack_image.tif"):
        ds = TiffStackDataset(path, min_area=10)
        assert ds.entry_ids == ["stack/z0", "stack/z2"]
        samples = list(ds)
        assert [s.sample_id for s in samples] == ["stack/z0#1", "stack/z0#2", "stack/z0#7", "stack/z2#9"]
        assert samples[-1].image.dtype == np.uint16
        np.testing.assert_array_equal(samples[-1].image, image[2])


def test_grabcut_shared_data(grabcut_dir):
    ds = GrabCutDataset(grabcut_dir)
    assert len(ds) == 50
    s = ds.samples(0)[0]
    assert s.gt_mask.any() and s.image.ndim == 3
