"""How fast are journal appends in a long session, and how long does restoring 10,000 commits take?

A labels stack of (20, 1024, 1024) uint32 gets ``--commits`` commits (default 10,000): each is a
disk-shaped nucleus of radius 6-14 at a random place, with a new label id, journaled exactly as the
plugin journals a commit (one ``commit`` record: box, values, changed pixels, label id, 3 clicks;
written and fsynced before the call returns). Every 10th step is a brush edit (a 9-px-wide stroke)
instead. Prints the append times (median and 95th percentile over the first and the last 1,000, to
show they do not grow), the journal's size, the time of a scan (the recovery offer reads it) and of
a full restore, and checks that the restored labels equal the labels written::

    python benchmarks/journal_speed.py --commits 10000 --folder /tmp/journal-bench
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_fcfi.annotation.journal import LabelsJournal, change_record


def run(commits: int, folder: Path, shape: tuple[int, int, int] = (20, 1024, 1024)) -> dict[str, float]:
    rng = np.random.default_rng(0)
    labels = np.zeros(shape, np.uint32)
    journal = LabelsJournal.create("bench", {"label_shape": list(shape), "dtype": "uint32"}, folder)
    journal.open_log()
    append_ms = []
    for step in range(commits):
        z = int(rng.integers(shape[0]))
        radius = int(rng.integers(6, 15))
        row, col = (int(rng.integers(radius, n - radius)) for n in shape[1:])
        box = ((z, z + 1), (row - radius, row + radius + 1), (col - radius, col + radius + 1))
        region = labels[tuple(slice(a, b) for a, b in box)]
        rows, cols = np.ogrid[-radius : radius + 1, -radius : radius + 1]
        if step % 10 == 9:  # a brush stroke: a band across the box, label 1
            mask = (np.abs(rows - cols) <= 4)[None]
            label_id, kind = 1, "paint"
        else:
            mask = ((rows**2 + cols**2) <= radius**2)[None] & (
                region == 0
            )  # background only, as commits paint
            label_id, kind = step + 2, "commit"
        after = region.copy()
        after[mask] = label_id
        changed = after != region
        start = time.perf_counter()
        journal.append(
            change_record(
                kind,
                box,
                after,
                changed,
                label_id=label_id if kind == "commit" else None,
                clicks=[(row, col, True), (row + 2, col, False), (row, col + 1, True)],
            )
        )
        append_ms.append((time.perf_counter() - start) * 1000)
        region[...] = after
    journal.close()
    size = sum(p.stat().st_size for p in journal.folder.iterdir())
    start = time.perf_counter()
    scan = journal.scan()
    scan_s = time.perf_counter() - start
    start = time.perf_counter()
    restored, _ = journal.restore()
    restore_s = time.perf_counter() - start
    assert np.array_equal(restored, labels), "restored labels differ"
    first, last = append_ms[:1000], append_ms[-1000:]
    return {
        "commits": commits,
        "entries": scan.intact,
        "journal_mb": size / 1e6,
        "append_median_ms_first_1000": statistics.median(first),
        "append_p95_ms_first_1000": float(np.percentile(first, 95)),
        "append_median_ms_last_1000": statistics.median(last),
        "append_p95_ms_last_1000": float(np.percentile(last, 95)),
        "scan_s": scan_s,
        "restore_s": restore_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument(
        "--folder", type=Path, default=None, help="where the journal is written (default: a temp dir)"
    )
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="fcfi-journal-bench-"))
    try:
        result = run(args.commits, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for key, value in result.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
