"""Readers take any bytes: random and mutated files end in a result or in the project's own clear
error (JournalError, ClickLogError, LabelsFileError, CheckpointError), never in an exception from
numpy, zip, zlib, json or tifffile. Bounded for CI: few examples each, no deadline."""

from __future__ import annotations

import json
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_fcfi.annotation.clicklog import (
    ClickLog,
    ClickLogError,
    ClicksStep,
    ObjectRecord,
    read_log_metadata,
)
from napari_fcfi.annotation.journal import JournalError, LabelsJournal, base_record, change_record
from napari_fcfi.annotation.journal_records import decode_record, encode_record
from napari_fcfi.annotation.labels_tiff import LabelsFileError, read_labels_tiff, write_labels_tiff
from napari_fcfi.engine.clicks import Click
from napari_fcfi.model.errors import CheckpointError
from napari_fcfi.model.safetensors_format import read_metadata

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHAPE = (2, 24, 30)
WRITTEN_IDS = {0, 1, 2, 3, 300}


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, then perhaps cut short, a stretch removed or junk inserted."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if out:
            out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
    action = draw(st.sampled_from(["none", "cut", "remove", "insert"]))
    if out and action == "cut":
        out = out[: draw(st.integers(0, len(out) - 1))]
    elif out and action == "remove":
        start = draw(st.integers(0, len(out) - 1))
        del out[start : start + draw(st.integers(1, 64))]
    elif action == "insert":
        at = draw(st.integers(0, len(out)))
        out[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(out)


def journal_log() -> tuple[bytes, np.ndarray]:
    """The bytes of a real journal log (start, base, commits, a brush edit, an undo) and its labels."""
    rng = np.random.default_rng(0)
    labels = np.zeros(SHAPE, np.uint16)
    labels[1, 2:6, 3:9] = 300
    records = [
        encode_record({"kind": "start", "info": {"label_shape": list(SHAPE), "dtype": "uint16"}}),
        base_record(labels),
    ]
    for label_id, kind in ((1, "commit"), (2, "paint"), (3, "commit"), (1, "undo")):
        z = label_id % 2
        box = ((z, z + 1), (label_id, label_id + 9), (2, 14))
        region = labels[tuple(slice(a, b) for a, b in box)]
        after = region.copy()
        after[rng.random(after.shape) > 0.5] = label_id
        changed = None if kind == "undo" else after != region
        records.append(change_record(kind, box, after, changed, label_id=label_id, clicks=[(3, 4, True)]))
        region[...] = after
    return b"".join(records), labels


LOG, LOG_LABELS = journal_log()


def journal_folder(files: dict[str, bytes]) -> LabelsJournal:
    folder = Path(tempfile.mkdtemp(prefix="fcfi-fuzz-"))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return LabelsJournal(folder)


def restore_or_clear_error(journal: LabelsJournal) -> np.ndarray | None:
    scan = journal.scan()  # never raises on damage: it reports it
    assert scan.intact >= 0 and scan.damaged >= 0
    scan.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            labels, _ = journal.restore(shape=SHAPE)
        except JournalError:
            return None
    assert labels.shape == SHAPE
    return labels


def test_the_unmutated_log_restores_exactly():
    labels = restore_or_clear_error(journal_folder({"journal.json": b"{}", "log-000.fcj": LOG}))
    np.testing.assert_array_equal(labels, LOG_LABELS)


@FUZZ
@given(log=st.binary(max_size=3000), header=st.binary(max_size=200), entry=st.binary(max_size=300))
def test_random_journal_files_restore_or_raise_journal_error(log, header, entry):
    restore_or_clear_error(journal_folder({"journal.json": header, "log-000.fcj": log, "000001.npz": entry}))


@FUZZ
@given(log=mutated(LOG), header=mutated(json.dumps({"label_shape": list(SHAPE), "dtype": "uint16"}).encode()))
def test_mutated_journals_restore_only_what_was_written(log, header):
    labels = restore_or_clear_error(journal_folder({"journal.json": header, "log-000.fcj": log}))
    if labels is not None:  # damaged records are skipped, never read as garbage labels
        assert set(np.unique(labels).tolist()) <= WRITTEN_IDS


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
metas = st.fixed_dictionaries(
    {"kind": st.sampled_from(["commit", "paint", "undo", "base", "start", "x"])},
    optional={
        "box": json_values | st.lists(st.lists(st.integers(-3, 40), min_size=2, max_size=2), max_size=3),
        "dtype": st.sampled_from(["<u2", "<i8", "<f4", "|b1", "garbage", "<u4"]) | json_values,
        "values": st.integers(-1, 3) | json_values,
        "changed": st.integers(-1, 3) | json_values,
        "fill": st.integers(-(2**65), 2**65) | json_values,
        "label_id": json_values,
        "clicks": json_values,
        "time": json_values,
        "info": json_values,
    },
)


@FUZZ
@given(meta=metas, blobs=st.lists(st.binary(max_size=64) | st.just(zlib.compress(b"\x01" * 64)), max_size=3))
def test_records_with_a_valid_checksum_but_any_content_end_in_journal_error(meta, blobs):
    record = encode_record(meta, blobs)
    try:
        change = decode_record(record[16:], "fuzz")
    except JournalError:
        return
    if isinstance(change, dict):
        return
    try:
        values, changed = change.arrays()
    except JournalError:
        return
    assert values.shape == change.shape and (changed is None or changed.shape == change.shape)
    restore_or_clear_error(journal_folder({"log-000.fcj": LOG + record}))


def click_log_bytes() -> bytes:
    mask = np.zeros((20, 20), bool)
    mask[3:9, 4:12] = True
    log = ClickLog(
        [
            ObjectRecord(2, [ClicksStep((1,), (Click(4, 5, True), Click(6, 7, False)))]),
            ObjectRecord(2, [ClicksStep((0,), (Click(5, 5, True),), initial_mask=mask)], edited=True),
        ],
        metadata={"model": "default"},
    )
    folder = Path(tempfile.mkdtemp(prefix="fcfi-fuzz-"))
    return log.save(folder / "log.csv").read_bytes()


CLICK_LOG = click_log_bytes()


def read_click_log(data: bytes) -> None:
    path = Path(tempfile.mkdtemp(prefix="fcfi-fuzz-")) / "log.csv"
    path.write_bytes(data)
    for read in (lambda: ClickLog.load(path, plane_shape=(20, 20)), lambda: read_log_metadata(path)):
        try:
            read()
        except ClickLogError as error:
            assert str(path) in str(error)


@FUZZ
@given(data=st.binary(max_size=2000) | mutated(CLICK_LOG))
def test_click_logs_of_any_bytes_read_or_raise_click_log_error(data):
    read_click_log(data)


@FUZZ
@given(objects=json_values)
def test_click_log_metadata_of_any_shape_reads_or_raises_click_log_error(objects):
    text = CLICK_LOG.decode()
    head, _, rest = text.partition("# metadata: ")
    metadata_line, _, table = rest.partition("\n")
    metadata = json.loads(metadata_line)
    metadata["objects"] = objects
    read_click_log((head + "# metadata: " + json.dumps(metadata) + "\n" + table).encode())


def labels_tiff_bytes() -> bytes:
    folder = Path(tempfile.mkdtemp(prefix="fcfi-fuzz-"))
    labels = np.zeros((12, 16), np.uint16)
    labels[2:6, 3:9] = 4
    (path,) = write_labels_tiff(folder / "labels.tif", labels, {"scale": (0.5, 0.5), "translate": (1, 2)})
    return Path(path).read_bytes()


LABELS_TIFF = labels_tiff_bytes()


@FUZZ
@given(data=st.binary(max_size=2000) | mutated(LABELS_TIFF))
def test_labels_tiffs_of_any_bytes_read_or_raise_labels_file_error(data):
    from napari_fcfi.plugin.io import get_reader

    path = Path(tempfile.mkdtemp(prefix="fcfi-fuzz-")) / "labels.tif"
    path.write_bytes(data)
    try:
        labels, meta = read_labels_tiff(path)
    except LabelsFileError as error:
        assert str(path) in str(error)
    else:
        assert labels.dtype.kind in "biu" and isinstance(meta, dict)
    reader = get_reader(str(path))  # napari asks first: None when the file is not ours
    if reader is not None:
        try:
            layers = reader(str(path))
        except LabelsFileError:
            return
        assert layers[0][2] == "labels"


def weights_manifest_bytes() -> bytes:
    """A tiny safetensors file with our metadata (the manifest napari-fcfi reads before loading)."""
    from safetensors.numpy import save_file

    folder = Path(tempfile.mkdtemp(prefix="fcfi-fuzz-"))
    save_file(
        {"w": np.zeros(3, np.float32)},
        str(folder / "w.safetensors"),
        metadata={"format": "napari-fcfi", "format_version": "1", "config": json.dumps({"arch": "hrnet18"})},
    )
    return (folder / "w.safetensors").read_bytes()


WEIGHTS = weights_manifest_bytes()


@FUZZ
@given(data=st.binary(max_size=500) | mutated(WEIGHTS))
def test_weights_manifests_of_any_bytes_read_or_raise_checkpoint_error(data):
    path = Path(tempfile.mkdtemp(prefix="fcfi-fuzz-")) / "w.safetensors"
    path.write_bytes(data)
    try:
        metadata = read_metadata(path)
    except CheckpointError:
        return
    assert isinstance(metadata["config"], dict)


def test_a_header_declaring_gigabytes_is_refused_before_anything_is_allocated(tmp_path):
    """A flipped high byte of ImageWidth (what once OOM-killed this suite in CI): 23 GB of uint16
    labels declared in a 339-byte file are refused with a clear error, not read into memory."""
    import io
    import resource

    import pytest
    import tifffile

    with tifffile.TiffFile(io.BytesIO(LABELS_TIFF)) as tif:
        width = tif.pages[0].tags["ImageWidth"]
        assert width.dtype == 4 and tif.byteorder == "<"  # a little-endian LONG: its 4th byte is the highest
        offset = width.valueoffset + 3
    damaged = bytearray(LABELS_TIFF)
    damaged[offset] = 0x3A
    path = tmp_path / "labels.tif"
    path.write_bytes(bytes(damaged))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(LabelsFileError, match=r"declares uint16 labels of shape \(12, 973078544\)"):
        read_labels_tiff(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB: nothing of it read
