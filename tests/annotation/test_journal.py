"""The labels journal: append-only checksummed logs that restore bit for bit and survive damage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_fcfi.annotation.journal import (
    JournalError,
    JournalWarning,
    LabelsJournal,
    base_record,
    change_record,
    find_journals,
    image_fingerprint,
    journals_for_image,
)
from napari_fcfi.annotation.journal_records import MAGIC

SHAPE = (3, 40, 50)


def write_session(root: Path, rng: np.random.Generator, start: np.ndarray | None = None):
    """A journal with a base, commits, a brush edit and an undo; returns it and the labels it describes."""
    journal = LabelsJournal.create(
        "image",
        {"label_shape": list(SHAPE), "dtype": "uint16", "image_name": "cells", "labels_name": "cells labels"},
        root,
    )
    labels = np.zeros(SHAPE, np.uint16) if start is None else start.copy()
    journal.open_log()
    if labels.any():
        journal.append(base_record(labels))
    for label_id, z, kind in (
        (1, 0, "commit"),
        (2, 0, "commit"),
        (1, 2, "commit"),
        (7, 1, "paint"),
        (3, 1, "undo"),
    ):
        box = ((z, z + 1), (5 + label_id, 25 + label_id), (10, 30 + z))
        region = labels[tuple(slice(a, b) for a, b in box)]
        after = region.copy()
        after[rng.random(after.shape) > 0.4] = label_id
        after[0, 0, 0] = 0  # a pixel cleared (edits clear their old label)
        changed = None if kind == "undo" else after != region
        journal.append(
            change_record(
                kind,
                box,
                after,
                changed,
                label_id=label_id if kind == "commit" else None,
                clicks=[(7, 8, True)],
            )
        )
        region[...] = after
    journal.close()
    return journal, labels


def test_entries_restore_the_labels_exactly(tmp_path):
    start = np.zeros(SHAPE, np.uint16)
    start[2, 30:35, 1:5] = 9  # the layer was not empty when the journal started
    journal, labels = write_session(tmp_path, np.random.default_rng(0), start)
    restored, scan = journal.restore()
    np.testing.assert_array_equal(restored, labels)
    assert restored.dtype == np.uint16 and scan.damaged == 0 and not scan.problems
    assert [c.kind for c in scan.changes] == ["base", "commit", "commit", "commit", "paint", "undo"]
    assert scan.label_ids == [1, 2] and scan.changes[1].clicks == [(7, 8, True)]
    summary = scan.summary()
    assert "2 object(s)" in summary and "'cells labels'" in summary and "6 entries intact" in summary
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written is left behind
    assert journals_for_image("image", tmp_path) == [journal] == find_journals(tmp_path)
    journal.discard()
    assert not journal.exists() and find_journals(tmp_path) == []


def test_a_damaged_entry_a_cut_off_tail_and_a_foreign_file_are_skipped_and_named(tmp_path):
    journal, _ = write_session(tmp_path, np.random.default_rng(1))
    log = journal.folder / "log-000.fcj"
    data = bytearray(log.read_bytes())
    starts = [i for i in range(len(data)) if data.startswith(MAGIC, i)]
    data[starts[2] + 40] ^= 0xFF  # inside the second commit
    data = data[: starts[-1] + 30]  # the undo cut off (an interrupted copy)
    log.write_bytes(bytes(data))
    (journal.folder / "notes.txt").write_text("foreign")
    with pytest.warns(JournalWarning) as warned:
        restored, scan = journal.restore()
    messages = [str(w.message) for w in warned]
    assert scan.damaged == 2 and scan.intact == 3
    assert any("log-000.fcj at byte" in m and "damaged" in m for m in messages)
    assert any("cut-off" in m for m in messages) and any("notes.txt" in m for m in messages)
    assert set(np.unique(restored)) <= {0, 1, 7}  # the damaged commit (label 2) is not there


def test_a_damaged_header_falls_back_to_what_the_entries_carry(tmp_path):
    journal, labels = write_session(tmp_path, np.random.default_rng(2))
    (journal.folder / "journal.json").write_bytes(b"\x00garbage")
    with pytest.warns(JournalWarning, match="header damaged"):
        restored, scan = journal.restore()
    np.testing.assert_array_equal(restored, labels)
    assert scan.info["labels_name"] == "cells labels"  # from the log's start record


def test_nothing_intact_is_a_clear_error(tmp_path):
    folder = tmp_path / "image" / "j"
    folder.mkdir(parents=True)
    (folder / "log-000.fcj").write_bytes(os.urandom(300))
    with pytest.raises(JournalError, match="no intact entry .*log-000.fcj at byte 0"):
        LabelsJournal(folder).restore(shape=SHAPE)


def test_appending_never_lists_the_folder(tmp_path, monkeypatch):
    journal = LabelsJournal.create("image", {"label_shape": [10, 10], "dtype": "uint8"}, tmp_path)
    journal.open_log()

    def no_listing(self):
        raise AssertionError("the folder was listed while appending")

    monkeypatch.setattr(Path, "iterdir", no_listing)
    monkeypatch.setattr(os, "scandir", no_listing)
    monkeypatch.setattr(os, "listdir", no_listing)
    for i in range(50):
        journal.append(
            change_record(
                "commit", ((i % 10, i % 10 + 1), (0, 10)), np.full((1, 10), i, np.uint8), label_id=i
            )
        )
    monkeypatch.undo()
    journal.close()
    assert journal.scan().intact == 50


def test_each_writing_process_opens_the_next_log(tmp_path):
    journal, labels = write_session(tmp_path, np.random.default_rng(3))
    again = LabelsJournal(journal.folder)
    again.open_log()
    again.append(change_record("paint", ((0, 1), (0, 2), (0, 2)), np.full((1, 2, 2), 5, np.uint16)))
    again.close()
    assert sorted(p.name for p in journal.folder.glob("log-*")) == ["log-000.fcj", "log-001.fcj"]
    labels[0, :2, :2] = 5
    np.testing.assert_array_equal(journal.restore()[0], labels)
    assert journal.scan().damaged == 0
    # a lost log (deleted, not damaged) is said: what that session committed cannot come back
    (journal.folder / "log-000.fcj").unlink()
    scan = journal.scan()
    assert scan.damaged == 1 and any("log-000.fcj missing" in problem for problem in scan.problems)


def test_format_1_journals_still_restore(tmp_path):
    """Journals written by the previous version (NNNNNN.npz in the fingerprint folder) are read."""
    folder = tmp_path / "image"
    folder.mkdir()
    (folder / "journal.json").write_text(
        json.dumps(
            {
                "format": "napari-fcfi-commit-journal/1",
                "label_shape": [2, 8, 9],
                "dtype": "uint16",
                "labels_name": "old labels",
            }
        )
    )
    labels = np.zeros((2, 8, 9), np.uint16)
    for index, (label_id, z) in enumerate(((4, 1), (5, 0))):
        before = labels[z, 1:6, 2:8].copy()
        after = before.copy()
        after[1:4, 1:5] = label_id
        np.savez_compressed(
            folder / f"{index:06d}.npz",
            label_id=np.array(label_id),
            slice_key=np.array([z]),
            region=np.array([1, 6, 2, 8]),
            values=after,
            changed=np.packbits((after != before).ravel()),
            object_mask=np.packbits((after == label_id).ravel()),
            clicks=np.zeros((0, 3), np.int64),
        )
        labels[z, 1:6, 2:8] = after
    (folder / "000002.npz").write_bytes(b"PK\x03\x04 truncated")  # a damaged entry of the old format
    newer = LabelsJournal.create("image", {"label_shape": [2, 8, 9], "dtype": "uint16"}, tmp_path)
    newer.open_log()
    newer.append(base_record(np.ones((2, 8, 9), np.uint16)))
    newer.close()
    found = journals_for_image("image", tmp_path)
    assert [j.is_v1 for j in found] == [True, False]
    with pytest.warns(JournalWarning, match="000002.npz"):
        restored, scan = found[0].restore()
    np.testing.assert_array_equal(restored, labels)
    assert scan.label_ids == [4, 5] and scan.damaged == 1
    found[0].discard()  # only the old journal's own files go; the newer journal inside stays
    assert journals_for_image("image", tmp_path) == [newer]


def test_fingerprint_is_stable_and_tells_images_apart():
    a = np.arange(2 * 300 * 200, dtype=np.uint16).reshape(2, 300, 200)
    assert image_fingerprint(a, "x") == image_fingerprint(a.copy(), "x")
    b = a.copy()
    b[0, 0, 0] += 1
    assert image_fingerprint(a, "x") != image_fingerprint(b, "x")
    assert image_fingerprint(a, "x", "/data/a.tif") == image_fingerprint(a, "renamed", "/data/a.tif")


def test_the_recovery_folder_can_be_chosen(monkeypatch, tmp_path):
    from napari_fcfi.annotation.journal import RECOVERY_ENV_VAR, recovery_root

    monkeypatch.setenv(RECOVERY_ENV_VAR, str(tmp_path / "elsewhere"))
    assert recovery_root() == tmp_path / "elsewhere"
    monkeypatch.delenv(RECOVERY_ENV_VAR)
    monkeypatch.setenv("NAPARI_FCFI_CACHE", str(tmp_path / "cache"))
    assert recovery_root() == tmp_path / "cache" / "recovery"


def test_the_click_log_comes_back_and_a_damaged_object_is_skipped_by_name(tmp_path):
    from napari_fcfi.annotation.clicklog import ClicksStep, ObjectRecord, record_to_entry
    from napari_fcfi.annotation.journal_records import object_record
    from napari_fcfi.engine.clicks import Click

    start = np.zeros((20, 30), bool)
    start[2:6, 3:9] = True
    kept = ObjectRecord(
        4,
        [ClicksStep((), (Click(5, 6, True), Click(7.5, 2, False)), start, from_segment_all=True)],
        edited=True,
    )
    undone = ObjectRecord(5, [ClicksStep((), (Click(1, 1, True),))])
    journal = LabelsJournal.create("img", {"label_shape": [20, 30], "dtype": "uint8"}, tmp_path)
    journal.open_log()
    journal.append(object_record("add", 0, record_to_entry(kept)))
    journal.append(object_record("add", 1, record_to_entry(undone)))
    journal.append(object_record("withdraw", 1))
    journal.append(object_record("add", 2, {"object": 0, "steps": "not steps"}))
    journal.append(object_record("withdraw", 7))
    journal.close()
    scan = journal.scan()
    log, refs = scan.click_log((20, 30))
    assert len(log) == 1 and sorted(refs) == [0, 1]
    back = log.records[0]
    assert (back.label_id, back.edited, back.clicks) == (4, True, [(5, 6, True), (7.5, 2, False)])
    assert back.steps[0].from_segment_all and np.array_equal(back.steps[0].initial_mask, start)
    assert len(scan.problems) == 2 and all("log-000.fcj" in p for p in scan.problems)
    # label 5 was committed, then undone: the summary does not count it as committed (retest 2026-12-06)
    assert scan.label_ids == [4, 5] and scan.kept_label_ids == [4]
    assert "1 object(s) committed (1 more undone)" in scan.summary(), scan.summary()
    journal.open_log()
    journal.append(object_record("add", 1))  # redone
    journal.close()
    assert journal.scan().kept_label_ids == [4, 5]
