"""The commit journal: append-only, atomic entries that restore labels bit for bit."""

from __future__ import annotations

import numpy as np

from napari_fcfi.annotation.journal import CommitJournal, find_journals, image_fingerprint


def test_entries_restore_the_labels_exactly(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((3, 40, 50)).astype(np.float32)
    journal = CommitJournal.for_image(image_fingerprint(image, "cells"), tmp_path)
    journal.start({"label_shape": [3, 40, 50], "dtype": "uint16", "image_name": "cells", "labels_name": "cells labels"})
    labels = np.zeros((3, 40, 50), np.uint16)
    for label_id, z in ((1, 0), (2, 0), (1, 2), (3, 1)):  # an edit of 1 and overlapping objects
        region = (slice(5 + label_id, 25 + label_id), slice(10, 30 + z))
        before = labels[z][region].copy()
        after = before.copy()
        after[rng.random(after.shape) > 0.4] = label_id
        after[0, 0] = 0  # a pixel cleared (edits clear their old label)
        labels[z][region] = after
        journal.append(label_id, (z,), region, before, after, after == label_id, [(7, 8, True)])
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written is left behind
    assert [e.label_id for e in journal.entries()] == [1, 2, 1, 3]
    assert journal.entries()[0].clicks == [(7, 8, True)]
    restored = journal.restore(np.zeros((3, 40, 50), np.uint16))
    np.testing.assert_array_equal(restored, labels)
    assert "3 object(s)" in journal.summary() and "cells labels" in journal.summary()
    assert [j.folder for j in find_journals(tmp_path)] == [journal.folder]
    journal.discard()
    assert not journal.exists() and find_journals(tmp_path) == []


def test_fingerprint_is_stable_and_tells_images_apart():
    a = np.arange(2 * 300 * 200, dtype=np.uint16).reshape(2, 300, 200)
    assert image_fingerprint(a, "x") == image_fingerprint(a.copy(), "x")
    b = a.copy()
    b[0, 0, 0] += 1
    assert image_fingerprint(a, "x") != image_fingerprint(b, "x")
    assert image_fingerprint(a, "x", "/data/a.tif") == image_fingerprint(a, "renamed", "/data/a.tif")
